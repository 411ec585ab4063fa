"""Pick a container to filter on. Dismissed with its id, "" for all
containers, or None when cancelled; the app changes the filter."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..text import safe


class ContainerScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, choices: list[tuple[str, str]], current: str = "") -> None:
        """``choices``: (container id, label); ``current``: the id filtered on now."""
        super().__init__()
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        options = [Option("all containers", id="")] + [Option(safe(label), id=cid) for cid, label in self.choices]
        with Vertical(id="dialog"):
            yield Static("Show one container", id="title")
            yield OptionList(*options, id="containers")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [""] + [cid for cid, _ in self.choices]
        options.highlighted = ids.index(self.current) if self.current in ids else 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
