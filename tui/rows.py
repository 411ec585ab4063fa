"""What the panes show, as plain data: rows built from the cache, the
filter and the view options, so the widgets only draw.

At tens of thousands of processes a redraw cannot walk and sort the whole
cache: TreeModel keeps the tree's order between frames, re-sorting only
the children of parents the cache reports changed (``cache.on_change``), and
recomputes the view only when the cache or the view options changed.
(tests/test_ui_rows.py computes the same from scratch, as its oracle.)"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from procscope.cache import ProcessCache
from procscope.containers import Container
from procscope.probes.events import ProcessKey
from procscope.process import BY_PID, Process
from procscope.query import Query

from .columns import COLUMNS, USAGE

GROUPS = ("none", "container", "cgroup")
MAX_GUIDE = 3 * 300  # characters of tree lines kept: wider than any terminal
TRIM_AFTER = 10_000  # changed processes a model not drawn keeps at least (TreeModel.trim)


@dataclass
class ViewOptions:
    tree: bool = True  # by parent (children by pid); else flat, sorted
    sort: str = "PID"  # a column's name (columns.COLUMNS)
    reverse: bool = False
    group: str = "none"  # GROUPS: a header row per container or cgroup, its processes below
    collapsed: set = field(default_factory=set)  # keys (of processes or groups) whose rows are folded


@dataclass(frozen=True, slots=True)
class Row:
    proc: Process
    depth: int
    has_children: bool
    folded: bool
    last: bool = True  # the last of its siblings (tree mode)
    guide: str = ""  # the tree's lines for its ancestors: "│  " or "   " per level below the top

    @property
    def branch(self) -> str:
        """What the tree draws before the command, htop's way: ├─ or └─,
        with + instead of ─ when its subtree is folded."""
        if self.depth == 0:
            return "+ " if self.folded else ""
        return self.guide + ("└" if self.last else "├") + ("+" if self.folded else "─") + " "


@dataclass(eq=False, slots=True)
class Group:
    """A group header row. Its key is a str, so it never names a process."""

    key: str  # "host", "container:<id>" or "cgroup:<path>"
    kind: str  # "host", "container" or "cgroup"
    container: Container | None = None
    cgroup: str = ""
    top: Process | None = None  # its first process in tree order: names the group
    live: int = 0  # live processes in it, filter or not
    shown: int = 0  # its process rows


class Rows(Sequence):
    """The process pane's rows in display order: Row for a process (made
    when asked: there may be tens of thousands) or a Group header."""

    def __init__(self, items: list, depths: list[int], folded: frozenset, cache: ProcessCache, groups: dict,
                 tree: bool = True):  # fmt: skip
        self.items = items  # Process or Group
        self.depths = depths
        self.folded = folded  # keys drawn folded
        self.groups = groups  # key → Group
        self.keys = _Keys(items, lambda k: groups.get(k) if isinstance(k, str) else cache.procs.get(k))
        self.processes = len(items) - len(groups)
        self.tree = tree
        self._guides: TreeGuides | None = None
        # Made when first drawn; the whole tree's are the walk's (TreeModel), made once a walk. Never a
        # closure over self: a cycle would keep a frame's rows (a storm's exited processes) until a
        # garbage collection, which then walks them all (0.1 s stalls with 25,000 of them).
        self.make_guides: Callable[[], TreeGuides] | None = None

    def guides(self) -> TreeGuides | None:
        if self._guides is None and self.tree:
            self._guides = self.make_guides() if self.make_guides is not None else TreeGuides(self.depths)
        return self._guides

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        item = self.items[i]
        if isinstance(item, Group):
            return item
        guides = self.guides()
        if guides is None:
            return Row(item, self.depths[i], bool(item.children), item.key in self.folded)
        return Row(item, self.depths[i], bool(item.children), item.key in self.folded, guides.last[i], guides.guide(i))


class TreeGuides:
    """htop's tree lines for rows in tree order (each after its parent, at
    most one deeper than the row before): whether each row is the last of
    its siblings, from one pass over the rows; the lines drawn for its
    ancestors ("│  " under one that has siblings still to come, else
    spaces) only for the rows drawn, each from its parent's (equal guides
    are one string)."""

    def __init__(self, depths: list[int]):
        n = len(depths)
        self.last = last = [True] * n
        self.up = up = [-1] * n  # the parent's row
        path: list[int] = []  # path[k]: the row at depth k above this one
        for i, d in enumerate(depths):
            if len(path) > d:
                last[path[d]] = False  # this row is a later sibling of it
                del path[d:]
            if path:
                up[i] = path[-1]
            path.append(i)
        self._under: dict[int, str] = {}  # row → the guide of its children

    def guide(self, i: int) -> str:
        p = self.up[i]
        if p < 0:
            return ""
        under, up, last = self._under, self.up, self.last
        chain = []  # not recursion: a chain is as deep as a process makes it
        while p >= 0 and p not in under:
            chain.append(p)
            p = up[p]
        g = under[p] if p >= 0 else None
        for a in reversed(chain):
            if g is None:
                g = ""
            elif len(g) < MAX_GUIDE:  # deeper, it is off screen: a chain as deep as a process makes it costs no more
                g += "   " if last[a] else "│  "
            under[a] = g
        return g or ""


class _Keys(Sequence):
    """The rows' keys for the RowsView, without a list of them; index()
    finds a row by identity (C speed) instead of comparing keys."""

    def __init__(self, items: list, lookup: Callable[[ProcessKey | str], object]):
        self._items, self._lookup = items, lookup

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [item.key for item in self._items[i]]
        return self._items[i].key

    def __contains__(self, key) -> bool:
        try:
            self.index(key)
        except ValueError:
            return False
        return True

    def index(self, key, start: int = 0, stop: int = sys.maxsize) -> int:
        item = self._lookup(key)
        if item is None:
            raise ValueError(key)
        return self._items.index(item, start, stop)


def _sort_key(sort: str, cache: ProcessCache) -> Callable[[Process], tuple]:
    by = COLUMNS.get(sort, COLUMNS["PID"]).sort
    return lambda p: (by(p, cache), p.pid, p.key.ktime)


class _GroupKeys:
    """A process's group key, memoised per cgroup path (interned by the
    cache) and interned itself, so equal keys are the same object."""

    def __init__(self):
        self._memo: dict[tuple[str, str], str] = {}

    def __call__(self, kind: str, p: Process) -> str:
        key = self._memo.get((kind, p.cgroup))
        if key is None:
            if len(self._memo) >= 1 << 16:
                self._memo.clear()
            if kind == "cgroup":
                key = "cgroup:" + p.cgroup
            else:
                key = "container:" + p.container.id if p.container else "host"
            key = self._memo[(kind, p.cgroup)] = sys.intern(key)
        return key


_group_key = _GroupKeys()


def _group_order(g: Group) -> tuple:
    return (g.kind != "host", g.cgroup == "", g.key)  # host first; unknown cgroups last


def view_rows(cache: ProcessCache, procs: list[Process], depths: list[int],
              match: Callable[[Process], bool] | None, opts: ViewOptions) -> Rows:  # fmt: skip
    """Filter, fold, group or sort the tree order (every visible process,
    depth first, each after its parent, with its depth).

    In tree mode a process shows when it or a descendant matches, so a
    filter keeps the path down to what it found; a folded process hides
    its subtree. Grouped, each process goes under its group's header, as
    a tree of the group's processes (a process's parent there is its
    nearest ancestor in the same group); a folded header hides its group."""
    folded = frozenset(opts.collapsed)
    if opts.group == "none":
        if not opts.tree:
            shown = [p for p in procs if match is None or match(p)]
            # By pid (the default, and F5's view): the tree's own order key, in C.
            shown.sort(key=BY_PID if opts.sort == "PID" else _sort_key(opts.sort, cache), reverse=opts.reverse)
            return Rows(shown, [0] * len(shown), frozenset(), cache, {}, tree=False)
        if match is None and not folded:
            return Rows(procs, depths, folded, cache, {})  # the tree as it is: no copy
    n = len(procs)
    gk = [_group_key(opts.group, p) for p in procs] if opts.group != "none" else None
    # up[i]: the row i hangs under (its parent, or nearest ancestor in its group); -1 for none.
    up = [-1] * n
    gdepth = depths
    if opts.tree:
        gdepth = [0] * n
        path: list[int] = []  # the ancestors of row i, by depth
        for i, d in enumerate(depths):
            del path[d:]
            if gk is None:
                j = path[-1] if path else -1
            else:
                k, j = gk[i], -1
                for a in reversed(path):
                    if gk[a] is k:
                        j = a
                        break
            if j >= 0:
                up[i], gdepth[i] = j, gdepth[j] + 1
            path.append(i)
    keep = None
    if match is not None:
        keep = [False] * n
        for i in range(n - 1, -1, -1):  # children come after parents: propagate upwards
            if keep[i] or match(procs[i]):
                keep[i] = True
                if up[i] >= 0:
                    keep[up[i]] = True
    hidden = None
    if opts.tree and folded:
        folders = {cache.procs.get(k) for k in folded if not isinstance(k, str)}  # by identity: no key hashing
        hidden = [False] * n
        for i in range(n):
            j = up[i]
            hidden[i] = j >= 0 and (hidden[j] or procs[j] in folders)
    if gk is None:
        idx = [i for i in range(n) if (keep is None or keep[i]) and (hidden is None or not hidden[i])]
        return Rows([procs[i] for i in idx], [gdepth[i] for i in idx], folded, cache, {})

    groups: dict[str, Group] = {}
    members: dict[str, list[int]] = {}
    for i, p in enumerate(procs):
        k = gk[i]
        g = groups.get(k)
        if g is None:
            kind = k.partition(":")[0]
            g = groups[k] = Group(k, kind, p.container if kind == "container" else None,
                                  p.cgroup if kind == "cgroup" else "", p)  # fmt: skip
            members[k] = []
        g.live += p.alive
        if (keep is None or keep[i]) and (hidden is None or not hidden[i]):
            members[k].append(i)
    items: list = []
    out_depths: list[int] = []
    shown_groups = {}
    sort = _sort_key(opts.sort, cache)
    for g in sorted(groups.values(), key=_group_order):
        idx = members[g.key]
        if not idx:
            continue  # the filter left nothing in it
        g.shown = len(idx)
        shown_groups[g.key] = g
        items.append(g)
        out_depths.append(0)
        if g.key in folded:
            continue
        if opts.tree:
            items.extend(procs[i] for i in idx)
            out_depths.extend(gdepth[i] + 1 for i in idx)
        else:
            items.extend(sorted((procs[i] for i in idx), key=sort, reverse=opts.reverse))
            out_depths.extend([1] * len(idx))
    return Rows(items, out_depths, folded if opts.tree else frozenset(k for k in folded if isinstance(k, str)),
                cache, shown_groups)  # fmt: skip


class TreeModel:
    """The process pane's rows, kept between frames for one cache."""

    def __init__(self, cache: ProcessCache):
        self.cache = cache
        # Processes whose rows changed and parents whose children changed (None: the roots).
        self._changed: set[Process | None] = set()
        cache.watch(self._changed.add)
        self._kids: dict = {}  # parent (None: the roots) → its tree children, by pid
        self._walked = False
        self._order: tuple[list[Process], list[int]] = ([], [])
        self._order_guides: TreeGuides | None = None  # the walk's, made when first drawn
        self._view: tuple | None = None
        self._rows: Rows | None = None

    def close(self) -> None:
        """Stops watching its cache (a view of another replaces it)."""
        self.cache.unwatch(self._changed.add)

    def trim(self) -> None:
        """For a model not drawn (another node's monitor is shown): once more
        processes changed than the cache holds, forget them and the children
        lists (the next rows() walks from scratch) instead of keeping every
        process a storm made meanwhile."""
        if len(self._changed) > max(TRIM_AFTER, len(self.cache.procs)):
            self._changed.clear()
            self._kids.clear()
            self._walked, self._view, self._rows = False, None, None

    def rows(self, query: Query | None, opts: ViewOptions, fresh: bool = True) -> Rows:
        """``fresh`` False: the processes of the last walk, in this view (what
        changed since waits for the next fresh call)."""
        # Sorted by a figure the sampler reads, the order changes with each of its passes.
        figures = self.cache.usage.generation if opts.sort in USAGE and not opts.tree else 0
        view = (query or None, opts.tree, opts.sort, opts.reverse, opts.group, frozenset(opts.collapsed), figures)
        if (self._changed and fresh) or not self._walked:
            self._walked = True
            self._order, self._order_guides = self._walk(), None
        elif view == self._view and self._rows is not None:
            return self._rows
        self._view = view
        # The predicate is built now: pid: terms take the subtree as it is.
        match = query.predicate(self.cache) if query else None
        self._rows = view_rows(self.cache, *self._order, match, opts)
        if self._rows.depths is self._order[1]:  # the whole tree as walked (F5 back to it): its guides once a walk
            self._rows.make_guides = self._walk_guides
        return self._rows

    def _walk_guides(self) -> TreeGuides:
        if self._order_guides is None:
            self._order_guides = TreeGuides(self._order[1])
        return self._order_guides

    def _update_kids(self) -> None:
        """Sort again the children lists of the parents whose children
        changed (the cache reports each such parent, None for the roots);
        the others stay. In a storm most of a busy parent's children change
        within a second: sorting its nearly sorted children (in the order
        they came) costs less than finding each changed child's parent."""
        cache, kids = self.cache, self._kids
        for parent in self._changed:
            if parent not in kids:
                continue
            if parent is None:
                kids[None] = sorted(cache.roots.values(), key=BY_PID)
            elif parent.children and parent.visible and parent.key in cache.procs:
                kids[parent] = sorted(parent.children.values(), key=BY_PID)
            else:
                del kids[parent]
        self._changed.clear()

    def _walk(self) -> tuple[list[Process], list[int]]:
        """cache.walk(), from sorted children lists kept up to date."""
        self._update_kids()
        cache, kids = self.cache, self._kids

        def children(parent: Process | None, members: dict) -> list[Process]:
            out = kids.get(parent)
            if out is None:
                out = kids[parent] = sorted(members.values(), key=BY_PID)
            return out

        procs: list[Process] = []
        depths: list[int] = []
        add, add_depth = procs.append, depths.append
        stack = [iter(children(None, cache.roots))]  # one iterator per level: no per-row tuples
        push, pop = stack.append, stack.pop
        while stack:
            for p in stack[-1]:
                add(p)
                add_depth(len(stack) - 1)
                if p.children:
                    push(iter(children(p, p.children)))
                    break
            else:
                pop()
        return procs, depths


def boot_now() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
