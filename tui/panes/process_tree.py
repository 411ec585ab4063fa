"""The process pane: the tree (or a flat list, or grouped by container or
cgroup) in the columns that fit (tui.columns), the tree drawn htop's way.
New processes are highlighted and exited ones dimmed for their grace
period, as htop does."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from textual.message import Message

from procscope import describe
from procscope.cache import ProcessCache
from procscope.container_usage import ContainerUsage
from procscope.probes import wire
from procscope.probes.text import printable
from procscope.process import Process
from procscope.runtimes import ContainerInfo
from procscope.subtree_usage import SubtreeRates

from ..columns import Column, Context, column_at
from ..frame import Frame
from ..rows import Group, Row, Rows
from ..safe_text import add_row, safe
from ..widgets.rows_view import RowsView
from .container import container_rows

NEW_NS = 2_000_000_000  # how long a new process stays highlighted
SHORT = {"root": "R", "setuid": "S", "setgid": "G", "filecaps": "F", "caps+": "C+", "fileless": "M", "ns": "N",
         "notfound": "?"}  # fmt: skip
TAGGED = "bold yellow"  # tagged rows, over their own colours, as htop
TEXT_CACHE = 8192  # rendered rows kept; only drawn rows are rendered, so this is plenty


def is_new(p: Process, now: int) -> bool:
    """Highlighted: alive, exec'd or cloned (not found at start) in the last NEW_NS."""
    return p.alive and now - p.seen < NEW_NS and p.image is not None and not p.image.flags & wire.FLAG_PROCFS


def row_text(row: Row, ctx: Context, columns: list[Column], subtree_pct: float | None = None) -> Text:
    """``subtree_pct``: a folded row's CPU%, its whole subtree's (procscope.subtree_usage)."""
    p = row.proc
    style = ""
    if not p.alive:
        style = "dim strike" if p.exit is None else "dim"
    elif is_new(p, ctx.now):
        style = "bold green"
    text = Text(style=style)
    for col in columns:
        if col.name == "COMMAND":
            # Exited: a cue besides the dimming (high contrast, no colour).
            lead = row.branch + ("✗ " if not p.alive else "")
            command = printable(col.value(p, ctx))
            # A path that just fills the column is cut too when more follows: the ellipsis would take its last letter.
            more = 1 if command != printable(p.binary) else 0
            cut = ctx.command_width and cell_len(lead + printable(p.binary)) + more > ctx.command_width
            if cut and os.path.dirname(p.binary) not in ("", "/"):  # /memfd:x has no directory to drop
                # Its name would be cut: the name, not the directories (the detail has the path).
                command = printable(p.command("…/" + os.path.basename(p.binary)))
            text.append(lead + command)
        elif col.name == "BADGES":
            cell = col.cell(p, ctx)
            text.append(cell + " ", style="bold red" if cell.strip() else "")
        elif col.name == "CPU%" and subtree_pct is not None:
            text.append(describe.percent_text(subtree_pct).rjust(col.width) + " ")
        else:
            text.append(col.cell(p, ctx) + " ")
    return text


def group_name(g: Group) -> str:
    """A container's first process's binary: what an unnamed container is called here."""
    return os.path.basename(g.top.binary) if g.top is not None and g.top.binary else "?"


def group_text(g: Group, folded: bool, throttled: bool = False, info: ContainerInfo | None = None,
               usage: ContainerUsage | None = None) -> Text:  # fmt: skip
    """A group's header row; ``info``: what the runtime says about its container, ``usage``: what it uses."""
    mark = "▸" if folded else "▾"
    if g.kind == "container" and g.container is not None:
        label = f"container {describe.container_text(g.container, info) if info else f'{g.container.short_id}  {g.container.runtime}  {group_name(g)}'}"
        label += "  ⏸ throttled" if throttled else ""
    elif g.kind == "cgroup":
        label = f"cgroup {g.cgroup or '(unknown)'}"
    else:
        label = "host"
    text = Text(f"{mark} ", style="bold cyan")
    if usage is not None:  # first: what a glance down the headers compares
        text.append(f"{describe.container_usage_text(usage)} │ ", style="bold")
    text.append_text(safe(label, style="bold cyan"))
    text.append(f"  {g.live} processes" + (f", {g.shown} shown" if g.shown != g.live else ""), style="cyan")
    return text


def render_group(g: Group, cache: ProcessCache, now: int) -> Table:
    """The detail pane for a group header."""
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    if g.kind == "container" and g.container is not None:
        c = g.container
        container_rows(t, c, cache.cgroup_index.info_of(c))
        if cache.cgroup_index.info_of(c) is None:
            add_row(t, "first process", group_name(g))
        entry = cache.containers.get(c.id)
        if entry is not None:
            add_row(t, "first seen", f"{describe.age_text(max(0, now - entry.first_seen))} ago")
    elif g.kind == "cgroup":
        add_row(t, "cgroup", g.cgroup or "(unknown)")
        top = g.top.container if g.top is not None else None
        add_row(t, "container", describe.container_text(top, cache.cgroup_index.info_of(top)) if top else "-")
    else:
        add_row(t, "host", "processes in no container")
    add_row(t, "processes", f"{g.live} live, {g.shown} shown")
    if g.container is not None and (usage := cache.usage.containers.get(g.container.id)) is not None:
        add_row(t, "uses", describe.container_usage_text(usage) + "  (its cgroup's, as docker stats reads it)")
    for th in cache.throttles.values():
        if (g.kind == "container" and th.container == g.container) or (g.kind == "cgroup" and th.path == g.cgroup):
            counts = ", ".join(f"{op} {n}" for op, n in zip(wire.RATE_OPS, th.suppressed, strict=False))
            state = "⏸ throttled now" if th.active else "not throttled now"
            add_row(t, "cgroup rate", f"{th.path}: {state}; {th.episodes} throttles ended, suppressed {counts}")
    if g.top is not None:
        add_row(t, "top", f"{g.top.pid} {' '.join((g.top.binary or '?', *g.top.args))}")
    return t


