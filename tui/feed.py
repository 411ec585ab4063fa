"""What the monitor keeps of the event flow besides the cache: the events
drained from the source and applied to the cache, the newest execs and
exits, the event rate, and the loss counters with their rates. No Textual
here: tests use it without an app."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Literal

from procscope import creds_watch
from procscope.export import Exporter
from procscope.probes import wire
from procscope.probes.counters import Counters
from procscope.probes.events import CloneEvent, CredsEvent, ExecEvent, ExitEvent, ProcessKey, ThrottleEvent
from procscope.process import Process
from procscope.sampler import UsageEvent, UsageTable
from procscope.window import Window

from .rows import boot_now

HISTORY = 1000  # exec stream and exits: bounded
SEEN = 20_000  # processes the history panel lists: bounded, the oldest go first
RATE_WINDOW = 2.0  # seconds the loss rates are averaged over, at least
RECEIVED = "received"  # the rates key for events received
THROTTLED = "throttled "  # row-name prefix of a cgroup's suppressed events
RATE_HISTORY = 600  # seconds of exec/s and lost/s kept for the header's sparklines


def loss_totals(c: Counters) -> dict[str, int]:
    """Each loss row's total, by row name (ops first)."""
    out = {op: sum(row.values()) for op, row in c.sent_failed.items()}
    out["user space"] = c.userspace_dropped
    out["undecodable"] = c.decode_errors
    # Failures that should never happen: a row only once they have.
    if c.collector_errors:
        out["collector failures"] = c.collector_errors
    if c.agent_dropped:  # another machine's agent: what it could not send us
        out["agent's queue"] = c.agent_dropped
    if c.procfs_unreadable:
        out["unreadable in /proc"] = c.procfs_unreadable
    out["cache misses"] = c.cache.get("misses", 0)
    out["lost exits"] = c.cache.get("lost_exits", 0)
    if c.cache.get("enrichment_failures"):
        out["enrichment failures"] = c.cache["enrichment_failures"]
    for name, ops in c.suppressed_by_cgroup.items():
        out[THROTTLED + name] = sum(ops.values())
    return out


