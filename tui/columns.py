"""The process list's columns: what each shows, how wide it is, how it
sorts, and which of the chosen ones fit the terminal (the others appear as
width allows; PID, USER and COMMAND always stay)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.text import Text

from procscope import describe
from procscope.cache import ProcessCache
from procscope.probes.events import ProcessKey
from procscope.probes.text import printable
from procscope.probes.wire import UNKNOWN_ID
from procscope.process import EXITED, Process
from procscope.sampler import Usage

MIN_COMMAND = 24  # cells COMMAND keeps before optional columns give way


@dataclass(frozen=True, slots=True)
class Context:
    """What cells are computed from besides the process."""

    cache: ProcessCache
    now: int  # boot clock: the machine's, or a replay's last event
    wall_offset: int  # wall − boot clock of the events, ns
    command_width: int = 0  # cells COMMAND has on screen (0: unknown, all it takes)


@dataclass(frozen=True)
class Column:
    name: str
    width: int  # cells; COMMAND takes what is left
    right: bool  # right-aligned (numbers)
    value: Callable[[Process, Context], str]
    sort: Callable[[Process, ProcessCache], object]
    about: str  # for the setup screen and the help

    def cell(self, p: Process, ctx: Context) -> str:
        text = printable(self.value(p, ctx))
        if text.isascii():
            if len(text) > self.width:
                return text[: self.width - 1] + "…"
            return text.rjust(self.width) if self.right else text.ljust(self.width)
        # In cells, not characters: a wide character takes two.
        if cell_len(text) > self.width:
            return set_cell_size(text, self.width - 1) + "…"
        pad = " " * (self.width - cell_len(text))
        return pad + text if self.right else text + pad

    def title(self) -> str:
        return self.name.rjust(self.width) if self.right else self.name.ljust(self.width)


def _exit(p: Process) -> str:
    if p.state is not EXITED:
        return ""
    if p.exit is None:
        return "?"
    return (p.exit.signal_name or str(p.exit.status)) + ("+core" if p.exit.core_dumped else "")


def _caps(p: Process) -> int:
    """-1: not known (no image, or credentials its source did not send)."""
    return p.image.creds.caps.effective.bit_count() if p.image and p.image.creds.known else -1


def _caps_text(p: Process) -> str:
    n = _caps(p)
    return "all" if n >= 41 else str(n) if n >= 0 else "?" if p.image else ""


def _ns(p: Process, cache: ProcessCache) -> list[str]:
    return describe.non_host_namespaces(p.image.ns, cache.host_ns) if p.image else []


def _start(p: Process, ctx: Context) -> str:
    return time.strftime("%H:%M:%S", time.localtime((p.key.ktime + ctx.wall_offset) / 1e9))


def _figure(get: Callable[[Usage], object], text: Callable[..., str]) -> Callable[[Process, Context], str]:
    """A cell from the process's usage ("" when there is none: exited, or not read yet)."""

    def value(p: Process, x: Context) -> str:
        u = describe.usage(p, x.cache)
        v = get(u) if u is not None else None
        return text(v) if v is not None else ""

    return value


def _ranked(get: Callable[[Usage], float | int | None]) -> Callable[[Process, ProcessCache], float]:
    """A usage column's sort key: those without a figure rank below zero."""

    def key(p: Process, cache: ProcessCache) -> float:
        u = describe.usage(p, cache)
        v = get(u) if u is not None else None
        return -1.0 if v is None else v

    return key


def _cpu_time(get: Callable[[Process, ProcessCache, Usage | None], int | None]) -> tuple[Callable, Callable]:
    """A CPU time column's cell and sort key (from describe: an exited process has its figure at its exit)."""

    def value(p: Process, x: Context) -> str:
        v = get(p, x.cache, describe.usage(p, x.cache))
        return describe.cpu_time_text(v) if v is not None else ""

    def key(p: Process, cache: ProcessCache) -> int:
        v = get(p, cache, describe.usage(p, cache))
        return -1 if v is None else v

    return value, key


def _mem_pct(p: Process, x: Context) -> str:
    u, machine = describe.usage(p, x.cache), x.cache.usage.machine
    return describe.percent_text(100 * u.rss / machine.mem_total) if u and machine and machine.mem_total else ""