class _Lines(Sequence):
    """The rows' Text, rendered when drawn (only visible lines are), and
    kept while what a row shows is unchanged: everything it depends on is
    in its state tuple, compared by identity first."""

    def __init__(
        self, rows: Rows, ctx: Context, columns: list[Column], tagged: AbstractSet, memo: dict, rates: SubtreeRates
    ):
        self.rows, self.ctx, self.columns, self.tagged, self.memo = rows, ctx, columns, tagged, memo
        self.rates = rates
        self.cache, self.now = ctx.cache, ctx.now

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        rows = self.rows
        p = rows.items[i]
        if isinstance(p, Group):
            throttled = p.container is not None and p.container.id in self.cache.cgroup_index.throttled_containers()
            usage = self.cache.usage.containers.get(p.container.id) if p.container is not None else None
            return group_text(p, p.key in rows.folded, throttled, self.cache.cgroup_index.info_of(p.container), usage)
        row = rows[i]
        parent = self.cache.procs.get(p.parent)  # caps+ compares with it
        tagged = p.key in self.tagged
        subtree = self.rates.cpu_pct(p, self.cache) if row.folded and self.rows.tree else None
        # Everything the row's cells depend on; ages and times change by the second.
        state = (p.image, p.alive, p.exit is None, p.container, p.cgroup, row.branch, is_new(p, self.now),
                 parent.image if parent is not None else None, tagged, self.columns, self.now // 1_000_000_000,
                 describe.usage(p, self.cache), subtree, p.cpu_ns, p.exited_cpu_ns, self.ctx.command_width)  # fmt: skip
        hit = self.memo.get(p)
        if hit is not None and hit[0] == state:
            return hit[1]
        if len(self.memo) >= TEXT_CACHE:
            self.memo.clear()
        text = row_text(row, self.ctx, self.columns, subtree)
        if tagged:
            text.stylize(TAGGED)
            if text.plain.startswith(" "):  # a marker too, for terminals without colour
                text.plain = "*" + text.plain[1:]
        self.memo[p] = (state, text)
        return text


class ProcessTree(RowsView):
    """Draws the frame's rows."""

    FOLLOW_TOP = False  # the selected process stays selected wherever it moves

    class Resized(Message):
        """Its width changed: the columns that fit may be others."""

    def __init__(self, **kwargs) -> None:
        super().__init__(header=Text(""), **kwargs)
        self.shown: Rows | None = None
        self.columns: list[Column] = []
        self._texts: dict = {}  # Process → (state, Text)
        self._rates = SubtreeRates()  # folded rows' CPU%

    def on_mount(self) -> None:
        self.watch(self.screen, "frame", self.show_frame)

    def show_frame(self, frame: Frame | None) -> None:
        if frame is None or frame.rows is None or frame.ctx is None or frame.header is None:
            return  # the view stands still
        self.show(frame.rows, frame.ctx, list(frame.columns), frame.header, frame.tagged,
                  str(frame.filter) if frame.filter else "")  # fmt: skip

    def show(self, rows: Rows, ctx: Context, columns: list[Column], header: Text, tagged: AbstractSet = frozenset(),
             filtered: str = "") -> None:  # fmt: skip
        """``filtered``: the filter, when one is set (an empty list then says that nothing matches it)."""
        self.shown, self.columns, self.header = rows, columns, header
        # A title, not a row: rows are processes. Markup-free: the filter holds what the user typed.
        empty = f"no process matches: {printable(filtered)}" if filtered else "no process at this moment"
        self.border_title = Text(empty if not rows.processes else "processes")
        others = sum(c.width + 1 for c in columns if c.name != "COMMAND")
        ctx = dataclasses.replace(ctx, command_width=max(self.scrollable_content_region.width - others, 0))
        self.set_rows(_Lines(rows, ctx, columns, tagged, self._texts, self._rates), rows.keys)

    def on_resize(self) -> None:
        self.post_message(self.Resized())

    class SortBy(Message):
        """A column's title was clicked: sort by it (a flat list, as F6)."""

        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def on_click(self, event) -> None:
        region = self.content_region
        if event.screen_y == region.y:
            col = column_at(self.columns, event.screen_x - region.x + self.scroll_offset.x)
            if col is not None:
                self.post_message(self.SortBy(col.name))

    @property
    def selected_group(self) -> Group | None:
        key = self.selected_key
        return self.shown.groups.get(key) if isinstance(key, str) and self.shown is not None else None
