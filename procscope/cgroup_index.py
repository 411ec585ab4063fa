"""Where processes run: the tracked hierarchy's cgroup tree, the live
processes of each cgroup and container, and the cgroups the rate limit
throttled. Kept by the process cache, which places processes here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from procscope.probes.events import ProcessKey
from procscope.probes.throttle import added

from .containers import Container, container_of
from .process import RUNNING, Process
from .runtimes import ContainerInfo

# Parsed cgroup paths kept (their containers) before the memo starts again:
# transient cgroups must not grow it for ever.
MEMO_LIMIT = 1 << 16


@dataclass
class ContainerEntry:
    container: Container
    first_seen: int  # event time
    processes: int = 0  # live processes in it


@dataclass
class Throttle:
    """A cgroup the rate limit throttled (now, or earlier in the session)."""

    cgroup_id: int
    name: str
    path: str  # from the hierarchy's root; the bare name when unknown
    container: Container | None
    active: bool
    since: int  # event time of the last START
    suppressed: tuple[int, ...] = (0, 0, 0)  # all STOPs' counts, per op (wire.RATE_OPS)
    episodes: int = 0

    def stopped(self, suppressed: tuple[int, ...]) -> None:
        self.active = False
        self.episodes += 1
        self.suppressed = added(self.suppressed, suppressed)


@dataclass
class CgroupIndex:
    cgroups: dict[str, dict[ProcessKey, Process]] = field(default_factory=dict)  # path → live processes
    # The tracked hierarchy's cgroup tree: path → child cgroup paths, for
    # every cgroup made while we watch or holding a process.
    tree: dict[str, set[str]] = field(default_factory=dict)
    containers: dict[str, ContainerEntry] = field(default_factory=dict)  # id → live processes in it
    throttles: dict[int, Throttle] = field(default_factory=dict)  # cgroup id → throttle state
    _containers_of: dict[str, Container | None] = field(default_factory=dict)
    # What the runtimes say about each container (live: procscope.runtimes; a replay: the
    # recording), kept after its processes end: exits and recordings still name it.
    describe: Callable[[Container], ContainerInfo | None] | None = None
    info: dict[str, ContainerInfo] = field(default_factory=dict)

    def info_of(self, c: Container | None) -> ContainerInfo | None:
        if c is None:
            return None
        found = self.info.get(c.id)
        if found is None and self.describe is not None and (found := self.describe(c)) is not None:
            if len(self.info) >= MEMO_LIMIT:
                self.info.clear()
            self.info[c.id] = found
        return found

    def add(self, path: str) -> None:
        """Add a cgroup and the ancestors it implies (paths are absolute)."""
        while path not in self.tree:
            self.tree[path] = set()
            if path == "/":
                return
            parent = path.rsplit("/", 1)[0] or "/"
            self.tree.setdefault(parent, set()).add(path)
            path = parent

    def remove(self, path: str) -> None:
        if path == "/" or self.tree.pop(path, None) is None:
            return
        parent = path.rsplit("/", 1)[0] or "/"
        siblings = self.tree.get(parent)
        if siblings is not None:
            siblings.discard(path)

    def container_of(self, path: str) -> Container | None:
        """Memoised per path: paths are interned, few and shared."""
        try:
            return self._containers_of[path]
        except KeyError:
            if len(self._containers_of) >= MEMO_LIMIT:
                self._containers_of.clear()
            found = self._containers_of[path] = container_of(path)
            return found

    def join(self, proc: Process, path: str, now: int) -> None:
        """Place a process in a cgroup (its container follows); a live one is counted there."""
        self.leave(proc)
        proc.cgroup = path
        proc.container = self.container_of(path)
        if proc.state is RUNNING and path:
            if path not in self.cgroups and path.startswith("/"):
                self.add(path)
            self.cgroups.setdefault(path, {})[proc.key] = proc
            c = proc.container
            if c is not None:
                entry = self.containers.get(c.id)
                if entry is None:
                    entry = self.containers[c.id] = ContainerEntry(c, now)
                    self.info_of(c)  # described once, as it appears
                entry.processes += 1

    def leave(self, proc: Process) -> None:
        """No longer counted where it runs (it ended, or moves)."""
        members = self.cgroups.get(proc.cgroup)
        if members is None or members.pop(proc.key, None) is None:
            return
        if not members:
            del self.cgroups[proc.cgroup]
        c = proc.container
        if c is not None and (entry := self.containers.get(c.id)) is not None:
            entry.processes -= 1
            if entry.processes <= 0:
                del self.containers[c.id]

    def throttle_of(self, cgroup_id: int, name: str, path: str, since: int) -> Throttle:
        t = self.throttles.get(cgroup_id)
        if t is None:
            t = self.throttles[cgroup_id] = Throttle(cgroup_id, name, path, container_of(path), False, since)
        return t

    def container_cgroups(self) -> dict[str, str]:
        """Each container's cgroup: the outermost of those its live processes are in."""
        out: dict[str, str] = {}
        for path in self.cgroups:
            c = self.container_of(path)
            if c is not None and (c.id not in out or len(path) < len(out[c.id])):
                out[c.id] = path
        return out

    def throttled_containers(self) -> set[str]:
        """Ids of the containers one of whose cgroups is throttled now."""
        return {t.container.id for t in self.throttles.values() if t.active and t.container is not None}
