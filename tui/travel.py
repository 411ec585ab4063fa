"""The monitor at any moment of a recording, or of the live monitor's
window of recent events (procscope.window): `,` `.` step a second back
and forth, `{` `}` an event, `@` goes to a time (RFC 3339, -30s from the
end, +10s from the start, or "end"). The whole screen shows that moment:
the processes alive then with their credentials then, the exec stream and
exits up to then. A time bar in the status line says where (to the
millisecond after an event step). `{` `}` step through the events of the
processes the filter shows, when one is set. Live, the events keep
arriving behind it; the end (or Z) is live again."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from procscope.probes.events import ExecEvent, ExitEvent, ProcessKey
from procscope.process import Process
from procscope.query import Query
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
        self.digits = 1  # of the seconds in the time bar: 3 after an event step (events are ms apart)
        self._times: tuple[str, list[int]] | None = None  # the filter, and the times of its processes' events

    def refresh(self, timeline: Timeline) -> None:
        """The live window again, moved on since."""
        self.timeline = timeline
        self._times = None
        if self.at is not None:
            self.at = self.clamp(self.at)

    def step_seconds(self, seconds: float) -> int:
        self.digits = 1
        now = self.timeline.end if self.at is None else self.at
        return self.clamp(now + int(seconds * SECOND))

    def step_events(self, n: int, query: Query | None = None) -> int:
        """``n`` events on (or back), of the processes ``query`` shows when one is set."""
        self.digits = 3
        if self._times is None or self._times[0] != str(query or ""):
            self._times = (str(query or ""), self._event_times(query))
        times, now = self._times[1], self.timeline.end if self.at is None else self.at
        if not times:
            return now
        i = bisect.bisect_right(times, now) - 1  # the event shown last
        return times[max(0, min(len(times) - 1, i + n))]

    def _event_times(self, query: Query | None) -> list[int]:
        events = [ev for ev in self.timeline.events if not scanned(ev) and hasattr(ev, "key")]
        if query:  # every process the window saw, as the filter sees it at the end
            seen: dict[ProcessKey, Process] = {}
            match = query.predicate(self.timeline.cache_at(self.timeline.end, seen))
            wanted = {key for key, p in seen.items() if match(p)}
            events = [ev for ev in events if ev.key in wanted]
        return sorted({ev.time for ev in events})

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

    def bar(self, clock: str) -> tuple[str, ...]:
        """⏱ 12:00:03.2 [██████░░░░░░] 3.2 of 10.0 s (, . { } @); shorter
        forms after it for a narrow status line: the moment always shows."""
        tl = self.timeline
        span = max(1, tl.end - tl.start)
        now = tl.end if self.at is None else self.at
        filled = round(BAR * (now - tl.start) / span)
        if self.live:  # the time before now, of the window's span; the events still arrive
            where = f"{(now - tl.end) / SECOND:.1f} s of the last {span / SECOND:.0f} s, Z: live"
            short = f"{(now - tl.end) / SECOND:.1f} s, Z: live"
        elif self.at is None:
            where = short = "end"
        else:
            where = short = f"{(now - tl.start) / SECOND:.1f} of {span / SECOND:.1f} s"
        bar = f"[{'█' * filled}{'░' * (BAR - filled)}]"
        return f"⏱ {clock} {bar} {where} (, . {{ }} @)", f"⏱ {clock} {bar} {short}", f"⏱ {clock} {short}"


__all__ = ["MomentError", "Shown", "TimeTravel"]
