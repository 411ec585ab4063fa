"""Recordings back into events: `procscope events --record` files (and
`-o` streams, and real Tetragon exports: Tetragon JSON lines) and
`procscope snapshot` documents.

Files are read as they come (FIFOs and pipes too), with bounds: a line
longer than MAX_LINE_BYTES stops the reading (``/dev/zero`` is no
recording), a snapshot document is read as snapshot_doc bounds it. A corrupt
line, the first one included, is reported as FILE:LINE and skipped
(``strict`` stops instead); unknown fields and event kinds are ignored."""

from __future__ import annotations

import json
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterator
from io import BufferedReader

import msgspec
from msgspec import UNSET

from procscope.probes import names, wire
from procscope.probes.events import (
    CgroupEvent,
    CloneEvent,
    CredsEvent,
    Event,
    ExecEvent,
    ExitEvent,
    ProcessKey,
    ThrottleEvent,
)  # fmt: skip
from procscope.probes.text import clean

from . import schema, snapshot_doc
from .cache import ANY_HIERARCHY, ROOT, ProcessCache
from .kinds import CGROUP, CLONE, COUNTERS, CREDS, EXEC, EXIT, EXTRA, THROTTLE, USAGE
from .process import Lifecycle
from .records import BadRecord, cap_sets, credentials, decode, namespaces, number, parse_exec_id, parse_time, read, text
from .runtimes import ContainerInfo
from .sampler import UsageEvent
from .snapshot_doc import SnapshotError
from .usage_records import usage_event

Recorded = Event | UsageEvent  # what a recording replays: the kernel's events, and the usage records

MAX_LINE_BYTES = 64 << 20  # a process object holds at most a few MiB of arguments
MEMO_LIMIT = 4096  # distinct credentials and namespaces kept
_encode = msgspec.json.Encoder().encode

EXITED_KEPT = 1 << 20  # exited processes remembered (not to be seeded again by a late parent object)

MAX_PROCESSES = 1_000_000  # alive at once in a replay, by default: some 1.3 GB of cache

MAX_WARNINGS = 20  # bad lines reported one by one; the rest are counted


class ReplayError(Exception):
    """The recording cannot be used (unreadable, unknown schema, or a bad line under --strict)."""


