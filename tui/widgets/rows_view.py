"""A scrollable list of pre-rendered rows with a cursor, drawn with
Textual's line API: only the visible lines are rendered, so tens of
thousands of rows cost nothing until they scroll into view (Textual's
Tree and DataTable rebuild whole caches on every change)."""

from __future__ import annotations

from collections.abc import Hashable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


class RowsView(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"rows-view--cursor", "rows-view--header"}
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "move(-20)", show=False),
        Binding("pagedown", "move(20)", show=False),
        Binding("home", "move(-1000000000)", show=False),
        Binding("end", "move(1000000000)", show=False),
    ]
    cursor = reactive(0, always_update=True, init=False)

    class Selected(Message):
        """The cursor moved to the row with this key."""

        def __init__(self, view: RowsView, key: Hashable | None) -> None:
            super().__init__()
            self.view = view
            self.key = key

    def __init__(self, header: Text | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.header = header
        self.rows: list[Text] = []
        self.keys: list[Hashable] = []

    def set_rows(self, rows: list[Text], keys: list[Hashable]) -> None:
        """Replace the rows, keeping the cursor on the same key when it is still there."""
        current = self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None
        self.rows, self.keys = rows, keys
        width = max((r.cell_len for r in rows[:2000]), default=0)
        self.virtual_size = Size(width, len(rows) + (1 if self.header else 0))
        index = {k: i for i, k in enumerate(keys)}.get(current) if current is not None else None
        self.set_reactive(RowsView.cursor, index if index is not None else min(self.cursor, max(len(rows) - 1, 0)))
        self.refresh()

    @property
    def selected_key(self) -> Hashable | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))

    def watch_cursor(self, cursor: int) -> None:
        top = self.scroll_offset.y
        height = self.scrollable_content_region.height - (1 if self.header else 0)
        if cursor < top:
            self.scroll_to(y=cursor, animate=False)
        elif height > 0 and cursor >= top + height:
            self.scroll_to(y=cursor - height + 1, animate=False)
        self.refresh()
        self.post_message(self.Selected(self, self.selected_key))

    def on_click(self, event) -> None:
        row = event.y + self.scroll_offset.y - (1 if self.header else 0)
        if 0 <= row < len(self.rows):
            self.cursor = row

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        if self.header is not None:
            if y == 0:
                return self._strip(self.header, scroll_x, width, self.get_component_rich_style("rows-view--header"))
            y -= 1
        index = y + scroll_y
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        style = self.get_component_rich_style("rows-view--cursor") if index == self.cursor and self.has_focus else None
        if style is None and index == self.cursor:
            style = Style(reverse=True)
        return self._strip(self.rows[index], scroll_x, width, style)

    def _strip(self, text: Text, scroll_x: int, width: int, style: Style | None) -> Strip:
        segments = list(text.render(self.app.console))
        strip = Strip(segments).crop(scroll_x, scroll_x + width).extend_cell_length(width)
        base = self.rich_style
        strip = strip.apply_style(base)
        if style is not None:
            strip = Strip([Segment(s.text, (s.style or Style()) + style, s.control) for s in strip])
        return strip
