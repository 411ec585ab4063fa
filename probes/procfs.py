"""Processes that already exist when procscope starts: one synthetic exec
event (flag procFS) each, read from /proc (scan_job scans them all).

Keys match what the BPF programs compute for processes they did not see
exec: (pid, start time in clock ticks as nanoseconds)."""

from __future__ import annotations

import fcntl
import os

import msgspec

from . import wire
from .cgroups import Hierarchy
from .events import NAMESPACES, Capabilities, Credentials, ExecEvent, Namespaces, ProcessKey, UserNamespace
from .text import from_bytes

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000
NS_GET_PARENT = 0xB702  # ioctl on a namespace fd (linux/nsfs.h)
NS_GET_OWNER_UID = 0xB704


def _after_name(raw: bytes) -> list[bytes]:
    """The fields of a /proc/.../stat file after the process's name (which
    may hold spaces and parentheses): proc(5)'s field 3 (state) is [0]."""
    return raw[raw.rindex(b")") + 2 :].split()


def parse_stat(raw: bytes) -> tuple[int, int, int]:
    """(ppid, kernel flags, start key ktime) from a stat file."""
    fields = _after_name(raw)
    return int(fields[1]), int(fields[6]), int(fields[19]) * TICK_NS


def _stat(pid: int) -> tuple[int, int, int]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return parse_stat(f.read())


def parent_pid(pid: int) -> int | None:
    """The current parent of a live process (None if it is gone)."""
    try:
        return _stat(pid)[0]
    except (OSError, ValueError, IndexError):
        return None


def start_key(pid: int) -> ProcessKey:
    return ProcessKey(pid, _stat(pid)[2])


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


def user_namespace(pid: int, inum: int) -> UserNamespace:
    """Level and owner of the user namespace, asked of the kernel with the
    nsfs ioctls. The initial namespace belongs to root:root; a nested one's
    owner gid has no ioctl, so it is unknown (UNKNOWN_ID)."""
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


NS_LINKS = tuple(f"ns/{name}" for name in NAMESPACES)
UNREAD_USER_NS = UserNamespace(0, wire.UNKNOWN_ID, wire.UNKNOWN_ID, 0)
_STATUS_KEYS = (b"\nUid:", b"\nGid:", b"\nCapInh:", b"\nCapPrm:", b"\nCapEff:", b"\nNSpid:", b"\nState:")


