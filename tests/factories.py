"""Synthetic events for tests of the pure-Python layers (cache, query,
export, replay): the same dataclasses the decoder produces."""

from __future__ import annotations

from procscope.probes import wire
from procscope.probes.events import Capabilities, CloneEvent, Credentials, ExecEvent, ExitEvent, Namespaces, ProcessKey, UserNamespace

HOST_NS = {name: 4026531830 + i for i, name in enumerate(Namespaces.__slots__)}
ALL_CAPS = (1 << 41) - 1


def creds(uid: int = 0, caps: int = ALL_CAPS) -> Credentials:
    return Credentials(uid, uid, uid, uid, uid, uid, uid, uid, 0, Capabilities(caps, caps, 0), UserNamespace(0, 0, 0, HOST_NS["user"]))


def namespaces(**override: int) -> Namespaces:
    return Namespaces(**{**HOST_NS, **override})


def exec_event(
    pid: int, ktime: int, parent: ProcessKey, binary: str = "/bin/true", args: tuple[str, ...] = (),
    cleanup: ProcessKey | None = None, uid: int = 0, caps: int = ALL_CAPS, ns: Namespaces | None = None,
    cgroup: str = "/", nspid: int | None = None, privileges: int = 0, nlink: int = 1, flags: int = wire.FLAG_EXECVE,
    time: int | None = None,
) -> ExecEvent:  # fmt: skip
    key = ProcessKey(pid, ktime)
    return ExecEvent(
        time=ktime if time is None else time, key=key, tid=pid, nspid=pid if nspid is None else nspid, uid=uid,
        auid=wire_unknown(), flags=flags, privileges=privileges, nlink=nlink, ino=1000 + pid, binary=binary,
        args=args, cwd="/", parent=parent, cleanup=cleanup if cleanup is not None else key, creds=creds(uid, caps),
        ns=ns or namespaces(), cgroup_id=1, cgroup_tracker_id=1, cgroup_name=cgroup.rsplit("/", 1)[-1], cgroup_path=cgroup,
    )  # fmt: skip


def wire_unknown() -> int:
    return 0xFFFFFFFF


def clone_event(pid: int, ktime: int, parent: ProcessKey, time: int | None = None) -> CloneEvent:
    return CloneEvent(ktime if time is None else time, ProcessKey(pid, ktime), pid, pid, parent, wire.FLAG_CLONE)


def exit_event(key: ProcessKey, time: int, code: int = 0) -> ExitEvent:
    return ExitEvent(time, key, key.pid, code)