def per_second(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    """Per second between two samples of totals (counters never go down;
    a row that just appeared counts from 0)."""
    if seconds <= 0:
        return {}
    return {name: max(0, n - before.get(name, 0)) / seconds for name, n in after.items()}


def throttle_message(ev: ThrottleEvent, cache) -> tuple[str, str, Literal["warning", "information"]]:
    """(title, message, severity) of the notification a throttle's start or end gets."""
    t = cache.throttles.get(ev.cgroup_id)
    where = t.path if t is not None else ev.name
    if ev.type == wire.THROTTLE_START:
        return "throttled", f"{where}: over --cgroup-rate, its events are suppressed", "warning"
    counts = ", ".join(f"{op} {n}" for op, n in zip(wire.RATE_OPS, ev.suppressed, strict=True))
    return "throttle over", f"{where}: events flow again ({counts} suppressed)", "information"


class Feed:
    def __init__(self, source, exporter: Exporter, window: Window | None = None):
        """``window``: keeps the recent past for time travel (live sources)."""
        self.source = source
        self.window = window
        self.cache = source.cache
        self.exporter = exporter
        # (event time, process): the time is formatted when the entry is drawn, if ever.
        self.execs: deque[tuple[int, Process]] = deque(maxlen=HISTORY)
        self.exits: deque[tuple[int, Process]] = deque(maxlen=HISTORY)
        # Every image seen, in the order seen; an OrderedDict: a dict's next(iter()) slows down as its front is deleted.
        self.seen: OrderedDict[ProcessKey, Process] = OrderedDict()
        self.events_total = 0
        self.counters = Counters()
        self._rate: deque[tuple[float, int]] = deque(maxlen=20)  # (monotonic, events_total)
        self._first_time: int | None = None  # a replay's first event time (boot ns), /proc scan aside
        self._replay_events = 0
        self._loss_samples: deque[tuple[float, dict[str, int]]] = deque()
        self.execs_total = 0  # execs applied (not the /proc scan's)
        # Per second, oldest first: the header's sparklines.
        self.exec_rates: deque[float] = deque(maxlen=RATE_HISTORY)
        self.lost_rates: deque[float] = deque(maxlen=RATE_HISTORY)
        self._second: tuple[float, int, int] | None = None  # (monotonic, execs_total, lost) a second ago
        self._seen_in_proc: list[CredsEvent] = []  # changes the sampler saw, applied with the next events

    def keep_usage(self, before: UsageTable, after: UsageTable) -> None:
        """A new pass of the sampler: the credentials it saw change go in with
        the next events (creds_watch); and it is kept in the time travel window
        as a recording keeps it (the processes whose figures changed: equal
        ones are the same object), so that a moment travelled to shows CPU%,
        RES and the meters as they were."""
        self._seen_in_proc += [ev for found in after.creds if (ev := creds_watch.event(self.cache, found))]
        if self.window is None or not self.window.enabled:
            return
        changed = {k: u for k, u in after.procs.items() if before.procs.get(k) is not u}
        self.window.add_usage(self.cache, UsageEvent(self.now(), changed, after.machine, after.containers))

    def now(self) -> int:
        """The clock things are aged by: the machine's, another machine's (its
        boot clock now, from the wall clock), or a replay's last event."""
        if self.source.live:
            return boot_now()
        theirs = self.source.clock_now()
        return max(theirs, self.cache.now) if theirs is not None else self.cache.now

    def ingest(self) -> tuple[int, list[ThrottleEvent]]:
        """Apply what the source has; (how many events, the throttle events among them)."""
        events = self.source.drain()
        if self._seen_in_proc:
            events, self._seen_in_proc = [*events, *self._seen_in_proc], []
        if self.window is not None and events:
            self.window.before(self.cache)
        if self.source.wall_offset is not None:
            self.exporter.wall_offset = self.source.wall_offset
        if self.source.node:  # another machine's: exec ids and exports carry its name
            self.exporter.set_node(self.source.node)
        throttles = []
        execs = 0
        scanned = False  # the batch holds a /proc scan's processes
        # Per event, in a storm tens of thousands a second: one type test each, names bound once.
        apply, saw, add_exec, add_exit = self.cache.apply, self.saw, self.execs.append, self.exits.append
        for ev in events:
            proc = apply(ev)
            kind = type(ev)
            if kind is ThrottleEvent:
                throttles.append(ev)
            if proc is None:
                continue
            if kind is ExecEvent:
                saw(proc)
                if not ev.flags & wire.FLAG_PROCFS:  # else found at start, not an exec
                    add_exec((ev.time, proc))
                    execs += 1
                else:
                    scanned = True
            elif kind is CloneEvent:
                saw(proc)
            elif kind is ExitEvent:
                add_exit((ev.time, proc))
        self.events_total += len(events)
        self.execs_total += execs
        if not self.source.live:  # a replay's rate: its events over its own clock, not the /proc scan's
            timed = [ev.time for ev in events if not (isinstance(ev, ExecEvent) and ev.flags & wire.FLAG_PROCFS)]
            self._replay_events += len(timed)
            if timed:
                self._first_time = min(timed if self._first_time is None else [self._first_time, *timed])
        self.cache.expire(self.now())
        if self.window is not None:
            self.window.add(self.cache, events, scanned)
        return len(events), throttles

    def saw(self, proc: Process) -> None:
        """One row per process: an exec's image takes the place of the one it replaced (its fork)."""
        seen = self.seen
        if proc.previous is not None:
            seen.pop(proc.previous, None)
        if proc.key not in seen and len(seen) >= SEEN:
            seen.popitem(last=False)
        seen[proc.key] = proc

    def sample(self) -> dict[str, float]:
        """Read the counters; per-second rates of each loss row and of events
        received, over the last RATE_WINDOW seconds or more."""
        self.counters = self.source.counters()
        if not self.source.live:
            return {}  # a replay's counters arrive at once: no rate on this clock means anything
        now = time.monotonic()
        totals = loss_totals(self.counters) | {RECEIVED: self.events_total}
        samples = self._loss_samples
        samples.append((now, totals))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        t0, before = samples[0]
        return per_second(before, totals, now - t0)

    def each_second(self) -> bool:
        """Add the last second's exec/s and lost/s to their history, once a
        second or more has passed (a live source's); whether it did."""
        if not self.source.live:
            return False
        now, lost = time.monotonic(), self.counters.lost
        if self._second is None:
            self._second = (now, self.execs_total, lost)
            return False
        t0, execs, lost0 = self._second
        if now - t0 < 1.0:
            return False
        self.exec_rates.append((self.execs_total - execs) / (now - t0))
        self.lost_rates.append(max(lost - lost0, 0) / (now - t0))
        self._second = (now, self.execs_total, lost)
        return True

    def rate_text(self) -> str:
        if self.source.live:
            now = time.monotonic()
            self._rate.append((now, self.events_total))
            t0, n0 = self._rate[0]
            return f"{(self.events_total - n0) / (now - t0) if now > t0 else 0.0:.0f} events/s"
        # A replay arrives at once: its average over its own clock is the same on every run.
        span = (self.cache.now - self._first_time) / 1e9 if self._first_time is not None else 0.0
        return f"{self._replay_events / span if span > 0 else 0.0:.0f} events/s avg"