def _usage_columns() -> tuple[Column, ...]:
    rss = _ranked(lambda u: u.rss)
    return (
        Column("CPU%", 5, True, _figure(lambda u: u.cpu_pct, describe.percent_text), _ranked(lambda u: u.cpu_pct),
               "CPU use, % of one CPU, over the last interval (htop's)"),
        Column("MEM%", 5, True, _mem_pct, rss, "resident memory, % of the machine's"),
        Column("RES", 6, True, _figure(lambda u: u.rss, describe.memory_text), rss,
               "resident memory (KiB, or M, G)"),
        Column("VIRT", 6, True, _figure(lambda u: u.virt, describe.memory_text), _ranked(lambda u: u.virt),
               "address space (KiB, or M, G)"),
        Column("SHR", 6, True, _figure(lambda u: u.shared, describe.memory_text), _ranked(lambda u: u.shared),
               "resident and shared with files (KiB, or M, G)"),
        Column("TIME+", 9, True, *_cpu_time(describe.cpu_ns),
               "CPU time used, user and system (minutes:seconds.hundredths; an exited one's, at its exit)"),
        Column("CTIME+", 9, True, *_cpu_time(describe.children_cpu_ns),
               "CPU time of its exited descendants, however short-lived (a build's, a fork storm's)"),
        Column("TOTAL+", 9, True, *_cpu_time(describe.total_cpu_ns), "CPU time of it and its exited descendants"),
        Column("PRI", 3, True, _figure(lambda u: u.priority, lambda v: "RT" if v <= -100 else str(v)),
               _ranked(lambda u: u.priority), "the kernel's priority (20 + nice; below 0 real-time, RT the highest)"),
        Column("NI", 3, True, _figure(lambda u: u.nice, str), _ranked(lambda u: u.nice),
               "nice, -20 to 19 (F7 and F8 change it)"),
        Column("NLWP", 4, True, _figure(lambda u: u.threads, str), _ranked(lambda u: u.threads), "threads"),
        Column("S", 1, False, _figure(lambda u: u.state, str), lambda p, c: (u.state if (u := describe.usage(p, c)) else ""),
               "state: R running, S sleeping, D disk, Z zombie, T stopped, I idle"),
        Column("IO_R", 5, True, _figure(lambda u: u.io_read, describe.rate_text), _ranked(lambda u: u.io_read),
               "bytes read from storage per second (root)"),
        Column("IO_W", 5, True, _figure(lambda u: u.io_write, describe.rate_text), _ranked(lambda u: u.io_write),
               "bytes written to storage per second (root)"),
    )  # fmt: skip


COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column("PID", 7, True, lambda p, x: str(p.pid), lambda p, c: (p.pid, p.key.ktime), "process id"),
    Column("PPID", 7, True, lambda p, x: str(p.tree_parent.pid), lambda p, c: p.tree_parent.pid,
           "parent's id, as the kernel has it now"),
    Column("USER", 9, False, lambda p, x: describe.user(p), lambda p, c: describe.user(p), "effective user, by name"),
    Column("UID", 6, True, lambda p, x: str(p.image.uid) if p.image else "?",
           lambda p, c: p.image.uid if p.image else UNKNOWN_ID, "effective user id"),
    Column("CONTAINER", 12, False, lambda p, x: describe.container_name(p, x.cache),
           lambda p, c: describe.container_name(p, c) if p.container else "", "container name (its id when unnamed)"),
    Column("CID", 12, False, lambda p, x: p.container.short_id if p.container else "-",
           lambda p, c: p.container.id if p.container else "", "container id (12 characters)"),
    Column("BADGES", 14, False, lambda p, x: " ".join(b for b in describe.badges(p, x.cache) if b != "root"),
           lambda p, c: len(describe.badges(p, c)), "privileges and oddities (see the help)"),
    *_usage_columns(),
    Column("AGE", 7, True, lambda p, x: describe.age_text(describe.age_ns(p, x.now)), lambda p, c: -p.key.ktime, "how long it has run"),
    Column("START", 8, False, _start, lambda p, c: p.key.ktime, "when it started (local time)"),
    Column("STATE", 7, False, lambda p, x: p.lifecycle.shown, lambda p, c: p.lifecycle.shown, "running, exited, exec'd, or lost"),
    Column("EXIT", 9, False, lambda p, x: _exit(p), lambda p, c: _exit(p), "exit status or signal"),
    Column("CAPS", 4, True, lambda p, x: _caps_text(p),
           lambda p, c: _caps(p), "effective capabilities, counted"),
    Column("NS", 14, False, lambda p, x: ",".join(_ns(p, x.cache)) or "-", lambda p, c: len(_ns(p, c)),
           "namespaces other than the host's"),
    Column("CGROUP", 28, False, lambda p, x: p.cgroup or "-", lambda p, c: p.cgroup, "cgroup path"),
    Column("COMMAND", 0, False, lambda p, x: p.command(), lambda p, c: (p.binary, p.argv0, p.args),
           "binary, │argv[0] when it names another program, arguments (the tree is drawn here)"),
)}  # fmt: skip
DEFAULT = ("PID", "USER", "CPU%", "MEM%", "RES", "S", "TIME+", "CONTAINER", "BADGES", "AGE", "COMMAND")
USAGE = frozenset(("CPU%", "MEM%", "RES", "VIRT", "SHR", "TIME+", "CTIME+", "TOTAL+", "NLWP", "S", "IO_R", "IO_W"))
ALWAYS = ("PID", "USER", "COMMAND")
# The first to give way when the terminal is narrow.
GIVE_WAY = ("START", "AGE", "PPID", "UID", "STATE", "EXIT", "CAPS", "NS", "CGROUP", "CID", "TOTAL+", "CTIME+", "IO_W", "IO_R", "S", "NLWP",
            "SHR", "VIRT", "RES", "BADGES", "CONTAINER", "TIME+", "MEM%", "CPU%")  # fmt: skip


