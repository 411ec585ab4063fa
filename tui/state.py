"""The monitor's state, declared and set up in one place: what the view
shows (view, filter, travel, frozen, following, tags, layout choices) and
where its data comes from (source, cache, feed, usage). The actions
(tui.actions) change it; the monitor (tui.monitor) draws from it."""

from __future__ import annotations

import os
from collections import deque
from typing import TYPE_CHECKING

from textual.notifications import SeverityLevel
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Input

from procscope.export import Exporter
from procscope.probes.events import ProcessKey
from procscope.probes.text import printable
from procscope.process import Process
from procscope.query import Query
from procscope.safe_write import OutputError
from procscope.window import Window

from . import config
from .columns import DEFAULT, USAGE, Column, fit
from .feed import Feed
from .frame import Frame, Gauges, Selection
from .rows import TreeModel, ViewOptions
from .sources import Source
from .travel import Shown, TimeTravel
from .usage import UsageFeed

if TYPE_CHECKING:
    from .panes.detail import Detail
    from .panes.process_tree import ProcessTree

WIDE = 140  # from this many columns the detail goes beside the list
TALL = 40  # from this many rows the bottom panel is open by default
SHORT = 16  # under this many rows the list goes without its border (-short): two more processes


class MonitorState(Screen):
    # What the panes render themselves from (tui.frame): set by the monitor, watched by them.
    frame: var[Frame | None] = var(None, always_update=True)
    selection: var[Selection | None] = var(None)
    gauges: var[Gauges | None] = var(None)
    # The parts it keeps (found at mount): the actions move their cursor, scroll or focus them.
    tree_pane: ProcessTree
    detail: Detail
    panel: ContentSwitcher
    prompt: Input

    def __init__(self, source: Source, settings: config.Config, *, query_text: str = "",
                 snapshot_dir: str | None = None, config_path: str | os.PathLike | None = None,
                 allow_signals: bool = True, allow_writes: bool = True, window: Window | None = None,
                 usage_interval: float = 1.0, sort: str | None = None, nodes: list[Source] | None = None) -> None:  # fmt: skip
        """See ProcscopeApp; ``nodes``: every node's source, when there are several (this one's included)."""
        super().__init__()
        self.source = source
        self.nodes = nodes or [source]
        self.settings = settings
        self.config_path = config_path
        self.snapshot_dir = snapshot_dir
        self.allow_signals = allow_signals
        self.allow_writes = allow_writes
        self.cache = source.cache  # the feed's, or a moment's (time travel)
        self.exporter = Exporter(self.cache)
        self.feed = Feed(source, self.exporter, window)
        self.usage = UsageFeed(source.live and usage_interval > 0, usage_interval, self.feed.keep_usage)
        self.shown: Feed | Shown = self.feed  # what the streams and the history list: the feed's, or a moment's
        self.filter_query = Query.parse(query_text) if query_text else Query()
        self.view = ViewOptions() if sort is None else ViewOptions(tree=False, sort=sort, reverse=sort in USAGE)
        self.tree_model = TreeModel(self.cache)
        self.chosen_columns: list[str] = list(settings.columns or DEFAULT)
        self.shown_columns: list[Column] = fit(self.chosen_columns, 200)
        self.travel: TimeTravel | None = None  # while stepping through a replay or the live window
        self.frozen = False
        self.frozen_at: int | None = None  # the clock when Z froze the view
        self.following: ProcessKey | None = None  # the process F follows
        self.tagged: set[ProcessKey] = set()  # signals go to them
        self.wide = False
        self.detail_open: bool | None = None  # None: the default for the size
        self.panel_open: bool | None = None
        self.detail_proc: Process | None = None  # picked in a stream but not in the list: its detail shows anyway
        self.badged = False  # a process on screen had a badge: the column shows from then on
        self.prompt_mode = "filter"
        self.last_search = ""
        self.last_snapshot: str | None = None  # the path W wrote last
        # When to redraw (tui.monitor's tick): as htop, at most every second in a storm.
        self.drawn = 0.0  # monotonic time of the last redraw with the events that had arrived
        self.busy = False  # a storm: keys redraw what the last frame had
        self.recent: deque[int] = deque(maxlen=10)  # events per tick, the last second's
        self.pending = False  # events arrived and are not drawn yet
        self.waited = False  # the last tick let a key go first (see tick)
        self.banner = source.banner  # the one shown (the source's may change: the probes failed)

    # -- what the actions rely on ------------------------------------------------------
    def redraw(self, force: bool = False, tick: bool = False) -> None:
        """A new frame from the state (tui.monitor); ``force``: even while frozen."""
        raise NotImplementedError

    def apply_layout(self) -> None:
        raise NotImplementedError

    def fit_columns(self) -> bool:
        raise NotImplementedError

    def show_gauges(self) -> None:
        shown = bool(self.settings.header and self.usage.header(self.cache))
        self.gauges = Gauges(self.usage.machine(self.cache), self.feed.exec_rates, self.feed.lost_rates, shown)

    def layout_now(self) -> tuple[bool, bool]:
        """(detail shown, bottom panel shown): the user's choice, else the size's default."""
        width, height = self.app.size
        detail = self.detail_open if self.detail_open is not None else width >= WIDE
        panel = self.panel_open if self.panel_open is not None else height >= TALL
        return detail, panel

    @property
    def travelling_live(self) -> bool:
        """Showing a moment of the live window: the view stands still, events arrive behind it."""
        return self.travel is not None and self.travel.live and self.travel.at is not None

    def now(self) -> int:
        """The clock ages are shown by: the machine's, a replay's, or the moment travelled to."""
        return self.cache.now if self.travel is not None and self.travel.at is not None else self.feed.now()

    def say(
        self, message: str, *, title: str = "", severity: SeverityLevel = "information", timeout: float | None = None
    ) -> None:
        """A notification: its text may name processes, so it is never markup."""
        self.notify(printable(message), title=title, severity=severity, timeout=timeout, markup=False)

    def save_settings(self, what: str) -> None:
        if self.config_path is None or not self.allow_writes:
            return
        try:
            config.save(self.config_path, self.settings)
        except (OSError, OutputError) as exc:
            self.say(f"cannot save the {what} to {self.config_path}: {exc}", severity="warning")
