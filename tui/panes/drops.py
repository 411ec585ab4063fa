"""Everything lost, and where: the kernel's sent_failed matrix per op and
errno with totals and rates, user-space drops, cache misses, the events
the per-cgroup rate limit suppressed (per cgroup, ⏸ while throttled); and
what was received, for scale."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from procscope.probes.wire import SENT_FAILED_NAMES

from ..text import add_row

RECEIVED = "received"  # the rates key for events received


def loss_totals(counters: dict) -> dict[str, int]:
    """Each row's total, by row name (ops first), from a counters document."""
    out = {op: sum(row.values()) for op, row in counters.get("sent_failed", {}).items()}
    cache = counters.get("cache", {})
    out["user space"] = counters.get("userspace_dropped", 0)
    out["undecodable"] = counters.get("decode_errors", 0)
    # Failures that should never happen: a row only once they have.
    for name, key in (("collector failures", "collector_errors"), ("unreadable in /proc", "procfs_unreadable")):
        if counters.get(key):
            out[name] = counters[key]
    out["cache misses"] = cache.get("misses", 0)
    out["lost exits"] = cache.get("lost_exits", 0)
    for name, ops in counters.get("suppressed_by_cgroup", {}).items():
        out[THROTTLED + name] = sum(ops.values())
    return out


THROTTLED = "throttled "  # row-name prefix of a cgroup's suppressed events


def per_second(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Per second between two samples of totals (counters never go down;
    a row that just appeared counts from 0)."""
    if seconds <= 0:
        return {}
    return {name: max(0, n - before.get(name, 0)) / seconds for name, n in after.items()}


def render_drops(counters: dict, rates: dict[str, float], received: int = 0) -> Table:
    t = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    t.add_column("op")
    for err in SENT_FAILED_NAMES:
        t.add_column(err, justify="right")
    t.add_column("total", justify="right")
    t.add_column("/s", justify="right")
    blank = [""] * len(SENT_FAILED_NAMES)
    add_row(t, RECEIVED, *blank, str(received), f"{rates.get(RECEIVED, 0.0):.1f}", style="dim")
    ops = counters.get("sent_failed", {})
    throttled_now = set(counters.get("throttled_now", ()))
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
