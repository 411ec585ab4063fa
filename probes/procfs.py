"""Processes that already exist when procscope starts: one synthetic exec
event (flag procFS) each, from /proc, parents before children.

Keys match what the BPF programs compute for processes they did not see
exec: (pid, start time in clock ticks as nanoseconds)."""

from __future__ import annotations

import dataclasses
import fcntl
import os
from dataclasses import dataclass, field

from . import wire
from .cgroups import Hierarchy
from .events import NAMESPACES, Capabilities, Credentials, ExecEvent, Namespaces, ProcessKey, UserNamespace
from .text import from_bytes

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000
NS_GET_PARENT = 0xB702  # ioctl on a namespace fd (linux/nsfs.h)
NS_GET_OWNER_UID = 0xB704


def stat_fields(path: str) -> list[bytes]:
    """The fields of a /proc/.../stat file after the process's name (which
    may hold spaces and parentheses): proc(5)'s field 3 (state) is [0]."""
    with open(path, "rb") as f:
        raw = f.read()
    return raw[raw.rindex(b")") + 2 :].split()


def _stat(pid: int) -> tuple[int, int, int]:
    """(ppid, kernel flags, start key ktime) from /proc/PID/stat."""
    fields = stat_fields(f"/proc/{pid}/stat")
    return int(fields[1]), int(fields[6]), int(fields[19]) * TICK_NS


def parent_pid(pid: int) -> int | None:
    """The current parent of a live process (None if it is gone)."""
    try:
        return _stat(pid)[0]
    except (OSError, ValueError, IndexError):
        return None


def start_key(pid: int) -> ProcessKey:
    return ProcessKey(pid, _stat(pid)[2])


def _status(pid: int) -> dict[bytes, list[bytes]]:
    """/proc/PID/status as bytes: its Name line is the process's to choose."""
    with open(f"/proc/{pid}/status", "rb") as f:
        return {k: v.split() for k, _, v in (line.partition(b":") for line in f)}


def host_namespaces() -> dict[str, int]:
    """Inums of the host's namespaces, against which is_host is judged:
    init's, or when /proc/1/ns is unreadable (procscope itself in a
    container that lacks ptrace rights on init) kthreadd's, which always
    lives in the initial namespaces."""
    for pid in (1, 2):
        try:
            if pid == 2 and not _stat(2)[1] & PF_KTHREAD:
                break
            return {name: _ns_inum_strict(pid, name) for name in NAMESPACES}
        except OSError:
            continue
    return {name: _ns_inum(1, name) for name in NAMESPACES}


def _ns_inum_strict(pid: int, name: str) -> int:
    link = os.readlink(f"/proc/{pid}/ns/{name}")
    return int(link[link.index("[") + 1 : -1])


def _ns_inum(pid: int, name: str) -> int:
    try:
        return _ns_inum_strict(pid, name)
    except OSError:
        return 0


def _user_ns(pid: int) -> UserNamespace:
    """Level and owner of the user namespace, asked of the kernel with the
    nsfs ioctls. The initial namespace belongs to root:root; a nested one's
    owner gid has no ioctl, so it is unknown (UNKNOWN_ID)."""
    inum = _ns_inum(pid, "user")
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return UserNamespace(0, wire.UNKNOWN_ID, wire.UNKNOWN_ID, inum)
    try:
        uid_buf = bytearray(4)
        fcntl.ioctl(fd, NS_GET_OWNER_UID, uid_buf)
        owner = int.from_bytes(uid_buf, "little")
        level = 0
        while True:
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError:  # EPERM at the initial namespace
                break
            os.close(fd)
            fd = parent
            level += 1
        return UserNamespace(level, owner, 0 if level == 0 else wire.UNKNOWN_ID, inum)
    except OSError:
        return UserNamespace(0, wire.UNKNOWN_ID, wire.UNKNOWN_ID, inum)
    finally:
        os.close(fd)


def _read_int(path: str, default: int) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def _link(pid: int, name: str) -> bytes | None:
    """Where /proc/PID/<name> points (exe, cwd), as bytes; None if unreadable."""
    try:
        return os.readlink(f"/proc/{pid}/{name}".encode())
    except OSError:
        return None


def _cmdline(pid: int) -> tuple[str, ...]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        raw = f.read()
    return tuple(from_bytes(a) for a in raw.rstrip(b"\0").split(b"\0")) if raw else ()


