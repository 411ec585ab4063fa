"""A recording as of any moment: the cache rebuilt from its events up to
that moment (`snapshot --replay FILE --at TIME`), and what changed between
two moments (`--diff T1 T2`): processes started, exited, and privileges
gained or lost."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from procscope.probes import names, wire
from procscope.probes.events import CloneEvent, CredsEvent, ExecEvent, ExitEvent

from . import describe
from .cache import Process, ProcessCache
from .export import Exporter
from .records import BadRecord, parse_time
from .replay import Recorded, Replay

_RELATIVE = re.compile(r"([+-])(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNIT = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class MomentError(ValueError):
    pass


@dataclass(frozen=True)
class Moment:
    """A time in a recording: RFC 3339 (wall clock), or relative to its end
    (-30s) or to its start (+10s)."""

    text: str
    wall_ns: int | None = None
    from_end: bool = False
    offset_ns: int = 0

    @classmethod
    def parse(cls, text: str) -> Moment:
        if m := _RELATIVE.fullmatch(text.strip()):
            ns = int(float(m[2]) * _UNIT[m[3]] * 1e9)
            return cls(text, from_end=m[1] == "-", offset_ns=-ns if m[1] == "-" else ns)
        try:
            return cls(text, wall_ns=parse_time(text.strip()))
        except BadRecord:
            raise MomentError(
                f"bad time {text!r}: write RFC 3339 (2026-12-01T10:00:00Z), or -30s from the end, +10s from the start"
            ) from None


@dataclass(frozen=True)
class Checkpoint:
    """The cache at boot time ``time`` (ProcessCache.checkpoint), before events[index]."""

    time: int
    data: bytes
    index: int
    cgroup_path: Callable[[int], str | None] | None = None

    def cache(self) -> ProcessCache:
        return ProcessCache.from_checkpoint(self.data, self.cgroup_path)


MAX_EVENTS = 2_000_000  # a recording's events held to look back through (about 350 bytes each)


class Timeline:
    """Events in order, the cache they build, and its clock: a recording's
    (``of_replay``), or the live monitor's recent past (procscope.window),
    which starts from a checkpoint of the cache instead of nothing."""

    def __init__(self, events: Sequence[Recorded], new_cache: Callable[[], ProcessCache], wall_offset: int | None = None,
                 node: str = "", checkpoints: Sequence[Checkpoint] = (), end: int | None = None):  # fmt: skip
        """``checkpoints``: the cache at some moments, oldest first (the
        timeline starts at the first); ``end``: the clock's now, if later
        than the last event."""
        self.events = events
        self.new_cache = new_cache
        self.wall_offset = wall_offset
        self.node = node
        self.checkpoints = list(checkpoints)
        timed = [ev.time for ev in events if not scanned(ev)]
        self.start = self.checkpoints[0].time if self.checkpoints else min(timed, default=0)
        self.end = max(max(timed, default=0), self.checkpoints[-1].time if self.checkpoints else 0, end or 0)

    @classmethod
    def of_replay(cls, replay: Replay, grace_ns: int, events: list[Recorded] | None = None,
                  max_events: int = MAX_EVENTS) -> Timeline:  # fmt: skip
        """``events``: the recording's, when already read (a Replay reads its file once);
        else its first ``max_events`` (a line says so when there are more)."""
        if events is None:
            events = list(itertools.islice(replay.events(), max_events + 1))
            if len(events) > max_events:
                events.pop()
                replay.warn(f"{replay.path}: only its first {max_events:,} events are looked back through")
        return cls(events, lambda: replay.new_cache(grace_ns), replay.wall_offset, replay.node)

    def boot_time(self, moment: Moment) -> int:
        if moment.wall_ns is not None:
            return moment.wall_ns - (self.wall_offset or 0)
        return (self.end if moment.from_end else self.start) + moment.offset_ns

    def cache_at(self, t: int, seen: dict | None = None) -> ProcessCache:
        """The cache as it was at boot time ``t``: the events up to then, and
        the grace periods then over; ``seen`` gets every image exec'd or
        cloned by then (key → process), expired ones too."""
        base = next((c for c in reversed(self.checkpoints) if c.time <= t), None)
        if base is not None:
            cache, first = base.cache(), base.index
            if seen is not None:
                seen.update(cache.procs)
        else:
            cache, first = self.new_cache(), 0
        for ev in itertools.islice(self.events, first, None):
            # Filtered, not cut at the first later one: CPUs' events interleave a little. The /proc
            # scan describes the start (its events are timed by when the scan read them).
            if ev.time <= t or scanned(ev):
                proc = cache.apply(ev)
                if seen is not None and proc is not None and isinstance(ev, ExecEvent | CloneEvent):
                    seen[proc.key] = proc
        cache.now = max(cache.now, t)
        cache.expire(t)
        return cache

    def diff(self, t1: int, t2: int) -> dict:
        """What started, exited, and gained or lost privileges after ``t1`` up to ``t2``."""
        before, after = self.cache_at(t1), self.cache_at(t2)
        exporter = Exporter(after, node=self.node or None, wall_offset=self.wall_offset)

        def brief(p: Process) -> dict:
            return {"exec_id": exporter.exec_id(p.key), "pid": p.pid, "binary": p.binary, "arguments": " ".join(p.args),
                    "user": describe.user(p), "start_time": exporter.time(p.key.ktime)}  # fmt: skip

        started = [p for p in after.procs.values() if p.image is not None and t1 < p.image.time <= t2
                   and not p.image.flags & wire.FLAG_PROCFS]  # fmt: skip
        exits = [ev for ev in self.events if isinstance(ev, ExitEvent) and t1 < ev.time <= t2]
        exited = [{**brief(p), "exit_time": exporter.time(ev.time)} if (p := after.procs.get(ev.key) or before.procs.get(ev.key))
                  else {"exec_id": exporter.exec_id(ev.key), "pid": ev.key.pid, "exit_time": exporter.time(ev.time)}
                  for ev in exits]  # fmt: skip
        privileges = []
        for p in started:
            assert p.image is not None  # started: exec'd or cloned, so described
            if p.image.privileges:
                privileges.append({**brief(p), "time": exporter.time(p.image.time), "gained": True,
                                   "what": "exec: " + " ".join(names.privilege_badges(p.image.privileges))})  # fmt: skip
        for ev in self.events:
            if isinstance(ev, CredsEvent) and t1 < ev.time <= t2 and (p := after.procs.get(ev.key)) is not None:
                for change in p.changes or ():
                    if change.time == ev.time:
                        privileges.append({**brief(p), "time": exporter.time(change.time), "gained": change.rose,
                                           "what": describe.change_text(change, after.host_ns)})  # fmt: skip
        by_time = lambda e: e["start_time"]  # noqa: E731
        return {
            "schema": "procscope-diff", "from": exporter.time(t1), "to": exporter.time(t2),
            "started": sorted((brief(p) for p in started), key=by_time),
            "exited": sorted(exited, key=lambda e: e["exit_time"]),
            "privileges": sorted(privileges, key=lambda e: e["time"]),
        }  # fmt: skip


def scanned(ev: Recorded) -> bool:
    """Found by a /proc scan: describes the start, not an exec at its time."""
    return isinstance(ev, ExecEvent) and bool(ev.flags & wire.FLAG_PROCFS)