def empty_columns(cache: ProcessCache, badged: bool) -> frozenset[str]:
    """Columns with nothing to show on any row: the usage where nothing is read
    (a recording), CONTAINER with no container, BADGES until a badge is seen."""
    empty = set() if cache.usage.reading else set(USAGE)
    if not cache.containers:
        empty.add("CONTAINER")
    if not badged:
        empty.add("BADGES")
    return frozenset(empty)


def any_badge(cache: ProcessCache, keys: Iterable[object]) -> bool:
    """Whether a process of ``keys`` (the rows on screen: group keys are str) shows a badge in the BADGES column."""
    procs = (cache.procs.get(k) for k in keys if isinstance(k, ProcessKey))
    return any(any(b != "root" for b in describe.badges(p, cache)) for p in procs if p is not None)


def fit(chosen: list[str], width: int, empty: frozenset[str] = frozenset()) -> list[Column]:
    """The chosen columns (COMMAND last) that fit ``width`` cells with at
    least MIN_COMMAND left for COMMAND; those in ``empty`` give their room to it."""
    names = [n for n in chosen if n in COLUMNS and n != "COMMAND" and (n not in empty or n in ALWAYS)] + ["COMMAND"]
    for n in ALWAYS:
        if n not in names:
            names.insert(0 if n == "PID" else 1, n)

    def room(kept: list[str]) -> int:
        return width - MIN_COMMAND - sum(COLUMNS[n].width + 1 for n in kept if n != "COMMAND")

    order = list(names)
    dropped = []
    for victim in (n for n in GIVE_WAY if n in names):
        if room(names) >= 0:
            break
        names.remove(victim)
        dropped.append(victim)
    # A wide one that had to go may leave room for narrower ones that went before it.
    for back in reversed(dropped[:-1]):
        if COLUMNS[back].width + 1 <= room(names):
            names.append(back)
    names.sort(key=order.index)
    return [COLUMNS[n] for n in names]


def header(columns: list[Column], sort: str, reverse: bool) -> Text:
    text = Text(style="bold")
    for col in columns:
        title = col.name if col.name == "COMMAND" else col.title()
        mark = ("▼" if reverse else "▲") if col.name == sort else ""
        if mark and col.name != "COMMAND":  # the mark takes the title's padding, so widths stay
            title = (title[1:] + mark) if col.right else (title.rstrip() + mark).ljust(col.width)
        elif mark:
            title += mark
        text.append(title + (" " if col.name != "COMMAND" else ""))
    return text


def column_at(columns: list[Column], x: int) -> Column | None:
    """The column under cell ``x`` of a row (COMMAND for anything past the others)."""
    for col in columns:
        if col.name == "COMMAND" or x < col.width:
            return col
        x -= col.width + 1
    return None
