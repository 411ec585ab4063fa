"""The monitor's resource sampler: a thread that reads what the processes
and the machine use (procscope.probes.usage) once a second and publishes
it as one table, which the monitor takes on its timer. No UI here.

At 10,000 processes reading every /proc/PID/stat costs 0.12 s of CPU a
pass, a third of what `htop -d 10` spends a second in all. So after the
first pass (every process, so the first figures come at once) a pass reads
the processes on screen, those busy or runnable at their last reading, the
new, and of the rest those whose pid ends in the pass's digit: each is read
at least every SLICES passes, and its CPU% is over the time since its own
previous reading, so a figure is late, never wrong. A pid reused between
two readings is another key (its start time differs) and starts again.
Figures equal to the last are the same object: the UI redraws only rows
whose object changed."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import creds_watch
from .container_usage import ContainerReader, ContainerUsage
from .probes.events import ProcessKey
from .probes.usage import Machine, MachineReader, Reading, Usage, read_process

__all__ = ["EMPTY", "Machine", "Sampler", "Usage", "UsageEvent", "UsageTable", "recorded_usage"]

INTERVAL = 1.0  # s between passes, htop's default (1.5) rounded down
SLICES = 10  # an idle process is read at least every SLICES passes (those whose pid ends in the pass's digit)
BUSY = 0.05  # CPU% from which a process is read every pass (it shows as 0.0 below)
FULL_PASSES = 1  # the first pass reads every process (its CPU% over each one's life so far)
HISTORY = 300  # passes of (CPU%, RES) kept per process followed: the detail's sparklines
FOLLOWED = 2000  # processes with a history at most (those on screen or busy), the longest unseen go first


@dataclass(frozen=True)
class UsageTable:
    """One pass's figures: per process (by key, as the cache's) and the machine's."""

    generation: int = 0  # 0: nothing read yet
    procs: dict[ProcessKey, Usage] = field(default_factory=dict)
    machine: Machine | None = None
    read: int = 0  # processes read in this pass (the others keep their last figures)
    reading: bool = False  # a sampler reads this machine (False: none will: a recording, a moment)
    # (CPU%, RES) of each pass, oldest first, of the processes on screen or busy since they were:
    # the sampler's own deques, appended to by its thread (read them as tuple(points): one step).
    history: dict[ProcessKey, deque[tuple[float, int]]] = field(default_factory=dict)
    containers: dict[str, ContainerUsage] = field(default_factory=dict)  # by container id
    recorded: bool = False  # from a recording: part of the past it replays (time travel keeps it)
    creds: tuple[creds_watch.Found, ...] = ()  # processes whose /proc owner changed since their last reading


EMPTY = UsageTable()


@dataclass(frozen=True)
class UsageEvent:
    """A recording's usage record, replayed: the figures as of ``time`` of the
    processes that changed since the record before, the machine's and the containers'."""

    time: int
    procs: dict[ProcessKey, Usage]
    machine: Machine | None
    containers: dict[str, ContainerUsage]


def recorded_usage(cache, ev: UsageEvent) -> None:
    """The cache's handler of a UsageEvent: its usage as of then (the processes gone since dropped)."""
    live = cache.by_pid
    procs = {k: u for k, u in cache.usage.procs.items() if k.pid in live}
    procs.update(ev.procs)
    cache.usage = UsageTable(cache.usage.generation + 1, procs, ev.machine, len(ev.procs), True, {}, ev.containers,
                             recorded=True)  # fmt: skip


