"""The monitor. Events are drained from the source on a timer (at most
10 Hz) and applied to the process cache (tui.feed); the panes are handed
what to draw. The process list gets most of the screen at every size; the
detail, the exec stream, the exits and the losses are panels the keys open
and close (the detail beside the list from WIDE columns, else below)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections import deque

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Footer, Input, Static

from procscope import describe, themes
from procscope.export import Exporter
from procscope.probes.text import printable
from procscope.query import Query, QueryError
from procscope.window import Window

from . import config
from .actions import PANELS, Actions
from .columns import COLUMNS, DEFAULT, USAGE, Context, any_badge, empty_columns, fit, header
from .crash import crash_report
from .feed import Feed, throttle_message
from .keys import KEYS
from .palette import BindingCommands
from .panes.detail import Detail, render_detail
from .panes.drops import Drops
from .panes.exec_stream import ExecStream, exec_row
from .panes.exits import Exits, exit_row
from .panes.history import History, history_row
from .panes.process_tree import ProcessTree, render_group
from .rows import TreeModel, ViewOptions
from .safe_text import safe
from .screens.help import key_text
from .status import fit as status_line
from .travel import MomentError
from .usage import UsageFeed
from .widgets.meters import Meters

WIDE = 140  # from this many columns the detail goes beside the list
TALL = 40  # from this many rows the bottom panel is open by default
FULL_FOOTER = 100  # narrower than this, the footer drops the palette hint
BUSY_EVENTS = 1000  # events in the last second from which the list redraws at most every BUSY_REDRAW s
BUSY_REDRAW = 1.0  # as htop redraws (1.5 s by default); a key redraws at once
PANEL_TITLES = {"execs": "execs", "exits": "exits", "history": "history", "drops": "losses"}


class ProcscopeApp(Actions, App):
    CSS_PATH = ["app.tcss", *themes.CSS_PATHS]
    TITLE = "procscope"
    BINDINGS = KEYS
    # The panes, kept at mount (App.query_one looks at the active screen, which may be a dialog).
    tree_pane: ProcessTree
    panel: ContentSwitcher
    panes: dict[str, ExecStream | Exits | History]
    widgets: dict[str | None, Widget]
    COMMANDS = App.COMMANDS | {BindingCommands}

    def __init__(self, source, query_text: str = "", snapshot_dir: str | None = None, theme: str | None = None,
                 config_path: str | os.PathLike | None = None, allow_signals: bool = True, window: Window | None = None,
                 allow_writes: bool = True, usage_interval: float = 1.0, sort: str | None = None,
                 **kwargs) -> None:  # fmt: skip
        """``theme``: None for the saved one (or the default); ``config_path``: where settings
        chosen at run time are saved, None (tests) to read and write no config; ``allow_signals``:
        False in the monitors `procscope serve` runs (without --allow-signals); ``window``:
        keeps the live source's recent events for time travel; ``allow_writes``: False in the
        monitors `procscope serve` runs (without --allow-writes): no snapshot, no config written;
        ``usage_interval``: seconds between readings of CPU%, memory and the meters (0: none);
        ``sort``: a column to start as a flat list sorted by (the figures the most first)."""
        super().__init__(**kwargs)
        self.allow_signals = allow_signals
        self.allow_writes = allow_writes
        self.config_path = config_path
        self.failure: str | None = None  # why the monitor stopped, when an error stopped it
        self._warnings: list[str] = []
        self._ansi_defaults = (self.ansi_theme_dark, self.ansi_theme_light)  # Textual's, for its own themes
        for t in themes.THEMES.values():
            self.register_theme(t)
        self.settings = config.Config()
        if config_path is not None:
            self.settings = config.load(config_path, self.available_themes, self._warnings.append, COLUMNS)
        self.theme = theme or self.settings.theme or themes.DEFAULT
        self._saved_theme = self.theme  # only a change made here is written back
        self.chosen_columns = list(self.settings.columns or DEFAULT)
        self.shown_columns = fit(self.chosen_columns, 200)
        self.source = source
        self.cache = source.cache
        self.exporter = Exporter(self.cache)
        self.feed = Feed(source, self.exporter, window)
        self.usage = UsageFeed(source.live and usage_interval > 0, usage_interval, self.feed.keep_usage)
        self.shown = self.feed  # what the streams and the history list: the feed's, or a moment's (time travel)
        self.filter_query = Query.parse(query_text) if query_text else Query()
        self.view = ViewOptions() if sort is None else ViewOptions(tree=False, sort=sort, reverse=sort in USAGE)
        self.tree_model = TreeModel(self.cache)
        self.frozen = False
        self.frozen_at: int | None = None  # the clock when Z froze the view
        self.following = None  # key of the process F follows
        self.snapshot_dir = snapshot_dir
        self.tagged: set = set()  # keys of tagged processes: signals go to them
        self.wide = False
        self.detail_open: bool | None = None  # None: the default for the size
        self.panel_open: bool | None = None
        self._prompt_mode = "filter"
        self._last_search = ""
        self._drawn = 0.0  # monotonic time of the last redraw with the events that had arrived
        self._busy = False  # over BUSY_EVENTS in the last second: keys redraw what the last frame had
        self._recent: deque[int] = deque(maxlen=10)  # events per tick, the last second's
        self._pending = False  # events arrived and are not drawn yet
        self._detail_proc = None  # clicked in a stream but not in the tree: its detail shows anyway
        self._detail_shown: tuple | None = None  # what the detail pane was drawn from
        self._banner = source.banner
        self._badged = False  # a process on screen had a badge: the column shows from then on
        self.travel = None  # TimeTravel, while stepping through a replay or the live window
        self.main_screen: Screen | None = None  # the process list's (on_mount), whatever dialog is on top
        self._gc_threshold: tuple[int, ...] | None = None  # Python's, while the monitor runs with its own
        self.last_snapshot: str | None = None  # the path W wrote last

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Meters(id="meters", classes="shown" if self.usage.sampler and self.settings.header else "")
        yield Static(id="status", markup=False)
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
        # Kept, not queried: App.query_one looks at the active screen, which may be the help.
        self.main_screen = self.screen
        self.tree_pane = self.query_one("#tree", ProcessTree)
        self.panel = self.query_one("#panel", ContentSwitcher)
        self.panes = {"execs": self.query_one("#execs", ExecStream), "exits": self.query_one("#exits", Exits),
                      "history": self.query_one("#history", History)}  # fmt: skip
        self.widgets = {w.id: w for w in (self.query_one("#detail"), self.query_one("#drops"),
                                          self.query_one("#status"), self.query_one("#query"),
                                          self.query_one("#banner"), self.query_one("#meters"))}  # fmt: skip
        for warning in self._warnings:
            self.say(warning, severity="warning", timeout=10)
        self.apply_layout()
        self.source.start()
        self.usage.take(self.cache)
        self.ingest()
        self.refresh_panes()
        self.call_after_refresh(self.usage.start)
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

    def layout_now(self) -> tuple[bool, bool]:
        """(detail shown, bottom panel shown): the user's choice, else the size's default."""
        width, height = self.size
        detail = self.detail_open if self.detail_open is not None else width >= WIDE
        panel = self.panel_open if self.panel_open is not None else height >= TALL
        return detail, panel

    def apply_layout(self) -> None:
        self.wide = self.size.width >= WIDE
        detail, panel = self.layout_now()
        screen = self.main_screen
        screen.set_class(self.wide, "-wide")
        screen.set_class(detail, "-detail")
        screen.set_class(panel, "-panel")
        # Narrow: the footer keeps to the function keys (ctrl+p still opens the palette).
        footer = screen.query_one(Footer)
        if footer.compact != (self.size.width < FULL_FOOTER):
            footer.compact = self.size.width < FULL_FOOTER
            footer.show_command_palette = not footer.compact
            footer.refresh(recompose=True)  # the palette hint is composed, not styled
        self.panel.border_title = " · ".join(
            f"[reverse] {title} [/]" if name == self.panel.current else title for name, title in PANEL_TITLES.items()
        ) + "   (Tab: next, Esc: close)"  # fmt: skip
        self.fit_columns()
        self._detail_shown = None
        self.show_detail()  # now, not at the next second's redraw

    def on_resize(self) -> None:
        if self.main_screen is None:
            return  # before the first mount: on_mount lays it out
        # Called before App's own handler has taken the new size: lay out after it.
        self.call_later(self.apply_layout)
        self.call_later(self.refresh_panes, force=True)

    def on_process_tree_resized(self) -> None:
        self.fit_columns()  # and the rows again, changed or not: a command is cut to the width (row_text)
        self.refresh_panes(force=True)

    def fit_columns(self) -> bool:
        """The chosen columns that fit and have something to show; whether they changed."""
        # The scrollbar's width kept aside: it comes and goes with the rows, without a resize.
        tree = self.tree_pane
        width = (tree.content_region.width or self.size.width - 2) - tree.styles.scrollbar_size_vertical
        self._badged = self._badged or any_badge(self.cache, tree.keys_on_screen())
        columns = fit(self.chosen_columns, width, empty_columns(self.cache, self._badged))
        changed, self.shown_columns = columns != self.shown_columns, columns
        return changed

    def collect_garbage(self) -> None:
        gc.collect()  # a method: Textual's timer cannot call a builtin (it counts the parameters)

    def get_key_display(self, binding: Binding) -> str:
        return key_text(binding.key.split(",")[0])  # F5, not f5

    def say(
        self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None
    ) -> None:
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
        while self.source.notes:
            self.say(self.source.notes.pop(0), timeout=8)
        if self.source.banner != self._banner:  # the probes could not attach after all
            self._banner = self.source.banner
            banner = self.widgets["banner"]
            banner.update(safe(self._banner))
            banner.set_class(bool(self._banner), "shown")
        for ev in throttles:
            title, message, severity = throttle_message(ev, self.cache)
            self.say(message, title=title, severity=severity, timeout=8)
        return n

    @property
    def travelling_live(self) -> bool:
        """Showing a moment of the live window: the view stands still, events arrive behind it."""
        return self.travel is not None and self.travel.live and self.travel.at is not None

    def now(self) -> int:
        """The clock ages are shown by: the machine's, a replay's, or the moment travelled to."""
        return self.cache.now if self.travel is not None and self.travel.at is not None else self.feed.now()

    def tick(self) -> None:
        # Redraw when something arrived, else once a second (ages, highlights, grace periods).
        # In a storm, at most every BUSY_REDRAW s: a frame costs the same for 10 events as
        # for 1000, and keys still redraw at once (their actions do, from the last frame's rows).
        n = self.ingest()
        if self.usage.take(self.feed.cache) | self.feed.each_second():
            self.widgets["meters"].set_class(self.settings.header and self.usage.header(self.cache), "shown")
            self.widgets["meters"].show(self.usage.machine(self.cache), self.feed.exec_rates, self.feed.lost_rates,
                                        self.size.height)  # fmt: skip
            if error := self.usage.new_error():
                self.say(error, severity="warning", timeout=10)
            n = n or 1  # new figures: a frame, as for an event
        self._recent.append(n)
        since = time.monotonic() - self._drawn
        busy = self._busy = sum(self._recent) > BUSY_EVENTS
        if (n or self._pending) and since < (BUSY_REDRAW if busy else 0):
            self._pending = True
        elif n or self._pending or since >= 1.0:
            self._pending = False
            if self.travelling_live:  # the moment shown does not change: the status line does
                self._drawn = time.monotonic()
                self.show_status(self.tree_pane.shown.processes if self.tree_pane.shown else 0)
            else:
                self.refresh_panes(tick=True)

    def refresh_panes(self, force: bool = False, tick: bool = False) -> None:
        # Frozen, the live cache still changes behind the view: only the status line is drawn. A
        # moment travelled to is a cache of its own: keys (filter, sort, fold) redraw it.
        if self.frozen and not self.travelling_live and not force:
            self.show_status(self.tree_pane.shown.processes if self.tree_pane.shown else 0)
            return
        # In a storm a key (sort, filter, fold) redraws at once the processes the last frame had:
        # bringing the tree up to the events since costs as much again, and the next tick does it.
        fresh = tick or not self._busy
        self.fit_columns()
        if fresh:
            self._drawn = time.monotonic()
        match = self.filter_query.predicate(self.cache) if self.filter_query else None
        now = self.now()
        if self.tagged:
            self.tagged = {k for k in self.tagged if k in self.cache.procs}  # evicted: nothing to signal
        rows = self.tree_model.rows(self.filter_query, self.view, fresh=fresh)
        ctx = Context(self.cache, now, self.exporter.wall_offset)
        columns = tuple(self.shown_columns)
        tree = self.tree_pane
        self.usage.want(self.feed.cache, tree.keys_on_screen(), columns)
        tree.show(rows, ctx, columns, header(self.shown_columns, self.view.sort if not self.view.tree else "",
                                             self.view.reverse), self.tagged, str(self.filter_query))  # fmt: skip
        if self.following is not None:
            if self.following in tree.keys:
                tree.cursor = tree.keys.index(self.following)
            else:
                self.following = None  # gone: nothing left to follow
        named = lambda when, p: exec_row(when, p, describe.container_name(p, self.cache) if p.container else "")  # noqa: E731
        # The history (up to 20,000 processes) only while it is shown: in a storm it is the biggest list.
        history_shown = self.layout_now()[1] and self.panel.current == "history"
        seen = sorted(((p.key.ktime, p) for p in self.shown.seen.values()), key=lambda e: e[0]) if history_shown else []
        for pane_id, entries, fmt in (("execs", self.shown.execs, named), ("exits", self.shown.exits, exit_row),
                                      ("history", seen, history_row)):  # fmt: skip
            shown = list(reversed(entries)) if match is None else [e for e in reversed(entries) if match(e[1])]
            self.panes[pane_id].set_items(shown, lambda e, fmt=fmt: fmt(self.exporter.clock(e[0]), e[1]))
        rates = self.feed.sample()
        self.widgets["drops"].show(self.feed.counters, rates, self.feed.events_total)
        self.show_detail()
        self.show_status(rows.processes)

    def show_detail(self) -> None:
        if not self.layout_now()[0]:
            return
        key = self.tree_pane.selected_key
        proc = self.cache.get(key) if key is not None else None
        proc = self._detail_proc or proc
        now = self.now()
        group = self.tree_pane.selected_group if proc is None else None  # a group's header row
        # Drawn again only when it may show something else (ages are in seconds); laid out
        # (which redraws the whole screen) only when what it shows is another thing, as
        # only then may its height change; the next second's age of the same is a repaint.
        usage = describe.usage(proc, self.cache) if proc else None
        what = (proc, proc and (proc.image, proc.alive, proc.in_grace, proc.container, proc.cgroup, usage is None),
                group and (group.key, group.live, group.shown))  # fmt: skip
        # Ages are shown in seconds, after an hour in minutes: the text, not the clock, says when.
        shown = (what, describe.age_text(describe.age_ns(proc, now)) if proc else now // 10**9, usage)
        if shown == self._detail_shown:
            return
        layout = self._detail_shown is None or self._detail_shown[0] != what
        self._detail_shown = shown
        detail = render_group(group, self.cache, now) if group else render_detail(proc, self.cache, now, self.exporter)
        self.widgets["detail"].update(detail, layout=layout)
        followed = describe.usage_key(proc, self.cache) if proc else None
        self.widgets["detail"].show_history(self.cache.usage.history.get(followed, ()) if followed else ())

    def show_status(self, shown: int) -> None:
        c = self.feed.counters
        lost = c.lost
        where = ", ".join(f"{place} {n}" for place, n in c.where_lost())
        parts = [(0, f"⚠ lost {lost}: {where} (L)" if lost else "lost 0")]
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
        n = len(self.cache.containers)
        parts += [(3, f"{len(self.cache.by_pid)} processes, {shown} shown"),
                  (5, f"{n} container{'' if n == 1 else 's'}"), (4, self.feed.rate_text()),
                  (6, f"source: {self.source.label}")]  # fmt: skip
        status = self.widgets["status"]
        text = status_line(parts, (status.content_region.width or self.size.width - 2))
        status.update(safe(text), layout=False)  # one line, always
        status.set_class(bool(lost), "losing")
        status.set_class(bool(throttled) and not lost, "throttled")

    # -- events from widgets -----------------------------------------------------------
    def on_rows_view_selected(self, message: ProcessTree.Selected) -> None:
        if message.view.id == "tree":
            self._detail_proc = None
            self.show_detail()
            return
        # A process picked in a stream: select it in the tree if shown, show its detail anyway.
        if message.key is None:
            return
        proc = message.key[1]  # a stream's rows are its (time, process) entries
        tree = self.tree_pane
        if proc.key in tree.keys:
            tree.cursor = tree.keys.index(proc.key)  # its Selected message shows the detail
        else:
            self._detail_proc = proc
            self.show_detail()

    def on_process_tree_sort_by(self, message: ProcessTree.SortBy) -> None:
        if message.column == self.view.sort and not self.view.tree:
            self.view.reverse = not self.view.reverse  # the same title again: the other way
        self._sort_by(message.column)

    def on_input_submitted(self, message: Input.Submitted) -> None:
        text = message.value.strip()
        box = self.widgets["query"]
        if self._prompt_mode == "filter":
            try:
                self.filter_query = Query.parse(text)
            except QueryError as exc:
                self.say(str(exc), severity="error", timeout=6)
                return
        elif self._prompt_mode == "time":
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
        box.remove_class("shown")
        self.tree_pane.focus()
        self.refresh_panes()

    def watch_theme(self, name: str) -> None:
        # Rich's named colours in the rows ("bold green", "bold red") follow the theme's ANSI palette.
        palette = themes.ANSI.get(name)
        self.ansi_theme_dark = palette or self._ansi_defaults[0]
        self.ansi_theme_light = palette or self._ansi_defaults[1]
        # getattr: the first theme is set in __init__, before there is a saved one to compare with.
        if name != getattr(self, "_saved_theme", name):
            self.settings.theme = self._saved_theme = name
            self.save_settings("theme")

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # App keys still reach the app under a dialog: these must not act on the list behind it.
        return not (action in self.LIST_ACTIONS and self.screen is not (self.main_screen or self.screen))

    def on_unmount(self) -> None:
        self.usage.stop()
        self.source.stop()
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            gc.unfreeze()
