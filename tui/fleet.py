"""All nodes in one list (--connect to several): a header row per node,
then its processes as its own monitor lists them, after a NODE column; one
filter for every node. Enter opens the process (or the node) in that
node's monitor, which has its detail, streams, losses and time travel.

Read from the nodes' caches (each monitor keeps collecting while this is
shown), on the UI thread that applies their events, once a second."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Hashable, Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from procscope.probes.text import printable
from procscope.query import Query, QueryError

from . import columns as cols
from .columns import Column, Context, any_badge, header
from .frame import StatusParts
from .monitor import MonitorScreen
from .panes.process_tree import row_text
from .rows import Rows, TreeModel, ViewOptions
from .safe_text import safe
from .sources import connected
from .status import fit
from .widgets.rows_view import RowsView

MODE = "all nodes"
SHOWN = ("PID", "USER", "BADGES", "AGE", "COMMAND")  # what an agent's events tell (no CPU, memory)
NODE_WIDTH = 16  # cells of the NODE column at most


class _Node:
    """One node's part of the list: its header row, then its rows."""

    def __init__(self, index: int, monitor: MonitorScreen, rows: Rows, ctx: Context, width: int):
        self.index, self.monitor, self.rows, self.ctx, self.width = index, monitor, rows, ctx, width

    def header(self, filtered: bool) -> Text:
        m, lost = self.monitor, self.monitor.source.counters().lost
        live = len(m.feed.cache.by_pid)
        shown = f", {self.rows.processes} shown" if filtered else ""
        text = Text(f"▼ {printable(m.source.name)}  {m.source.state()}  {live} processes{shown}", style="bold")
        if lost:
            text.append(f"  ⚠ lost {lost:,} (L in its monitor)", style="bold red")
        return text

    def line(self, i: int, columns: list[Column]) -> Text:
        text = Text(printable(self.monitor.source.name)[: self.width].ljust(self.width) + " ", style="dim")
        return text.append_text(row_text(self.rows[i], self.ctx, columns))


class _Lines(Sequence):
    """The whole list, rendered when drawn; its keys are (node, process key) and "node N" for a header."""

    def __init__(self, nodes: list[_Node], columns: list[Column], filtered: bool):
        self.nodes, self.columns, self.filtered = nodes, columns, filtered
        self.starts: list[int] = []
        start = 0
        for n in nodes:
            self.starts.append(start)
            start += 1 + len(n.rows)
        self.total = start
        self.keys = _Keys(self)
        self._made: dict[int, Text] = {}  # a line is asked for twice a frame: compared, then drawn

    def __len__(self) -> int:
        return self.total

    def at(self, i: int) -> tuple[_Node, int]:
        """The node of line ``i``, and the line's index in its rows (-1: its header)."""
        k = bisect.bisect_right(self.starts, i) - 1
        return self.nodes[k], i - self.starts[k] - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        text = self._made.get(i)
        if text is None:
            node, j = self.at(i)
            text = self._made[i] = node.header(self.filtered) if j < 0 else node.line(j, self.columns)
        return text


class _Keys(Sequence):
    def __init__(self, lines: _Lines):
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        node, j = self.lines.at(i)
        return f"node {node.index}" if j < 0 else (node.index, node.rows.keys[j])

    def index(self, key: Hashable, start: int = 0, stop: int | None = None) -> int:
        lines = self.lines
        for n, first in zip(lines.nodes, lines.starts, strict=True):
            if key == f"node {n.index}":
                return first
            if isinstance(key, tuple) and key[0] == n.index:
                return first + 1 + n.rows.keys.index(key[1])
        raise ValueError(key)


class FleetScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open in its node"),
        Binding("backslash,f4", "filter", "Filter"),
        Binding("f5", "toggle_tree", "Tree"),
        Binding("ctrl+n", "pick_node", "Node"),
        Binding("q,f10", "app.quit", "Quit"),
        Binding("escape", "close_prompt", show=False),
    ]

    def __init__(self, monitors: list[MonitorScreen]) -> None:
        super().__init__()
        self.monitors = monitors
        # Each node's live cache (not a moment its monitor travelled to), walked here.
        self.models = [TreeModel(m.feed.cache) for m in monitors]
        self.filter_query = Query()
        self.view = ViewOptions()
        self.lines: _Lines | None = None
        self.badged = False

    def compose(self) -> ComposeResult:
        yield Static(id="fleet-status", markup=False)
        yield RowsView(header=Text(""), id="fleet")
        yield Input(id="fleet-query", placeholder="filter for every node, e.g. bin:curl user:root")
        yield Footer()

    def on_mount(self) -> None:
        self.list = self.query_one("#fleet", RowsView)
        self.list.border_title = "all nodes"
        self.prompt = self.query_one("#fleet-query", Input)
        self.set_interval(1.0, self.redraw)
        self.redraw()
        self.list.focus()

    def on_screen_resume(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        if not self.is_current:  # the nodes' monitors collect meanwhile: read when shown again
            for model in self.models:
                model.trim()
            return
        width = min(NODE_WIDTH, max(cell_len(printable(m.source.name)) for m in self.monitors))
        # BADGES once a row on screen has one (as the monitor's list); narrow, what gives way first goes.
        self.badged = self.badged or any(
            any_badge(self.monitors[k[0]].feed.cache, (k[1],))
            for k in self.list.keys_on_screen()
            if isinstance(k, tuple)
        )
        room = self.list.scrollable_content_region.width - width - 1
        columns = cols.fit(list(SHOWN), room, frozenset() if self.badged else frozenset({"BADGES"}))
        others = width + 1 + sum(c.width + 1 for c in columns if c.name != "COMMAND")
        command = max(self.list.scrollable_content_region.width - others, 0)
        nodes = []
        for i, (m, model) in enumerate(zip(self.monitors, self.models, strict=True)):
            rows = model.rows(self.filter_query, self.view)
            ctx = Context(m.feed.cache, m.feed.now(), m.exporter.wall_offset, command_width=command)
            nodes.append(_Node(i, m, rows, ctx, width))
        self.lines = _Lines(nodes, columns, bool(self.filter_query))
        self.list.header = Text("NODE"[:width].ljust(width) + " ", style="bold").append_text(
            header(columns, "" if self.view.tree else self.view.sort, self.view.reverse)
        )
        self.list.set_rows(self.lines, self.lines.keys)
        up = connected([m.source for m in self.monitors])
        shown = sum(n.rows.processes for n in nodes)
        lost = sum(m.source.counters().lost for m in self.monitors)
        parts: StatusParts = [(0, f"⚠ lost {lost:,}" if lost else "lost 0")]
        if self.filter_query:
            parts.append((1, f"filter: {self.filter_query}"))
        parts += [(2, f"{shown} shown"), (3, f"{up} of {len(self.monitors)} nodes connected (^N)")]
        self.query_one("#fleet-status", Static).update(safe(fit(parts, self.size.width)), layout=False)

    # -- keys ------------------------------------------------------------------------------
    async def action_open(self) -> None:
        key = self.list.selected_key
        if isinstance(key, str):  # a node's header: its monitor
            await self.app.switch_mode(key)
        elif isinstance(key, tuple):  # a process: its monitor, on it
            index, proc = key
            await self.app.switch_mode(f"node {index}")
            monitor = self.monitors[index]
            monitor.redraw(tick=True)  # it drew nothing while hidden: its tree as it is now
            tree = monitor.tree_pane
            with contextlib.suppress(ValueError):  # its own filter hides it
                tree.cursor = tree.keys.index(proc)

    def action_filter(self) -> None:
        self.prompt.value = str(self.filter_query)
        self.prompt.add_class("shown")
        self.prompt.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.filter_query = Query.parse(event.value)
        except QueryError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.prompt.remove_class("shown")
        self.list.focus()
        self.redraw()

    def action_close_prompt(self) -> None:
        self.prompt.remove_class("shown")
        self.list.focus()

    def action_toggle_tree(self) -> None:
        self.view.tree = not self.view.tree
        self.redraw()

    def action_pick_node(self) -> None:
        self.monitors[0].action_pick_node(current="")
