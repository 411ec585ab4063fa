"""The monitor at any moment of a recording, or of the live monitor's
window of recent events (procscope.window): `,` `.` step a second back
and forth, `{` `}` an event, `@` goes to a time (RFC 3339, -30s from the
end, +10s from the start, or "end"). The whole screen shows that moment:
the processes alive then with their credentials then, the exec stream and
exits up to then. A time bar in the status line says where. Live, the
events keep arriving behind it; the end (or Z) is live again."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from procscope.probes.events import ExecEvent, ExitEvent, ProcessKey
from procscope.process import Process
from procscope.timetravel import Moment, MomentError, Timeline, scanned

BAR = 12  # cells of the time bar
SECOND = 1_000_000_000


@dataclass
class Shown:
    """What the streams and the history list at a moment (else the feed's own)."""

    execs: list[tuple[int, Process]]
    exits: list[tuple[int, Process]]
    seen: dict[ProcessKey, Process]


class TimeTravel:
    """Where the monitor is in its timeline (``at``: None at the end)."""

    def __init__(self, timeline: Timeline, live: bool = False):
        self.timeline = timeline
        self.live = live
        self.at: int | None = None
        self._times: list[int] | None = None

    def refresh(self, timeline: Timeline) -> None:
        """The live window again, moved on since."""
        self.timeline = timeline
        self._times = None
        if self.at is not None:
            self.at = self.clamp(self.at)

    def step_seconds(self, seconds: float) -> int:
        now = self.timeline.end if self.at is None else self.at
        return self.clamp(now + int(seconds * SECOND))

    def step_events(self, n: int) -> int:
        if self._times is None:
            self._times = sorted({ev.time for ev in self.timeline.events if not scanned(ev)})
        times, now = self._times, self.timeline.end if self.at is None else self.at
        if not times:
            return now
        i = bisect.bisect_right(times, now) - 1  # the event shown last
        return times[max(0, min(len(times) - 1, i + n))]

    def parse(self, text: str) -> int | None:
        """A time typed at @ (MomentError, one line, when it is none); None for the end."""
        if text.strip().lower() in ("end", "now", "live", ""):
            return None
        return self.clamp(self.timeline.boot_time(Moment.parse(text)))

    def clamp(self, t: int) -> int:
        return max(self.timeline.start, min(self.timeline.end, t))

    def go(self, t: int | None):
        """As of ``t`` (None: the end): the cache, the exec stream and exits
        up to then, and every process seen by then."""
        self.at = None if t is not None and t >= self.timeline.end else t
        end = self.timeline.end if self.at is None else self.at
        seen: dict = {}
        cache = self.timeline.cache_at(end, seen)
        execs, exits = [], []
        for ev in self.timeline.events:
            if ev.time > end:
                continue
            if isinstance(ev, ExecEvent) and not scanned(ev) and (p := seen.get(ev.key)) is not None:
                execs.append((ev.time, p))
            elif isinstance(ev, ExitEvent) and (p := cache.procs.get(ev.key) or seen.get(ev.key)) is not None:
                exits.append((ev.time, p))
        return cache, execs, exits, seen

    def bar(self, clock: str) -> str:
        """⏱ 12:00:03.2 [██████░░░░░░] 3.2 of 10.0 s"""
        tl = self.timeline
        span = max(1, tl.end - tl.start)
        now = tl.end if self.at is None else self.at
        filled = round(BAR * (now - tl.start) / span)
        if self.live:  # the time before now, of the window's span; the events still arrive
            where = f"{(now - tl.end) / SECOND:.1f} s of the last {span / SECOND:.0f} s, Z: live"
        elif self.at is None:
            where = "end"
        else:
            where = f"{(now - tl.start) / SECOND:.1f} of {span / SECOND:.1f} s"
        return f"⏱ {clock} [{'█' * filled}{'░' * (BAR - filled)}] {where} (, . {{ }} @)"


__all__ = ["MomentError", "Shown", "TimeTravel"]
