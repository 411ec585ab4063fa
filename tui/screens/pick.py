"""Pick one of a list: a container or a user to show, a column to sort by.
Dismissed with the choice's id ("" for "all"), or None when cancelled."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import safe


class PickScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], current: str = "", everything: str | None = None):
        """``choices``: (id, label), labels may hold any process's text; ``current``: the id chosen now;
        ``everything``: the label of a first choice meaning "no choice" (id "")."""
        super().__init__()
        self.title_text = title
        self.choices = ([("", everything)] if everything is not None else []) + choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.title_text, id="title", markup=False)
            yield OptionList(*(Option(safe(label), id=cid) for cid, label in self.choices), id="choices")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [cid for cid, _ in self.choices]
        options.highlighted = ids.index(self.current) if self.current in ids else 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
