"""A process image as the cache keeps it, and the cache's own loss counts."""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass
from operator import attrgetter

import msgspec

from procscope.probes.events import CapSets, Credentials, ExecEvent, ExitEvent, Namespaces, ProcessKey

from .containers import Container

ROOT = ProcessKey(0, 0)


@dataclass(frozen=True, slots=True)
class CredsChange:
    """A syscall changed a process's credentials or namespaces after its exec."""

    time: int
    syscall: str
    old_creds: Credentials
    old_ns: Namespaces
    creds: Credentials
    ns: Namespaces
    old_sets: CapSets | None = None  # the bounding and ambient sets, when known
    sets: CapSets | None = None

    @property
    def rose(self) -> bool:
        """Privileges went up: euid to 0, effective or ambient capabilities gained, or a namespace joined."""
        gained = self.creds.caps.effective & ~self.old_creds.caps.effective
        if self.sets is not None and self.old_sets is not None:
            gained |= self.sets.ambient & ~self.old_sets.ambient
        return (self.creds.euid == 0 != self.old_creds.euid) or bool(gained) or self.ns != self.old_ns


class Lifecycle(enum.Enum):
    """Where an image is in its life (Process.state; a placeholder is one
    no event described yet, whatever its state). ``value``: the word a
    snapshot writes (and a replay reads); ``shown``: the monitor's word."""

    PLACEHOLDER = "placeholder"  # named by an event, never described (its exec or clone was lost)
    RUNNING = "running"
    REPLACED = "replaced"  # it exec'd a new image: not an exit, not shown in the tree
    EXITED = "exited"

    @property
    def shown(self) -> str:
        return _SHOWN[self]


# As names of the module: an enum member read through its class costs 40 ns, and the storm's
# path asks `state is RUNNING` several times a process (through a property, 15% of the cache's time).
RUNNING, REPLACED, EXITED = Lifecycle.RUNNING, Lifecycle.REPLACED, Lifecycle.EXITED
_SHOWN = {
    Lifecycle.PLACEHOLDER: "lost",
    Lifecycle.RUNNING: "alive",  # not "running": htop's word for the state R
    Lifecycle.REPLACED: "exec'd",
    Lifecycle.EXITED: "exited",
}


class Process:
    """One process image. ``image`` is None only for a placeholder that no
    event has described yet."""

    __slots__ = (
        "key", "pid", "order", "image", "parent", "previous", "tree_parent", "children", "refs", "state", "in_grace",
        "exit", "exit_time", "not_found", "cgroup", "cgroup_id", "cgroup_name", "container", "seen", "changes",
        "cap_sets", "cpu_ns", "exited_cpu_ns", "exited_cpu_base",
    )  # fmt: skip

    def __init__(self, key: ProcessKey, image: ExecEvent | None, seen: int):
        self.key = key
        self.pid = key.pid  # a slot, not a property: read several times per event
        self.order = (key.pid, key.ktime)  # BY_PID's key, made once: sorts compare it, in C
        self.image = image
        # Exec identity, as Tetragon's: the process that cloned or exec'd this
        # image's task, as it was then (its parent_exec_id).
        self.parent = ROOT
        self.previous: ProcessKey | None = None  # the image of the same pid this exec replaced
        self.tree_parent = ROOT  # key of the kernel's current parent (re-parented when orphaned), for the tree
        self.children: dict[ProcessKey, Process] | None = None  # tree children: live, or exited in grace
        # 1 while alive, +1 per cached image naming this one as parent or previous
        self.refs = 1
        self.state = RUNNING  # the cache's _end makes it REPLACED or EXITED
        self.in_grace = False  # exited, still shown
        self.exit: ExitEvent | None = None  # None when the exit itself was lost
        self.exit_time = 0
        self.not_found = False
        self.cgroup = ""  # path in the tracked hierarchy (where it is now: cgroup moves follow)
        self.cgroup_id = 0
        self.cgroup_name = ""
        self.container: Container | None = None
        self.seen = seen  # event time this image was first seen
        self.changes: list[CredsChange] | None = None  # credentials or namespaces changed since the exec, oldest first
        self.cap_sets: CapSets | None = None  # bounding and ambient, once a change after the exec told them
        self.cpu_ns: int | None = None  # its threads' CPU time at its exit, once exited (procscope.exited_cpu)
        self.exited_cpu_ns = 0  # its exited descendants' CPU, while this image was their ancestor
        self.exited_cpu_base: int | None = None  # found at start: its exited children's before (exited_cpu.baselines)

    @property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle.PLACEHOLDER if self.image is None else self.state

    @property
    def alive(self) -> bool:
        return self.state is RUNNING

    @property
    def replaced(self) -> bool:
        """Ended by exec'ing a new image: not an exit, not shown."""
        return self.state is REPLACED

    @property
    def binary(self) -> str:
        return self.image.binary if self.image else ""

    @property
    def args(self) -> tuple[str, ...]:
        return self.image.args if self.image else ()

    @property
    def argv0(self) -> str:
        """argv[0] as the process set it when it names another program than
        its binary (busybox's `sleep`, a login shell's `-bash`, or a disguise:
        `[kworker/0:0]`), else "": shown beside the binary, never instead. A
        name the binary's starts with is the same program (`python` run as
        python3.11, `vi` as vim.basic: a symlink's name)."""
        img = self.image
        if img is None or not img.argv0 or os.path.basename(img.binary).startswith(os.path.basename(img.argv0)):
            return ""
        return img.argv0

    def command(self, binary: str | None = None) -> str:
        """The binary (or ``binary``, a shortened form of it), argv[0] when it
        names another program (after │, as htop's merged command), the arguments."""
        argv0 = self.argv0
        head = (binary or self.binary or "?") + ("│" + argv0 if argv0 else "")
        return " ".join((head, *self.args))

    def __getstate__(self) -> tuple:
        # Children as keys, the cache's __setstate__ links them again: a
        # pickle of objects nested as deep as the tree (which any process
        # can make deep) would exceed Python's recursion limit.
        state = _STATE(self)  # every slot in one C call: a checkpoint of a storm's cache holds 20,000
        if self.children is not None:
            state = (*state[:_CHILDREN], list(self.children), *state[_CHILDREN + 1 :])
        return state

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)

    @property
    def visible(self) -> bool:
        """Shown in the tree: alive, or exited and in its grace period."""
        return self.state is RUNNING or self.in_grace

    def __repr__(self) -> str:
        return f"<Process {self.key.pid}:{self.key.ktime} {self.binary or '?'} {self.lifecycle.value} refs={self.refs}>"


