"""What the monitor shows, made once per redraw (tui.monitor) and read by
every pane: each pane watches the monitor's ``frame`` (and the detail its
``selection``, the meters its ``gauges``) and renders itself from it. One
assignment a tick, so the panes are drawn from one consistent state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text

from procscope.cache import ProcessCache
from procscope.export import Exporter
from procscope.probes.counters import Counters
from procscope.process import Process
from procscope.query import Query
from procscope.sampler import Machine

from .columns import Column, Context
from .feed import Feed
from .rows import Group, Rows
from .travel import Shown

StatusParts = list[tuple[int, str | tuple[str, ...]]]  # (rank, text or its forms, longest first): tui.status


@dataclass(frozen=True, slots=True)
class Status:
    parts: StatusParts
    losing: bool
    throttled: bool


@dataclass(frozen=True, slots=True)
class Frame:
    cache: ProcessCache  # the feed's, or a moment's (time travel)
    exporter: Exporter  # its clock and its Tetragon words
    now: int  # the clock ages are shown by
    status: Status
    # None: the list stands still (frozen, or a moment of the live window): only the status is new.
    rows: Rows | None = None
    ctx: Context | None = None
    columns: tuple[Column, ...] = ()
    header: Text | None = None
    tagged: frozenset = frozenset()
    filter: Query | None = None
    match: Callable[[Process], bool] | None = None  # the filter's, for the streams
    shown: Feed | Shown | None = None  # the streams' and the history's: the feed's, or a moment's
    panel: str | None = None  # the bottom panel shown (None: closed): only its stream is drawn (the history: 20,000)
    counters: Counters | None = None
    rates: dict[str, float] | None = None
    received: int = 0


@dataclass(frozen=True, slots=True)
class Selection:
    """What the detail shows: a process, a group's header row, or nothing; ``open``: the detail is shown."""

    cache: ProcessCache
    exporter: Exporter
    now: int
    proc: Process | None
    group: Group | None
    open: bool


@dataclass(frozen=True, slots=True)
class Gauges:
    """The header's figures: the machine's (None: not read), the rates' last minutes."""

    machine: Machine | None
    execs: Sequence[float]
    lost: Sequence[float]
    shown: bool
