"""The sampler (procscope.sampler) as the monitor uses it: started with a
live source only (a recording has no usage to read: the figures it
carries are its cache's), its newest table put in the live cache when the
monitor's timer comes, told which processes are on screen (read every
pass) and which figures the columns shown need."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from procscope.cache import ProcessCache
from procscope.exited_cpu import baselines
from procscope.probes.events import ProcessKey
from procscope.sampler import Machine, Sampler, UsageTable

from .columns import Column

MIN_INTERVAL = 0.2  # s: faster, reading /proc would cost more than it shows


class UsageFeed:
    def __init__(self, live: bool, interval: float, keep: Callable[[UsageTable, UsageTable], None] | None = None):
        """``keep(before, after)``: told of each new pass (the time travel window keeps them)."""
        self.sampler = Sampler(max(interval, MIN_INTERVAL)) if live else None
        self._keep = keep
        self._said: str | None = None
        self._containers_for = -1  # the sampler's pass the containers were last given for
        self._generation = 0  # a recording's: the figures last drawn

    def start(self) -> None:
        """After the first frame (at 10,000 processes a full pass would slow it by half);
        ``take`` before it: the columns are there from the first frame, their figures soon after."""
        if self.sampler is not None:
            self.sampler.start()

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()

    def take(self, cache: ProcessCache) -> bool:
        """The newest figures into ``cache``; whether there were new ones."""
        if self.sampler is None:  # a recording's come with its events
            new, self._generation = cache.usage.generation != self._generation, cache.usage.generation
            return new
        if self.sampler.table is cache.usage:
            return False
        before, cache.usage = cache.usage, self.sampler.table
        if before.generation == 0 and cache.usage.generation:  # the first pass (every process)
            baselines(cache, cache.usage.procs)
        if self._keep is not None:
            self._keep(before, cache.usage)
        return True

    def machine(self, cache: ProcessCache) -> Machine | None:
        """The header's figures: the sampler's, or those of a recording or of a moment travelled to."""
        if self.sampler is not None and not cache.usage.recorded:
            return self.sampler.table.machine
        return cache.usage.machine

    def header(self, cache: ProcessCache) -> bool:
        """Whether there is a header to show: a sampler reads, or the recording had the figures."""
        return self.sampler is not None or cache.usage.machine is not None

    def new_error(self) -> str | None:
        """Why the last reading failed, once each time it changes (None: nothing new)."""
        error = self.sampler.error if self.sampler is not None else None
        if error == self._said:
            return None
        self._said = error
        return error

    def want(self, cache: ProcessCache, on_screen: Iterable[object], columns: Iterable[Column]) -> None:
        if self.sampler is None:
            return
        self.sampler.wanted = frozenset(k.pid for k in on_screen if isinstance(k, ProcessKey))
        if self._containers_for != self.sampler.table.generation:  # once a pass, not every frame
            self._containers_for = self.sampler.table.generation
            self.sampler.containers = cache.cgroup_index.container_cgroups()
        names = {c.name for c in columns}
        self.sampler.shared = "SHR" in names
        self.sampler.io = bool(names & {"IO_R", "IO_W"})