class Reader:
    """Reads processes from /proc: one directory descriptor per process (no
    path lookup per file), and what many processes share (a user
    namespace's level and owner, a cgroup's id) asked once per scan."""

    def __init__(self, hierarchy: Hierarchy, defer: bool = False):
        """``defer``: what the first frame does not show is left for a later
        pass (scan_job): the namespaces but the pid one (the scan's merge
        needs it), the login uid, the cwd and the binary's inode, unknown
        until then (0, UNKNOWN_ID, ""). The ten namespace links alone were a
        third of a process's reading."""
        self.hierarchy = hierarchy
        self.defer = defer
        self._user_ns: dict[int, UserNamespace] = {}
        self._cgroup_ids: dict[str, int] = {}

    def event(self, pid: int, parent_key: ProcessKey | None = None,
              stat: tuple[int, int, int] | None = None) -> ExecEvent | None:  # fmt: skip
        """The procFS exec event of one running process, or None if it is gone,
        a zombie or a kernel thread. Everything the process controls (its
        binary's path, arguments, cwd, cgroup) is read as bytes: a name is
        never a reason to fail."""
        try:
            d = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            return self.read(pid, d, parent_key, stat)
        finally:
            os.close(d)

    def read(self, pid: int, d: int, parent_key: ProcessKey | None = None,
             stat: tuple[int, int, int] | None = None) -> ExecEvent | None:  # fmt: skip
        """``event`` through the process's directory descriptor ``d``."""
        try:
            return self._event(pid, d, parent_key, stat)
        except (FileNotFoundError, ProcessLookupError):
            return None  # gone while we looked

    def _event(self, pid: int, d: int, parent_key: ProcessKey | None,
               stat: tuple[int, int, int] | None) -> ExecEvent | None:  # fmt: skip
        ppid, kflags, ktime = stat or parse_stat(read_at(d, "stat"))
        if kflags & PF_KTHREAD:
            return None
        st = _status_fields(read_at(d, "status"))
        uid, euid, suid, fsuid = (int(x) for x in st[0])
        gid, egid, sgid, fsgid = (int(x) for x in st[1])
        caps = Capabilities(int(st[3][0], 16), int(st[4][0], 16), int(st[2][0], 16))
        raw = read_at(d, "cmdline")
        args = tuple(from_bytes(a) for a in raw.rstrip(b"\0").split(b"\0")) if raw else ()
        if not args and (st[6] or [b""])[0] == b"Z":
            return None  # a zombie: its exit is what remains to be seen
        exe = _link_at(d, "exe") or b""
        if self.defer:
            pid_ns = Namespaces(0, 0, 0, inum_at(d, "ns/pid"), 0, 0, 0, 0, 0, 0)
            later = Later(pid_ns, UNREAD_USER_NS, wire.UNKNOWN_ID, "", False, 0, 0)
        else:
            later = self.later(pid, d)
        cgroup_path = self.hierarchy.path_in(read_at(d, "cgroup", b"")) or ""
        cgroup_id = self._cgroup_ids.get(cgroup_path)
        if cgroup_id is None:
            cgroup_id = self._cgroup_ids[cgroup_path] = self.hierarchy.id_of(cgroup_path)
        exe = exe.removesuffix(b" (deleted)")
        flags = wire.FLAG_PROCFS | (wire.FLAG_ROOT_CWD if later.root_cwd else 0)
        if parent_key is None:
            try:
                parent_key = ProcessKey(ppid, _stat(ppid)[2]) if ppid else ProcessKey(0, 0)
            except OSError:
                parent_key = ProcessKey(ppid, 0)
        return ExecEvent(
            ktime, ProcessKey(pid, ktime), pid, int(st[5][-1]) if st[5] else pid, euid, later.auid, flags, 0,
            later.nlink, later.ino, from_bytes(exe), args[1:], later.cwd, parent_key, None,
            Credentials(uid, gid, suid, sgid, euid, egid, fsuid, fsgid, 0, caps, later.user_ns), later.ns,
            cgroup_id, cgroup_id, cgroup_path.rsplit("/", 1)[-1], cgroup_path, args[0] if args else "",
        )  # fmt: skip

    def later(self, pid: int, d: int) -> Later:
        """What ``defer`` leaves for later: the namespaces, and the user
        namespace's level and owner (asked once per user namespace), the login
        uid, the cwd, the binary's links and inode."""
        ns = Namespaces(*(inum_at(d, link) for link in NS_LINKS))
        user_ns = self._user_ns.get(ns.user) if ns.user else None
        if user_ns is None:
            user_ns = self._user_ns[ns.user] = user_namespace(pid, ns.user)
        try:
            auid = int(read_at(d, "loginuid", b"").strip())
        except ValueError:
            auid = wire.UNKNOWN_ID
        cwd = _link_at(d, "cwd")
        try:
            exe = os.stat("exe", dir_fd=d)
            nlink, ino = exe.st_nlink, exe.st_ino
        except OSError:
            nlink, ino = 0, 0
        return Later(ns, user_ns, auid, from_bytes(cwd) if cwd is not None else "", cwd == b"/", nlink, ino)


class Later(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A process's part of the scan that Reader(defer=True) leaves for later."""

    ns: Namespaces
    user_ns: UserNamespace
    auid: int
    cwd: str
    root_cwd: bool
    nlink: int
    ino: int


def completed(ev: ExecEvent, later: Later) -> ExecEvent:
    """A deferred scan's event with what was left for later."""
    creds = msgspec.structs.replace(ev.creds, user_ns=later.user_ns)
    flags = ev.flags | (wire.FLAG_ROOT_CWD if later.root_cwd else 0)
    return msgspec.structs.replace(ev, ns=later.ns, creds=creds, auid=later.auid, cwd=later.cwd, flags=flags,
                                   nlink=later.nlink, ino=later.ino)  # fmt: skip


def read_at(d: int, name: str, missing: bytes | None = None) -> bytes:
    """A file of the process's directory; ``missing``: returned if unreadable
    (None: raise)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=d)
    except OSError:
        if missing is None:
            raise
        return missing
    try:
        chunks = [os.read(fd, 1 << 16)]
        while len(chunks[-1]) == 1 << 16:  # a long command line
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _link_at(d: int, name: str) -> bytes | None:
    """Where the process's exe or cwd points, as bytes; None if unreadable."""
    try:
        return os.readlink(name.encode(), dir_fd=d)
    except OSError:
        return None


def inum_at(d: int, link: str) -> int:
    try:
        target = os.readlink(link, dir_fd=d)
    except OSError:
        return 0
    return int(target[target.index("[") + 1 : -1])


def _status_fields(raw: bytes) -> list[list[bytes]]:
    """The values of _STATUS_KEYS' lines (the Name line, the process's to
    choose, is the first and never searched: each key starts a line)."""
    out: list[list[bytes]] = []
    for key in _STATUS_KEYS:
        at = raw.find(key)
        if at < 0:
            out.append([])
            continue
        at += len(key)
        out.append(raw[at : raw.find(b"\n", at)].split())
    return out


def process_event(pid: int, hierarchy: Hierarchy, parent_key: ProcessKey | None = None) -> ExecEvent | None:
    """One process's procFS exec event (see Reader.event)."""
    return Reader(hierarchy).event(pid, parent_key)
