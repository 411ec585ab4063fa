"""The /proc scan of every running process (procfs reads each one), on
both cores: a forked helper and the caller share the pids. For the
monitor's first frame what it does not show can wait (procfs.Reader's
``defer``: the namespaces but the pid one, the login uid, the cwd, the
binary's inode): the helper reads that after its share, and the caller
completes its events once it comes (``completed()``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from . import wire
from .cgroups import Hierarchy
from .events import ExecEvent, ProcessKey
from .forked import read_back, write_all
from .procfs import PF_KTHREAD, Later, Reader, completed, parse_stat, read_at


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


class _Found(msgspec.Struct, array_like=True, gc=False):
    """One process's deferred part, as the later pass read it."""

    pid: int
    ktime: int
    later: Later


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
            ppid, kflags, ktime = parse_stat(read_at(d, "stat"))
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
    deliver (it failed, or was killed), the caller reads itself.
    ``defer``: the result leaves for later what procfs.Reader's ``defer``
    does, until ``completed()`` brings it."""

    def __init__(self, hierarchy: Hierarchy, helper: bool = True, defer: bool = False):
        self.hierarchy = hierarchy
        self._pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
        self._size = max(CHUNK, -(-len(self._pids) // MAX_CHUNKS))
        self._chunks = -(-len(self._pids) // self._size)
        self._tokens, w = os.pipe()
        os.write(w, b"".join(i.to_bytes(2, "little") for i in range(self._chunks)))
        os.close(w)  # read() returns b"" once every token is taken
        self._helper: int | None = None
        self._out = self._later_out = self._ready = -1
        self.helped = 0  # chunks the helper delivered
        self.defer = defer
        self._light: list[ExecEvent] | None = None  # the result, its deferred part to come
        if helper and self._chunks > 1:
            self._fork()
        else:
            self.defer = False  # no one to read it meanwhile: read with the rest

    def _fork(self) -> None:
        try:
            self._out = os.memfd_create("procscope-scan", os.MFD_CLOEXEC)
            self._later_out = os.memfd_create("procscope-scan-later", os.MFD_CLOEXEC)
            self._ready, ready = os.pipe()
            self._helper = os.fork()
        except OSError:  # no helper: the caller reads everything
            self._helper, self.defer = None, False
            return
        if self._helper == 0:
            status = 1
            try:
                _write(self._out, self._claim(Reader(self.hierarchy, defer=self.defer)))
                os.write(ready, b"!")  # its share is there: the caller need not wait for the rest
                if self.defer:
                    _write(self._later_out, _later(Reader(self.hierarchy), self._pids))
                status = 0
            finally:
                os._exit(status)  # noqa: B012 - the helper never returns into the caller's code
        os.close(ready)  # so that a helper that died reads as EOF

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
        reader = Reader(self.hierarchy, defer=self.defer)
        done = dict(self._claim(reader))
        helped = self._delivered()
        self.helped = len(helped)
        done |= helped
        if not self.defer:
            self.close()
        for i in range(self._chunks):
            if i not in done:
                done[i] = self._read(reader, i)
        found = _merge(s for part in done.values() for s in part)
        if self.defer:
            self._light = found.events
        return found

    def _delivered(self) -> dict[int, list[_Seen]]:
        if not self._helper:
            return {}
        shared = os.read(self._ready, 1)  # b"": it died before
        if not shared or not self.defer:
            self._reap(0)
        chunks = _read_back(self._out, _Chunks) if shared else None
        return dict(chunks) if chunks is not None else {}

    def completed(self, wait: bool = False) -> list[ExecEvent] | None:
        """The result's events with their deferred part, once the helper has
        read it (None meanwhile, or when none is to come); read here if it
        failed. Once."""
        if self._light is None:
            return None
        found = None
        if self._helper:
            status = self._reap(0 if wait else os.WNOHANG)
            if status is None:
                return None
            if status == 0:
                found = _read_back(self._later_out, list[_Found])
        if found is None:
            found = _later(Reader(self.hierarchy), [ev.key.pid for ev in self._light])
        by_key = {ProcessKey(f.pid, f.ktime): f.later for f in found}
        events = [completed(ev, later) for ev in self._light if (later := by_key.get(ev.key)) is not None]
        self._light = None
        self.close()
        return events

    def _reap(self, options: int) -> int | None:
        """The helper's exit code once it ended (None: it still runs)."""
        assert self._helper
        pid, status = os.waitpid(self._helper, options)
        if pid == 0:
            return None
        self._helper = None
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        """Stops the helper if it still runs (a job whose result is not wanted)."""
        if self._helper:
            os.kill(self._helper, signal.SIGKILL)
            os.waitpid(self._helper, 0)
            self._helper = None
        for fd in (self._tokens, self._out, self._later_out, self._ready):
            if fd >= 0:
                os.close(fd)
        self._tokens = self._out = self._later_out = self._ready = -1
        self._light = None

    def __enter__(self) -> ScanJob:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write(fd: int, value: object) -> None:
    write_all(fd, msgspec.msgpack.encode(value))


def _read_back(fd: int, kind: type):
    """What the helper wrote to ``fd`` (None: unreadable)."""
    try:
        return msgspec.msgpack.decode(read_back(fd), type=kind)
    except msgspec.DecodeError:
        return None


def _later(reader: Reader, pids: list[int]) -> list[_Found]:
    """The deferred part of each pid's process, keyed by its start time (a
    pid reused since is another process); the gone and kernel threads left out."""
    out = []
    for pid in pids:
        try:
            d = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            _, kflags, ktime = parse_stat(read_at(d, "stat"))
            if not kflags & PF_KTHREAD:
                out.append(_Found(pid, ktime, reader.later(pid, d)))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile: its image keeps them unknown
        finally:
            os.close(d)
    return out


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
