"""The setup screen (F2): whether the header of meters shows, which columns
the process list shows, and in what order. Dismissed with a Setup, or None
when cancelled; the app saves it in the config file."""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList, Static
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist
from textual.widgets.selection_list import Selection

from ..columns import ALWAYS, COLUMNS


@dataclass(frozen=True)
class Setup:
    columns: list[str]
    header: bool


class ColumnList(SelectionList[str]):
    """Textual's list draws the same X for on and off, told apart by colour
    alone (near-black on some themes, nothing without colour): here ✓ for a
    column shown, a blank for one hidden, as htop's [x] and [ ]."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        if len(segments) < 2 or segments[1].text != ToggleButton.BUTTON_INNER:
            return strip
        try:
            value = self.get_option_at_index(self.scroll_offset.y + y).value
        except OptionDoesNotExist:
            return strip
        segments[1] = Segment("✓" if value in self.selected else " ", segments[1].style)
        return Strip(segments, strip.cell_length)


class Mark(Checkbox):
    """A checkbox marked as the column list is: ✓ on, a blank off (not an X either way)."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "✓" if self.value else " "
        return super()._button


class SetupScreen(ModalScreen[Setup | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("enter", "save", "Save", priority=True),  # not the list's own: that toggles
        Binding("left_square_bracket,shift+up", "move(-1)", "Move up"),
        Binding("right_square_bracket,shift+down", "move(1)", "Move down"),
    ]

    def __init__(self, chosen: list[str], header: bool = True, hidden: dict[str, str] | None = None):
        """``hidden``: chosen columns not shown now, and why ("too narrow", "nothing to show")."""
        super().__init__()
        self.header = header
        self.hidden = hidden or {}
        # The chosen ones in their order, then the others; COMMAND always last.
        names = [n for n in chosen if n in COLUMNS and n != "COMMAND"]
        names += [n for n in COLUMNS if n not in names and n != "COMMAND"]
        self.names = names
        self.chosen = set(chosen) | set(ALWAYS)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(
                "Columns: space shows or hides one, [ and ] move it; shift+Tab: the header; Enter saves, Esc cancels",
                id="title",
                markup=False,
            )
            yield Mark("the header: CPUs, memory, tasks, load (htop's meters)", self.header, id="header")
            yield ColumnList(*self._selections(), id="columns")

    def _selections(self) -> list[Selection]:
        out = []
        for n in self.names:
            fixed = n in ALWAYS
            why = f"(hidden: {self.hidden[n]}) " if n in self.hidden and not fixed else ""  # first: narrow dialogs cut
            label = f"{n:<10} {why}{COLUMNS[n].about}" + ("  (always)" if fixed else "")
            out.append(Selection(label, n, n in self.chosen, disabled=fixed))
        return out

    def on_mount(self) -> None:
        columns = self.query_one(SelectionList)
        columns.highlighted = next(i for i, n in enumerate(self.names) if n not in ALWAYS)  # the fixed ones are skipped
        columns.focus()

    def action_move(self, step: int) -> None:
        columns = self.query_one(SelectionList)
        i = columns.highlighted
        if i is None or not 0 <= i + step < len(self.names):
            return
        self.chosen = set(columns.selected) | set(ALWAYS)
        self.names[i], self.names[i + step] = self.names[i + step], self.names[i]
        columns.clear_options()
        columns.add_options(self._selections())
        columns.highlighted = i + step

    def action_save(self) -> None:
        selected = set(self.query_one(SelectionList).selected) | set(ALWAYS)
        header = self.query_one("#header", Checkbox).value
        self.dismiss(Setup([n for n in self.names if n in selected] + ["COMMAND"], header))
