"""Typed events, as decoded from the ring buffer or synthesised from /proc."""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass

from . import wire


@dataclass(frozen=True, slots=True)
class ProcessKey:
    """Identity of one process image: (pid, ktime in boot-clock ns)."""

    pid: int
    ktime: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    permitted: int
    effective: int
    inheritable: int


@dataclass(frozen=True, slots=True)
class UserNamespace:
    level: int
    uid: int
    gid: int
    inum: int


@dataclass(frozen=True, slots=True)
class Credentials:
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


@dataclass(frozen=True, slots=True)
class Namespaces:
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


@dataclass(frozen=True, slots=True)
class ExecEvent:
    """A new process image (MsgExecveEvent + MsgProcess), or a process found
    by the /proc scan (flag procFS)."""

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

    @property
    def flag_words(self) -> list[str]:
        return wire.flag_words(self.flags)


@dataclass(frozen=True, slots=True)
class CloneEvent:
    time: int
    key: ProcessKey
    tid: int
    nspid: int
    parent: ProcessKey
    flags: int


@dataclass(frozen=True, slots=True)
class ExitEvent:
    time: int
    key: ProcessKey
    tid: int  # the last thread of the group to exit
    code: int  # task->exit_code

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
        if not self.signal:
            return ""
        try:
            return _signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"


Event = ExecEvent | CloneEvent | ExitEvent
