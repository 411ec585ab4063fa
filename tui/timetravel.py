"""The monitor at any moment of a recording: `,` `.` step a second back
and forth, `{` `}` an event, `@` goes to a time (RFC 3339, -30s from the
end, +10s from the start, or "end"). The whole screen shows that moment:
the processes alive then with their credentials then, the exec stream and
exits up to then. A time bar in the status line says where."""

from __future__ import annotations

import bisect

from procscope.probes import wire
from procscope.probes.events import ExecEvent, ExitEvent
from procscope.timetravel import Moment, MomentError, Timeline

BAR = 12  # cells of the time bar
SECOND = 1_000_000_000


class TimeTravel:
    """Where the monitor is in its recording (``at``: None at the end)."""

    def __init__(self, timeline: Timeline):
        self.timeline = timeline
        self.at: int | None = None
        self._times = sorted({ev.time for ev in timeline.events if not _scanned(ev)})

    def step_seconds(self, seconds: float) -> int:
        now = self.timeline.end if self.at is None else self.at
        return self._clamp(now + int(seconds * SECOND))

    def step_events(self, n: int) -> int:
        times, now = self._times, self.timeline.end if self.at is None else self.at
        if not times:
            return now
        i = bisect.bisect_right(times, now) - 1  # the event shown last
        return times[max(0, min(len(times) - 1, i + n))]

    def parse(self, text: str) -> int | None:
        """A time typed at @ (MomentError, one line, when it is none); None for the end."""
        if text.strip().lower() in ("end", "now", ""):
            return None
        return self._clamp(self.timeline.boot_time(Moment.parse(text)))

    def _clamp(self, t: int) -> int:
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
            if isinstance(ev, ExecEvent) and not _scanned(ev) and (p := seen.get(ev.key)) is not None:
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
        where = "end" if self.at is None else f"{(now - tl.start) / SECOND:.1f} of {span / SECOND:.1f} s"
        return f"⏱ {clock} [{'█' * filled}{'░' * (BAR - filled)}] {where} (, . {{ }} @)"


def _scanned(ev) -> bool:
    return isinstance(ev, ExecEvent) and bool(ev.flags & wire.FLAG_PROCFS)


__all__ = ["MomentError", "TimeTravel"]
