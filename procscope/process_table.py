"""The latest known image of each process, so that exported events can
carry full ``process`` and ``parent`` objects as Tetragon's do."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from probes import wire
from probes.events import CloneEvent, Event, ExecEvent, ExitEvent, ProcessKey


class ProcessTable:
    def __init__(self, keep_exited: int = 4096):
        self.live: dict[ProcessKey, ExecEvent] = {}
        # Exited images stay findable for a while: their children's events
        # and late exits may still name them.
        self._exited: OrderedDict[ProcessKey, ExecEvent] = OrderedDict()
        self._keep_exited = keep_exited
        self.misses = 0

    def get(self, key: ProcessKey) -> ExecEvent | None:
        return self.live.get(key) or self._exited.get(key)

    def apply(self, ev: Event) -> tuple[ExecEvent | None, ExecEvent | None]:
        """Record an event; return the (process, parent) images it concerns."""
        if isinstance(ev, ExecEvent):
            if ev.cleanup is not None and ev.cleanup != ev.key:
                self._retire(ev.cleanup)
            self.live[ev.key] = ev
            return ev, self._find(ev.parent)
        if isinstance(ev, CloneEvent):
            parent = self._find(ev.parent)
            proc = None
            if parent is not None:
                # A clone runs its parent's image until it execs.
                proc = dataclasses.replace(
                    parent, time=ev.time, key=ev.key, tid=ev.tid, nspid=ev.nspid,
                    flags=wire.FLAG_CLONE, privileges=0, parent=ev.parent, cleanup=None,
                )  # fmt: skip
                self.live[ev.key] = proc
            return proc, parent
        if isinstance(ev, ExitEvent):
            proc = self._retire(ev.key)
            if proc is None:
                self.misses += 1
            return proc, self._find(proc.parent) if proc else None
        return None, None

    def _find(self, key: ProcessKey) -> ExecEvent | None:
        found = self.get(key)
        if found is None and key.pid:
            self.misses += 1
        return found

    def _retire(self, key: ProcessKey) -> ExecEvent | None:
        proc = self.live.pop(key, None)
        if proc is not None:
            self._exited[key] = proc
            if len(self._exited) > self._keep_exited:
                self._exited.popitem(last=False)
        return proc or self._exited.get(key)