_CHILDREN = Process.__slots__.index("children")
_STATE = attrgetter(*Process.__slots__)


@dataclass
class CacheCounters:
    misses: int = 0  # events naming a process the cache did not know
    lost_exits: int = 0  # processes whose exit was never seen: their pid was reused, or they were found gone
    evicted: int = 0  # images removed after their grace period
    late: int = 0  # exec/clone that arrived after an event that needed it (filled a placeholder)
    # Container descriptions not read: a runtime's file or daemon not to be believed, or no answer in time.
    enrichment_failures: int = 0
    exit_before_start: int = 0  # exits timed before their process started (a recording's, never the kernel's)
    cpu_too_deep: int = 0  # exits whose CPU went through exited_cpu.MAX_DEPTH exited parents and stopped

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class Shared:
    """One object for equal values that many processes have (creds,
    namespaces, binaries, cwds, cgroup paths): at 10k processes most of the
    memory would be duplicates. Bounded: unique cwds or transient cgroups
    must not grow it for ever; once full it starts again (only sharing is
    lost, equal values stay equal)."""

    LIMIT = 1 << 16

    def __init__(self):
        self._table: dict = {}
        self._given: tuple = (None,) * 5  # the parts of the last image as given

    def one(self, value):
        table = self._table
        if len(table) >= self.LIMIT:
            table.clear()
        return table.setdefault(value, value)

    def event(self, ev: ExecEvent) -> ExecEvent:
        given = self._given
        if ev.creds is given[0] and ev.ns is given[1] and ev.binary is given[2] and ev.cwd is given[3] \
                and ev.cgroup_name is given[4]:  # fmt: skip
            # The decoder's objects again (one per distinct value it read): shared already, kept
            # as they are (no copy of the image, nothing hashed), beside the table's equal ones.
            return ev
        self._given = ev.creds, ev.ns, ev.binary, ev.cwd, ev.cgroup_name
        table = self._table
        if len(table) >= self.LIMIT - 5:
            table.clear()
        one = table.setdefault  # the decoder shares these already: mostly hits, and no copy below
        creds, ns, binary = one(ev.creds, ev.creds), one(ev.ns, ev.ns), one(ev.binary, ev.binary)
        cwd, name = one(ev.cwd, ev.cwd), one(ev.cgroup_name, ev.cgroup_name)
        if creds is ev.creds and ns is ev.ns and binary is ev.binary and cwd is ev.cwd and name is ev.cgroup_name:
            return ev
        return msgspec.structs.replace(ev, creds=creds, ns=ns, binary=binary, cwd=cwd, cgroup_name=name)


# Children are listed, and the flat view sorted, by pid (then start time): a kept tuple, so
# that sorting 10,000 rows builds no key (a third of the time of attrgetter("key.pid", "key.ktime")).
BY_PID = attrgetter("order")
