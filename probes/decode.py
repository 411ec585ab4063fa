"""Ring-buffer records -> typed events. All decoding happens here."""

from __future__ import annotations

from . import wire
from .events import (
    Capabilities,
    CapSets,
    CgroupEvent,
    CloneEvent,
    Credentials,
    CredsEvent,
    Event,
    ExecEvent,
    ExitEvent,
    Namespaces,
    ProcessKey,
    ThrottleMsg,
    UserNamespace,
)
from .text import from_bytes


class DecodeError(ValueError):
    pass


def _walked_path(raw: bytes) -> str:
    """The BPF path walk writes names leaf first, each NUL-terminated."""
    if not raw:
        return "/"
    parts = raw.rstrip(b"\0").split(b"\0")
    return "/" + "/".join(from_bytes(p) for p in reversed(parts))


def _args(raw: bytes) -> tuple[str, ...]:
    return tuple(from_bytes(a) for a in raw.rstrip(b"\0").split(b"\0")) if raw else ()


def _creds(raw: bytes) -> Credentials:
    uid, gid, suid, sgid, euid, egid, fsuid, fsgid, securebits, cap_p, cap_e, cap_i, *uns = wire.EXECVE_CREDS.unpack(
        raw
    )
    return Credentials(uid, gid, suid, sgid, euid, egid, fsuid, fsgid, securebits, Capabilities(cap_p, cap_e, cap_i),
                       UserNamespace(*uns))  # fmt: skip


class _Memo(dict):
    """Raw bytes → their decoded value, made once (a hit is one dict
    lookup in C). Bounded: once full it starts again."""

    LIMIT = 1 << 14

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, raw: bytes):
        if len(self) >= self.LIMIT:
            self.clear()
        value = self[raw] = self.make(raw)
        return value


_CREDS = _Memo(_creds)
_NAMESPACES = _Memo(lambda raw: Namespaces(*wire.EXECVE_NS.unpack(raw)))
_NAMES = _Memo(lambda raw: from_bytes(raw.split(b"\0", 1)[0]))
_PATHS = _Memo(_walked_path)
_ARGS = _Memo(_args)
CREDS_AT, NS_AT = wire.EXECVE_CREDS_AT, wire.EXECVE_NS_AT
CREDS_END, NS_END = CREDS_AT + wire.EXECVE_CREDS.size, NS_AT + wire.EXECVE_NS.size


def decode_exec(data: bytes) -> ExecEvent:
    if len(data) < wire.EXECVE_HEADER.size:
        raise DecodeError(f"exec record of {len(data)} bytes is shorter than its header")
    (
        _op, _cflags, _size, time, cgrpid, tracker, ppid, pktime, cpid, cktime,
        _psize, pid, tid, nspid, privileges, puid, auid, flags, nlink, size_argv0, ino, ktime,
        size_path, size_args, size_cwd, _size_envs,
    ) = wire.EXECVE_REST.unpack_from(data)  # fmt: skip
    off = wire.EXECVE_HEADER.size
    end_path = off + size_path
    end_args = end_path + size_args
    end = end_args + size_cwd
    end_argv0 = end + size_argv0
    if end_argv0 > len(data):
        raise DecodeError("exec record sizes exceed its length")
    return ExecEvent(
        time, ProcessKey(pid, ktime), tid, nspid, puid, auid, flags, privileges, nlink, ino,
        _PATHS[data[off:end_path]], _ARGS[data[end_path:end_args]], _PATHS[data[end_args:end]],
        ProcessKey(ppid, pktime), ProcessKey(cpid, cktime),
        _CREDS[data[CREDS_AT:CREDS_END]], _NAMESPACES[data[NS_AT:NS_END]],
        cgrpid, tracker, _NAMES[data[wire.EXECVE_NAME]], argv0=_NAMES[data[end:end_argv0]],
    )  # fmt: skip


def decode_clone(data: bytes) -> CloneEvent:
    if len(data) < wire.CLONE.size:
        raise DecodeError(f"clone record of {len(data)} bytes, expected {wire.CLONE.size}")
    _op, _f, _s, time, ppid, pktime, pid, tid, nspid, flags, ktime = wire.CLONE.unpack_from(data)
    return CloneEvent(time, ProcessKey(pid, ktime), tid, nspid, ProcessKey(ppid, pktime), flags)


def decode_exit(data: bytes) -> ExitEvent:
    if len(data) < wire.EXIT.size:
        raise DecodeError(f"exit record of {len(data)} bytes, expected {wire.EXIT.size}")
    _op, _f, _s, time, pid, ktime, code, tid, cpu_ns = wire.EXIT.unpack_from(data)
    return ExitEvent(time, ProcessKey(pid, ktime), tid, code, cpu_ns)


def decode_creds(data: bytes) -> CredsEvent:
    if len(data) < wire.CREDS.size:
        raise DecodeError(f"creds record of {len(data)} bytes, expected {wire.CREDS.size}")
    _op, _f, _s, time, pid, ktime, tid, syscall, creds, ns, bnd, amb, old_bnd, old_amb, old_known = (
        wire.CREDS.unpack_from(data)
    )
    name = wire.CREDS_SYSCALLS[syscall] if syscall < len(wire.CREDS_SYSCALLS) else f"syscall {syscall}"
    return CredsEvent(time, ProcessKey(pid, ktime), tid, name, _CREDS[creds], _NAMESPACES[ns], CapSets(bnd, amb),
                      CapSets(old_bnd, old_amb) if old_known else None)  # fmt: skip


def decode_cgroup(data: bytes) -> CgroupEvent:
    if len(data) < wire.CGROUP_HEADER.size:
        raise DecodeError(f"cgroup record of {len(data)} bytes is shorter than its header")
    (
        _op, _f, _s, time, _ppid, _pktime,
        cgrp_op, pid, nspid, flags, _ktime, tracker, cgrpid,
        _state, hierarchy_id, level, name,
    ) = wire.CGROUP_HEADER.unpack_from(data)  # fmt: skip
    path = data[wire.CGROUP_HEADER.size : wire.CGROUP_HEADER.size + wire.CGROUP_PATH_LENGTH]
    return CgroupEvent(
        time=time,
        op=cgrp_op,
        pid=pid,
        nspid=nspid,
        flags=flags,
        cgroup_id=cgrpid,
        tracker_id=tracker,
        level=level,
        hierarchy_id=hierarchy_id,
        name=from_bytes(name.split(b"\0", 1)[0]),
        path=from_bytes(path.split(b"\0", 1)[0]),
    )


def decode_throttle(data: bytes) -> ThrottleMsg:
    if len(data) < wire.THROTTLE.size:
        raise DecodeError(f"throttle record of {len(data)} bytes, expected {wire.THROTTLE.size}")
    _op, _f, _s, time, cgrpid, tracker, docker = wire.THROTTLE.unpack_from(data)
    return ThrottleMsg(time, cgrpid, tracker, from_bytes(docker.split(b"\0", 1)[0]))


_DECODERS = {
    wire.OP_EXECVE: decode_exec,
    wire.OP_CLONE: decode_clone,
    wire.OP_EXIT: decode_exit,
    wire.OP_CGROUP: decode_cgroup,
    wire.OP_THROTTLE: decode_throttle,
    wire.OP_CREDS: decode_creds,
}


def decode(data: bytes) -> Event | ThrottleMsg:
    if not data:
        raise DecodeError("empty record")
    try:
        return _DECODERS[data[0]](data)  # type: ignore[return-value]  # each decoder makes its type
    except KeyError:
        raise DecodeError(f"unknown message op {data[0]}") from None
