"""Where the monitor's events come from: the live BPF collector (its thread
polls the ring buffer and queues batches; the monitor drains them on its
timer), the /proc scan alone, or a recording."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from procscope.cache import ANY_HIERARCHY, ProcessCache
from procscope.live_cache import live_cache
from procscope.probes import cgroups, scan_job
from procscope.probes.collector import Collector
from procscope.probes.counters import Counters
from procscope.probes.events import ProcessKey
from procscope.replay import Recorded, Replay
from procscope.window import DEFAULT_EVENTS

if TYPE_CHECKING:  # the gRPC client loads only for --connect
    from procscope.agent_client import Remote


class Source:
    """The monitor's view of a source: it fills ``cache`` through the
    batches ``drain`` returns; ``messages`` are shown as notifications."""

    label = ""
    live = False  # True: ages and grace periods follow the machine's clock; else the events'
    banner = ""  # shown above the panes when not empty

    def __init__(self, cache: ProcessCache):
        self.cache = cache
        self.messages: list[str] = []  # errors
        self.notes: list[str] = []  # for information
        # How this session was set up (which kernel tree it compiled against...): facts that ask
        # nothing of the user, shown in the help (F1), never over the processes.
        self.facts: list[str] = []

    @property
    def wall_offset(self) -> int | None:
        """Wall − boot clock of the events, when not the machine's."""
        return None

    @property
    def node(self) -> str | None:
        """The name of the node the events come from, when not this machine."""
        return None

    @property
    def name(self) -> str:
        """What the node picker and the all-nodes list call it."""
        return self.label

    def state(self) -> str:
        """How its connection is (another machine's)."""
        return "this machine"

    def clock_now(self) -> int | None:
        """Now on the events' boot clock, for a source whose clock is not this
        machine's but runs now (another machine's); None: the last event's time."""
        return None

    def start(self) -> None:
        pass

    def shown(self) -> None:
        """After the first frame is on the screen."""

    def drain(self) -> list[Recorded]:
        return []

    def counters(self) -> Counters:
        """Only the cache's, for a source without a collector."""
        return Counters(cache=self.cache.counters.as_dict())

    def stop(self) -> None:
        pass

    def quit(self) -> None:
        """Stop for a process about to end (what stop frees, the kernel will)."""
        self.stop()


def procfs_banner(why: str) -> str:
    return f"no BPF ({why}): the tree comes from /proc; exec and exit streams are unavailable"


class LiveSource(Source):
    """The collector's events. Given a collector not yet attached, the first
    frame comes from a /proc scan; the probes load and attach once it is
    shown (compiling them takes a second, once: probes.bpf_cache); a second scan, taken once
    they are attached, settles what happened in between (cache.rescan). If
    they cannot attach, the source stays the /proc scan and says why."""

    label = "live BPF"
    live = True

    def __init__(self, collector: Collector, grace_ns: int, scan: scan_job.ScanJob | None = None):
        """``scan``: the first /proc scan, already under way (else taken at start)."""
        self.hierarchy = scan.hierarchy if scan is not None else collector.hierarchy or cgroups.detect()
        super().__init__(live_cache(self.hierarchy, grace_ns))
        self.collector = collector
        self._scan = scan
        self._pending: list[Recorded] = []
        self._attaching = False
        self._unreadable = 0  # in the first /proc scan, when it is the source's own
        # What the collector reports while it runs goes to the screen, not to
        # stderr (the terminal the monitor draws on).
        collector.log = self.messages.append

    def start(self) -> None:
        collector = self.collector
        if collector.attached:
            # Attached already: the scan here, after the probes, so nothing falls between.
            if collector.scan_proc:
                self._pending = [*collector.scan()]
                collector.scan_proc = False  # taken: its thread only polls
            collector.start()
            return
        self.label = "/proc, attaching probes…"
        # The scan first: compiling beside it would slow the first frame (both want a core).
        job, self._scan = self._scan, None
        found = job.result() if job is not None else scan_job.scan(self.hierarchy)
        if job is not None and job.defer:
            self._scan = job  # what the first frame does not show comes after it (drain)
        self._pending, self._unreadable = [*found.events], found.unreadable
        self._attaching = True
        collector.log = self.facts.append  # while attaching: how (e.g. which kernel tree)

    def shown(self) -> None:
        # Loading the kept programs takes 0.15 s and the scan that follows up to a second (10,000
        # processes), both mostly Python: after the first frame, not competing with it.
        if self._attaching:
            self.collector.start(attach=True)

    def drain(self) -> list[Recorded]:
        out, self._pending = self._pending, []
        if self._scan is not None and not out and (filled := self._scan.completed()) is not None:
            self._scan = None  # the first scan applied, its deferred part fills in
            self.cache.rescan(filled, complete=False)
        collector = self.collector
        if self._attaching and not out:  # the second scan settles the first once that is applied
            if collector.setup_error is not None:
                self._attaching = False
                self.label, self.banner = "/proc", procfs_banner(collector.setup_error)
            elif collector.attached and (collector.scanned is not None or not collector.scan_proc):
                self._attaching = False
                self.label = "live BPF"
                collector.log = self.messages.append
                if collector.scanned is not None:
                    self.cache.rescan(collector.scanned)
                    out.extend(collector.scanned)
                    collector.scanned = None
        while (batch := collector.get_batch(timeout=0)) is not None:
            out.extend(batch)
        return out

    def counters(self) -> Counters:
        c = self.collector.counters()
        c.cache = self.cache.counters.as_dict()
        c.procfs_unreadable += self._unreadable
        return c

    def stop(self) -> None:
        if self._scan is not None:
            self._scan.close()
        self.collector.stop()

    def quit(self) -> None:
        if self._scan is not None:
            self._scan.close()
        self.collector.detach_now()


