"""Everything lost, and where: the kernel's sent_failed matrix per op and
errno with totals and rates, user-space drops, cache misses."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from probes.wire import SENT_FAILED_NAMES


def render_drops(counters: dict, rates: dict[str, float]) -> Table:
    t = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    t.add_column("op")
    for err in SENT_FAILED_NAMES:
        t.add_column(err, justify="right")
    t.add_column("total", justify="right")
    t.add_column("/s", justify="right")
    for op, row in counters.get("sent_failed", {}).items():
        total = sum(row.values())
        t.add_row(op, *(str(row.get(e, 0)) for e in SENT_FAILED_NAMES), str(total), f"{rates.get(op, 0.0):.1f}",
                  style="bold red" if total else "")  # fmt: skip
    cache = counters.get("cache", {})
    extra = [
        ("user space", counters.get("userspace_dropped", 0)),
        ("undecodable", counters.get("decode_errors", 0)),
        ("cache misses", cache.get("misses", 0)),
        ("lost exits", cache.get("lost_exits", 0)),
    ]
    for name, n in extra:
        t.add_row(name, *([""] * len(SENT_FAILED_NAMES)), str(n), "", style="bold red" if n else "dim")
    return t


class Drops(Static):
    """Shows the table the app renders."""
