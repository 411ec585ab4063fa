"""Processes that already exist when procscope starts: one synthetic exec
event (flag procFS) each, from /proc, parents before children.

Keys match what the BPF programs compute for processes they did not see
exec: (pid, start time in clock ticks as nanoseconds)."""

from __future__ import annotations

import fcntl
import os

import psutil

from . import wire
from .cgroups import Hierarchy
from .events import Capabilities, Credentials, ExecEvent, Namespaces, NAMESPACES, ProcessKey, UserNamespace

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000
NS_GET_PARENT = 0xB702  # ioctl on a namespace fd (linux/nsfs.h)
NS_GET_OWNER_UID = 0xB704
UNKNOWN_ID = 0xFFFFFFFF


def _stat(pid: int) -> tuple[int, int, int]:
    """(ppid, kernel flags, start key ktime) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[6]), int(fields[19]) * TICK_NS


def start_key(pid: int) -> ProcessKey:
    return ProcessKey(pid, _stat(pid)[2])


def _status(pid: int) -> dict[str, list[str]]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, _, v in (line.partition(":") for line in f)}


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
    nsfs ioctls (the owner's gid has no ioctl: reported unknown)."""
    inum = _ns_inum(pid, "user")
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return UserNamespace(0, UNKNOWN_ID, UNKNOWN_ID, inum)
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
        return UserNamespace(level, owner, UNKNOWN_ID, inum)
    except OSError:
        return UserNamespace(0, UNKNOWN_ID, UNKNOWN_ID, inum)
    finally:
        os.close(fd)


def _read_int(path: str, default: int) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def process_event(pid: int, hierarchy: Hierarchy, parent_key: ProcessKey | None = None) -> ExecEvent | None:
    """The procFS exec event of one running process, or None if it is gone
    or a kernel thread."""
    try:
        ppid, kflags, ktime = _stat(pid)
        if kflags & PF_KTHREAD:
            return None
        proc = psutil.Process(pid)
        with proc.oneshot():
            cmdline = proc.cmdline()
            try:
                exe = proc.exe()
            except psutil.AccessDenied:
                exe = ""
            try:
                cwd = proc.cwd()
            except psutil.AccessDenied:
                cwd = ""
        st = _status(pid)
        uid, euid, suid, fsuid = (int(x) for x in st["Uid"])
        gid, egid, sgid, fsgid = (int(x) for x in st["Gid"])
        caps = Capabilities(int(st["CapPrm"][0], 16), int(st["CapEff"][0], 16), int(st["CapInh"][0], 16))
        try:
            exe_stat = os.stat(f"/proc/{pid}/exe")
            nlink, ino = exe_stat.st_nlink, exe_stat.st_ino
        except OSError:
            nlink, ino = 0, 0
        user_ns = _user_ns(pid)
        ns = Namespaces(*(user_ns.inum if n == "user" else _ns_inum(pid, n) for n in NAMESPACES))
        cgroup_path = hierarchy.path_of(pid) or ""
        cgroup_id = hierarchy.id_of(cgroup_path)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, FileNotFoundError, ProcessLookupError, KeyError):
        return None
    if exe.endswith(" (deleted)"):
        exe = exe[: -len(" (deleted)")]
    flags = wire.FLAG_PROCFS
    if cwd == "/":
        flags |= wire.FLAG_ROOT_CWD
    if parent_key is None:
        try:
            parent_key = ProcessKey(ppid, _stat(ppid)[2]) if ppid else ProcessKey(0, 0)
        except OSError:
            parent_key = ProcessKey(ppid, 0)
    return ExecEvent(
        time=ktime,
        key=ProcessKey(pid, ktime),
        tid=pid,
        nspid=int(st.get("NSpid", [pid])[-1]),
        uid=euid,
        auid=_read_int(f"/proc/{pid}/loginuid", UNKNOWN_ID),
        flags=flags,
        privileges=0,
        nlink=nlink,
        ino=ino,
        binary=exe,
        args=tuple(cmdline[1:]),
        cwd=cwd,
        parent=parent_key,
        cleanup=None,
        creds=Credentials(uid, gid, suid, sgid, euid, egid, fsuid, fsgid, 0, caps, user_ns),
        ns=ns,
        cgroup_id=cgroup_id,
        cgroup_tracker_id=cgroup_id,
        cgroup_name=cgroup_path.rsplit("/", 1)[-1],
        cgroup_path=cgroup_path,
    )


def scan(hierarchy: Hierarchy) -> list[ExecEvent]:
    """Every running user-space process, each after its parent."""
    keys: dict[int, ProcessKey] = {}
    ppids: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    for pid in psutil.pids():
        try:
            ppid, kflags, ktime = _stat(pid)
        except OSError:
            continue
        if kflags & PF_KTHREAD:
            continue
        keys[pid] = ProcessKey(pid, ktime)
        ppids[pid] = ppid
        children.setdefault(ppid, []).append(pid)
    events: list[ExecEvent] = []
    stack = sorted((p for ppid, kids in children.items() if ppid not in keys for p in kids), reverse=True)
    while stack:
        pid = stack.pop()
        ppid = ppids[pid]
        ev = process_event(pid, hierarchy, keys.get(ppid, ProcessKey(ppid, 0)))
        if ev is not None:
            events.append(ev)
        stack.extend(sorted(children.get(pid, ()), reverse=True))
    return events
