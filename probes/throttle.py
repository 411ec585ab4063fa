"""The user-space half of the per-cgroup rate limit (`--cgroup-rate`).

The BPF side counts each cgroup's events per CPU in a sliding window and,
on the first crossing, sends one THROTTLE message and suppresses the
cgroup's events. Here that becomes THROTTLE_START; about once a second the
throttled cgroups are checked, and once a cgroup's rate has stayed under the
limit on every CPU for ``QUIET_NS`` its ``throttled`` marks are cleared and
THROTTLE_STOP goes out with the number of events suppressed. Pure logic:
the maps are reached through ``RateMaps``, so this is tested without BPF."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import wire
from .events import CgroupEvent, ThrottleEvent, ThrottleMsg

QUIET_NS = 5_000_000_000  # Tetragon's: under the limit this long before STOP
# Bounds that keep the BPF side's window arithmetic (in µs, 64 bits) exact.
MAX_RATE_EVENTS = 1_000_000_000
MIN_RATE_INTERVAL_NS = 1_000_000
MAX_RATE_INTERVAL_NS = 3600 * 10**9
CHECK_NS = 1_000_000_000
_UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class RateError(ValueError):
    pass


@dataclass(frozen=True)
class RateLimit:
    events: int
    interval_ns: int

    def __str__(self) -> str:
        return f"{self.events} events per {self.interval_ns / 1e9:g}s"


def parse_rate(text: str) -> RateLimit:
    """``EVENTS,INTERVAL`` as Tetragon's --cgroup-rate: ``1000,1s``,
    ``100,1m``, ``50,500ms``."""
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", text)
    if not m:
        raise RateError(f"bad cgroup rate {text!r}: expected EVENTS,INTERVAL such as 1000,1s (units ms, s, m, h)")
    events, interval = int(m[1]), int(float(m[2]) * _UNITS[m[3]])
    if not 1 <= events <= MAX_RATE_EVENTS:
        raise RateError(f"bad cgroup rate {text!r}: events must be from 1 to {MAX_RATE_EVENTS:,}")
    if not MIN_RATE_INTERVAL_NS <= interval <= MAX_RATE_INTERVAL_NS:
        raise RateError(f"bad cgroup rate {text!r}: the interval must be from 1ms to 1h")
    return RateLimit(events, interval)


@dataclass
class Window:
    """One CPU's window for one cgroup, as the BPF map holds it."""

    curr: int
    prev: int
    time: int
    throttled: int

    def rate_at(self, now: int, interval: int) -> float:
        """The window's rate as if an event came at ``now`` (without it):
        it decays while the cgroup is silent, which the map's last stored
        ``rate`` does not."""
        curr, prev, start = self.curr, self.prev, self.time
        if now - start > 2 * interval:
            return 0.0
        if now - start > interval:
            curr, prev, start = 0, curr, start + interval
        return (interval - (now - start)) * prev / interval + curr


class RateMaps(Protocol):
    def windows(self, cgroup_id: int) -> Sequence[Window] | None:
        """Per-CPU windows; None when the cgroup has none (removed)."""

    def clear_throttled(self, cgroup_id: int) -> None: ...

    def suppressed(self, cgroup_id: int) -> tuple[int, ...]:
        """Suppressed events per op (wire.RATE_OPS), summed over CPUs."""

    def forget(self, cgroup_id: int) -> None:
        """Drop the cgroup's suppressed counts (after its rmdir)."""

    def totals(self) -> tuple[int, ...]:
        """Suppressed events per op over all cgroups (exact even for removed ones)."""


class BpfRateMaps:
    """RateMaps on the BPF side's maps."""

    def __init__(self, bpf):
        self.rates = bpf[b"cgroup_rate_map"]
        self.counts = bpf[b"cgroup_suppressed"]
        self.total = bpf[b"suppressed_total"]

    def windows(self, cgroup_id: int) -> list[Window] | None:
        try:
            per_cpu = self.rates[self.rates.Key(cgroup_id)]
        except KeyError:
            return None
        return [Window(v.curr, v.prev, v.time, v.throttled) for v in per_cpu]

    def clear_throttled(self, cgroup_id: int) -> None:
        # Races the BPF side's update as Tetragon's does: a crossing in
        # between throttles again with the next event.
        key = self.rates.Key(cgroup_id)
        try:
            per_cpu = self.rates[key]
        except KeyError:
            return
        for v in per_cpu:
            v.throttled = 0
        self.rates[key] = per_cpu

    def suppressed(self, cgroup_id: int) -> tuple[int, ...]:
        try:
            per_cpu = self.counts[self.counts.Key(cgroup_id)]
        except KeyError:
            return (0,) * len(wire.RATE_OPS)
        return tuple(sum(cpu.n[i] for cpu in per_cpu) for i in range(len(wire.RATE_OPS)))

    def forget(self, cgroup_id: int) -> None:
        with contextlib.suppress(KeyError):
            del self.counts[self.counts.Key(cgroup_id)]

    def totals(self) -> tuple[int, ...]:
        return tuple(sum(self.total[i]) for i in range(len(wire.RATE_OPS)))


