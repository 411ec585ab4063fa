"""The event stream of `procscope events`: every event goes through the
process cache, and the matching ones become lines for each output that
wants their kind.

Two kinds of output: the stream (stdout or ``-o``: Tetragon's event kinds,
plus procscope's own only when ``--include`` asks), and the recording
(``--record``: procscope's superset, everything a replay needs to rebuild
the tree: the /proc scan, clones, cgroup moves and the counters)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, cast

import msgspec

from procscope.probes import wire
from procscope.probes.collector import Collector
from procscope.probes.events import CgroupEvent, CloneEvent, CredsEvent, ExecEvent, ExitEvent, ProcessKey, ThrottleEvent

from . import describe, heap
from .cache import ANY_HIERARCHY, Process, ProcessCache
from .compact import compact
from .export import Exporter, Refs, json_bytes
from .kinds import USAGE
from .query import Query
from .sampler import Sampler, Usage
from .usage_records import record_body

INCLUDABLE = ("clone", "counters", "procfs", "cgroup", "creds", "usage")  # procscope's own kinds
TETRAGON_KINDS = frozenset({"exec", "exit", "throttle"})
_LIFECYCLE = (ExecEvent, CloneEvent, ExitEvent)
RECORDED = TETRAGON_KINDS | set(INCLUDABLE)


class Sink(Protocol):
    def write(self, line: bytes, /) -> object: ...
    def flush(self) -> object: ...
    def close(self) -> object: ...


@dataclass(eq=False, slots=True)
class ProcessEvent:
    """An exec (or the scan's) or an exit, made into its line or object
    only when written (after its batch was applied: EventStream.feed), as
    its process showed at the event; an ObjectSink gets it as it is (the
    agent makes its messages from the process, kept per process)."""

    kind: str  # "exec", "procfs" or "exit"
    proc: Process
    exit: ExitEvent | None
    exporter: Exporter
    refs: Refs  # the process's and its parent's refcnt at the event: the rest of what they show is unchanged since
    parent: Process | None  # its parent in the cache (the agent's message has it)
    _object: dict | None = None

    def object(self) -> dict:
        if self._object is None:
            ex, proc, refs = self.exporter, self.proc, self.refs
            self._object = ex.exec_event(proc, refs) if self.exit is None else ex.exit_event(self.exit, proc, refs)
        return self._object

    def line(self) -> bytes:
        ex, proc, refs = self.exporter, self.proc, self.refs
        return ex.exec_line(proc, refs) if self.exit is None else ex.exit_line(self.exit, proc, refs)


class ObjectSink(Protocol):
    """An Output's sink when ``objects``: each event's object as the
    exporter made it, execs and exits as ProcessEvents (a batch's at once,
    when nothing counts them: the agent's storm, a call per event less)."""

    def write(self, obj: dict | ProcessEvent, /) -> object: ...
    def write_all(self, events: list[ProcessEvent], /) -> object: ...
    def flush(self) -> object: ...
    def close(self) -> object: ...


@dataclass
class Output:
    """One destination: ``write(line)`` of one line as bytes, without its
    newline, and ``flush()`` (a StreamFile, or stdout), the kinds it takes,
    and its format."""

    sink: Sink | ObjectSink
    kinds: frozenset[str]
    compact: bool = False
    objects: bool = False  # the sink takes each event's object, not a line (the gRPC agent)
    written: int = 0


class EventStream:
    """Feeds events through the cache and writes the matching ones; the
    outputs' ``written`` counts survive an interrupt."""

    def __init__(self, cache: ProcessCache, outputs: list[Output], query: Query | None = None, count: int | None = None,
                 left_out: frozenset[str] = frozenset()):  # fmt: skip
        """``count``: stop once the first output has this many lines; ``left_out``: Exporter.left_out."""
        self.cache = cache
        self.exporter = Exporter(cache)
        self.exporter.left_out = left_out
        self.outputs = outputs
        self.query = query or Query()
        self.count = count
        self.wanted = frozenset().union(*(o.kinds for o in outputs))
        self._pending: list[ProcessEvent] = []  # the batch's execs and exits, written once it is applied
        self._shown: set[ProcessKey] = set()  # their processes and parents
        self._match = self.query.predicate(cache)
        self._sampler: Sampler | None = None  # made when usage lines are wanted (a recording)
        self._usage_sent: dict = {}  # the figures of the last usage line, by key

    def _emit(self, kind: str, obj: dict | ProcessEvent) -> bool:
        """Write one event (its object, or its line of JSON) to the outputs
        that take its kind; True once --count is reached."""
        line = text = None
        for out in self.outputs:
            if kind not in out.kinds:
                continue
            if out.objects:
                cast(ObjectSink, out.sink).write(obj)
            elif out.compact:
                if text is None:
                    text = compact(obj.object() if isinstance(obj, ProcessEvent) else obj).encode(
                        "utf-8", "backslashreplace"
                    )
                cast(Sink, out.sink).write(text)
            else:
                if line is None:  # an exec's or exit's joined from process objects encoded once
                    line = obj.line() if isinstance(obj, ProcessEvent) else json_bytes(obj)
                cast(Sink, out.sink).write(line)
            out.written += 1
        return self.count is not None and self.outputs[0].written >= self.count

    def _other(self, ev, proc: Process | None) -> tuple[str, dict] | None:
        """The line of an event that is not an exec or exit (those: feed), applied: ``proc`` is its process."""
        if isinstance(ev, ThrottleEvent):
            return ("throttle", self.exporter.throttle_event(ev)) if self._throttle_matches(ev) else None
        if isinstance(ev, CgroupEvent):
            tracked = self.cache.cgroup_hierarchy in (ev.hierarchy_id, ANY_HIERARCHY)
            wanted = "cgroup" in self.wanted and tracked and (not self.query or proc is not None and self._match(proc))
            return ("cgroup", self.exporter.cgroup_event(ev)) if wanted else None
        if proc is None or (self.query and not self._match(proc)):
            return None
        if isinstance(ev, CloneEvent) and "clone" in self.wanted:
            return "clone", self.exporter.clone_event(ev)
        if isinstance(ev, CredsEvent) and "creds" in self.wanted and proc.changes:  # proc: only when something changed
            return "creds", self.exporter.creds_event(proc, proc.changes[-1])
        return None

    def _throttle_matches(self, ev: ThrottleEvent) -> bool:
        """Losses are never filtered away, except those of cgroups that the
        filter's container and cgroup terms exclude."""
        where = self.query.about_cgroups()
        t = self.cache.throttles.get(ev.cgroup_id)
        if not where or t is None:
            return True
        probe = Process(ProcessKey(0, 0), None, 0)  # a stand-in with the cgroup's place only
        probe.cgroup, probe.container = t.path, t.container
        return where.predicate(self.cache)(probe)

    def feed(self, batch: Iterable) -> bool:
        """Apply and write a batch; True once --count is reached. Its execs
        and exits are written once it is applied: made one after the other,
        not between the cache's work, they cost about half (offline, on a
        recorded storm: the agent's messages 3.0 µs an event instead of 5.7;
        `events`' lines 8.1 instead of 10.0 with the cache's work). What an
        event could change in a pending one's process or parent (but
        refcnt, kept at the event) is written before the event is applied:
        any event but an exec, clone or exit, and an exec or clone under
        one of their keys (a placeholder described, an image replaced
        under its key); an exit changes nothing its lines show."""
        match = None
        if self.query:
            match = self._match = self.query.predicate(self.cache)
        pending, shown, wanted, exporter = self._pending, self._shown, self.wanted, self.exporter
        apply, parent_of, clones = self.cache.apply, self.cache.parent_of, "clone" in self.wanted
        try:
            for ev in batch:
                kind = type(ev)
                if (
                    pending
                    and (kind not in _LIFECYCLE or (kind is not ExitEvent and ev.key in shown))
                    and self._write()
                ):
                    return True
                if kind is ExecEvent or kind is ExitEvent:  # most of a storm's: taken here, a call less each
                    proc = apply(ev)
                    if proc is None or (match is not None and not match(proc)):
                        continue
                    if kind is ExitEvent:
                        name, exit = "exit", ev
                    else:
                        name, exit = ("procfs" if ev.flags & wire.FLAG_PROCFS else "exec"), None
                        if name not in wanted:
                            continue
                    parent = parent_of(proc)
                    refs = proc.refs, parent.refs if parent is not None else None
                    pending.append(ProcessEvent(name, proc, exit, exporter, refs, parent))
                    shown.add(proc.key)
                    shown.add(proc.parent)
                elif kind is CloneEvent and not clones:
                    apply(ev)
                elif (found := self._other(ev, apply(ev))) is not None and (
                    (pending and self._write()) or self._emit(*found)  # in their order
                ):
                    return True
        except BaseException:  # an interrupt: what was applied is written
            if pending:
                self._write()
            raise
        if pending and self._write():
            return True
        self.cache.expire()
        return False

    def _write(self) -> bool:
        """Write the pending execs and exits; True once --count is reached."""
        try:
            if self.count is None and all(out.objects for out in self.outputs):
                for out in self.outputs:
                    events = [e for e in self._pending if e.kind in out.kinds]
                    cast(ObjectSink, out.sink).write_all(events)
                    out.written += len(events)
                return False
            return any(self._emit(event.kind, event) for event in self._pending)
        finally:
            self._pending.clear()
            self._shown.clear()

    def _usage_line(self, now: int) -> dict:
        """What processes, containers and the machine use now: those changed since the last line."""
        if self._sampler is None:
            self._sampler = Sampler()
        self._sampler.containers = self.cache.cgroup_index.container_cgroups()
        table = self._sampler.sample()
        if self.query:  # the filter narrows these lines too: only its processes' figures
            by_pid, match = self.cache.by_pid, self._match
            table = dataclasses.replace(table, procs={k: u for k, u in table.procs.items()
                                                      if (p := by_pid.get(k.pid)) is not None and match(p)})  # fmt: skip
        if self.cache.exit_cpu:  # the exited descendants' CPU as summed here, not only the waited-for
            table = dataclasses.replace(table, procs={k: self._with_descendants(k, u) for k, u in table.procs.items()})
        body = record_body(table, self._usage_sent, self.exporter.node)
        self._usage_sent = table.procs
        return self.exporter.record(USAGE, body, now)

    def _with_descendants(self, key: ProcessKey, u: Usage) -> Usage:
        proc = self.cache.by_pid.get(key.pid)
        if proc is None or key.ktime not in self.cache.start_times(proc):
            return u
        children = describe.children_cpu_ns(proc, self.cache, u)
        return u if children in (None, u.children_cpu_ns) else msgspec.structs.replace(u, children_cpu_ns=children)

    def flush(self) -> None:
        for out in self.outputs:
            out.sink.flush()

    def run_live(self, collector: Collector, duration: float | None) -> None:
        """Collect until ``duration`` (or --count, or Ctrl-C), flushing every
        output at least once a second (what was flushed survives a crash)."""
        deadline = time.monotonic() + duration if duration is not None else None
        next_second = time.monotonic() + 1.0
        collector.start()
        with heap.settled() as full:
            while deadline is None or time.monotonic() < deadline:
                if self.feed(collector.get_batch(timeout=0.1) or []):
                    return
                if self.wanted & {"counters", "usage"} and time.monotonic() >= next_second:
                    next_second += 1.0
                    now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
                    self.cache.expire(now)
                    if "counters" in self.wanted and self._emit(
                        "counters", self.exporter.counters_event(collector.counters(), now)
                    ):
                        return
                    if "usage" in self.wanted and self._emit("usage", self._usage_line(now)):
                        return
                self.flush()
                full.due()
