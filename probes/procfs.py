"""Processes that already exist when procscope starts: one synthetic exec
event (flag procFS) each, from /proc, parents before children.

Keys match what the BPF programs compute for processes they did not see
exec: (pid, start time in clock ticks as nanoseconds)."""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field

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


def _parse_stat(raw: bytes) -> tuple[int, int, int]:
    """(ppid, kernel flags, start key ktime) from a stat file."""
    fields = _after_name(raw)
    return int(fields[1]), int(fields[6]), int(fields[19]) * TICK_NS


def _stat(pid: int) -> tuple[int, int, int]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return _parse_stat(f.read())


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
_STATUS_KEYS = (b"\nUid:", b"\nGid:", b"\nCapInh:", b"\nCapPrm:", b"\nCapEff:", b"\nNSpid:", b"\nState:")


class Reader:
    """Reads processes from /proc: one directory descriptor per process (no
    path lookup per file), and what many processes share (a user
    namespace's level and owner, a cgroup's id) asked once per scan."""

    def __init__(self, hierarchy: Hierarchy):
        self.hierarchy = hierarchy
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
        ppid, kflags, ktime = stat or _parse_stat(read_at(d, "stat"))
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
        cwd = _link_at(d, "cwd")
        try:
            exe_stat = os.stat("exe", dir_fd=d)
            nlink, ino = exe_stat.st_nlink, exe_stat.st_ino
        except OSError:
            nlink, ino = 0, 0
        inums = [inum_at(d, link) for link in NS_LINKS]
        user_inum = inums[NAMESPACES.index("user")]
        user_ns = self._user_ns.get(user_inum) if user_inum else None
        if user_ns is None:
            user_ns = self._user_ns[user_inum] = user_namespace(pid, user_inum)
        ns = Namespaces(*inums)
        cgroup_path = self.hierarchy.path_in(read_at(d, "cgroup", b"")) or ""
        cgroup_id = self._cgroup_ids.get(cgroup_path)
        if cgroup_id is None:
            cgroup_id = self._cgroup_ids[cgroup_path] = self.hierarchy.id_of(cgroup_path)
        exe = exe.removesuffix(b" (deleted)")
        flags = wire.FLAG_PROCFS
        if cwd == b"/":
            flags |= wire.FLAG_ROOT_CWD
        if parent_key is None:
            try:
                parent_key = ProcessKey(ppid, _stat(ppid)[2]) if ppid else ProcessKey(0, 0)
            except OSError:
                parent_key = ProcessKey(ppid, 0)
        try:
            loginuid = int(read_at(d, "loginuid", b"").strip())
        except ValueError:
            loginuid = wire.UNKNOWN_ID
        return ExecEvent(
            ktime, ProcessKey(pid, ktime), pid, int(st[5][-1]) if st[5] else pid, euid, loginuid, flags, 0, nlink, ino,
            from_bytes(exe), args[1:], from_bytes(cwd) if cwd is not None else "", parent_key, None,
            Credentials(uid, gid, suid, sgid, euid, egid, fsuid, fsgid, 0, caps, user_ns), ns,
            cgroup_id, cgroup_id, cgroup_path.rsplit("/", 1)[-1], cgroup_path, args[0] if args else "",
        )  # fmt: skip


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


@dataclass
class Scan:
    """What the /proc scan found: a procFS exec event per process, each
    after its parent, and how many processes it could not read (counted,
    never a reason to stop)."""

    events: list[ExecEvent] = field(default_factory=list)
    unreadable: int = 0


class _Seen(msgspec.Struct, array_like=True, gc=False):
    """One pid as a scanner saw it (msgpack between the helper and the caller)."""

    pid: int
    ppid: int = 0
    ktime: int = 0
    event: ExecEvent | None = None  # None: a zombie, or gone while read
    unreadable: bool = False
    listed: bool = True  # its stat was read (else it is only counted)


_Chunks = list[tuple[int, list[_Seen]]]
CHUNK = 64  # pids per claim: the last one either side waits for is a few ms
MAX_CHUNKS = 8192  # their 2-byte tokens (16 KiB) fit an empty pipe, so writing them cannot block


def _look(reader: Reader, pid: int) -> _Seen | None:
    """One pid of the scan; None: gone, or a kernel thread."""
    try:  # its directory once, its files through it (no path lookup, no Python file object, each)
        d = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return _Seen(pid, unreadable=True, listed=False)
    try:
        try:
            ppid, kflags, ktime = _parse_stat(read_at(d, "stat"))
        except (FileNotFoundError, ProcessLookupError):
            return None
        except (OSError, ValueError, IndexError):
            return _Seen(pid, unreadable=True, listed=False)
        if kflags & PF_KTHREAD:
            return None
        try:
            # The parent's start time is the merge's to fill in: the other scanner may hold it.
            ev = reader.read(pid, d, ProcessKey(ppid, 0), (ppid, kflags, ktime))
        except Exception:  # noqa: BLE001 - one process must not stop the scan: skipped and counted
            return _Seen(pid, ppid, ktime, unreadable=True)
        return _Seen(pid, ppid, ktime, ev)
    finally:
        os.close(d)


