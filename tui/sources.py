"""Event sources for the UI: the live BPF collector (its thread polls the
ring buffer with a timeout and queues batches; the UI drains them on its
timer), the /proc scan alone, or a recording."""

from __future__ import annotations

from dataclasses import asdict

from probes import cgroups, procfs
from probes.collector import Collector
from probes.events import Event
from procscope.cache import ProcessCache
from procscope.export import counters_json
from procscope.replay import Replay
from procscope.sources import live_cache


class LiveSource:
    label = "live BPF"
    live = True  # ages and grace periods follow the machine's clock
    banner = ""

    def __init__(self, collector: Collector, grace_ns: int):
        self.collector = collector
        self.cache = live_cache(collector.hierarchy, grace_ns)
        self.wall_offset: int | None = None
        self._pending: list[Event] = []
        # What the collector reports while it runs goes to the screen, not to
        # stderr (the terminal the monitor draws on).
        self.messages: list[str] = []
        collector.log = self.messages.append

    def start(self) -> None:
        # The /proc scan here rather than on the collector's thread, so the
        # first frame has the whole tree; after the probes are attached
        # (open()), so nothing falls between the scan and the ring buffer.
        if self.collector.hierarchy is None:
            self.collector.open()
        if self.collector.scan_proc:
            self._pending = self.collector.scan()
            self.collector.scan_proc = False  # taken: its thread only polls
        self.collector.start()

    def drain(self) -> list[Event]:
        out, self._pending = self._pending, []
        while (batch := self.collector.get_batch(timeout=0)) is not None:
            out.extend(batch)
        return out

    def counters(self) -> dict:
        return counters_json(self.collector.counters(), self.cache.counters)

    def stop(self) -> None:
        self.collector.stop()


class ProcfsSource:
    label = "/proc"
    live = True
    banner = "no BPF ({why}): the tree comes from /proc; exec and exit streams are unavailable"

    def __init__(self, why: str, grace_ns: int):
        self.messages: list[str] = []
        self.banner = self.banner.format(why=why)
        self.hierarchy = cgroups.detect()
        self.cache = live_cache(self.hierarchy, grace_ns)
        self.wall_offset: int | None = None
        self._pending: list[Event] | None = None
        self._unreadable = 0

    def start(self) -> None:
        found = procfs.scan(self.hierarchy)
        self._pending, self._unreadable = found.events, found.unreadable

    def drain(self) -> list[Event]:
        out, self._pending = self._pending or [], []
        return out

    def counters(self) -> dict:
        return counters_json_empty(self.cache) | {"procfs_unreadable": self._unreadable}

    def stop(self) -> None:
        pass


class ReplaySource:
    banner = ""
    live = False  # ages follow the recording's clock

    def __init__(self, replay: Replay, grace_ns: int):
        self.messages: list[str] = []
        self.replay = replay
        self.label = f"replay {replay.path}"
        self.cache = replay.new_cache(grace_ns)
        self._events: list[Event] | None = None

    @property
    def wall_offset(self) -> int | None:
        return self.replay.wall_offset

    def start(self) -> None:
        self._events = list(self.replay.events())

    def drain(self) -> list[Event]:
        out, self._events = self._events or [], []
        return out

    def counters(self) -> dict:
        return self.replay.counters or counters_json_empty(self.cache)

    def stop(self) -> None:
        pass


def counters_json_empty(cache: ProcessCache) -> dict:
    """Counters of a source without a collector: only the cache's."""
    return {"sent_failed": {}, "userspace_dropped": 0, "decode_errors": 0, "cache": asdict(cache.counters)}
