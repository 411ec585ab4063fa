"""Everything lost, and where: the kernel's sent_failed matrix per op and
errno with totals and rates, user-space drops, cache misses, the events
the per-cgroup rate limit suppressed (per cgroup, ⏸ while throttled); and
what was received, for scale (with what the spare ring took)."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from procscope.probes.counters import Counters
from procscope.probes.wire import SENT_FAILED_NAMES

from ..feed import RECEIVED, THROTTLED, loss_totals
from ..text import add_row


def render_drops(counters: Counters, rates: dict[str, float], received: int = 0) -> Table:
    # One cell between columns, none at the edges: the errno names fit in 80 columns.
    t = Table(expand=True, box=None, padding=(0, 1), collapse_padding=True, pad_edge=False, header_style="bold")
    t.add_column("op", no_wrap=True)
    for err in SENT_FAILED_NAMES:
        t.add_column(err, justify="right", no_wrap=True)
    t.add_column("total", justify="right")
    t.add_column("/s", justify="right")
    blank = [""] * len(SENT_FAILED_NAMES)
    add_row(t, RECEIVED, *blank, str(received), f"{rates.get(RECEIVED, 0.0):.1f}", style="dim")
    if counters.sent_spare:  # not lost: the main ring refused them, the spare one took them
        add_row(t, "via spare ring", *blank, str(counters.sent_spare), "", style="dim")
    ops = counters.sent_failed
    throttled_now = set(counters.throttled_now)
    for name, total in loss_totals(counters).items():
        cells = [str(ops[name].get(e, 0)) for e in SENT_FAILED_NAMES] if name in ops else blank
        label, style = name, "bold red" if total else "" if name in ops else "dim"
        if name.startswith(THROTTLED):
            active = name[len(THROTTLED) :] in throttled_now
            label, style = ("⏸ " + name, "bold yellow") if active else (name, "yellow")
        add_row(t, label, *cells, str(total), f"{rates.get(name, 0.0):.1f}", style=style)
    return t


class Drops(Static):
    """Shows the table the app renders."""
