"""The process list's columns: what each shows, how wide it is, how it
sorts, and which of the chosen ones fit the terminal (the others appear as
width allows; PID, USER and COMMAND always stay)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.text import Text

from procscope import describe
from procscope.cache import ProcessCache
from procscope.probes.text import printable
from procscope.probes.wire import UNKNOWN_ID
from procscope.process import Process

MIN_COMMAND = 24  # cells COMMAND keeps before optional columns give way


@dataclass(frozen=True, slots=True)
class Context:
    """What cells are computed from besides the process."""

    cache: ProcessCache
    now: int  # boot clock: the machine's, or a replay's last event
    wall_offset: int  # wall − boot clock of the events, ns


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
    if p.alive or p.replaced:
        return ""
    if p.exit is None:
        return "?"
    return (p.exit.signal_name or str(p.exit.status)) + ("+core" if p.exit.core_dumped else "")


def _caps(p: Process) -> int:
    return p.image.creds.caps.effective.bit_count() if p.image else -1


def _ns(p: Process, cache: ProcessCache) -> list[str]:
    return describe.non_host_namespaces(p.image.ns, cache.host_ns) if p.image else []


def _start(p: Process, ctx: Context) -> str:
    return time.strftime("%H:%M:%S", time.localtime((p.key.ktime + ctx.wall_offset) / 1e9))


COLUMNS: dict[str, Column] = {c.name: c for c in (
    Column("PID", 7, True, lambda p, x: str(p.pid), lambda p, c: (p.pid, p.key.ktime), "process id"),
    Column("PPID", 7, True, lambda p, x: str(p.tree_parent.pid), lambda p, c: p.tree_parent.pid,
           "parent's id, as the kernel has it now"),
    Column("USER", 9, False, lambda p, x: describe.user(p), lambda p, c: describe.user(p), "effective user, by name"),
    Column("UID", 6, True, lambda p, x: str(p.image.uid) if p.image else "?",
           lambda p, c: p.image.uid if p.image else UNKNOWN_ID, "effective user id"),
    Column("CONTAINER", 14, False, lambda p, x: describe.container_name(p, x.cache),
           lambda p, c: describe.container_name(p, c) if p.container else "", "container name (its id when unnamed)"),
    Column("CID", 12, False, lambda p, x: p.container.short_id if p.container else "-",
           lambda p, c: p.container.id if p.container else "", "container id (12 characters)"),
    Column("BADGES", 14, False, lambda p, x: " ".join(b for b in describe.badges(p, x.cache) if b != "root"),
           lambda p, c: len(describe.badges(p, c)), "privileges and oddities (see the help)"),
    Column("AGE", 7, True, lambda p, x: describe.age_text(describe.age_ns(p, x.now)), lambda p, c: -p.key.ktime, "how long it has run"),
    Column("START", 8, False, _start, lambda p, c: p.key.ktime, "when it started (local time)"),
    Column("STATE", 7, False, lambda p, x: p.lifecycle.shown, lambda p, c: p.lifecycle.shown, "running, exited, exec'd, or lost"),
    Column("EXIT", 9, False, lambda p, x: _exit(p), lambda p, c: _exit(p), "exit status or signal"),
    Column("CAPS", 4, True, lambda p, x: "all" if _caps(p) >= 41 else str(_caps(p)) if p.image else "",
           lambda p, c: _caps(p), "effective capabilities, counted"),
    Column("NS", 14, False, lambda p, x: ",".join(_ns(p, x.cache)) or "-", lambda p, c: len(_ns(p, c)),
           "namespaces other than the host's"),
    Column("CGROUP", 28, False, lambda p, x: p.cgroup or "-", lambda p, c: p.cgroup, "cgroup path"),
    Column("COMMAND", 0, False, lambda p, x: " ".join((p.binary or "?", *p.args)), lambda p, c: (p.binary, p.args),
           "binary and arguments (the tree is drawn here)"),
)}  # fmt: skip
DEFAULT = ("PID", "USER", "CONTAINER", "BADGES", "AGE", "COMMAND")
ALWAYS = ("PID", "USER", "COMMAND")
# The first to give way when the terminal is narrow.
GIVE_WAY = ("START", "AGE", "PPID", "UID", "STATE", "EXIT", "CAPS", "NS", "CGROUP", "CID", "CONTAINER", "BADGES")


def fit(chosen: list[str], width: int) -> list[Column]:
    """The chosen columns (COMMAND last) that fit ``width`` cells with at
    least MIN_COMMAND left for COMMAND."""
    names = [n for n in chosen if n in COLUMNS and n != "COMMAND"] + ["COMMAND"]
    for n in ALWAYS:
        if n not in names:
            names.insert(0 if n == "PID" else 1, n)
    drop = iter(n for n in GIVE_WAY if n in names)
    while sum(COLUMNS[n].width + 1 for n in names if n != "COMMAND") + MIN_COMMAND > width:
        victim = next(drop, None)
        if victim is None:
            break
        names.remove(victim)
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
