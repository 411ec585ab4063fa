"""A scrollable list of rows with a cursor, drawn with Textual's line API:
only the visible lines are rendered, and the rows may be a lazy sequence
that renders only those, so tens of thousands of rows cost nothing until
they scroll into view (Textual's Tree and DataTable rebuild whole caches
on every change); new rows repaint only the lines that show something else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Region, Size
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
    # On the first row, stay there (a stream's newest) rather than follow its key down.
    FOLLOW_TOP = True

    class Selected(Message):
        """The cursor moved to the row with this key."""

        def __init__(self, view: RowsView, key: Hashable | None) -> None:
            super().__init__()
            self.view = view
            self.key = key

    def __init__(self, header: Text | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.header = header
        self.rows: Sequence[Text] = []
        self.keys: Sequence[Hashable] = []
        self._widest = header.cell_len if header is not None else 0  # of the rows rendered so far
        self._memo: dict = {}  # set_items: item → its Text
        # What each line on screen was drawn from, and the view they were drawn in: set_rows
        # repaints only the lines that changed (an idle second changes few or none).
        self._painted: dict[int, tuple] = {}
        self._painted_view: tuple | None = None

    def set_rows(self, rows: Sequence[Text], keys: Sequence[Hashable]) -> None:
        """Replace the rows, keeping the cursor on the same key when it is
        still there, at the same line on screen. ``rows`` may render lazily:
        only the lines on screen are asked for (the width follows what was
        drawn), and ``keys.index`` may be a fast lookup."""
        current = self.selected_key
        self.rows, self.keys = rows, keys
        self._resize(Size(self._widest, len(rows) + (1 if self.header else 0)))
        index = None
        if current is not None and not (self.FOLLOW_TOP and self.cursor == 0):
            with contextlib.suppress(ValueError):
                index = keys.index(current)
        if index is None:
            index = min(self.cursor, max(len(rows) - 1, 0))
        elif index != self.cursor and not (self.scroll_offset.y == 0 and index < self._page()):
            # Rows came or went above it: scroll along (at the top of the list, the top
            # stays in view and the cursor moves with its row, as htop's in a sorted list).
            self.scroll_to(y=self.scroll_offset.y + index - self.cursor, animate=False, immediate=True)
        self.set_reactive(RowsView.cursor, index)
        self._repaint_changed()

    def _view(self) -> tuple:
        return self.scroll_offset, self.scrollable_content_region.size, self.has_focus, self.rich_style

    def _repaint_changed(self) -> None:
        if self._painted_view != self._view():
            self.refresh()
            return
        width = max(self.virtual_size.width, self.size.width)
        for y in range(self.scrollable_content_region.height):
            painted = self._painted.get(y)
            if painted is None or not _same(painted, self._line(y)):
                self.refresh(Region(0, y, width, 1))

    def _resize(self, size: Size) -> None:
        """Set the virtual size without laying the screen out again (which
        setting ``virtual_size`` does: a full repaint, at every frame when
        rows come and go), unless a scrollbar appears or goes."""
        if size == self.virtual_size:
            return
        bars = self.show_vertical_scrollbar, self.show_horizontal_scrollbar
        self.set_reactive(RowsView.virtual_size, size)
        self._scroll_update(size)  # Textual's own update of the scrollbars for a new virtual size
        if (self.show_vertical_scrollbar, self.show_horizontal_scrollbar) != bars:
            self.refresh(layout=True)

    def set_items(self, items: Sequence[Hashable], render: Callable[[Any], Text]) -> None:
        """set_rows for items that do not change once shown (a stream's
        entries), each its own key: rendered when first drawn, and only once."""
        if len(self._memo) > 2 * len(items) + 64:  # forget the entries no longer listed
            self._memo = {item: self._memo[item] for item in items if item in self._memo}
        self.set_rows(_Rendered(items, render, self._memo), items)

    @property
    def selected_key(self) -> Hashable | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def keys_on_screen(self) -> Sequence[Hashable]:
        """The keys of the rows the view shows now."""
        top = self.scroll_offset.y
        return self.keys[top : top + self.scrollable_content_region.height]

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))

    def _page(self) -> int:
        """How many rows show at once."""
        return self.scrollable_content_region.height - (1 if self.header else 0)

    def watch_cursor(self, cursor: int) -> None:
        self._show_cursor()
        self.refresh()
        self.post_message(self.Selected(self, self.selected_key))

    def on_resize(self) -> None:
        self._show_cursor()  # fewer lines (the detail or a panel opened): its row stays in view

    def _show_cursor(self) -> None:
        # At once, not after the next refresh: rows set before it (a storm's tick) would scroll
        # from the offset it had not reached yet, and leave the cursor's row off screen.
        top, height, cursor = self.scroll_offset.y, self._page(), self.cursor
        if cursor < top:
            self.scroll_to(y=cursor, animate=False, immediate=True)
        elif height > 0 and cursor >= top + height:
            self.scroll_to(y=cursor - height + 1, animate=False, immediate=True)

    def on_click(self, event) -> None:
        offset = event.get_content_offset(self)  # event.y counts the border too
        if offset is None:
            return
        row = offset.y + self.scroll_offset.y - (1 if self.header else 0)
        if 0 <= row < len(self.rows):
            self.cursor = row

    def _line(self, y: int) -> tuple[Text | None, Style | None]:
        """What line ``y`` shows: its Text (None: blank) and the style over it."""
        if self.header is not None:
            if y == 0:
                return self.header, self.get_component_rich_style("rows-view--header")
            y -= 1
        index = y + self.scroll_offset.y
        if index >= len(self.rows):
            return None, None
        style = self.get_component_rich_style("rows-view--cursor") if index == self.cursor and self.has_focus else None
        if style is None and index == self.cursor:
            style = Style(reverse=True)
        return self.rows[index], style

    def render_lines(self, crop: Region) -> list[Strip]:
        # The view once per paint, not per line (its styles are looked up through the CSS).
        if (view := self._view()) != self._painted_view:
            self._painted, self._painted_view = {}, view
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        (scroll_x, _), (width, _), _, base = self._painted_view or self._view()
        text, style = self._painted[y] = self._line(y)
        if text is None:
            return Strip.blank(width, base)
        if text.cell_len > self._widest:  # lazily rendered rows: the scroll area widens as wider ones show
            self._widest = text.cell_len
            self.call_later(lambda: self._resize(Size(self._widest, self.virtual_size.height)))
        return self._strip(text, scroll_x, width, style, base)

    def _strip(self, text: Text, scroll_x: int, width: int, style: Style | None, base: Style) -> Strip:
        if scroll_x == 0 and text.cell_len > width > 1:
            # Too long to show: elided with …, not cut (scrolling right shows the rest).
            text = text.copy()
            text.truncate(width, overflow="ellipsis")
        segments = list(text.render(self.app.console))
        strip = Strip(segments).crop(scroll_x, scroll_x + width).extend_cell_length(width)
        strip = strip.apply_style(base)
        if style is not None:
            strip = Strip([Segment(s.text, (s.style or Style()) + style, s.control) for s in strip])
        return strip


def _same(a: tuple[Text | None, Style | None], b: tuple[Text | None, Style | None]) -> bool:
    (text_a, style_a), (text_b, style_b) = a, b
    if style_a != style_b:
        return False
    if text_a is text_b:
        return True
    if text_a is None or text_b is None:
        return False
    return text_a.plain == text_b.plain and text_a.style == text_b.style and text_a.spans == text_b.spans


class _Rendered(Sequence):
    """Items rendered to Text when first asked for, kept in ``memo``."""

    def __init__(self, items: Sequence, render: Callable[[Any], Text], memo: dict):
        self.items, self.render, self.memo = items, render, memo

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        item = self.items[i]
        text = self.memo.get(item)
        if text is None:
            text = self.memo[item] = self.render(item)
        return text
