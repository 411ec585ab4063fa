"""A panel of the frame's entries of one kind (execs, exits, every process
seen): newest first, through the filter, each row rendered once; only
while it is the panel shown (showing it draws a frame)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from procscope.process import Process

from ..frame import Frame
from ..widgets.rows_view import RowsView

Entry = tuple[int, Process]  # (boot-clock time, process)


class StreamPane(RowsView):
    def on_mount(self) -> None:
        self.watch(self.screen, "frame", self.show_frame)

    def entries(self, frame: Frame) -> Sequence[Entry]:
        """Oldest first."""
        raise NotImplementedError

    def row(self, when: str, proc: Process, frame: Frame) -> Text:
        raise NotImplementedError

    def show_frame(self, frame: Frame | None) -> None:
        if frame is None or frame.rows is None or frame.panel != self.id:
            return  # the view stands still, or another panel (or none) is shown
        entries, match, clock = self.entries(frame), frame.match, frame.exporter.clock
        shown = list(reversed(entries)) if match is None else [e for e in reversed(entries) if match(e[1])]
        self.set_items(shown, lambda e: self.row(clock(e[0]), e[1], frame))
