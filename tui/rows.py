"""What the panes show, as plain data: rows built from the cache, the
filter and the view options. Pure functions, so the widgets only draw."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from procscope import derive
from procscope.cache import Process, ProcessCache

SORTS = ("pid", "user", "binary", "age")


@dataclass
class ViewOptions:
    tree: bool = True  # by parent; else flat, sorted
    sort: str = "pid"
    collapsed: set = field(default_factory=set)  # keys whose subtrees are folded


@dataclass(frozen=True, slots=True)
class Row:
    proc: Process
    depth: int
    has_children: bool
    folded: bool


def _sort_key(sort: str) -> Callable[[Process], tuple]:
    if sort == "user":
        return lambda p: (derive.user(p), p.pid)
    if sort == "binary":
        return lambda p: (p.binary, p.pid)
    if sort == "age":
        return lambda p: (p.key.ktime, p.pid)
    return lambda p: (p.pid, p.key.ktime)


def process_rows(cache: ProcessCache, match: Callable[[Process], bool] | None, opts: ViewOptions) -> list[Row]:
    """The process pane's rows. In tree mode a process shows when it or a
    descendant matches, so a filter keeps the path down to what it found."""
    if not opts.tree:
        procs = [p for p in cache.visible() if match is None or match(p)]
        procs.sort(key=_sort_key(opts.sort))
        return [Row(p, 0, False, False) for p in procs]
    order = list(cache.walk())
    keep: set | None = None
    if match is not None:
        keep = set()
        for _, p in reversed(order):  # children come after parents: propagate upwards
            if match(p) or (p.children and any(c.key in keep for c in p.children.values())):
                keep.add(p.key)
    rows: list[Row] = []
    skip_below: int | None = None
    for depth, p in order:
        if skip_below is not None:
            if depth > skip_below:
                continue
            skip_below = None
        if keep is not None and p.key not in keep:
            continue
        folded = p.key in opts.collapsed
        rows.append(Row(p, depth, bool(p.children), folded))
        if folded:
            skip_below = depth
    return rows


def age_text(ns: int) -> str:
    s = ns // 1_000_000_000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def boot_now() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
