"""What the process cache offers its readers, apart from the events'
path (procscope.cache): lookups and walks of the tree, change
notification (watch/unwatch), and checkpoints (a pickled copy to look at,
for time travel over the live monitor's past)."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Self, cast

from procscope.probes import wire
from procscope.probes.events import ExecEvent, ProcessKey

from .process import BY_PID, ROOT, RUNNING, Process
from .sampler import EMPTY as EMPTY_USAGE
from .sampler import UsageTable

if TYPE_CHECKING:
    from .cgroup_index import CgroupIndex


class CacheViews:
    """The reading half of ProcessCache, which holds the state declared here."""

    procs: dict[ProcessKey, Process]
    by_pid: dict[int, Process]
    roots: dict[ProcessKey, Process]
    cgroup_index: CgroupIndex
    on_change: Callable[[Process | None], None]
    _watchers: list[Callable[[Process | None], None]]
    _cgroup_path: Callable[[int], str | None] | None
    current_parent: Callable[[int], int | None] | None
    usage: UsageTable

    # -- derived inputs --------------------------------------------------------
    def _resolve_cgroup(self, ev: ExecEvent) -> str:
        if self._cgroup_path is not None and ev.cgroup_id:
            path = self._cgroup_path(ev.cgroup_id)
            if path is not None:
                return path
        return ev.cgroup_name  # relative: only the leaf is known

    # -- lookups -------------------------------------------------------------
    def get(self, key: Hashable) -> Process | None:
        """None too for a key that is not a process's (a group header's)."""
        return self.procs.get(cast("ProcessKey", key))

    def __len__(self) -> int:
        return len(self.procs)

    def live(self) -> Iterator[Process]:
        return iter(self.by_pid.values())

    def visible(self) -> Iterator[Process]:
        return (p for p in self.procs.values() if p.visible)

    def parent_of(self, proc: Process) -> Process | None:
        return self.procs.get(proc.parent)

    def exec_chain(self, proc: Process) -> list[Process]:
        """The images this pid ran before, oldest first, ending with ``proc``."""
        chain = [proc]
        while (prev := self.procs.get(chain[-1].previous or ROOT)) is not None and prev not in chain:
            chain.append(prev)
        return chain[::-1]

    def start_times(self, proc: Process) -> set[int]:
        """The start times (boottime rounded down to clock ticks, as
        /proc/PID/stat gives) the process's task may have. An exec's key is
        its exec time, so the start comes from the images before it: one
        found by the /proc scan or cloned is keyed by its start, and the
        first exec seen names the image it replaced (its cleanup key)."""
        chain = self.exec_chain(proc)
        # A placeholder's key came from another event: maybe a start, maybe not.
        times = {p.key.ktime for p in chain if p.image is None or p.image.flags & (wire.FLAG_PROCFS | wire.FLAG_CLONE)}
        first = chain[0].image
        if first is not None and first.cleanup is not None and first.cleanup.pid == proc.pid:
            times.add(first.cleanup.ktime)
        return times

    def ancestry(self, proc: Process) -> list[Process]:
        """Parents by exec identity, nearest first."""
        out: list[Process] = []
        seen = {proc.key}
        while (up := self.procs.get((out[-1] if out else proc).parent)) is not None and up.key not in seen:
            out.append(up)
            seen.add(up.key)
        return out

    def walk(self, roots: Iterable[Process] | None = None) -> Iterator[tuple[int, Process]]:
        """Visible processes depth first by the kernel's parent links, each
        after its parent, ordered by pid: (depth, process)."""
        stack = [(0, p) for p in sorted(self.roots.values() if roots is None else roots, key=BY_PID, reverse=True)]
        while stack:
            depth, proc = stack.pop()
            yield depth, proc
            if proc.children:
                stack.extend((depth + 1, c) for c in sorted(proc.children.values(), key=BY_PID, reverse=True))

    def subtree(self, proc: Process) -> Iterator[Process]:
        return (p for _, p in self.walk([proc]))

    # -- orphans ------------------------------------------------------------------
    def _reaper_for(self, child: Process, dead: Process) -> ProcessKey:
        if self.current_parent is not None and child.state is RUNNING:
            ppid = self.current_parent(child.pid)
            reaper = self.by_pid.get(ppid) if ppid else None
            # The kernel answers for now, the cache is behind: if the pid was
            # reused since, the cache's image of it may be in the orphan's
            # own subtree, and a cycle would drop both from the tree.
            if reaper is not None and not self._within(reaper, child):
                return reaper.key
        # No subreaper known: the init of the dead parent's pid namespace
        # (the kernel's child_reaper; the orphan's own unless it is itself
        # the init of a namespace nested in its parent's).
        known = dead.image if dead.image is not None else child.image
        pidns = known.ns.pid if known is not None else 0
        up, seen = self.procs.get(dead.tree_parent), set()
        while up is not None and up.key not in seen:
            seen.add(up.key)
            img = up.image
            if up.state is RUNNING and img is not None and img.nspid == 1 and img.ns.pid == pidns:
                return up.key
            up = self.procs.get(up.tree_parent)
        init = self.by_pid.get(1)
        return init.key if init is not None and not self._within(init, child) else ROOT

    def _within(self, proc: Process, top: Process) -> bool:
        """Whether ``proc`` is ``top`` or below it by the kernel's parent links."""
        seen = set()
        at: Process | None = proc
        while at is not None and at.key not in seen:
            if at is top:
                return True
            seen.add(at.key)
            at = self.procs.get(at.tree_parent)
        return False

    # -- checkpoints (procscope.window: time travel over the live monitor's past) ----------
    @property
    def cgroup_resolver(self) -> Callable[[int], str | None] | None:
        return self._cgroup_path

    def checkpoint(self) -> bytes:
        return pickle.dumps(self, pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_checkpoint(cls, data: bytes, cgroup_path: Callable[[int], str | None] | None = None) -> Self:
        """The cache as it was; ``cgroup_path`` resolves the cgroup ids of
        the events applied to it after (ids do not change meaning)."""
        cache = pickle.loads(data)  # noqa: S301 - our own bytes, made in this process
        cache._cgroup_path = cgroup_path
        return cache

    def __getstate__(self) -> dict:
        """A copy to look at, not to run: without the hooks into the kernel
        (an orphan's parent now is not its parent then), the runtimes and the
        views, the usage; cgroup paths and container names met so far are kept."""
        state = self.__dict__.copy()
        for hook in ("_cgroup_path", "current_parent", "still_running", "on_change"):
            state[hook] = None
        state["_watchers"] = []
        # The figures of then (the live ones too: the window's usage events after it bring them up
        # to the moment), without the sampler's history, which goes on changing.
        state["usage"] = (
            dataclasses.replace(self.usage, history={}, recorded=True) if self.usage.generation else EMPTY_USAGE
        )
        state["cgroup_index"] = dataclasses.replace(self.cgroup_index, describe=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.on_change = unwatched
        procs = self.procs
        for proc in procs.values():
            if proc.children is not None:  # pickled as keys (Process.__getstate__)
                proc.children = {k: procs[k] for k in proc.children if k in procs}

    # -- watchers ----------------------------------------------------------------
    def watch(self, callback: Callable[[Process | None], None]) -> None:
        """``callback(process)`` for each change from now on (see on_change)."""
        self._watchers.append(callback)
        self._dispatch()

    def unwatch(self, callback: Callable[[Process | None], None]) -> None:
        if callback in self._watchers:
            self._watchers.remove(callback)
        self._dispatch()

    def _dispatch(self) -> None:
        w = tuple(self._watchers)
        if not w:
            self.on_change = unwatched
        elif len(w) == 1:
            self.on_change = w[0]
        else:

            def each(proc: Process | None) -> None:
                for f in w:
                    f(proc)

            self.on_change = each


def unwatched(proc: Process | None) -> None:
    """on_change while nothing watches the cache."""