class ScanJob:
    """The /proc scan on both cores: a forked helper and the caller take
    chunks of pids from one pipe (a 2-byte read of 2-byte tokens is atomic,
    so each chunk goes to exactly one of them). Threads would not help: most
    of a scan is Python between system calls, under one GIL. Started early,
    the helper scans while the caller does something else (the monitor
    loads Textual); ``result()`` joins in. Whatever the helper did not
    deliver (it failed, or was killed), the caller reads itself."""

    def __init__(self, hierarchy: Hierarchy, helper: bool = True):
        self.hierarchy = hierarchy
        self._pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
        self._size = max(CHUNK, -(-len(self._pids) // MAX_CHUNKS))
        self._chunks = -(-len(self._pids) // self._size)
        self._tokens, w = os.pipe()
        os.write(w, b"".join(i.to_bytes(2, "little") for i in range(self._chunks)))
        os.close(w)  # read() returns b"" once every token is taken
        self._helper: int | None = None
        self._out = -1
        self.helped = 0  # chunks the helper delivered
        if helper and self._chunks > 1:
            self._fork()

    def _fork(self) -> None:
        try:
            self._out = os.memfd_create("procscope-scan", os.MFD_CLOEXEC)
            self._helper = os.fork()
        except OSError:  # no helper: the caller reads everything
            self._helper = None
            return
        if self._helper == 0:
            status = 1
            try:
                data = msgspec.msgpack.encode(self._claim(Reader(self.hierarchy)))
                view = memoryview(data)
                while view:
                    view = view[os.write(self._out, view) :]
                status = 0
            finally:
                os._exit(status)  # noqa: B012 - the helper never returns into the caller's code

    def _claim(self, reader: Reader) -> _Chunks:
        done = []
        while token := os.read(self._tokens, 2):
            i = int.from_bytes(token, "little")
            done.append((i, self._read(reader, i)))
        return done

    def _read(self, reader: Reader, i: int) -> list[_Seen]:
        seen = (_look(reader, pid) for pid in self._pids[i * self._size : (i + 1) * self._size])
        return [s for s in seen if s is not None]

    def result(self) -> Scan:
        reader = Reader(self.hierarchy)
        done = dict(self._claim(reader))
        helped = self._delivered()
        self.helped = len(helped)
        done |= helped
        self.close()
        for i in range(self._chunks):
            if i not in done:
                done[i] = self._read(reader, i)
        return _merge(s for part in done.values() for s in part)

    def _delivered(self) -> dict[int, list[_Seen]]:
        if not self._helper:
            return {}
        _, status = os.waitpid(self._helper, 0)
        self._helper = None
        if os.waitstatus_to_exitcode(status) != 0:
            return {}
        with os.fdopen(os.dup(self._out), "rb") as f:
            f.seek(0)  # the helper's writes moved the offset the two share
            try:
                return dict(msgspec.msgpack.decode(f.read(), type=_Chunks))
            except msgspec.DecodeError:
                return {}

    def close(self) -> None:
        """Stops the helper if it still runs (a job whose result is not wanted)."""
        if self._helper:
            os.kill(self._helper, signal.SIGKILL)
            os.waitpid(self._helper, 0)
            self._helper = None
        for fd in (self._tokens, self._out):
            if fd >= 0:
                os.close(fd)
        self._tokens = self._out = -1

    def __enter__(self) -> ScanJob:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _merge(seen: Iterable[_Seen]) -> Scan:
    """Parents before children (by pid among siblings), each event given its
    parent's key, and a container's init tree marked."""
    out = Scan()
    by_pid: dict[int, _Seen] = {}
    children: dict[int, list[int]] = {}
    for s in seen:
        if not s.listed:
            out.unreadable += 1
            continue
        by_pid[s.pid] = s
        children.setdefault(s.ppid, []).append(s.pid)
    order = []
    stack = sorted((p for ppid, kids in children.items() if ppid not in by_pid for p in kids), reverse=True)
    while stack:
        pid = stack.pop()
        order.append(pid)
        stack.extend(sorted(children.get(pid, ()), reverse=True))
    in_init_tree: dict[int, int] = {}  # pid → its pid namespace, for processes in a container's init tree
    for pid in order:
        s = by_pid[pid]
        if s.unreadable:
            out.unreadable += 1
            continue
        ev = s.event
        if ev is None:
            continue
        parent = by_pid.get(s.ppid)
        changes: dict = {"parent": ProcessKey(s.ppid, parent.ktime)} if parent is not None else {}
        # As Tetragon: a pid namespace's init (not the host's) and what descends from it in that namespace.
        if (ev.nspid == 1 and pid != 1) or in_init_tree.get(s.ppid, -1) == ev.ns.pid:
            in_init_tree[pid] = ev.ns.pid
            changes["flags"] = ev.flags | wire.FLAG_IN_INIT_TREE
        out.events.append(msgspec.structs.replace(ev, **changes) if changes else ev)
    return out


def scan(hierarchy: Hierarchy, helper: bool = False) -> Scan:
    """Every running user-space process, each after its parent (``helper``:
    on both cores, see ScanJob)."""
    return ScanJob(hierarchy, helper).result()
