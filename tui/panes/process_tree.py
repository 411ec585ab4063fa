"""The process pane: the tree (or a flat list) with pid, user, container,
badges, binary and arguments. New processes are highlighted and exited
ones dimmed for their grace period, as htop does."""

from __future__ import annotations

from rich.text import Text

from probes import wire
from procscope import derive
from procscope.cache import ProcessCache

from ..rows import Row
from ..widgets.rows_view import RowsView

HEADER = Text(f"{'PID':>7} {'USER':<9} {'CONTAINER':<12} {'BADGES':<16} COMMAND", style="bold")
NEW_NS = 2_000_000_000  # how long a new process stays highlighted
SHORT = {"root": "R", "setuid": "S", "setgid": "G", "filecaps": "F", "caps+": "C+", "fileless": "M", "ns": "N",
         "notfound": "?"}  # fmt: skip


def badge_text(badges: list[str]) -> str:
    return " ".join(b for b in badges if b != "root") or ""


def row_text(row: Row, cache: ProcessCache, now: int) -> Text:
    p = row.proc
    container = p.container.short_id if p.container else "-"
    indent = "  " * row.depth + ("▸ " if row.folded else "├ " if row.depth else "")
    cmd = " ".join((p.binary or "?", *p.args))
    style = ""
    if not p.alive:
        style = "dim strike" if p.exit is None else "dim"
    elif now - p.seen < NEW_NS and p.image is not None and not p.image.flags & wire.FLAG_PROCFS:
        style = "bold green"
    text = Text(f"{p.pid:>7} {derive.user(p)[:9]:<9} {container:<12} ", style=style)
    badges = badge_text(derive.badges(p, cache))
    text.append(f"{badges[:16]:<16} ", style="bold red" if badges else "")
    text.append(indent + cmd, style=style)
    return text


class ProcessTree(RowsView):
    """Draws the rows the app hands it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(header=HEADER, **kwargs)
