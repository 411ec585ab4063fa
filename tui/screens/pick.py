"""Pick one of a list: a container or a user to show, a column to sort by.
Dismissed with the choice's id ("" for "all"), or None when cancelled."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import add_row, safe

Label = str | tuple[str, str]  # a line, or a name and what it means (wrapped beside the names, aligned)


class PickScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self, title: str, choices: Sequence[tuple[str, Label]], current: str = "", everything: str | None = None
    ):
        """``choices``: (id, label), labels may hold any process's text; ``current``: the id chosen now;
        ``everything``: the label of a first choice meaning "no choice" (id "")."""
        super().__init__()
        self.title_text = title
        self.choices: list[tuple[str, Label]] = ([("", everything)] if everything is not None else []) + list(choices)
        self.current = current

    def compose(self) -> ComposeResult:
        names = [label[0] for _, label in self.choices if isinstance(label, tuple)]
        width = max(map(len, names), default=0)

        def prompt(label: Label) -> Table | Text:
            if isinstance(label, str):
                return safe(label)
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=width, no_wrap=True)
            grid.add_column()
            add_row(grid, *label)
            return grid

        with Vertical(id="dialog"):
            yield Static(self.title_text, id="title", markup=False)
            yield OptionList(*(Option(prompt(label), id=cid) for cid, label in self.choices), id="choices")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        ids = [cid for cid, _ in self.choices]
        options.highlighted = ids.index(self.current) if self.current in ids else 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
