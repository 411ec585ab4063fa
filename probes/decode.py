"""Ring-buffer records -> typed events. All decoding happens here."""

from __future__ import annotations

from . import wire
from .events import (
    Capabilities,
    CgroupEvent,
    CloneEvent,
    Credentials,
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


def decode_exec(data: bytes) -> ExecEvent:
    if len(data) < wire.EXECVE_HEADER.size:
        raise DecodeError(f"exec record of {len(data)} bytes is shorter than its header")
    (
        _op, _cflags, _size, time,
        cgrpid, tracker, docker,
        ppid, pktime, _pflags,
        uid, gid, suid, sgid, euid, egid, fsuid, fsgid, securebits,
        cap_p, cap_e, cap_i, uns_level, uns_uid, uns_gid, uns_inum,
        *ns,
    ) = wire.EXECVE_HEADER.unpack_from(data)
    ns, rest = ns[:10], ns[10:]
    (
        cpid, cktime,
        _psize, pid, tid, nspid, privileges, puid, auid, flags, nlink, _pad, ino, ktime,
        size_path, size_args, size_cwd, _size_envs,
    ) = rest
    off = wire.EXECVE_HEADER.size
    if off + size_path + size_args + size_cwd > len(data):
        raise DecodeError("exec record sizes exceed its length")
    path = data[off : off + size_path]
    off += size_path
    args = data[off : off + size_args]
    off += size_args
    cwd = data[off : off + size_cwd]
    return ExecEvent(
        time=time,
        key=ProcessKey(pid, ktime),
        tid=tid,
        nspid=nspid,
        uid=puid,
        auid=auid,
        flags=flags,
        privileges=privileges,
        nlink=nlink,
        ino=ino,
        binary=_walked_path(path),
        args=tuple(from_bytes(a) for a in args.rstrip(b"\0").split(b"\0")) if args else (),
        cwd=_walked_path(cwd),
        parent=ProcessKey(ppid, pktime),
        cleanup=ProcessKey(cpid, cktime),
        creds=Credentials(
            uid, gid, suid, sgid, euid, egid, fsuid, fsgid, securebits,
            Capabilities(cap_p, cap_e, cap_i),
            UserNamespace(uns_level, uns_uid, uns_gid, uns_inum),
        ),
        ns=Namespaces(*ns),
        cgroup_id=cgrpid,
        cgroup_tracker_id=tracker,
        cgroup_name=from_bytes(docker.split(b"\0", 1)[0]),
    )


def decode_clone(data: bytes) -> CloneEvent:
    if len(data) < wire.CLONE.size:
        raise DecodeError(f"clone record of {len(data)} bytes, expected {wire.CLONE.size}")
    _op, _f, _s, time, ppid, pktime, pid, tid, nspid, flags, ktime = wire.CLONE.unpack_from(data)
    return CloneEvent(time, ProcessKey(pid, ktime), tid, nspid, ProcessKey(ppid, pktime), flags)


def decode_exit(data: bytes) -> ExitEvent:
    if len(data) < wire.EXIT.size:
        raise DecodeError(f"exit record of {len(data)} bytes, expected {wire.EXIT.size}")
    _op, _f, _s, time, pid, ktime, code, tid = wire.EXIT.unpack_from(data)
    return ExitEvent(time, ProcessKey(pid, ktime), tid, code)


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
}


def decode(data: bytes) -> Event | ThrottleMsg:
    if not data:
        raise DecodeError("empty record")
    try:
        return _DECODERS[data[0]](data)
    except KeyError:
        raise DecodeError(f"unknown message op {data[0]}") from None
