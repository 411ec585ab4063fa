"""The monitor: app logic. Events are drained from the source on a timer
(at most 10 Hz) and applied to the process cache; the panes are handed
what to draw."""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

from rich.table import Table
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from probes import wire
from probes.events import ExecEvent, ExitEvent
from procscope import query, snapshot
from procscope.export import Exporter
from procscope.query import Query, QueryError

from .panes.detail import Detail, render_detail
from .panes.drops import Drops, render_drops
from .panes.exec_stream import ExecStream, exec_text
from .panes.exits import Exits, exit_text
from .panes.process_tree import ProcessTree, row_text
from .rows import SORTS, ViewOptions, boot_now, process_rows

HISTORY = 1000  # exec stream and exits: bounded


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        for binding in ProcscopeApp.BINDINGS:
            if isinstance(binding, Binding) and binding.description:
                t.add_row(binding.key.replace(",", " or "), binding.description)
        t.add_row("", "")
        t.add_row("filter", query.SYNTAX)
        for name, help_text in query.FIELDS.items():
            t.add_row(f"  {name}:", help_text)
        yield Static(t, id="help")


class ProcscopeApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "procscope"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("f3,slash", "prompt('search')", "Search"),
        Binding("f4,backslash", "prompt('filter')", "Filter"),
        Binding("f5", "toggle_tree", "Tree/flat"),
        Binding("f6", "next_sort", "Sort"),
        Binding("p", "pause", "Pause"),
        Binding("s", "snapshot", "Snapshot"),
        Binding("plus", "expand", "Expand", show=False),
        Binding("minus", "collapse", "Collapse", show=False),
        Binding("asterisk", "expand_all", "Expand all", show=False),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, source, query_text: str = "", snapshot_dir: str = ".", **kwargs) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.cache = source.cache
        self.exporter = Exporter(self.cache)
        self.query = Query.parse(query_text) if query_text else Query()
        self.view = ViewOptions()
        self.paused = False
        self.snapshot_dir = snapshot_dir
        self.execs: deque = deque(maxlen=HISTORY)  # (time text, process)
        self.exits: deque = deque(maxlen=HISTORY)
        self.events_total = 0
        self._rate: deque = deque(maxlen=20)  # (monotonic, events_total)
        self._last_counters: dict = {}
        self._prompt_mode = "filter"
        self._drawn = 0.0  # monotonic time of the last redraw

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield Static(self.source.banner, id="banner", classes="shown" if self.source.banner else "")
        with Horizontal(id="top"):
            yield ProcessTree(id="tree")
            yield Detail(id="detail")
        with Horizontal(id="bottom"):
            yield ExecStream(id="execs")
            yield Exits(id="exits")
        yield Drops(id="drops")
        yield Input(id="query", placeholder="filter, e.g. container:3f2a user:root cap:SYS_ADMIN ns:net bin:curl")
        yield Footer()

    def on_mount(self) -> None:
        # Kept, not queried: App.query_one looks at the active screen, which may be the help.
        self.tree_pane = self.query_one("#tree", ProcessTree)
        self.panes = {"execs": self.query_one("#execs", ExecStream), "exits": self.query_one("#exits", Exits)}
        self.tree_pane.border_title = "processes"
        self.panes["execs"].border_title = "execs"
        self.panes["exits"].border_title = "exits"
        self.query_one("#drops", Drops).border_title = "drops"
        self.widgets = {w.id: w for w in (self.query_one("#detail"), self.query_one("#drops"),
                                          self.query_one("#status"), self.query_one("#query"))}  # fmt: skip
        self.source.start()
        self.ingest()
        self.refresh_panes()
        self.tree_pane.focus()
        self.set_interval(0.1, self.tick)

    # -- data ----------------------------------------------------------------------
    def ingest(self) -> int:
        events = self.source.drain()
        if self.source.wall_offset is not None:
            self.exporter.wall_offset = self.source.wall_offset
        for ev in events:
            proc = self.cache.apply(ev)
            if proc is None:
                continue
            if isinstance(ev, ExecEvent) and not ev.flags & wire.FLAG_PROCFS:  # found at start, not an exec
                self.execs.append((self.exporter.time(ev.time)[11:23], proc))
            elif isinstance(ev, ExitEvent):
                self.exits.append((self.exporter.time(ev.time)[11:23], proc))
        self.events_total += len(events)
        self.cache.expire(self.now())
        return len(events)

    def now(self) -> int:
        """The clock the panes age things by: the machine's, or a replay's last event."""
        return boot_now() if self.source.live else self.cache.now

    def tick(self) -> None:
        # Redraw when something arrived, else once a second (ages, highlights, grace periods).
        if (self.ingest() or time.monotonic() - self._drawn >= 1.0) and not self.paused:
            self.refresh_panes()

    def refresh_panes(self) -> None:
        self._drawn = time.monotonic()
        match = self.query.predicate(self.cache) if self.query else None
        now = self.now()
        tree = self.tree_pane
        rows = process_rows(self.cache, match, self.view)
        tree.set_rows([row_text(r, self.cache, now) for r in rows], [r.proc.key for r in rows])
        for pane_id, entries, fmt in (("execs", self.execs, exec_text), ("exits", self.exits, exit_text)):
            shown = [(w, p) for w, p in reversed(entries) if match is None or match(p)]
            self.panes[pane_id].set_rows([fmt(w, p) for w, p in shown], [(w, p.key) for w, p in shown])
        self._last_counters = self.source.counters()
        self.widgets["drops"].update(render_drops(self._last_counters, {}))
        self.show_detail()
        self.show_status(len(rows))

    def show_detail(self) -> None:
        key = self.tree_pane.selected_key
        proc = self.cache.get(key) if key is not None else None
        now = self.now()
        self.widgets["detail"].update(render_detail(proc, self.cache, now))

    def show_status(self, shown: int) -> None:
        now = time.monotonic()
        self._rate.append((now, self.events_total))
        t0, n0 = self._rate[0]
        rate = (self.events_total - n0) / (now - t0) if now > t0 else 0.0
        c = self._last_counters
        lost = sum(sum(r.values()) for r in c.get("sent_failed", {}).values()) + c.get("userspace_dropped", 0)
        live = sum(1 for _ in self.cache.live())
        parts = [
            f"source: {self.source.label}",
            f"{rate:.0f} events/s",
            f"{live} processes",
            f"{len(self.cache.containers)} containers",
            f"shown {shown}",
        ]
        if self.query:
            parts.append(f"filter: {self.query}")
        if self.paused:
            parts.append("PAUSED")
        if lost:
            parts.insert(0, f"⚠ LOSING EVENTS: {lost} dropped")
        status = self.widgets["status"]
        status.update(" │ ".join(parts))
        status.set_class(bool(lost), "losing")

    # -- events from widgets -----------------------------------------------------------
    def on_rows_view_selected(self, message: ProcessTree.Selected) -> None:
        if message.view.id == "tree":
            self.show_detail()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        text = message.value.strip()
        box = self.widgets["query"]
        if self._prompt_mode == "filter":
            try:
                self.query = Query.parse(text)
            except QueryError as exc:
                self.notify(str(exc), severity="error", timeout=6)
                return
        else:
            self.search(text)
        box.remove_class("shown")
        self.tree_pane.focus()
        self.refresh_panes()

    def search(self, text: str) -> None:
        tree = self.tree_pane
        if not text:
            return
        n = len(tree.keys)
        for step in range(1, n + 1):
            i = (tree.cursor + step) % n
            proc = self.cache.get(tree.keys[i])
            if proc is not None and text in " ".join((proc.binary, *proc.args, str(proc.pid))):
                tree.cursor = i
                return
        self.notify(f"no process matches {text!r}", severity="warning")

    # -- actions ------------------------------------------------------------------------
    def action_prompt(self, mode: str) -> None:
        self._prompt_mode = mode
        box = self.widgets["query"]
        box.placeholder = "search binary, args or pid" if mode == "search" else box.placeholder
        box.value = str(self.query) if mode == "filter" else ""
        box.add_class("shown")
        box.focus()

    def action_toggle_tree(self) -> None:
        self.view.tree = not self.view.tree
        self.refresh_panes()

    def action_next_sort(self) -> None:
        self.view.sort = SORTS[(SORTS.index(self.view.sort) + 1) % len(SORTS)]
        self.view.tree = False
        self.notify(f"sorted by {self.view.sort}")
        self.refresh_panes()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.refresh_panes()

    def action_expand(self) -> None:
        self.view.collapsed.discard(self.tree_pane.selected_key)
        self.refresh_panes()

    def action_collapse(self) -> None:
        key = self.tree_pane.selected_key
        if key is not None:
            self.view.collapsed.add(key)
        self.refresh_panes()

    def action_expand_all(self) -> None:
        self.view.collapsed.clear()
        self.refresh_panes()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_snapshot(self) -> None:
        """Write what is shown (the filter applies) as a snapshot document."""
        match = self.query.predicate(self.cache) if self.query else None
        recent = [self.exporter.exec_event(p) for _, p in self.execs]
        doc = snapshot.document(self.cache, self.exporter, self._last_counters, recent, self.source.label, match)
        name = f"procscope-snapshot-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path = Path(self.snapshot_dir) / name
        try:
            snapshot.write(str(path), doc)
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror}", severity="error")
            return
        self.notify(f"snapshot written to {path} ({len(doc['processes'])} processes)")
        self.last_snapshot = os.fspath(path)

    def on_unmount(self) -> None:
        self.source.stop()