class ProcfsSource(Source):
    label = "/proc"
    live = True

    def __init__(self, why: str, grace_ns: int):
        self.hierarchy = cgroups.detect()
        super().__init__(live_cache(self.hierarchy, grace_ns))
        self.banner = procfs_banner(why)
        self._pending: list[Recorded] = []
        self._unreadable = 0

    def start(self) -> None:
        found = scan_job.scan(self.hierarchy)
        self._pending, self._unreadable = [*found.events], found.unreadable

    def drain(self) -> list[Recorded]:
        out, self._pending = self._pending, []
        return out

    def counters(self) -> Counters:
        c = super().counters()
        c.procfs_unreadable = self._unreadable
        return c


class ReplaySource(Source):
    """A recording, read as the ticks drain it (DRAIN events at a time, not
    all held at once); time travel reaches its first ``max_events`` events."""

    DRAIN = 100_000

    def __init__(self, replay: Replay, grace_ns: int, max_events: int = DEFAULT_EVENTS):
        super().__init__(replay.new_cache(grace_ns))
        self.replay = replay
        self.label = f"replay {replay.path}"
        self.max_events = max_events
        self._pending: Iterator[Recorded] | None = None
        self.recorded: list[Recorded] = []  # kept for time travel (tui.travel)

    @property
    def wall_offset(self) -> int | None:
        return self.replay.wall_offset

    def start(self) -> None:
        self._pending = self.replay.events()

    def drain(self) -> list[Recorded]:
        if self._pending is None:
            return []
        out = list(itertools.islice(self._pending, self.DRAIN))
        if len(out) < self.DRAIN:
            self._pending = None
        room = self.max_events - len(self.recorded)
        self.recorded.extend(out[: max(room, 0)])
        if len(out) > room >= 0:
            self.notes.append(f"time travel reaches the recording's first {self.max_events:,} events "
                              "(--window-events N for more, with more memory)")  # fmt: skip
            self.max_events = -1  # said once
        return out

    def counters(self) -> Counters:
        """What the recording last said it had lost (its cache's counts with it)."""
        return Counters.from_json(self.replay.counters) if self.replay.counters else super().counters()


class RemoteSource(Source):
    """Another machine's processes, from its agent (procscope agent, or
    Tetragon) over gRPC: read on threads (procscope.agent_client) with the
    same reader as a recording, so ages and times follow the events' clock
    (``live`` False: no signal is sent to a pid of another machine)."""

    def __init__(self, remote: Remote, grace_ns: int):
        super().__init__(ProcessCache(grace_ns=grace_ns, cgroup_hierarchy=ANY_HIERARCHY))
        self.remote = remote
        remote.log = self.messages.append
        self._replay: Replay | None = None
        self._connection = 0  # the number of the connection whose reader is read
        self._bad_lines = 0  # of the readers before the current one
        # Alive when the connection broke: those missing from the agent's list of the living,
        # sent when it comes back, ended meanwhile.
        self._before: list[ProcessKey] | None = None
        self.label = f"node {remote.address} (connecting)"

    @property
    def wall_offset(self) -> int | None:
        return self._replay.wall_offset if self._replay is not None else None

    @property
    def node(self) -> str | None:
        return self.remote.node or None

    def clock_now(self) -> int | None:
        """Its boot clock now, from the wall clock (both machines' kept by NTP):
        ages go on between events, as on the machine itself."""
        offset = self.wall_offset
        return time.time_ns() - offset if offset is not None else None

    def start(self) -> None:
        self.remote.start()

    def drain(self) -> list[Recorded]:
        r = self.remote
        if r.reader is not None and r.reader[1] is not self._replay:  # a new connection's: what it learns, shown
            if self._replay is not None:
                self._bad_lines += self._replay.bad_lines
                self._before = [p.key for p in self.cache.by_pid.values()]
            self._connection, self._replay = r.reader
            self.cache.host_ns = self._replay.host_ns
            self.cache.cgroup_index.info = self._replay.container_info
        self.label = f"node {self.name} ({self.state()})"
        if self._before is not None and r.living is not None and r.living[0] == self._connection:
            self.cache.end_missing(self._before, r.living[1])  # whether the list's events are applied yet or not
            self._before = None
        return r.drain()

    @property
    def name(self) -> str:
        return self.remote.node or self.remote.address

    def state(self) -> str:
        """How the connection is, and since when it is down."""
        r = self.remote
        if r.down_since is None:
            return r.state
        return f"down since {time.strftime('%H:%M:%S', time.localtime(r.down_since))}, {r.state}"

    def counters(self) -> Counters:
        r = self.remote
        return Counters(cache=self.cache.counters.as_dict(), agent_dropped=r.agent_dropped,
                        userspace_dropped=r.queue_dropped,
                        decode_errors=self._bad_lines + (self._replay.bad_lines if self._replay else 0))  # fmt: skip

    def stop(self) -> None:
        self.remote.stop()


def connected(sources: list[Source]) -> int:
    """How many of several nodes are connected now."""
    return sum(isinstance(s, RemoteSource) and s.remote.state == "connected" for s in sources)
