"""The monitor: app logic. Events are drained from the source on a timer
(at most 10 Hz) and applied to the process cache; the panes are handed
what to draw."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import time
from functools import partial

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Input, Static

from procscope import derive, snapshot, themes
from procscope.export import Exporter
from procscope.outputs import OutputError, free_name
from procscope.probes import wire
from procscope.probes.events import ThrottleEvent
from procscope.probes.text import printable
from procscope.query import Query, QueryError, Term
from procscope.signals import SIGNALS
from procscope.signals import send as send_signal

from . import config
from .crash import crash_report
from .feed import Feed
from .palette import BindingCommands
from .panes.detail import Detail, render_detail
from .panes.drops import Drops, render_drops
from .panes.exec_stream import ExecStream, exec_row
from .panes.exits import Exits, exit_row
from .panes.process_tree import ProcessTree, render_group
from .rows import GROUPS, SORTS, TreeModel, ViewOptions
from .screens.containers import ContainerScreen
from .screens.help import HelpScreen
from .screens.signal import SignalScreen
from .text import safe

HEADER_SORTS = {"PID": "pid", "USER": "user", "COMMAND": "binary"}  # tree header titles a click sorts by


class ProcscopeApp(App):
    CSS_PATH = ["app.tcss", *themes.CSS_PATHS]
    TITLE = "procscope"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("f3,slash", "prompt('search')", "Search"),
        Binding("f4,backslash", "prompt('filter')", "Filter"),
        Binding("f5", "toggle_tree", "Tree/flat"),
        Binding("f6", "next_sort", "Sort"),
        Binding("g", "cycle_group", "Group"),
        Binding("p", "pause", "Pause"),
        Binding("s", "snapshot", "Snapshot"),
        Binding("plus", "expand", "Expand", show=False),
        Binding("minus", "collapse", "Collapse", show=False),
        Binding("asterisk", "expand_all", "Expand all", show=False),
        Binding("space", "tag", "Tag/untag", show=False),
        Binding("U", "untag_all", "Untag all", show=False),
        Binding("f9,k", "signal", "Signal"),
        Binding("c", "pick_container", "Container"),
        Binding("t", "cycle_theme", "Theme"),
        Binding("question_mark", "help", "Help"),
    ]
    COMMANDS = App.COMMANDS | {BindingCommands}

    def __init__(self, source, query_text: str = "", snapshot_dir: str = ".", theme: str | None = None,
                 config_path: str | os.PathLike | None = None, **kwargs) -> None:
        """``theme``: None for the saved one (or the default); ``config_path``: where the
        theme chosen at run time is saved, None (tests) to read and write no config."""
        super().__init__(**kwargs)
        self.config_path = config_path
        self.failure: str | None = None  # why the monitor stopped, when an error stopped it
        self._warnings: list[str] = []
        self._ansi_defaults = (self.ansi_theme_dark, self.ansi_theme_light)  # Textual's, for its own themes
        for t in themes.THEMES.values():
            self.register_theme(t)
        if theme is None and config_path is not None:
            theme = config.load(config_path, self.available_themes, self._warnings.append).theme
        self.theme = theme or themes.DEFAULT
        self._saved_theme = self.theme  # only a change made here is written back
        self.source = source
        self.cache = source.cache
        self.exporter = Exporter(self.cache)
        self.feed = Feed(source, self.exporter)
        self.query = Query.parse(query_text) if query_text else Query()
        self.view = ViewOptions()
        self.tree_model = TreeModel(self.cache)
        self.paused = False
        self.snapshot_dir = snapshot_dir
        self._prompt_mode = "filter"
        self._drawn = 0.0  # monotonic time of the last redraw
        self.tagged: set = set()  # keys of tagged processes: signals go to them
        self._detail_proc = None  # clicked in a stream but not in the tree: its detail shows anyway
        self._detail_shown: tuple | None = None  # what the detail pane was drawn from
        self._drops_rows = -1

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="status", markup=False)
        yield Static(safe(self.source.banner), id="banner", classes="shown" if self.source.banner else "")
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
        for warning in self._warnings:
            self.say(warning, severity="warning", timeout=10)
        self.source.start()
        self.ingest()
        self.refresh_panes()
        # Full garbage collections pause everything for ~0.1 s at 10k processes, and an exec
        # storm would set one off every second or two: what start-up made (the /proc scan's
        # tree, the widgets) mostly stays, so it is left out of them, and they run once a minute.
        gc.freeze()
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(*self._gc_threshold[:2], 1 << 30)
        self.set_interval(60, self.collect_garbage)
        # SIGTERM ends the monitor as q does (the terminal is restored, the exit status is 0).
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.exit)
        self.tree_pane.focus()
        self.set_interval(0.1, self.tick)

    def collect_garbage(self) -> None:
        gc.collect()

    def say(self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None) -> None:
        """A notification: its text may name processes, so it is never markup."""
        self.notify(printable(message), title=title, severity=severity, timeout=timeout, markup=False)

    def _handle_exception(self, error: Exception) -> None:
        # Textual's hook for an error nothing handled: the monitor stops either way. The full
        # traceback goes to a log file and the terminal gets one line (tui.main prints it),
        # instead of Textual's traceback with locals, which may hold any process's text.
        self.failure = crash_report(error)
        super()._handle_exception(error)
        self._exit_renderables.clear()

    # -- data ----------------------------------------------------------------------
    def ingest(self) -> int:
        n, throttles = self.feed.ingest()
        while self.source.messages:
            self.say(self.source.messages.pop(0), severity="error", timeout=15)
        for ev in throttles:
            self.notify_throttle(ev)
        return n

    def notify_throttle(self, ev: ThrottleEvent) -> None:
        t = self.cache.throttles.get(ev.cgroup_id)
        where = t.path if t is not None else ev.name
        if ev.type == wire.THROTTLE_START:
            self.say(f"{where}: over --cgroup-rate, its events are suppressed", title="throttled",
                        severity="warning", timeout=8)  # fmt: skip
        else:
            counts = ", ".join(f"{op} {n}" for op, n in zip(wire.RATE_OPS, ev.suppressed, strict=False))
            self.say(f"{where}: events flow again ({counts} suppressed)", title="throttle over", timeout=8)

    def now(self) -> int:
        return self.feed.now()

    def tick(self) -> None:
        # Redraw when something arrived, else once a second (ages, highlights, grace periods).
        if (self.ingest() or time.monotonic() - self._drawn >= 1.0) and not self.paused:
            self.refresh_panes()

    def refresh_panes(self) -> None:
        self._drawn = time.monotonic()
        match = self.query.predicate(self.cache) if self.query else None
        now = self.now()
        if self.tagged:
            self.tagged = {k for k in self.tagged if k in self.cache.procs}  # evicted: nothing to signal
        rows = self.tree_model.rows(self.query, self.view)
        self.tree_pane.show(rows, self.cache, now, self.tagged)
        for pane_id, entries, fmt in (("execs", self.feed.execs, exec_row), ("exits", self.feed.exits, exit_row)):
            shown = [e for e in reversed(entries) if match is None or match(e[1])]
            self.panes[pane_id].set_items(shown, lambda e, fmt=fmt: fmt(*e), lambda e: (e[0], e[1].key))
        rates = self.feed.sample()
        drops = render_drops(self.feed.counters, rates, self.feed.events_total)
        # Laid out only when its height may change: a layout redraws the whole screen.
        self.widgets["drops"].update(drops, layout=drops.row_count != self._drops_rows)
        self._drops_rows = drops.row_count
        self.show_detail()
        self.show_status(rows.processes)

    def show_detail(self) -> None:
        key = self.tree_pane.selected_key
        proc = self.cache.get(key) if key is not None else None
        proc = self._detail_proc or proc
        now = self.now()
        group = self.tree_pane.selected_group if proc is None else None  # a group's header row
        # Drawn again only when it may show something else (ages are in seconds), as a
        # redraw lays the whole screen out again; anything missed shows within a second.
        shown = (proc, proc and (proc.image, proc.alive, proc.in_grace, proc.container, proc.cgroup),
                 group and (group.key, group.live, group.shown), now // 10**9)  # fmt: skip
        if shown == self._detail_shown:
            return
        self._detail_shown = shown
        detail = render_group(group, self.cache, now) if group else render_detail(proc, self.cache, now)
        self.widgets["detail"].update(detail)

    def show_status(self, shown: int) -> None:
        lost = self.feed.counters.lost
        live = len(self.cache.by_pid)
        parts = [
            f"source: {self.source.label}",
            self.feed.rate_text(),
            f"{live} processes",
            f"{len(self.cache.containers)} containers",
            f"shown {shown}",
        ]
        if self.query:
            parts.append(f"filter: {self.query}")
        if self.paused:
            parts.append("PAUSED")
        throttled = sorted(t.path for t in self.cache.throttles.values() if t.active)
        if throttled:
            parts.insert(0, f"⏸ THROTTLED: {', '.join(throttled)}")
        if lost:
            parts.insert(0, f"⚠ LOSING EVENTS: {lost} dropped")
        status = self.widgets["status"]
        status.update(safe(" │ ".join(parts)), layout=False)  # one line, always
        status.set_class(bool(lost), "losing")
        status.set_class(bool(throttled) and not lost, "throttled")

    # -- events from widgets -----------------------------------------------------------
    def on_rows_view_selected(self, message: ProcessTree.Selected) -> None:
        if message.view.id == "tree":
            self._detail_proc = None
            self.show_detail()
            return
        # A process picked in a stream: select it in the tree if shown, show its detail anyway.
        entries = self.feed.execs if message.view.id == "execs" else self.feed.exits
        proc = next((p for w, p in entries if (w, p.key) == message.key), None)
        if proc is None:
            return
        tree = self.tree_pane
        if proc.key in tree.keys:
            tree.cursor = tree.keys.index(proc.key)  # its Selected message shows the detail
        else:
            self._detail_proc = proc
            self.show_detail()

    def on_click(self, event) -> None:
        """A click on the tree's column titles sorts by that column (a flat list, as F6)."""
        tree = self.tree_pane
        region = tree.content_region
        if event.widget is not tree or tree.header is None or event.screen_y != region.y:
            return
        x = event.screen_x - region.x + tree.scroll_offset.x
        titles = [(m.start(), m.group()) for m in re.finditer(r"\S+", tree.header.plain)]
        # The last title starting at or before x; left of all, the first (PID is right-aligned).
        title = next((t for start, t in reversed(titles) if start <= x), titles[0][1] if titles else None)
        if title in HEADER_SORTS:
            self.view.sort, self.view.tree = HEADER_SORTS[title], False
            self.say(f"sorted by {self.view.sort}")
            self.refresh_panes()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        text = message.value.strip()
        box = self.widgets["query"]
        if self._prompt_mode == "filter":
            try:
                self.query = Query.parse(text)
            except QueryError as exc:
                self.say(str(exc), severity="error", timeout=6)
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
        self.say(f"no process matches {text!r}", severity="warning")

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
        self.say(f"sorted by {self.view.sort}")
        self.refresh_panes()

    def action_cycle_group(self) -> None:
        self.view.group = GROUPS[(GROUPS.index(self.view.group) + 1) % len(GROUPS)]
        self.say("not grouped" if self.view.group == "none" else f"grouped by {self.view.group}")
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

    def action_cycle_theme(self) -> None:
        self.theme = themes.next_name(self.theme)
        self.say(f"theme {self.theme}")

    def watch_theme(self, name: str) -> None:
        # Rich's named colours in the rows ("bold green", "bold red") follow the theme's ANSI palette.
        palette = themes.ANSI.get(name)
        self.ansi_theme_dark = palette or self._ansi_defaults[0]
        self.ansi_theme_light = palette or self._ansi_defaults[1]
        # getattr: the first theme is set in __init__, before there is a saved one to compare with.
        if self.config_path is not None and name != getattr(self, "_saved_theme", name):
            try:
                config.save(self.config_path, config.Config(theme=name))
                self._saved_theme = name
            except (OSError, OutputError) as exc:
                self.say(f"cannot save the theme to {self.config_path}: {exc}", severity="warning")

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # App keys still reach the app under a dialog: these must not act on the tree behind it.
        if action in ("tag", "untag_all", "signal", "pick_container"):
            return not isinstance(self.screen, (HelpScreen, SignalScreen, ContainerScreen))
        return True

    def action_tag(self) -> None:
        key = self.tree_pane.selected_key
        if key is None or self.cache.get(key) is None:
            return
        self.tagged ^= {key}
        self.refresh_panes()
        self.tree_pane.action_move(1)

    def action_untag_all(self) -> None:
        self.tagged.clear()
        self.refresh_panes()

    def action_signal(self) -> None:
        """Confirm, then signal the tagged processes, or else the selected one."""
        if not self.source.live:
            self.say("signals need a live source", severity="warning")
            return
        keys = self.tagged or {self.tree_pane.selected_key}
        targets = sorted((p for k in keys if k is not None and (p := self.cache.get(k))), key=lambda p: p.pid)
        if not targets:
            self.say("no process selected", severity="warning")
            return
        shown = [(p.pid, derive.user(p), p.binary or "?") for p in targets]
        self.push_screen(SignalScreen(shown, SIGNALS), partial(self.signal_confirmed, targets))

    def signal_confirmed(self, targets: list, name: str | None) -> None:
        if name is None:
            return
        sig = signal.Signals["SIG" + name]
        for proc in targets:
            outcome = send_signal(self.cache, proc, sig)
            severity = {"sent": "information", "gone": "warning"}.get(outcome.status, "error")
            self.say(str(outcome), severity=severity)

    def action_pick_container(self) -> None:
        entries = sorted(self.cache.containers.values(), key=lambda e: e.container.id)
        throttled = self.cache.where.throttled_containers()
        choices = [(e.container.id, f"{e.container.short_id}  {e.container.runtime:<14} {e.processes:>5} processes"
                    + ("  ⏸ throttled" if e.container.id in throttled else "")) for e in entries]  # fmt: skip
        current = next((t.value for t in self.query.terms if t.field == "container" and not t.negate), "")
        self.push_screen(ContainerScreen(choices, current), self.filter_container)

    def filter_container(self, cid: str | None) -> None:
        """Replace the filter's container terms with this one ("" for none), keeping the rest."""
        if cid is None:
            return
        terms = tuple(t for t in self.query.terms if t.field != "container")
        self.query = Query(terms + ((Term("container", cid),) if cid else ()))
        self.refresh_panes()

    def action_snapshot(self) -> None:
        """Write what is shown (the filter applies) as a snapshot document."""
        match = self.query.predicate(self.cache) if self.query else None
        recent = [self.exporter.exec_event(p) for _, p in self.feed.execs]
        doc = snapshot.document(self.cache, self.exporter, self.feed.counters, recent, self.source.label, match)
        path = free_name(self.snapshot_dir, f"procscope-snapshot-{time.strftime('%Y%m%d-%H%M%S')}", ".json")
        try:
            snapshot.write(path, doc, replace=False)
        except OutputError as exc:
            self.say(str(exc), severity="error")
            return
        self.say(f"snapshot written to {path} ({len(doc['processes'])} processes)")
        self.last_snapshot = os.fspath(path)

    def on_unmount(self) -> None:
        self.source.stop()
        if hasattr(self, "_gc_threshold"):
            gc.set_threshold(*self._gc_threshold)
            gc.unfreeze()
