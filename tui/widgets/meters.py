"""The header of meters, htop's: on the left a bar per CPU (user, system,
iowait and steal told apart), Mem and Swp; on the right the tasks, the load
and uptime, and procscope's own exec/s and lost/s over the last minutes.
At most ROWS rows below TALL lines; many CPUs share a row, as htop packs them."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from procscope.sampler import Machine

from ..frame import Gauges

ROWS = 4  # the header's height below TALL lines
TALL = 40  # from this many lines a CPU gets a row of its own (up to MAX_CPU_ROWS)
MAX_CPU_ROWS = 16
MIN_BAR = 12  # cells under which CPUs sharing a row are averaged into one bar instead
UNITS = "KMGTPE"
# (share, style) of each kind of CPU time, in htop's order and colours.
KINDS = (("user", "green"), ("system", "red"), ("iowait", "bright_black"), ("steal", "cyan"))


def bar(label: str, parts: Sequence[tuple[float, str]], text: str, width: int) -> Text:
    """`label[|||||     text]` in ``width`` cells, htop's way: each part a share
    of the bar in its style, the figure written over the bar's right end."""
    inner = max(width - len(label) - 2, 1)
    cells: list[tuple[str, str]] = []
    for share, style in parts:
        n = min(round(share * inner), inner - len(cells))
        cells += [("|", style)] * n
    cells += [(" ", "")] * (inner - len(cells))
    shown = text if len(text) <= inner else ""  # a figure cut would read as another
    cells[inner - len(shown) :] = [(ch, "bold") for ch in shown]
    out = Text(label, style="bold cyan")
    out.append("[", style="bold")
    for ch, style in cells:
        out.append(ch, style=style)
    out.append("]", style="bold")
    return out


def cpu_bars(machine: Machine, rows: int, width: int) -> list[Text]:
    """The CPUs' bars in ``rows`` rows: several to a row when there are more CPUs
    than rows, and where those would be too narrow to read, each row one bar
    averaging a run of CPUs (`0-7`), as htop's combined CPU meters."""
    cpus = machine.cpus
    per_row = max(math.ceil(len(cpus) / rows), 1)
    each = (width - (per_row - 1)) // per_row
    if per_row > 1 and each < MIN_BAR:
        lines = []
        for r in range(0, len(cpus), per_row):
            run = cpus[r : r + per_row]
            parts = [(sum(getattr(c, kind) for c in run) / len(run), style) for kind, style in KINDS]
            busy = sum(c.busy for c in run) / len(run)
            lines.append(bar(f"{r}-{r + len(run) - 1}", parts, f"{100 * busy:.1f}%", width))
        return lines
    digits = len(str(len(cpus) - 1))
    lines = []
    for r in range(0, len(cpus), per_row):
        line = Text()
        for i in range(r, min(r + per_row, len(cpus))):
            c = cpus[i]
            if i > r:
                line.append(" ")
            parts = [(getattr(c, kind), style) for kind, style in KINDS]
            line.append_text(bar(f"{i:>{digits}}", parts, f"{100 * c.busy:.1f}%", each))
        lines.append(line)
    return lines


def meter_memory(n: int) -> str:
    """Bytes as htop's Mem and Swp meters write them: always with a unit, from
    MiB with two decimals up to 9.99, one up to 99.9 (0K, 214M, 23.5G, 1.50T)."""
    value, unit = n / 1024, 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{value:.0f}K"
    digits = 2 if value < 9.995 else 1 if value < 99.95 else 0  # as rounded: 9.996 is "10.0", not "10.00"
    return f"{value:.{digits}f}{UNITS[unit]}"


def memory_bars(machine: Machine, width: int) -> list[Text]:
    def one(label: str, used: int, total: int, style: str) -> Text:
        share = used / total if total else 0.0
        return bar(label, [(share, style)], f"{meter_memory(used)}/{meter_memory(total)}", width)

    return [one("Mem", machine.mem_used, machine.mem_total, "green"),
            one("Swp", machine.swap_used, machine.swap_total, "red")]  # fmt: skip


def clock_text(seconds: float) -> str:
    s = int(seconds)
    days = f"{s // 86400} day{'s' if s // 86400 != 1 else ''}, " if s >= 86400 else ""
    return f"{days}{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Bars(Widget):
    """The left half: CPU, Mem and Swp bars, drawn at its own width."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.machine: Machine | None = None
        self.cpu_rows = 2

    def render(self) -> Text:
        if self.machine is None:
            return Text("reading the meters…", style="dim")
        width = self.size.width
        lines = cpu_bars(self.machine, self.cpu_rows, width) + memory_bars(self.machine, width)
        return Text("\n").join(lines)


class Meters(Horizontal):
    def compose(self) -> ComposeResult:
        yield Bars(id="bars")
        with Vertical(id="counts"):
            yield Static(id="tasks", markup=False)
            yield Static(id="load", markup=False)
            with Horizontal(classes="rate"):
                yield Static("exec/s", id="exec-label", classes="rate-label", markup=False)
                yield Sparkline([], id="exec-rate")
            with Horizontal(classes="rate"):
                yield Static("lost/s", id="lost-label", classes="rate-label", markup=False)
                yield Sparkline([], id="lost-rate")

    def on_mount(self) -> None:
        self.watch(self.screen, "gauges", self.show_gauges)

    def show_gauges(self, gauges: Gauges | None) -> None:
        if gauges is None:
            return
        self.set_class(gauges.shown, "shown")
        self.show(gauges.machine, gauges.execs, gauges.lost, self.app.size.height)

    def rows_for(self, cpus: int, screen_height: int) -> int:
        """How many rows the CPU bars take: 2 below TALL lines (the header keeps to ROWS)."""
        return ROWS - 2 if screen_height < TALL else max(ROWS - 2, min(cpus, MAX_CPU_ROWS))

    def show(self, machine: Machine | None, execs: Sequence[float], lost: Sequence[float], screen_height: int) -> None:
        with contextlib.suppress(NoMatches):  # its parts already removed: the app is closing under a tick
            self._show(machine, execs, lost, screen_height)

    def _show(self, machine: Machine | None, execs: Sequence[float], lost: Sequence[float], screen_height: int) -> None:
        bars = self.query_one(Bars)
        if machine is not None:
            bars.cpu_rows = self.rows_for(len(machine.cpus), screen_height)
            self.styles.height = max(bars.cpu_rows + 2, ROWS)
            tasks = (
                f"Tasks: {machine.processes}, {machine.threads} thr, {machine.kthreads} kthr; {machine.running} running"
            )
            load = " ".join(f"{v:.2f}" for v in machine.load)
            line = f"Load average: {load}  Uptime: {clock_text(machine.uptime_s)}"
            if len(line) > self.query_one("#load").size.width:  # narrow: the same, shorter
                line = f"Load {load}  up {clock_text(machine.uptime_s)}"
            # One line each, their sizes set by the CSS: no layout of the screen (20 ms in a storm).
            self.query_one("#tasks", Static).update(tasks, layout=False)
            self.query_one("#load", Static).update(line, layout=False)
        bars.machine = machine
        bars.refresh()
        for name, data in (("exec", execs), ("lost", lost)):
            now = data[-1] if data else 0.0
            self.query_one(f"#{name}-label", Static).update(f"{name}/s {now:>6.0f}", layout=False)
            self.query_one(f"#{name}-rate", Sparkline).data = list(data)
