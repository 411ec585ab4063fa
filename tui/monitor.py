"""The monitor's screen. Events are drained from the source on a timer (at
most 10 Hz) and applied to the process cache (tui.feed); each redraw makes
one frame (tui.frame) the panes render themselves from. The process list
gets most of the screen at every size; the detail, the exec stream, the
exits and the losses are panels the keys open and close (the detail beside
the list from WIDE columns, else below)."""

from __future__ import annotations

import time
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Container
from textual.widgets import ContentSwitcher, Footer, Input, Static

from procscope.probes.events import ProcessKey
from procscope.query import Query, QueryError

from .actions import PANELS, Actions
from .columns import Context, any_badge, empty_columns, fit, header
from .feed import throttle_message
from .frame import Frame, Selection, Status, StatusParts
from .keys import KEYS
from .palette import BindingCommands
from .panes.detail import Detail
from .panes.drops import Drops
from .panes.exec_stream import ExecStream
from .panes.exits import Exits
from .panes.history import History
from .panes.process_tree import ProcessTree
from .safe_text import safe
from .screen_fd import since_input
from .sources import RemoteSource, connected
from .state import SHORT, WIDE, MonitorState
from .status import StatusLine
from .travel import MomentError
from .widgets.meters import Meters

FULL_FOOTER = 100  # narrower than this, the footer drops the palette hint
BUSY_EVENTS = 1000  # events in the last second from which the list redraws at most every BUSY_REDRAW s
BUSY_REDRAW = 1.0  # as htop redraws (1.5 s by default); a key redraws at once
KEY_FIRST = 0.05  # s: in a storm, a tick this soon after a key or click waits for the next (see tick)
QUIET_REDRAW = 0.25  # below BUSY_EVENTS a frame at most this often (each costs 20-40 ms at 200x50); keys at once
PANEL_TITLES = {"execs": "execs", "exits": "exits", "history": "history", "drops": "losses"}