def added(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Per-op counts summed: the one place suppressed counts add up."""
    return tuple(x + y for x, y in zip(a, b, strict=True))


@dataclass
class Throttled:
    name: str
    since: int
    below_since: int | None = None


@dataclass
class ThrottleMonitor:
    limit: RateLimit
    maps: RateMaps
    hierarchy_id: int
    quiet_ns: int = QUIET_NS
    active: dict[int, Throttled] = field(default_factory=dict)
    reported: dict[int, tuple[int, ...]] = field(default_factory=dict)  # suppressed counts at the last STOP
    # Every cgroup throttled so far: id → (name, counts its STOPs reported).
    seen: dict[int, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    last_check: int = 0

    def process(self, batch: list, now: int) -> list:
        """A decoded batch with the kernel's throttle messages replaced by
        START events, and the STOPs that are due added."""
        out: list = []
        made: list[ThrottleEvent] = []
        for ev in batch:
            if not isinstance(ev, ThrottleMsg):
                out.append(ev)
            if isinstance(ev, (ThrottleMsg, CgroupEvent)):  # the only records the monitor acts on
                found = self.handle(ev, now)
                out += found
                made += found
        stops = self.check(now)
        out += stops
        for ev in made + stops:
            name, counts = self.seen.get(ev.cgroup_id, (ev.name, (0,) * len(wire.RATE_OPS)))
            self.seen[ev.cgroup_id] = (name, added(counts, ev.suppressed))
        return out

    def by_cgroup(self) -> dict[str, dict[str, int]]:
        """Suppressed events per op of each cgroup throttled so far."""
        out = {}
        for cgroup_id, (name, reported) in self.seen.items():
            # The map's counts only grow; once the cgroup is removed they are gone, and its STOP reported them.
            counts = map(max, self.maps.suppressed(cgroup_id), reported)
            out[name] = dict(zip(wire.RATE_OPS, counts, strict=True))
        return out

    def handle(self, ev, now: int) -> list[ThrottleEvent]:
        """Throttle events caused by one decoded record."""
        if isinstance(ev, ThrottleMsg):
            if ev.cgroup_id in self.active:
                return []  # another CPU crossed too: one START per cgroup
            self.active[ev.cgroup_id] = Throttled(ev.name, ev.time)
            return [ThrottleEvent(ev.time, wire.THROTTLE_START, ev.cgroup_id, ev.name)]
        if isinstance(ev, CgroupEvent) and ev.op == wire.CGROUP_RMDIR and ev.hierarchy_id == self.hierarchy_id:
            out = []
            if ev.cgroup_id in self.active:
                out.append(self._stop(ev.cgroup_id, ev.time))
            self.maps.forget(ev.cgroup_id)
            self.reported.pop(ev.cgroup_id, None)
            return out
        return []

    def check(self, now: int) -> list[ThrottleEvent]:
        """Stop the throttles whose rate has stayed under the limit."""
        if now - self.last_check < CHECK_NS:
            return []
        self.last_check = now
        out = []
        for cgroup_id, t in list(self.active.items()):
            windows = self.maps.windows(cgroup_id)
            if windows is not None and any(
                w.rate_at(now, self.limit.interval_ns) >= self.limit.events for w in windows
            ):
                t.below_since = None
                continue
            if t.below_since is None:
                t.below_since = now
            if windows is None or now - t.below_since >= self.quiet_ns:
                self.maps.clear_throttled(cgroup_id)
                out.append(self._stop(cgroup_id, now))
        return out

    def _stop(self, cgroup_id: int, now: int) -> ThrottleEvent:
        t = self.active.pop(cgroup_id)
        total = self.maps.suppressed(cgroup_id)
        before = self.reported.get(cgroup_id, (0,) * len(total))
        self.reported[cgroup_id] = total
        episode = tuple(a - b for a, b in zip(total, before, strict=True))
        return ThrottleEvent(now, wire.THROTTLE_STOP, cgroup_id, t.name, episode)
