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
from ..frame import Frame
from ..safe_text import add_row

Row = tuple[tuple[str, ...], str]  # cells, style


def drop_rows(counters: Counters, rates: dict[str, float], received: int = 0) -> list[Row]:
    blank = ("",) * len(SENT_FAILED_NAMES)
    rows = [((RECEIVED, *blank, str(received), f"{rates.get(RECEIVED, 0.0):.1f}"), "dim")]
    if counters.sent_spare:  # not lost: the main ring refused them, the spare one took them
        rows.append((("via spare ring", *blank, str(counters.sent_spare), ""), "dim"))
    ops = counters.sent_failed
    throttled_now = set(counters.throttled_now)
    for name, total in loss_totals(counters).items():
        cells = tuple(str(ops[name].get(e, 0)) for e in SENT_FAILED_NAMES) if name in ops else blank
        label, style = name, "bold red" if total else "" if name in ops else "dim"
        if name.startswith(THROTTLED):
            active = name[len(THROTTLED) :] in throttled_now
            label, style = ("⏸ " + name, "bold yellow") if active else (name, "yellow")
        rows.append(((label, *cells, str(total), f"{rates.get(name, 0.0):.1f}"), style))
    return rows


def render_drops(counters: Counters, rates: dict[str, float], received: int = 0) -> Table:
    return _table(drop_rows(counters, rates, received))


def _table(rows: list[Row]) -> Table:
    # One cell between columns, none at the edges: the errno names fit in 80 columns.
    t = Table(expand=True, box=None, padding=(0, 1), collapse_padding=True, pad_edge=False, header_style="bold")
    t.add_column("op", no_wrap=True)
    for err in SENT_FAILED_NAMES:
        t.add_column(err, justify="right", no_wrap=True)
    t.add_column("total", justify="right")
    t.add_column("/s", justify="right")
    for cells, style in rows:
        add_row(t, *cells, style=style)
    return t


class Drops(Static):
    """The losses table, drawn again only when a number in it changed, while it is the panel shown."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rows: list[Row] | None = None

    def on_mount(self) -> None:
        self.watch(self.screen, "frame", self.show_frame)

    def show_frame(self, frame: Frame | None) -> None:
        if frame is not None and frame.counters is not None and frame.panel == self.id:
            self.show(frame.counters, frame.rates or {}, frame.received)

    def show(self, counters: Counters, rates: dict[str, float], received: int) -> None:
        rows = drop_rows(counters, rates, received)
        if rows == self._rows:
            return
        # Laid out only when its height may change: a layout redraws the whole screen.
        layout = self._rows is None or len(rows) != len(self._rows)
        self._rows = rows
        self.update(_table(rows), layout=layout)