class Replay:
    """Reads one recording. ``feed(cache)`` applies it; ``events()`` yields
    the events for a caller that applies them itself (once)."""

    def __init__(self, path: str, strict: bool = False, warn: Callable[[str], None] | None = None,
                 max_processes: int = MAX_PROCESSES, given: bool = False):  # fmt: skip
        """``max_processes``: reading stops (said in one line) once more are alive at once.
        ``given``: no file at ``path`` (another machine's agent, named so in what is said):
        each record is given as its object (record())."""
        self.path = path
        self.max_processes = max_processes
        self.cut_at = 0  # the line where max_processes stopped the reading
        self._cached: Callable[[], int] = lambda: 0  # processes in the cache fed (new_cache's)
        self.strict = strict
        self.warn = warn or (lambda msg: None)
        self.node = ""
        self.host_ns: dict[str, int] = {}
        self.container_info: dict[str, ContainerInfo] = {}  # what the runtimes said, as recorded
        self.counters: dict | None = None  # the last counters record
        self.recent: list[dict] = []  # a snapshot's last events, as exported
        self.bad_lines = 0
        self.good_records = 0
        self.end_time = 0  # boot ns of the last record
        self.kind = "events"
        self._offset: int | None = None  # wall − boot, learnt from the first process
        self._seen: dict[ProcessKey, bool] = {}  # keys read, True once an exec record had it (one may)
        # The same for those seen exiting (the newest EXITED_KEPT; an OrderedDict forgets its oldest in
        # O(1), where a dict's first key is found past every slot deleted before it).
        self._exited: OrderedDict[ProcessKey, bool] = OrderedDict()
        self._ppids: dict[int, int] = {}
        self._parent_of: dict[ProcessKey, ProcessKey] = {}  # exec parent of each image read
        self._current: dict[int, ProcessKey] = {}  # the last image of each pid not seen exiting
        self._made: dict[tuple, object] = {}  # _memo's
        self._file: BufferedReader | None = None
        if given:
            return
        try:
            if os.path.isdir(path):
                raise ReplayError(f"{path} is a directory; name a recording or snapshot file")
            self._file = open(path, "rb")  # noqa: SIM115 - read as events are asked for, closed at the end
        except OSError as exc:
            raise ReplayError(f"cannot read recording {path}: {exc.strerror}") from None
        head = self._file.peek(64)[:64].lstrip()
        whole = [line.lstrip() for line in self._file.peek(8192).split(b"\n")[:-1] if line.strip()]
        if whole and not any(line[:1] == b"{" for line in whole):  # one line for a file of another kind
            self._file.close()
            raise ReplayError(f"{path} is not a procscope recording, snapshot or Tetragon export (no line of its "
                              "start is a JSON object); name one of those")  # fmt: skip
        if head.startswith(b'{"schema"') or head[:1] == b"{" and head[1:2] in (b"\n", b"\r"):
            self.kind = "snapshot"
            self._load_snapshot()

    def _memo(self, make: Callable, *parts):
        """``make(*parts)``, made once per distinct value (most processes share
        their credentials and namespaces): the parts' JSON is the key."""
        try:
            key = (make, _encode(parts))
        except (TypeError, ValueError, msgspec.EncodeError):
            return make(*parts)  # what json read but msgspec will not write: made each time
        found = self._made.get(key)
        if found is None:
            if len(self._made) >= MEMO_LIMIT:
                self._made.clear()
            found = self._made[key] = make(*parts)
        return found

    # -- errors ----------------------------------------------------------------
    def _bad(self, where: int | str, reason: str) -> None:
        msg = f"{self.path}:{where}: {reason}"
        if self.strict:
            raise ReplayError(msg)
        self.bad_lines += 1
        if self.bad_lines <= MAX_WARNINGS:
            self.warn(f"{msg}; skipped")
        elif self.bad_lines == MAX_WARNINGS + 1:
            self.warn(f"{self.path}: more bad lines; they are counted, not shown")

    # -- clock and process objects ------------------------------------------------
    def _boot(self, wall_text: str) -> int:
        wall = parse_time(wall_text)
        return wall - (self._offset or 0)

    def _image(self, p: schema.Process, time_text: str | None = None) -> ExecEvent:
        """A process object (Tetragon's Process) → its exec event."""
        node, key = parse_exec_id(p.exec_id)
        self.node = self.node or node
        if self._offset is None and p.start_time:
            self._offset = parse_time(p.start_time) - key.ktime
        _, parent = parse_exec_id(p.parent_exec_id) if p.parent_exec_id else ("", ROOT)
        ns = p.ns or {}
        if not self.host_ns:
            self.host_ns.update({n: v.inum for n, v in ns.items() if v.is_host})
        own = p.own or schema.NO_OWN
        info = ContainerInfo.from_json(own.container or None)
        if info is not None and info.described:
            self.container_info[info.id] = info
        bp = p.binary_properties or schema.NO_BINARY_PROPERTIES
        inode = bp.file.inode if bp.file else schema.NO_INODE
        cg = own.cgroup or p.cgroup or schema.NO_CGROUP  # recordings before the "procscope" object had it beside
        uid = p.uid or 0
        privileges = names.raised_bits(bp.privileges_changed or [])
        privileges |= (wire.EXECVE_SETUID if bp.setuid is not UNSET else 0) | (
            wire.EXECVE_SETGID if bp.setgid is not UNSET else 0
        )
        cleanup = self._cleanup_of(key, parent, own)
        if parent.pid == key.pid and cleanup == parent:
            parent = self._parent_of.get(parent, ROOT)  # older recordings named the previous image as parent
        self._parent_of[key] = parent
        self._current[key.pid] = key
        return ExecEvent(
            time=self._boot(time_text) if time_text else key.ktime,
            key=key,
            tid=key.pid if p.tid is UNSET else p.tid,
            nspid=own.nspid if own.nspid is not UNSET else p.nspid if p.nspid is not UNSET else key.pid,
            uid=uid,
            auid=wire.UNKNOWN_ID if p.auid is UNSET else p.auid,
            # in_init_tree absent (older recordings): not known to have entered from outside.
            flags=names.flag_bits(clean(p.flags or "")) | (0 if p.in_init_tree is False else wire.FLAG_IN_INIT_TREE),
            privileges=privileges,
            nlink=inode.links,
            ino=number(inode.number, 64),
            binary=clean(p.binary or ""),
            args=tuple(clean(p.arguments).split(" ")) if p.arguments else (),  # the joined string comes back exact
            cwd=clean(p.cwd or ""),
            parent=parent,
            cleanup=cleanup,
            creds=self._memo(credentials, p.process_credentials or schema.NO_CREDENTIALS, p.cap or schema.NO_CAPS, uid),
            ns=self._memo(namespaces, ns),
            cgroup_id=number(cg.id, 64),
            cgroup_tracker_id=number(cg.id if cg.tracker_id is UNSET else cg.tracker_id, 64),
            cgroup_name=clean(cg.name),
            cgroup_path=clean(cg.path),
            argv0=clean(own.argv0 or ""),
        )

    def _creds_event(self, c: dict, time_text: str) -> CredsEvent:
        _, key = parse_exec_id(c["process"]["exec_id"])
        new, old = read(c["new"], schema.CredsSide), read(c.get("old", {}), schema.CredsSide)
        pc = new.process_credentials
        return CredsEvent(self._boot(time_text), key, number(c["process"].get("tid", key.pid)), text(c.get("syscall", "")),
                          credentials(pc, pc.caps, pc.euid or 0), namespaces(new.ns),
                          cap_sets(new.cap_sets), cap_sets(old.cap_sets))  # fmt: skip

    def _cleanup_of(self, key: ProcessKey, parent: ProcessKey, own: schema.Own) -> ProcessKey | None:
        """The image this exec replaced: recorded by procscope; in older
        recordings the parent when it has the same pid; in a Tetragon
        export, the last image of this pid that was not seen exiting."""
        if own.previous_exec_id:
            return parse_exec_id(own.previous_exec_id)[1]
        if parent.pid == key.pid:
            return parent
        before = self._current.get(key.pid)
        return before if before is not None and before != key else None

    def _seed(self, p: dict | None, time_text: str | None = None) -> Iterator[ExecEvent]:
        """A process object for a process not seen yet (a recording that
        started mid-stream, or a parent object) becomes its exec event."""
        if not p or "binary" not in p:
            return
        _, key = parse_exec_id(p["exec_id"])
        if key not in self._seen and key not in self._exited:
            self._seen[key] = False
            yield self._image(read(p, schema.Process), time_text)

    # -- JSON lines ------------------------------------------------------------------
    def _record(self, rec: dict) -> list[Recorded]:
        if not isinstance(rec, dict):
            raise BadRecord("not a JSON object")
        if "time" in rec and self._offset is not None:
            self.end_time = max(self.end_time, self._boot(rec["time"]))
        out: list[Recorded] = []
        try:
            if EXEC in rec:
                body = rec[EXEC]
                out += self._seed(body.get("parent"))
                proc = read(body["process"], schema.Process)
                _, key = parse_exec_id(proc.exec_id)
                if self._seen.get(key) or self._exited.get(key):
                    raise BadRecord(f"duplicate exec_id {proc.exec_id!r}: an earlier exec has it")
                self._seen[key] = True
                out.append(self._image(proc, rec.get("time")))
            elif EXIT in rec:
                body = rec[EXIT]
                out += self._seed(body.get("parent"))
                out += self._seed(body["process"])
                _, key = parse_exec_id(body["process"]["exec_id"])
                code = number(body.get("status", 0), 8) << 8 | names.signal_number(body.get("signal", ""))
                code |= 0x80 if (body.get(EXTRA) or body).get("core_dumped") else 0
                when = self._boot(body.get("time") or rec["time"])
                if self._current.get(key.pid) == key:
                    del self._current[key.pid]
                out.append(ExitEvent(when, key, number(body["process"].get("tid", key.pid)), code))
                self._forget(key)
            elif CLONE in rec:
                c = rec[CLONE]
                _, key = parse_exec_id(c["exec_id"])
                _, parent = parse_exec_id(c["parent_exec_id"])
                self._seen.setdefault(key, False)
                self._parent_of[key] = parent
                self._current[key.pid] = key
                flags = wire.FLAG_CLONE | names.flag_bits(text(c.get("flags", "")))
                out.append(CloneEvent(self._boot(rec["time"]), key, number(c.get("tid", key.pid)),
                                      number(c.get("nspid", key.pid)), parent, flags))  # fmt: skip
            elif THROTTLE in rec:
                t = rec[THROTTLE]
                kind = {v: k for k, v in wire.THROTTLE_NAMES.items()}.get(t["type"])
                if kind is None:
                    raise BadRecord(f"unknown throttle type {t['type']!r}")
                own = t.get(EXTRA) or t  # recordings before the "procscope" object had these beside type and cgroup
                counts = own.get("suppressed", {})
                out.append(ThrottleEvent(self._boot(rec["time"]), kind, number(own.get("cgroup_id", 0), 64), text(t["cgroup"]),
                                         tuple(number(counts.get(op, 0), 64) for op in wire.RATE_OPS),
                                         text(own.get("path", ""))))  # fmt: skip
            elif CGROUP in rec:
                c = rec[CGROUP]
                op = {v: k for k, v in wire.CGROUP_OP_NAMES.items()}.get(c["op"])
                if op is None:
                    raise BadRecord(f"unknown cgroup op {c['op']!r}")
                out.append(CgroupEvent(self._boot(rec["time"]), op, number(c["pid"]), number(c.get("nspid", c["pid"])),
                                       number(c.get("flags", 0)), number(c["cgroup_id"], 64),
                                       number(c.get("tracker_id", c["cgroup_id"]), 64), number(c.get("level", 0)),
                                       number(c["hierarchy_id"]), text(c.get("name", "")), text(c["path"])))  # fmt: skip
            elif CREDS in rec:
                out.append(self._creds_event(rec[CREDS], rec["time"]))
            elif COUNTERS in rec:
                self.counters = rec[COUNTERS]
            elif USAGE in rec:
                out.append(usage_event(rec[USAGE], self._boot(rec["time"])))
        except KeyError as exc:
            raise BadRecord(f"missing field {exc.args[0]!r}") from None
        except (TypeError, AttributeError, ValueError, OverflowError) as exc:
            if isinstance(exc, BadRecord):
                raise
            raise BadRecord(f"malformed record ({exc})") from None
        return out

    def _forget(self, key: ProcessKey) -> None:
        """An exited process: what is kept of it is bounded (a recording may hold millions)."""
        self._exited[key] = self._seen.pop(key, False)
        self._parent_of.pop(key, None)
        if len(self._exited) > EXITED_KEPT:
            self._exited.popitem(last=False)

    def record(self, rec: dict) -> list[Recorded]:
        """The events of one record given as its object (``given``), read as a line's."""
        if self.cut_at:
            return []
        where = self.good_records + self.bad_lines + 1
        try:
            events = self._record(rec)
        except BadRecord as exc:
            self._bad(where, str(exc))
            return []
        self.good_records += 1
        self._cut(where)
        return events

    def _cut(self, where: int) -> bool:
        """Whether reading stops at ``where``: more than max_processes alive at once (said)."""
        if len(self._current) > self.max_processes or self._cached() > self.max_processes:
            self.cut_at = where
            self.warn(f"{self.path}:{where}: more than {self.max_processes:,} processes at once; "
                      "read up to here (--max-processes N reads further, with more memory)")  # fmt: skip
            return True
        return False

    def _lines(self) -> Iterator[Recorded]:
        f, lineno = self._file, 0
        if f is None:  # given: nothing to read (record())
            return
        with f:
            while raw := f.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                if len(raw) > MAX_LINE_BYTES:
                    # Not a recording (or a broken one): resynchronising could mean reading for ever.
                    self._bad(lineno, f"line longer than {MAX_LINE_BYTES >> 20} MiB; the rest of the file is not read")
                    return
                if not raw.strip():
                    continue
                try:
                    # Decoded here: json would guess UTF-16 or UTF-32 from the bytes, and say so.
                    rec = decode(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    self._bad(lineno, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
                    continue
                except json.JSONDecodeError as exc:
                    last = not raw.endswith(b"\n")  # readline stops short of a newline only at the end
                    self._bad(lineno, "truncated record (the recording was cut short)" if last else f"not JSON ({exc})")
                    continue
                except RecursionError:
                    self._bad(lineno, "nested too deeply to be a record")
                    continue
                try:
                    events = self._record(rec)
                except BadRecord as exc:
                    self._bad(lineno, str(exc))
                    continue
                self.good_records += 1
                yield from events
                if self._cut(lineno):
                    return
        if lineno and not self.good_records:
            self.warn(f"{self.path}: no line could be read; is it a procscope recording, snapshot or Tetragon export?")

    # -- snapshots -------------------------------------------------------------------
    def _load_snapshot(self) -> None:
        assert self._file is not None
        try:
            self._doc = doc = snapshot_doc.load(self.path, self._file)
        except SnapshotError as exc:
            raise ReplayError(str(exc)) from None
        try:
            h = snapshot_doc.header(doc)
        except (BadRecord, KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ReplayError(f"{self.path}: malformed snapshot header ({exc}); it cannot be read") from None
        self.node, self._offset, self.end_time, self.recent = h.node, h.offset, h.boot, h.recent
        self.counters = h.counters
        self.host_ns.update(h.host_ns)

    def _snapshot_events(self) -> Iterator[Event]:
        exits: list[ExitEvent] = []
        for i, obj in enumerate(self._doc.get("processes", [])):
            try:
                p = read(obj, schema.Process)
                ext = p.own or schema.NO_OWN
                if ext.state == Lifecycle.PLACEHOLDER.value:
                    # Recreated (and counted as a miss) by its exit, or by a child that names it.
                    if ext.exit_time:
                        _, key = parse_exec_id(p.exec_id)
                        exits.append(ExitEvent(ext.exit_time, key, key.pid, ext.exit_code or 0))
                    continue
                ev = self._image(p)
                if ext.ppid_exec_id:
                    self._ppids[ev.key.pid] = parse_exec_id(ext.ppid_exec_id)[1].pid
                yield ev
                if ext.state == Lifecycle.EXITED.value:
                    if ext.exit_time is UNSET:
                        raise BadRecord("an exited process without its exit_time")
                    exits.append(ExitEvent(ext.exit_time, ev.key, ev.tid, ext.exit_code or 0))
            except (BadRecord, KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                self._bad(f"process #{i + 1}", str(exc))
        yield from sorted(exits, key=lambda e: e.time)

    # -- use ---------------------------------------------------------------------------
    @property
    def streaming(self) -> bool:
        """Read from a pipe, FIFO or device: events come as they are written."""
        try:  # given (no file): as they come
            return self._file is None or not stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        except (OSError, ValueError):  # closed: read to its end already
            return False

    def events(self) -> Iterator[Recorded]:
        return self._snapshot_events() if self.kind == "snapshot" else self._lines()

    @property
    def wall_offset(self) -> int | None:
        """Wall clock − boot clock when it was recorded (None before the first process)."""
        return self._offset

    def current_parent(self, pid: int) -> int | None:
        """For snapshots: the parent each live process had when it was taken."""
        return self._ppids.get(pid)

    def new_cache(self, grace_ns: int) -> ProcessCache:
        """A cache for this recording's events. Recordings keep only the
        tracked hierarchy's cgroup events, so all of them apply."""
        cache = ProcessCache(grace_ns=grace_ns, cgroup_hierarchy=ANY_HIERARCHY)
        self._cached = lambda: len(cache.procs)  # max_processes counts those exited in their grace too
        cache.host_ns = self.host_ns  # the same dict: filled as the first process is read
        cache.cgroup_index.info = self.container_info  # the same: filled as processes are read
        if self.kind == "snapshot":
            cache.current_parent = self.current_parent
        return cache

    def feed(self, cache: ProcessCache, on_event: Callable[[Recorded], None] | None = None) -> None:
        self._cached = lambda: len(cache.procs)
        cache.host_ns = self.host_ns  # filled as the first process is read
        cache.cgroup_index.info = self.container_info
        if self.kind == "snapshot":
            cache.current_parent = self.current_parent
        for ev in self.events():
            cache.apply(ev)
            cache.expire()
            if on_event is not None:
                on_event(ev)
        if self.end_time:
            cache.expire(self.end_time)
