"""Typed events, as decoded from the ring buffer or synthesised from /proc.

msgspec Structs: made, hashed, compared and copied with changes
(``msgspec.structs.replace``) in C, some ten times faster than frozen
dataclasses, which matters at tens of thousands of events a second; and
left out of the garbage collector (they hold only numbers, strings and
other events, never a cycle)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from . import names, wire


class ProcessKey(msgspec.Struct, frozen=True, gc=False):
    """Identity of one process image: (pid, ktime in boot-clock ns)."""

    pid: int
    ktime: int


class Capabilities(msgspec.Struct, frozen=True, gc=False):
    permitted: int
    effective: int
    inheritable: int


class CapSets(msgspec.Struct, frozen=True, gc=False):
    """The capability sets Tetragon's credentials leave out (procscope's own)."""

    bounding: int
    ambient: int


class UserNamespace(msgspec.Struct, frozen=True, gc=False):
    level: int
    uid: int
    gid: int
    inum: int


class Credentials(msgspec.Struct, frozen=True, gc=False):
    uid: int
    gid: int
    suid: int
    sgid: int
    euid: int
    egid: int
    fsuid: int
    fsgid: int
    securebits: int
    caps: Capabilities
    user_ns: UserNamespace
    # False: its source did not say (a Tetragon export or agent without --enable-process-cred); the ids
    # are then its uid, the capabilities none, neither to be shown or written as if known.
    known: bool = True


NAMESPACES = (
    "uts",
    "ipc",
    "mnt",
    "pid",
    "pid_for_children",
    "net",
    "time",
    "time_for_children",
    "cgroup",
    "user",
)


class Namespaces(msgspec.Struct, frozen=True, gc=False):
    uts: int
    ipc: int
    mnt: int
    pid: int
    pid_for_children: int
    net: int
    time: int
    time_for_children: int
    cgroup: int
    user: int

    def items(self) -> list[tuple[str, int]]:
        return [(name, getattr(self, name)) for name in NAMESPACES]


class ExecEvent(msgspec.Struct, frozen=True, gc=False):
    """A new process image (MsgExecveEvent + MsgProcess), or a process found
    by the /proc scan (flag procFS)."""

    TYPE: ClassVar[str] = "PROCESS_EXEC"  # Tetragon's name of the event type (clone, cgroup: procscope's)

    time: int  # event time, boot-clock ns
    key: ProcessKey
    tid: int
    nspid: int
    uid: int  # euid, as ps shows it
    auid: int
    flags: int
    privileges: int  # wire.EXECVE_* bits
    nlink: int
    ino: int
    binary: str
    args: tuple[str, ...]
    cwd: str
    parent: ProcessKey
    cleanup: ProcessKey | None  # previous image of the same pid
    creds: Credentials
    ns: Namespaces
    cgroup_id: int
    cgroup_tracker_id: int
    cgroup_name: str  # MsgK8s.docker: the cgroup's leaf name
    # Full path in the tracked hierarchy: known to the /proc scan and to
    # replays; for BPF events the cache resolves it from cgroup_id.
    cgroup_path: str = ""
    # argv[0] as the process set it (Tetragon's arguments leave it out): "" when not known.
    argv0: str = ""

    @property
    def flag_words(self) -> list[str]:
        return names.flag_words(self.flags)


class CloneEvent(msgspec.Struct, frozen=True, gc=False):
    TYPE: ClassVar[str] = "PROCESS_CLONE"
    time: int
    key: ProcessKey
    tid: int
    nspid: int
    parent: ProcessKey
    flags: int


class CredsEvent(msgspec.Struct, frozen=True, gc=False):
    """A process's credentials or namespaces after a syscall changed them (after its exec)."""

    TYPE: ClassVar[str] = "PROCESS_CREDS"
    time: int
    key: ProcessKey
    tid: int  # the thread that called it
    syscall: str  # wire.CREDS_SYSCALLS
    creds: Credentials
    ns: Namespaces
    sets: CapSets | None = None  # None: not known (a recording without them)
    old_sets: CapSets | None = None  # before the call: the exec's or the last change's, when known


class ExitEvent(msgspec.Struct, frozen=True, gc=False):
    TYPE: ClassVar[str] = "PROCESS_EXIT"
    time: int
    key: ProcessKey
    tid: int  # the last thread of the group to exit
    code: int  # task->exit_code
    cpu_ns: int = 0  # its threads' CPU time at its exit (0: not known: not asked for, or a recording's)

    @property
    def status(self) -> int:
        return (self.code >> 8) & 0xFF

    @property
    def signal(self) -> int:
        return self.code & 0x7F

    @property
    def core_dumped(self) -> bool:
        return bool(self.code & 0x80)

    @property
    def signal_name(self) -> str:
        return names.signal_name(self.signal)


class CgroupEvent(msgspec.Struct, frozen=True, gc=False):
    """A cgroup made, removed, released, or a process moved into one
    (MsgCgroupEvent). Sent for every hierarchy, v1 and v2: compare
    ``hierarchy_id`` with the tracked hierarchy's (v2 is 0)."""

    TYPE: ClassVar[str] = "PROCESS_CGROUP"

    time: int  # event time, boot-clock ns
    op: int  # wire.CGROUP_MKDIR, _RMDIR, _RELEASE or _ATTACH_TASK
    pid: int  # ATTACH_TASK: the moved task's tgid; else the current task's
    nspid: int
    flags: int  # wire.CGROUP_FLAG_*
    cgroup_id: int  # kernfs node id: the cgroup directory's inode
    tracker_id: int
    level: int  # depth below the hierarchy's root (the root is 0)
    hierarchy_id: int
    name: str  # the cgroup's leaf name
    path: str  # as the kernel formats it: from the hierarchy's root, "/" for the root

    @property
    def op_name(self) -> str:
        return wire.CGROUP_OP_NAMES.get(self.op, str(self.op))


class ThrottleMsg(msgspec.Struct, frozen=True, gc=False):
    """The kernel's note that a cgroup crossed its rate limit on one CPU
    (MsgThrottleEvent). The collector turns it into a ThrottleEvent."""

    time: int
    cgroup_id: int
    tracker_id: int
    name: str  # the cgroup's leaf name (MsgK8s.docker)


class ThrottleEvent(msgspec.Struct, frozen=True, gc=False):
    """THROTTLE_START when a cgroup crossed its rate limit (its exec, clone
    and exit events are suppressed from then on), THROTTLE_STOP once its
    rate has stayed under the limit (or the cgroup is gone). ``suppressed``
    counts, per op in wire.RATE_OPS order, the events suppressed since the
    previous STOP of this cgroup: known at STOP, zeros at START."""

    TYPE: ClassVar[str] = "PROCESS_THROTTLE"

    time: int
    type: int  # wire.THROTTLE_START or THROTTLE_STOP
    cgroup_id: int
    name: str
    suppressed: tuple[int, ...] = (0, 0, 0)
    path: str = ""  # from the hierarchy's root, when known

    @property
    def type_name(self) -> str:
        return wire.THROTTLE_NAMES.get(self.type, "THROTTLE_UNKNOWN")


Event = ExecEvent | CloneEvent | ExitEvent | CgroupEvent | ThrottleEvent | CredsEvent
