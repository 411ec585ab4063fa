"""The status line: what needs attention first (losses, a throttle, a view
standing still), then the counts and the source. When the terminal is too
narrow for all of it, the least important parts go whole: a word is never
cut, and the loss total always stays."""

from __future__ import annotations

from rich.cells import cell_len

SEPARATOR = " │ "


def fit(parts: list[tuple[int, str]], width: int) -> str:
    """``parts``: (rank, text) in display order, rank 0 the most important;
    the highest ranks are dropped (the last first) until the line fits ``width``."""
    kept = list(parts)
    while len(kept) > 1 and cell_len(SEPARATOR.join(t for _, t in kept)) > width:
        worst = max(range(len(kept)), key=lambda i: (kept[i][0], i))
        if kept[worst][0] == 0:
            break
        del kept[worst]
    return SEPARATOR.join(t for _, t in kept)