class MonitorScreen(Actions, MonitorState):
    BINDINGS: ClassVar[list[BindingType]] = [*KEYS]
    COMMANDS = {BindingCommands}

    def compose(self) -> ComposeResult:
        yield Meters(id="meters")
        yield StatusLine(id="status", markup=False)
        yield Static(safe(self.source.banner), id="banner", classes="shown" if self.source.banner else "")
        with Container(id="main"):
            yield ProcessTree(id="tree")
            yield Detail(id="detail")
        with ContentSwitcher(id="panel", initial=PANELS[0]):
            yield ExecStream(id="execs")
            yield Exits(id="exits")
            yield History(id="history")
            yield Drops(id="drops")
        yield Input(id="query")
        yield Footer()

    def on_mount(self) -> None:
        self.tree_pane = self.query_one("#tree", ProcessTree)
        self.detail = self.query_one("#detail", Detail)
        self.panel = self.query_one("#panel", ContentSwitcher)
        self.prompt = self.query_one("#query", Input)
        self.apply_layout()
        self.source.start()
        self.usage.take(self.cache)
        self.ingest()
        self.show_gauges()
        self.redraw()
        self.call_after_refresh(self.usage.start)
        self.call_after_refresh(self.source.shown)
        self.tree_pane.focus()
        # Ticking from the first frame on: the first tick's work (the window's checkpoint of a
        # /proc scan, 0.1 s at 10,000 processes) would otherwise come before the frame is drawn.
        self.call_after_refresh(self.set_interval, 0.1, self.tick)

    def on_unmount(self) -> None:
        self.usage.stop()
        self.source.stop()

    # -- layout ------------------------------------------------------------------
    def apply_layout(self) -> None:
        width = self.app.size.width
        self.wide = width >= WIDE
        detail, panel = self.layout_now()
        self.set_class(self.wide, "-wide")
        self.set_class(self.app.size.height < SHORT, "-short")
        self.set_class(detail, "-detail")
        self.set_class(panel, "-panel")
        # Narrow: the footer keeps to the function keys (ctrl+p still opens the palette).
        footer = self.query_one(Footer)
        if footer.compact != (width < FULL_FOOTER):
            footer.compact = width < FULL_FOOTER
            footer.show_command_palette = not footer.compact
            footer.refresh(recompose=True)  # the palette hint is composed, not styled
        self.panel.border_title = " · ".join(
            f"[reverse] {title} [/]" if name == self.panel.current else title for name, title in PANEL_TITLES.items()
        ) + "   (Tab: next, Esc: close)"  # fmt: skip
        self.fit_columns()
        self.select()  # now, not at the next second's redraw

    def on_resize(self) -> None:
        # Called before the new size is everyone's: lay out after it.
        self.call_later(self.apply_layout)
        self.call_later(self.redraw, force=True)

    def on_process_tree_resized(self) -> None:
        self.fit_columns()  # and the rows again, changed or not: a command is cut to the width (row_text)
        self.redraw(force=True)

    def fit_columns(self) -> bool:
        """The chosen columns that fit and have something to show; whether they changed."""
        # The scrollbar's width kept aside: it comes and goes with the rows, without a resize.
        tree = self.tree_pane
        width = (tree.content_region.width or self.app.size.width - 2) - tree.styles.scrollbar_size_vertical
        self.badged = self.badged or any_badge(self.cache, tree.keys_on_screen())
        columns = fit(self.chosen_columns, width, empty_columns(self.cache, self.badged))
        changed, self.shown_columns = columns != self.shown_columns, columns
        return changed

    # -- data ----------------------------------------------------------------------
    def ingest(self) -> int:
        n, throttles = self.feed.ingest()
        while self.source.messages:
            self.say(self.source.messages.pop(0), severity="error", timeout=15)
        while self.source.notes:
            self.say(self.source.notes.pop(0), timeout=8)
        if self.source.banner != self.banner:  # the probes could not attach after all
            self.banner = self.source.banner
            banner = self.query_one("#banner", Static)
            banner.update(safe(self.banner))
            banner.set_class(bool(self.banner), "shown")
        for ev in throttles:
            title, message, severity = throttle_message(ev, self.cache)
            self.say(message, title=title, severity=severity, timeout=8)
        return n

    def tick(self) -> None:
        # Redraw when something arrived (at most every QUIET_REDRAW s), else once a second (ages,
        # highlights, grace periods). In a storm, at most every BUSY_REDRAW s: a frame costs the
        # same for 10 events as for 1000, and keys still redraw at once (their actions do, from
        # the last frame's rows).
        if self.busy and not self.waited and since_input(self.app) < KEY_FIRST:
            # A key or click was just read: its action and Textual's paint of it go first (a
            # storm's tick costs 5-50 ms); the events wait for the next tick, 0.1 s later.
            self.waited = True
            return
        self.waited = False
        n = self.ingest()
        if self.usage.take(self.feed.cache) | self.feed.each_second():
            self.show_gauges()
            if error := self.usage.new_error():
                self.say(error, severity="warning", timeout=10)
            n = n or 1  # new figures: a frame, as for an event
        self.recent.append(n)
        since = time.monotonic() - self.drawn
        busy = self.busy = sum(self.recent) > BUSY_EVENTS
        if (n or self.pending) and since < (BUSY_REDRAW if busy else QUIET_REDRAW):
            self.pending = True
        elif not self.is_current:  # another node's monitor is shown: this one only collects
            self.pending = bool(n or self.pending)
            self.tree_model.trim()
        elif n or self.pending or since >= 1.0:
            self.pending = False
            if self.travelling_live:  # the moment shown does not change: the status line does
                self.drawn = time.monotonic()
                self.frame = self.status_frame()
            else:
                self.redraw(tick=True)

    def status_frame(self) -> Frame:
        shown = self.tree_pane.shown.processes if self.tree_pane.shown else 0
        return Frame(self.cache, self.exporter, self.now(), self.status(shown))

    def redraw(self, force: bool = False, tick: bool = False) -> None:
        # Frozen, the live cache still changes behind the view: only the status line is drawn. A
        # moment travelled to is a cache of its own: keys (filter, sort, fold) redraw it.
        if self.frozen and not self.travelling_live and not force:
            self.frame = self.status_frame()
            return
        # In a storm a key (sort, filter, fold) redraws at once the processes the last frame had:
        # bringing the tree up to the events since costs as much again, and the next tick does it.
        fresh = tick or not self.busy
        self.fit_columns()
        if fresh:
            self.drawn = time.monotonic()
        if self.tagged:
            self.tagged = {k for k in self.tagged if k in self.cache.procs}  # evicted: nothing to signal
        rows = self.tree_model.rows(self.filter_query, self.view, fresh=fresh)
        columns = tuple(self.shown_columns)
        tree = self.tree_pane
        self.usage.want(self.feed.cache, tree.keys_on_screen(), columns)
        now = self.now()
        self.frame = Frame(
            self.cache, self.exporter, now, self.status(rows.processes), rows,
            Context(self.cache, now, self.exporter.wall_offset), columns,
            header(self.shown_columns, self.view.sort if not self.view.tree else "", self.view.reverse),
            frozenset(self.tagged), self.filter_query,
            self.filter_query.predicate(self.cache) if self.filter_query else None, self.shown,
            # A stream only while it is shown: in a storm each costs 1-2 ms a frame, the history (20,000) more.
            self.panel.current if self.layout_now()[1] else None,
            self.feed.counters, self.feed.sample(), self.feed.events_total,
        )  # fmt: skip
        if self.following is not None:
            if self.following in tree.keys:
                tree.cursor = tree.keys.index(self.following)
            else:
                self.following = None  # gone: nothing left to follow
        self.select()

    def select(self) -> None:
        """What the detail shows: the process picked in a stream, else the list's selection."""
        tree = self.tree_pane
        key = tree.selected_key
        proc = self.detail_proc or (self.cache.get(key) if isinstance(key, ProcessKey) else None)
        group = tree.selected_group if proc is None else None  # a group's header row
        self.selection = Selection(self.cache, self.exporter, self.now(), proc, group, self.layout_now()[0])

    def status(self, shown: int) -> Status:
        c = self.feed.counters
        lost = c.lost
        where = ", ".join(f"{place} {n}" for place, n in c.where_lost())
        parts: StatusParts = [(0, f"⚠ lost {lost}: {where} (L)" if lost else "lost 0")]
        if self.travel is not None and (self.travel.at is not None or not self.travel.live):
            parts.append((1, self.travel.bar(self.exporter.clock(self.cache.now, self.travel.digits))))
        throttled = sorted(t.path for t in self.cache.throttles.values() if t.active)
        if throttled:
            parts.append((1, f"⏸ THROTTLED: {', '.join(throttled)}"))
        if self.frozen:
            parts.append((1, "FROZEN (Z)"))
        if self.following is not None:
            parts.append((2, f"following {self.following.pid} (F)"))
        if self.filter_query:
            parts.append((2, f"filter: {self.filter_query}"))
        if len(self.nodes) > 1:
            parts.append((2, f"{connected(self.nodes)} of {len(self.nodes)} nodes connected (^N)"))
        n = len(self.cache.containers)
        parts += [(3, f"{len(self.cache.by_pid)} processes, {shown} shown"),
                  (5, f"{n} container{'' if n == 1 else 's'}"), (4, self.feed.rate_text()),
                  # Another machine's: which one, and whether it is connected, matter as a filter does.
                  (2 if isinstance(self.source, RemoteSource) else 6, f"source: {self.source.label}")]  # fmt: skip
        return Status(parts, bool(lost), bool(throttled))

    # -- events from widgets -----------------------------------------------------------
    def on_rows_view_selected(self, message: ProcessTree.Selected) -> None:
        if message.view.id == "tree":
            self.detail_proc = None
            self.select()
            return
        # A process picked in a stream: select it in the tree if shown, show its detail anyway.
        if not isinstance(message.key, tuple):
            return
        proc = message.key[1]  # a stream's rows are its (time, process) entries
        tree = self.tree_pane
        if proc.key in tree.keys:
            tree.cursor = tree.keys.index(proc.key)  # its Selected message shows the detail
        else:
            self.detail_proc = proc
            self.select()

    def on_process_tree_sort_by(self, message: ProcessTree.SortBy) -> None:
        if message.column == self.view.sort and not self.view.tree:
            self.view.reverse = not self.view.reverse  # the same title again: the other way
        self._sort_by(message.column)

    def on_input_submitted(self, message: Input.Submitted) -> None:
        text = message.value.strip()
        if self.prompt_mode == "filter":
            try:
                self.filter_query = Query.parse(text)
            except QueryError as exc:
                self.say(str(exc), severity="error", timeout=6)
                return
        elif self.prompt_mode == "time":
            travel = self.time_travel()
            try:
                at = travel.parse(text) if travel is not None else None
            except MomentError as exc:
                self.say(str(exc), severity="error", timeout=6)
                return
            if travel is not None:
                self.show_moment(at)
        else:
            self.search(text)
        self.prompt.remove_class("shown")
        self.tree_pane.focus()
        self.redraw()
