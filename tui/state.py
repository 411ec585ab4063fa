"""The monitor's state as its actions (actions.py) use it, declared once:
the app (app.py) sets it up, and the type checker holds the actions to
these declarations. At run time the base is nothing: the app is the App."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App
    from textual.widget import Widget
    from textual.widgets import ContentSwitcher

    from procscope.cache import ProcessCache
    from procscope.export import Exporter
    from procscope.probes.events import ProcessKey
    from procscope.query import Query

    from .columns import Column
    from .config import Config
    from .feed import Feed
    from .panes.process_tree import ProcessTree
    from .rows import TreeModel, ViewOptions
    from .sources import Source
    from .travel import Shown, TimeTravel
    from .usage import UsageFeed

    class MonitorState(App):
        source: Source
        cache: ProcessCache  # the feed's, or a moment's (time travel)
        exporter: Exporter
        feed: Feed
        usage: UsageFeed
        shown: Feed | Shown  # what the streams and the history list: the feed's, or a moment's
        view: ViewOptions
        settings: Config
        tree_model: TreeModel
        tree_pane: ProcessTree
        panel: ContentSwitcher
        widgets: dict[str | None, Widget]
        filter_query: Query
        travel: TimeTravel | None  # while stepping through a replay or the live window
        frozen: bool
        frozen_at: int | None  # the clock when Z froze the view
        following: ProcessKey | None  # the process F follows
        tagged: set  # keys of tagged processes: signals go to them
        wide: bool
        detail_open: bool | None  # None: the default for the size
        panel_open: bool | None
        snapshot_dir: str | None
        config_path: str | os.PathLike | None
        allow_signals: bool
        allow_writes: bool
        chosen_columns: list[str]
        shown_columns: list[Column]
        last_snapshot: str | None
        _badged: bool
        _prompt_mode: str
        _last_search: str
        _detail_shown: tuple | None

        def refresh_panes(self, force: bool = False, tick: bool = False) -> None: ...
        def say(self, message: str, *, title: str = "", severity: str = "information",
                timeout: float | None = None) -> None: ...  # fmt: skip
        def layout_now(self) -> tuple[bool, bool]: ...
        def apply_layout(self) -> None: ...
        def fit_columns(self) -> bool: ...
        def now(self) -> int: ...
else:
    MonitorState = object
