"""The process cache: the live model built from collector events.

Pure Python, no UI and no root needed. It follows Tetragon's process cache:
a process image is identified by (pid, ktime) and shown as its exec_id; its
parent is the process that forked its task (a re-exec keeps it, and keeps
the image it replaced as ``previous``); an image stays while it is alive or
named by a cached image (reference counts), and an exited one stays visible
for a grace period. On top of that it keeps the kernel's view for display:
the current parent of each live process, with orphans re-parented as the
kernel does; where processes run is in ``cgroup_index`` (a CgroupIndex).

Lost or reordered events never raise: an event that names an unknown
process creates a placeholder flagged ``not_found`` and counts a miss.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container, Iterable
from typing import ClassVar

import msgspec

from procscope.probes import wire
from procscope.probes.events import (
    CgroupEvent,
    CloneEvent,
    CredsEvent,
    Event,
    ExecEvent,
    ExitEvent,
    ProcessKey,
    ThrottleEvent,
)

from .cache_views import CacheViews, unwatched
from .cgroup_index import CgroupIndex
from .exited_cpu import exited
from .process import EXITED, REPLACED, ROOT, RUNNING, CacheCounters, CredsChange, Lifecycle, Process, Shared
from .sampler import EMPTY as EMPTY_USAGE
from .sampler import UsageEvent, recorded_usage

DEFAULT_GRACE_NS = 5_000_000_000
MAX_CHANGES = 32  # credential changes kept per process (the oldest go first)
ANY_HIERARCHY = -1  # cgroup_hierarchy for event sources that hold one hierarchy's events only (recordings)


class ProcessCache(CacheViews):
    def __init__(
        self,
        grace_ns: int = DEFAULT_GRACE_NS,
        host_ns: dict[str, int] | None = None,
        cgroup_path: Callable[[int], str | None] | None = None,
        current_parent: Callable[[int], int | None] | None = None,
        cgroup_hierarchy: int | None = None,
        still_running: Callable[[ProcessCache, Process], bool] | None = None,
    ):
        """``cgroup_path`` resolves a cgroup id for events that carry none (live BPF events);
        ``current_parent`` asks the kernel for a live pid's parent pid when its parent exits
        (live sources), else the orphan goes to the nearest pid-namespace init, as the kernel
        does without a subreaper. ``cgroup_hierarchy`` is the id of the hierarchy whose paths
        the cache shows (the collector's ``hierarchy_id``): cgroup moves in it are followed;
        None ignores every cgroup event."""
        self.grace_ns = grace_ns
        self.cgroup_hierarchy = cgroup_hierarchy
        self.host_ns = dict(host_ns or {})
        self._cgroup_path = cgroup_path
        self.current_parent = current_parent
        # Live sources: whether a process still runs (a throttled cgroup's exits may be suppressed).
        self.still_running = still_running
        self.procs: dict[ProcessKey, Process] = {}
        self.by_pid: dict[int, Process] = {}  # the live image of each pid
        self.roots: dict[ProcessKey, Process] = {}  # visible processes whose tree parent is not cached
        self.cgroup_index = CgroupIndex()  # cgroups, containers and throttles
        self.cgroups, self.cgroup_tree = self.cgroup_index.cgroups, self.cgroup_index.tree  # the index's, for views
        self.containers, self.throttles = self.cgroup_index.containers, self.cgroup_index.throttles
        self.counters = CacheCounters()
        self.usage = EMPTY_USAGE  # what each process uses, as the sampler last read it (a live cache's)
        self.exit_cpu = False  # exits carry their CPU time: it is summed into their ancestors (exited_cpu)
        # Called with each process whose place or looks changed, and each parent whose children
        # changed (None: the roots): what watch() subscribed (one callable: one call in a storm).
        self.on_change: Callable[[Process | None], None] = unwatched
        self._watchers: list[Callable[[Process | None], None]] = []
        self.now = 0
        self._grace: deque[Process] = deque()  # exited, in exit order
        self._shared = Shared()

    # -- events --------------------------------------------------------------
    def apply_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.apply(ev)

    def rescan(self, events: list[ExecEvent], complete: bool = True) -> None:
        """A second /proc scan (taken once the probes are attached, the first
        having been drawn before): of the processes known from the first
        only, those it lacks exited unseen, and those it finds with another
        image exec'd unseen; the events are then applied as usual. ``complete``
        False: the first scan's deferred part, read later (scan_job), fills in."""
        found = {ev.key: ev for ev in events}
        for proc in list(self.by_pid.values()):
            image = proc.image
            if image is None or not image.flags & wire.FLAG_PROCFS or not (complete or image.ns.mnt == 0):
                continue  # seen by the probes since: they know better
            new = found.get(proc.key)
            if new is None:
                if complete:
                    self._end(proc, self.now)
            elif (new.binary, new.args, new.creds, new.ns) != (image.binary, image.args, image.creds, image.ns):
                proc.image = self._shared.event(new)
                self.on_change(proc)

    def end_missing(self, among: Iterable[ProcessKey], alive: Container[ProcessKey]) -> None:
        """Those ``among`` not ``alive`` ended unseen (another machine's, while disconnected)."""
        for key in among:
            if key not in alive and (proc := self.procs.get(key)) is not None:
                self._end(proc, self.now)

    def apply(self, ev: Event | UsageEvent) -> Process | None:
        """Record one event; return the process it concerns."""
        if ev.time > self.now:
            self.now = ev.time
        handler = self._BY_TYPE.get(type(ev))  # one lookup, not a chain of isinstance, per event
        return handler(self, ev) if handler is not None else None

    def _exec(self, ev: ExecEvent) -> Process:
        ev = self._shared.event(ev)
        prev = self.procs.get(ev.cleanup) if ev.cleanup is not None and ev.cleanup != ev.key else None
        if prev is not None and prev.pid != ev.key.pid:
            prev = None
        proc = self.procs.get(ev.key)
        if proc is not None and proc.image is not None:
            if ev.time > proc.image.time and not ev.flags & wire.FLAG_PROCFS:
                # A newer exec under the same key: the BPF side's state map was full, so the key
                # fell back to the start time (counted there as exec_map_full). Same process, new image.
                proc.image = ev
                self._set_cgroup(proc, ev.cgroup_path or self._resolve_cgroup(ev))
                self._set_cgroup_ids(proc, ev.cgroup_id, ev.cgroup_name)
            return proc  # else seen already (the /proc scan raced the probes)
        if proc is None:
            proc = self._create(ev.key, ev, ev.parent)
        else:
            self._fill(proc, ev, ev.parent)
        if prev is not None:
            self._link_previous(proc, prev)
        self._place_ended(proc, ev.parent, ev.cgroup_path or self._resolve_cgroup(ev))
        self._set_cgroup_ids(proc, ev.cgroup_id, ev.cgroup_name)
        if prev is not None:
            # The new image takes the old one's place: all its children (live, or exited and shown) are the same task's.
            if prev.children:
                for child in list(prev.children.values()):
                    self._set_tree_parent(child, proc.key)
            self._end(prev, ev.time, REPLACED)
        return proc

    def _clone(self, ev: CloneEvent) -> Process:
        proc = self.procs.get(ev.key)
        if proc is not None and proc.image is not None:
            return proc  # the /proc scan already found it
        parent = self._find(ev.parent)
        image = None
        if parent is not None and parent.image is not None:
            # A clone runs its parent's image until it execs.
            image = msgspec.structs.replace(
                parent.image, time=ev.time, key=ev.key, tid=ev.tid, nspid=ev.nspid,
                flags=ev.flags | wire.FLAG_CLONE, privileges=0, parent=ev.parent, cleanup=None,
            )  # fmt: skip
        if proc is None:
            proc = self._create(ev.key, image, ev.parent)
        else:
            self._fill(proc, image, ev.parent)
        self._place_ended(proc, ev.parent, parent.cgroup if parent is not None else "")
        if parent is not None:
            self._set_cgroup_ids(proc, parent.cgroup_id, parent.cgroup_name)
        return proc

    def _exited(self, ev: ExitEvent) -> Process:
        proc = self.procs.get(ev.key)
        if proc is None:
            self.counters.misses += 1
            proc = self._create(ev.key, None, ROOT)
            proc.not_found = True
            self._place(proc, ROOT, "")
        if proc.state is RUNNING:
            if ev.time < ev.key.ktime:  # only a recording can say so: kept, and counted
                self.counters.exit_before_start += 1
            proc.exit = ev
            if ev.cpu_ns:
                exited(self, proc, ev.cpu_ns)
            self._end(proc, ev.time)
        return proc

    def _creds(self, ev: CredsEvent) -> Process | None:
        """Credentials or namespaces changed after exec: the image takes them,
        the change is kept (with the bounding and ambient sets, which the
        exec's layout lacks). None when nothing differs (a process exec'd
        before the probes attached sends its first call whatever it did)."""
        proc = self.procs.get(ev.key)
        if proc is None or proc.image is None:
            if ev.old_sets is not None:  # else first seen: from before the probes, and not scanned
                self.counters.misses += 1  # its exec or clone was lost: nothing to change
            return None
        img = proc.image
        # What the cache knows, else what the kernel side last sent: the sampler
        # may have told the change (creds_watch) before the kernel side tells it again.
        old_sets = proc.cap_sets or ev.old_sets
        if ev.sets is not None:
            proc.cap_sets = ev.sets
        if img.creds == ev.creds and img.ns == ev.ns and (old_sets is None or old_sets == ev.sets):
            return None
        change = CredsChange(ev.time, ev.syscall, img.creds, img.ns, ev.creds, ev.ns, old_sets, ev.sets)
        proc.image = msgspec.structs.replace(img, creds=ev.creds, ns=ev.ns, uid=ev.creds.euid)
        if proc.changes is None:
            proc.changes = []
        elif len(proc.changes) >= MAX_CHANGES:
            del proc.changes[0]
        proc.changes.append(change)
        self.on_change(proc)
        return proc

    def _cgroup_event(self, ev: CgroupEvent) -> Process | None:
        """Cgroups of the tracked hierarchy: made and removed ones change the
        cgroup tree; a live process moved to another cgroup (ATTACH_TASK of
        its thread group or its leader) moves in it and may change container."""
        if self.cgroup_hierarchy is None or self.cgroup_hierarchy not in (ev.hierarchy_id, ANY_HIERARCHY):
            return None
        if ev.op == wire.CGROUP_MKDIR:
            self.cgroup_index.add(ev.path)
        elif ev.op == wire.CGROUP_RMDIR:
            self.cgroup_index.remove(ev.path)
        elif ev.op == wire.CGROUP_ATTACH_TASK and not ev.flags & wire.CGROUP_FLAG_THREAD_ONLY:
            proc = self.by_pid.get(ev.pid)
            if proc is not None and proc.cgroup != ev.path:
                self._set_cgroup(proc, ev.path)
                self._set_cgroup_ids(proc, ev.cgroup_id, ev.name)
            return proc
        return None

    def _throttle(self, ev: ThrottleEvent) -> None:
        path = ev.path or (self._cgroup_path(ev.cgroup_id) if self._cgroup_path is not None else None) or ev.name
        t = self.cgroup_index.throttle_of(ev.cgroup_id, ev.name, path, ev.time)
        if ev.type == wire.THROTTLE_START:
            t.active, t.since = True, ev.time
        elif ev.type == wire.THROTTLE_STOP:
            t.stopped(ev.suppressed)
            if self.still_running is not None:
                # Exits suppressed while throttled would leave ghosts in the tree.
                for proc in list(self.cgroups.get(t.path, {}).values()):
                    if not self.still_running(self, proc):
                        self.counters.lost_exits += 1
                        self._end(proc, ev.time)

    _BY_TYPE: ClassVar[dict[type, Callable]] = {
        ExecEvent: _exec, CloneEvent: _clone, ExitEvent: _exited, CredsEvent: _creds, CgroupEvent: _cgroup_event,
        ThrottleEvent: _throttle, UsageEvent: recorded_usage,
    }  # fmt: skip

    # -- bookkeeping ---------------------------------------------------------
    def _find(self, key: ProcessKey) -> Process | None:
        """A parent named by an event; unknown → a placeholder and a miss."""
        if key.pid == 0:
            return None
        proc = self.procs.get(key)
        if proc is None:
            self.counters.misses += 1
            proc = self._create(key, None, ROOT)
            proc.not_found = True
            self._place_ended(proc, ROOT, "")
        return proc

    def _create(self, key: ProcessKey, image: ExecEvent | None, parent: ProcessKey) -> Process:
        proc = Process(key, image, self.now)
        self.procs[key] = proc
        proc.parent = parent  # new: no old parent to release
        if parent != key and (up := self._find(parent)) is not None:
            up.refs += 1
        return proc

    def _fill(self, proc: Process, image: ExecEvent | None, parent: ProcessKey) -> None:
        """An event describes a placeholder made by an earlier event."""
        self.counters.late += 1
        proc.image = image
        proc.not_found = image is None
        self._link_parent(proc, parent)

    def _link_previous(self, proc: Process, prev: Process) -> None:
        """Keep the image an exec replaced while the new one is cached: the
        exec chain (and the task's start time) is read through it."""
        if proc.previous == prev.key:
            return
        old = self.procs.get(proc.previous) if proc.previous is not None else None
        proc.previous = prev.key
        prev.refs += 1
        if old is not None:
            self._unref(old)

    def _set_cgroup_ids(self, proc: Process, cgroup_id: int, name: str) -> None:
        proc.cgroup_id = cgroup_id
        proc.cgroup_name = self._shared.one(name)

    def _link_parent(self, proc: Process, parent_key: ProcessKey) -> None:
        """Take a reference on the exec-identity parent."""
        if proc.parent == parent_key:
            return
        old = self.procs.get(proc.parent)
        proc.parent = parent_key
        if old is not None:
            self._unref(old)
        if parent_key != proc.key:
            parent = self._find(parent_key)
            if parent is not None:
                parent.refs += 1

    def _place(self, proc: Process, tree_parent: ProcessKey, cgroup: str) -> bool:
        """Make a (now described) process visible: pid index, tree, cgroup.
        Returns False when a newer image already holds the pid: ``proc``
        has ended (the caller ends it), so it stays out of the pid index."""
        current = True
        if proc.state is RUNNING:
            old = self.by_pid.get(proc.pid)
            cleanup = proc.image.cleanup if proc.image is not None else None
            if old is not None and old is not proc and old.key.ktime > proc.key.ktime:
                current = False  # a late event for an earlier image of this pid
            elif old is not None and old is not proc and old.key != cleanup:
                # The pid was reused: the old process's exit was lost.
                self.counters.lost_exits += 1
                self._end(old, self.now)
            if current:
                self.by_pid[proc.pid] = proc
        self._set_tree_parent(proc, tree_parent)
        self._set_cgroup(proc, cgroup)
        return current

    def _place_ended(self, proc: Process, tree_parent: ProcessKey, cgroup: str) -> None:
        """_place for an exec or clone (or a placeholder parent): an image
        older than its pid's live one has ended, its exit lost."""
        if not self._place(proc, tree_parent, cgroup):
            self.counters.lost_exits += 1
            self._end(proc, self.now)

    def _set_tree_parent(self, proc: Process, tree_parent: ProcessKey) -> None:
        self._untree(proc)
        parent = self.procs.get(tree_parent)
        if parent is not None and parent.replaced:
            # A late event names an image its task has exec'd away from: the parent is that task, now its newest image.
            newest = self.by_pid.get(parent.pid)
            if newest is not None and parent in self.exec_chain(newest):
                parent, tree_parent = newest, newest.key
        proc.tree_parent = tree_parent
        if not (proc.state is RUNNING or proc.in_grace):  # not shown: in no tree
            return
        if parent is not None and parent is not proc and proc.children and self._within(parent, proc):
            # The parent is below it: an orphan was given to this pid's image (the kernel's answer
            # for now, ahead of the cache) before this one was known. That link goes, not this one.
            below = parent
            while below.tree_parent != proc.key:
                below = self.procs[below.tree_parent]
            init = self.by_pid.get(1)
            self._set_tree_parent(below, init.key if init is not None and not self._within(init, below) else ROOT)
        if parent is not None and parent is not proc and (parent.state is RUNNING or parent.in_grace):
            if parent.children is None:
                parent.children = {}
            parent.children[proc.key] = proc
            self.on_change(parent)
        else:
            self.roots[proc.key] = proc
            self.on_change(None)

    def _untree(self, proc: Process) -> None:
        self.on_change(proc)  # every tree move and removal comes through here
        if self.roots.pop(proc.key, None) is not None:
            self.on_change(None)
        up = self.procs.get(proc.tree_parent)
        if up is not None and up.children and up.children.pop(proc.key, None) is not None:
            self.on_change(up)
            if not up.children:
                up.children = None

    def _set_cgroup(self, proc: Process, path: str) -> None:
        self.on_change(proc)  # its container and cgroup group
        self.cgroup_index.join(proc, self._shared.one(path), self.now)

    def _end(self, proc: Process, when: int, state: Lifecycle = EXITED) -> None:
        """The image stops running: it exited, or exec'd another (REPLACED)."""
        if proc.state is not RUNNING:
            return
        proc.state = state
        self.on_change(proc)  # drawn dimmed
        proc.exit_time = when
        if self.by_pid.get(proc.pid) is proc:
            del self.by_pid[proc.pid]
        self.cgroup_index.leave(proc)
        if proc.replaced:
            self._untree(proc)
        else:
            proc.in_grace = True
            self._grace.append(proc)
            # Orphans go to a reaper, as in the kernel; the exited stay shown under who made them.
            for child in list(proc.children.values()) if proc.children else ():
                if child.state is RUNNING:
                    self._set_tree_parent(child, self._reaper_for(child, proc))
        self._unref(proc)

    def _unref(self, proc: Process) -> None:
        """Drop one reference; remove the images nobody needs any more."""
        proc.refs -= 1
        if proc.refs > 0 or proc.state is RUNNING or proc.in_grace:
            return  # most calls: still needed
        pending = [proc]  # not recursion: a chain of parents may be as long as a process makes it
        while pending:
            proc = pending.pop()
            if proc.key not in self.procs:
                continue
            for named in self._remove(proc):
                named.refs -= 1
                if named.refs <= 0 and named.state is not RUNNING and not named.in_grace:
                    pending.append(named)

    def _remove(self, proc: Process) -> list[Process]:
        """Forget an image; returns the images it named (its parent and the
        image it replaced), which each lose a reference."""
        del self.procs[proc.key]
        self.counters.evicted += 1
        self._untree(proc)
        if proc.children:
            for child in list(proc.children.values()):
                self._set_tree_parent(child, child.tree_parent)  # its tree parent is gone: a root now
        named = [self.procs.get(proc.parent) if proc.parent != proc.key else None]
        if proc.previous is not None:
            named.append(self.procs.get(proc.previous))
        return [p for p in named if p is not None]

    def expire(self, now: int | None = None) -> int:
        """Exited images whose grace period is over leave the tree, and the
        cache unless descendants still need them. Returns how many left."""
        if now is not None and now > self.now:
            self.now = now
        gone = 0
        while self._grace and self._grace[0].exit_time + self.grace_ns <= self.now:
            proc = self._grace.popleft()
            proc.in_grace = False
            gone += 1
            self._untree(proc)
            if proc.children:
                for child in list(proc.children.values()):
                    self._set_tree_parent(child, child.tree_parent)
            if proc.refs <= 0 and proc.key in self.procs:
                proc.refs += 1
                self._unref(proc)
        return gone
