"""The live monitor's recent past, for time travel: a checkpoint of the
cache every half window and the events since, so that any moment of the
last ``seconds`` (and at most ``max_events`` events) can be rebuilt from
the checkpoint before it and the events after that, up to the moment.

Two segments are kept: the older one's checkpoint is the window's start.
A checkpoint pickles the cache (60–130 ms and 2.6 MB at 10,000 processes,
measured here), once per half window or half its events: a storm costs one
every half minute or so, nothing per event. It is pickled in a forked child
(probes.forked), a copy of the cache at the fork, so that the UI thread
goes on after the fork's 4-5 ms; the bytes are collected at the next tick
(or when time travel needs them)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field

from procscope.probes.forked import Forked, ForkFailed

from .cache import ProcessCache
from .replay import Recorded
from .sampler import UsageEvent
from .timetravel import Checkpoint, Timeline

DEFAULT_SECONDS = 600.0
DEFAULT_EVENTS = 250_000  # about 350 bytes each (measured here): some 90 MB when full
# Events of a dropped segment freed with each batch added: half a full window freed at once held
# the monitor's UI thread 130-180 ms (125,000 events, measured here in a storm).
FREE_EACH_TIME = 4_000


@dataclass
class _Segment:
    time: int  # boot ns of its checkpoint
    data: bytes | Forked  # Forked: still being pickled by a child
    events: list[Recorded] = field(default_factory=list)  # usage events too: each sampler pass (live)
    weight: int = 0  # the usage events' processes, counted as events (the bound holds their memory too)


class Window:
    def __init__(self, seconds: float = DEFAULT_SECONDS, max_events: int = DEFAULT_EVENTS):
        """``seconds`` 0: keep nothing (time travel off)."""
        self.span_ns = int(seconds * 1e9)
        self.max_events = max(2, max_events)
        self.failed = ""  # why it stopped keeping anything, if it had to
        self._segments: list[_Segment] = []
        self._dropped: list[list[Recorded]] = []  # events of dropped segments, being freed a part at a time
        self._due = False  # a checkpoint is to be taken before the next events (see before)
        self._cgroup_path: Callable[[int], str | None] | None = None

    @property
    def enabled(self) -> bool:
        return self.span_ns > 0

    def before(self, cache: ProcessCache) -> None:
        """Before the next events are applied to ``cache``: the checkpoint
        due since a /proc scan is taken now, of the cache as the scan left it
        (not with the scan's batch, so that it does not hold up the frame
        that shows the scan)."""
        if self._due:
            self._due = False
            self._checkpoint(cache)

    def add(self, cache: ProcessCache, events: list[Recorded], scanned: bool = False) -> None:
        """After ``events`` were applied to ``cache`` (and its grace periods
        expired); ``scanned``: they hold a /proc scan's processes."""
        if not self.enabled:
            return
        self._free_some()
        self._settle(cache)
        segments = self._segments
        if scanned:  # a scan is not replayed (the second is applied with cache.rescan): a checkpoint after it
            self._due = True
            return
        if not segments:
            self._checkpoint(cache)
            return
        current = segments[-1]
        current.events.extend(events)
        if (
            cache.now - current.time >= self.span_ns // 2
            or len(current.events) + current.weight >= self.max_events // 2
        ):
            self._checkpoint(cache)

    def add_usage(self, cache: ProcessCache, ev: UsageEvent) -> None:
        """A sampler pass (the processes whose figures changed): it weighs as many events as
        the processes it carries, so 10,000 busy ones bring the next checkpoint nearer (which
        holds each figure once) rather than the window's memory past its bound."""
        if self.enabled and self._segments:
            self._segments[-1].weight += len(ev.procs)
        self.add(cache, [ev])

    def _checkpoint(self, cache: ProcessCache) -> None:
        self._settle(cache, wait=True)  # one in flight at most
        data: bytes | Forked | None
        try:
            data = Forked(cache.checkpoint, "procscope-checkpoint")
        except ForkFailed:
            data = self._pickled(cache)
        if data is None:
            return
        self._cgroup_path = cache.cgroup_resolver
        for old in self._segments[:-1]:
            if isinstance(old.data, Forked):
                old.data.cancel()
            self._dropped.append(old.events)
        self._segments = [*self._segments[-1:], _Segment(cache.now, data)]

    def _free_some(self) -> None:
        """Free up to FREE_EACH_TIME events of the segments dropped (from the end: no copying)."""
        if self._dropped:
            events = self._dropped[-1]
            del events[-FREE_EACH_TIME:]
            if not events:
                self._dropped.pop()

    def _pickled(self, cache: ProcessCache) -> bytes | None:
        """The checkpoint taken here (no child could)."""
        try:
            return cache.checkpoint()
        except (pickle.PicklingError, RecursionError, TypeError, AttributeError) as exc:
            # Never expected; time travel stops, the monitor does not.
            self.failed = f"{type(exc).__name__}: {exc}"
            self.span_ns = 0
            self._segments.clear()
            return None

    def _settle(self, cache: ProcessCache | None, wait: bool = False) -> None:
        """Collect the bytes of a checkpoint whose child is done. If its child
        failed (never seen), the moments after it cannot be rebuilt: the
        window starts again, at a checkpoint taken here of the cache now
        (or at the next, when there is no cache at hand)."""
        for seg in self._segments:
            if not isinstance(seg.data, Forked):
                continue
            try:
                got = seg.data.result(wait)
            except ForkFailed:
                for other in self._segments:
                    if isinstance(other.data, Forked) and other is not seg:
                        other.data.cancel()
                self._segments = []
                if cache is not None and (data := self._pickled(cache)) is not None:
                    self._segments = [_Segment(cache.now, data)]
                return
            if got is not None:
                seg.data = got

    @property
    def start(self) -> int | None:
        """Boot time of the oldest moment it can rebuild."""
        return self._segments[0].time if self._segments else None

    def __len__(self) -> int:
        return sum(len(s.events) for s in self._segments)

    def timeline(self, now: int, wall_offset: int | None = None) -> Timeline | None:
        """What it holds, as a timeline up to ``now`` (None while empty);
        ``wall_offset``: wall − boot clock, for times typed as RFC 3339."""
        self._settle(None, wait=True)
        if not self._segments:
            return None
        events: list[Recorded] = []
        checkpoints = []
        for s in self._segments:
            assert isinstance(s.data, bytes)  # settled
            checkpoints.append(Checkpoint(s.time, s.data, len(events), self._cgroup_path))
            events.extend(s.events)
        # Every moment it reaches is after its first checkpoint: that is its "new cache".
        return Timeline(events, checkpoints[0].cache, wall_offset, checkpoints=checkpoints, end=now)