class Sampler:
    def __init__(self, interval: float = INTERVAL):
        self.interval = interval
        self.table = UsageTable(reading=True)  # replaced whole by each pass: the UI thread reads it as it is
        self.wanted: frozenset[int] = frozenset()  # pids on screen (set by the UI): read every pass
        self.shared = False  # read statm too (the SHR column is shown)
        self.io = False  # read /proc/PID/io too (IO_R or IO_W is shown)
        self.containers: dict[str, str] = {}  # container id → its cgroup (set by the UI): read each pass
        self.error: str | None = None  # why the machine's meters could not be read
        # What the next pass starts from: the last figures, readings and key of each pid (by its name in /proc).
        self._procs: dict[ProcessKey, Usage] = {}
        self._readings: dict[ProcessKey, Reading] = {}
        self._keys: dict[str, ProcessKey] = {}
        self._hot: set[str] = set()  # busy or runnable at their last reading: read every pass
        self._shared = self._io = False  # what the last pass read besides stat
        self._machine: MachineReader | None = None
        self._cgroups: ContainerReader | None = None
        self._passes = 0
        self._history: OrderedDict[ProcessKey, deque[tuple[float, int]]] = OrderedDict()
        # /proc/PID's uid and gid at each one's last reading (creds_watch)
        self._owners: dict[ProcessKey, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def once(cls, containers: dict[str, str]) -> UsageTable:
        """One pass (a snapshot's): CPU% over each process's life so far, the containers' none."""
        sampler = cls()
        sampler.containers = containers
        return sampler.sample()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="procscope-usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.table = self.sample()
            except Exception as exc:  # noqa: BLE001 - said in the monitor; the figures stay as last read
                self.error = f"reading what processes use failed ({exc}); the figures shown are the last read"
            self._stop.wait(max(self.interval - (time.monotonic() - began), 0.1))

    def sample(self) -> UsageTable:
        """One pass (the thread's; tests call it directly)."""
        n = self._passes
        self._passes += 1
        shared, io = self.shared, self.io
        wanted = {str(pid) for pid in self.wanted}
        proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            names = [name for name in os.listdir(proc_fd) if name.isdigit()]
            keys, readings, procs = self._keys, self._readings, self._procs.copy()  # the last table's stays as it was
            for name in keys.keys() - set(names):  # gone
                key = keys.pop(name)
                procs.pop(key, None)
                readings.pop(key, None)
            if n < FULL_PASSES or shared != self._shared or io != self._io:
                todo = names
            else:  # the hot, the new, and the pids ending in this pass's digit
                hot, digit = self._hot | wanted, str(n % SLICES)
                todo = [name for name in names if name in hot or name[-1] == digit or name not in keys]
            self._shared, self._io = shared, io
            boot_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            hot = set()
            owners, creds = self._owners, []
            for name in todo:
                got = read_process(proc_fd, name, readings, boot_ns, shared, io)
                old = keys.get(name)
                if got is None:  # gone between the listing and the reading
                    if old is not None:
                        del keys[name]
                        procs.pop(old, None)
                        readings.pop(old, None)
                    continue
                key, usage, readings[key] = got
                if old is not None and old != key:  # the pid reused: the other process is gone
                    procs.pop(old, None)
                    readings.pop(old, None)
                if procs.get(key) == usage:
                    usage = procs[key]  # the same figures: the same object (the UI redraws on a new one)
                procs[key] = usage
                keys[name] = key
                owner = creds_watch.owner(proc_fd, name)
                if owner is not None and (was := owners.get(key)) != owner:
                    owners[key] = owner
                    if was is not None and (found := creds_watch.read(proc_fd, key)) is not None:
                        creds.append(found)
                if usage.cpu_pct >= BUSY or usage.state in "RD":
                    hot.add(name)
                if usage.cpu_pct >= BUSY or key in self._history or name in wanted:
                    self._follow(key, usage)
            self._hot = hot
        finally:
            os.close(proc_fd)
        self._procs = procs
        for key in [k for k in self._history if k not in procs]:
            del self._history[key]  # gone
        for key in self._owners.keys() - procs.keys():
            del self._owners[key]
        machine = self._read_machine(procs.values())
        containers = self._read_containers(self.containers)
        return UsageTable(n + 1, procs, machine, len(todo), True, self._history, containers, creds=tuple(creds))

    def _follow(self, key: ProcessKey, usage: Usage) -> None:
        points = self._history.get(key)
        if points is None:
            if len(self._history) >= FOLLOWED:
                self._history.popitem(last=False)
            points = self._history[key] = deque(maxlen=HISTORY)
        else:
            self._history.move_to_end(key)
        points.append((usage.cpu_pct, usage.rss))

    def _read_containers(self, containers: dict[str, str]) -> dict[str, ContainerUsage]:
        if self._cgroups is None:
            self._cgroups = ContainerReader()
        now = time.monotonic_ns()
        out = {cid: self._cgroups.read(path, now) for cid, path in containers.items()}
        self._cgroups.forget(set(containers.values()))
        return out

    def _read_machine(self, procs: Iterable[Usage]) -> Machine | None:
        try:
            if self._machine is None:
                self._machine = MachineReader()
            return self._machine.read(procs)
        except (OSError, ValueError, IndexError) as exc:
            self.error = f"the machine's meters cannot be read: {exc}"
            return None