def process_event(pid: int, hierarchy: Hierarchy, parent_key: ProcessKey | None = None) -> ExecEvent | None:
    """The procFS exec event of one running process, or None if it is gone,
    a zombie or a kernel thread. Everything the process controls (its
    binary's path, arguments, cwd, cgroup) is read as bytes: a name is
    never a reason to fail."""
    try:
        ppid, kflags, ktime = _stat(pid)
        if kflags & PF_KTHREAD:
            return None
        st = _status(pid)
        uid, euid, suid, fsuid = (int(x) for x in st[b"Uid"])
        gid, egid, sgid, fsgid = (int(x) for x in st[b"Gid"])
        caps = Capabilities(int(st[b"CapPrm"][0], 16), int(st[b"CapEff"][0], 16), int(st[b"CapInh"][0], 16))
        args = _cmdline(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None  # gone while we looked
    if not args and (st.get(b"State") or [b""])[0] == b"Z":
        return None  # a zombie: its exit is what remains to be seen
    exe = _link(pid, "exe") or b""
    cwd = _link(pid, "cwd")
    try:
        exe_stat = os.stat(f"/proc/{pid}/exe")
        nlink, ino = exe_stat.st_nlink, exe_stat.st_ino
    except OSError:
        nlink, ino = 0, 0
    user_ns = _user_ns(pid)
    ns = Namespaces(*(user_ns.inum if n == "user" else _ns_inum(pid, n) for n in NAMESPACES))
    cgroup_path = hierarchy.path_of(pid) or ""
    cgroup_id = hierarchy.id_of(cgroup_path)
    exe = exe.removesuffix(b" (deleted)")
    flags = wire.FLAG_PROCFS
    if cwd == b"/":
        flags |= wire.FLAG_ROOT_CWD
    if parent_key is None:
        try:
            parent_key = ProcessKey(ppid, _stat(ppid)[2]) if ppid else ProcessKey(0, 0)
        except OSError:
            parent_key = ProcessKey(ppid, 0)
    nspid = int(st.get(b"NSpid", [pid])[-1])
    return ExecEvent(
        time=ktime,
        key=ProcessKey(pid, ktime),
        tid=pid,
        nspid=nspid,
        uid=euid,
        auid=_read_int(f"/proc/{pid}/loginuid", wire.UNKNOWN_ID),
        flags=flags,
        privileges=0,
        nlink=nlink,
        ino=ino,
        binary=from_bytes(exe),
        args=args[1:],
        cwd=from_bytes(cwd) if cwd is not None else "",
        parent=parent_key,
        cleanup=None,
        creds=Credentials(uid, gid, suid, sgid, euid, egid, fsuid, fsgid, 0, caps, user_ns),
        ns=ns,
        cgroup_id=cgroup_id,
        cgroup_tracker_id=cgroup_id,
        cgroup_name=cgroup_path.rsplit("/", 1)[-1],
        cgroup_path=cgroup_path,
    )


@dataclass
class Scan:
    """What the /proc scan found: a procFS exec event per process, each
    after its parent, and how many processes it could not read (counted,
    never a reason to stop)."""

    events: list[ExecEvent] = field(default_factory=list)
    unreadable: int = 0


def scan(hierarchy: Hierarchy) -> Scan:
    """Every running user-space process, each after its parent."""
    out = Scan()
    keys: dict[int, ProcessKey] = {}
    ppids: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            ppid, kflags, ktime = _stat(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        except (OSError, ValueError, IndexError):
            out.unreadable += 1
            continue
        if kflags & PF_KTHREAD:
            continue
        keys[pid] = ProcessKey(pid, ktime)
        ppids[pid] = ppid
        children.setdefault(ppid, []).append(pid)
    in_init_tree: dict[int, int] = {}  # pid → its pid namespace, for processes in a container's init tree
    stack = sorted((p for ppid, kids in children.items() if ppid not in keys for p in kids), reverse=True)
    while stack:
        pid = stack.pop()
        ppid = ppids[pid]
        try:
            ev = process_event(pid, hierarchy, keys.get(ppid, ProcessKey(ppid, 0)))
        except Exception:  # noqa: BLE001 - one process must not stop the scan: skipped and counted
            out.unreadable += 1
            ev = None
        if ev is not None:
            # As Tetragon: a pid namespace's init (not the host's) and what descends from it in that namespace.
            if (ev.nspid == 1 and pid != 1) or in_init_tree.get(ppid, -1) == ev.ns.pid:
                in_init_tree[pid] = ev.ns.pid
                ev = dataclasses.replace(ev, flags=ev.flags | wire.FLAG_IN_INIT_TREE)
            out.events.append(ev)
        stack.extend(sorted(children.get(pid, ()), reverse=True))
    return out
