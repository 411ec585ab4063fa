"""The status line: what needs attention first (losses, a throttle, a view
standing still), then the counts and the source. When the terminal is too
narrow for all of it, the least important parts go whole: a word is never
cut, and the loss total always stays."""

from __future__ import annotations

from rich.cells import cell_len
from textual.widgets import Static

from .frame import Frame
from .safe_text import safe

SEPARATOR = " │ "


def fit(parts: list[tuple[int, str | tuple[str, ...]]], width: int) -> str:
    """``parts``: (rank, text) in display order, rank 0 the most important;
    a text may be a tuple of forms, the longest first. Until the line fits
    ``width``, the highest rank (the last first) takes its next shorter form,
    or goes when it has none."""
    kept = [(rank, (text,) if isinstance(text, str) else text) for rank, text in parts]
    while len(kept) > 1 and cell_len(SEPARATOR.join(t[0] for _, t in kept)) > width:
        worst = max(range(len(kept)), key=lambda i: (kept[i][0], i))
        rank, forms = kept[worst]
        if len(forms) > 1:
            kept[worst] = (rank, forms[1:])
        elif rank == 0:
            break
        else:
            del kept[worst]
    return SEPARATOR.join(t[0] for _, t in kept)


class StatusLine(Static):
    """The frame's status, fitted to its width: one line, always."""

    def on_mount(self) -> None:
        self.watch(self.screen, "frame", self.show_frame)

    def show_frame(self, frame: Frame | None) -> None:
        if frame is None:
            return
        status = frame.status
        self.update(safe(fit(status.parts, self.content_region.width or self.app.size.width - 2)), layout=False)
        self.set_class(status.losing, "losing")
        self.set_class(status.throttled and not status.losing, "throttled")
