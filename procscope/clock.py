"""The clocks events carry: the kernel's boot clock, the wall clock it is
shown in, and RFC 3339 as Tetragon's JSON (protojson) writes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def boot_to_wall_offset_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


# Events come in bursts within one second: its text is made (and read) once. One tuple, swapped
# whole: several threads format and parse (each node's reader in the monitor).
_formatted: tuple[int | None, str] = (None, "")
_parsed: tuple[str | None, int] = (None, 0)


def rfc3339(wall_ns: int) -> str:
    """As protojson writes a Timestamp: 0, 3, 6 or 9 fractional digits, the fewest that are exact."""
    global _formatted
    seconds, ns = divmod(wall_ns, 1_000_000_000)
    last = _formatted
    if seconds != last[0]:
        last = _formatted = seconds, datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    day_second = last[1]
    if ns % 1000:
        return f"{day_second}.{ns:09d}Z"
    if ns % 1_000_000:
        return f"{day_second}.{ns // 1000:06d}Z"
    return f"{day_second}.{ns // 1_000_000:03d}Z" if ns else f"{day_second}Z"


def parse_rfc3339(text: str) -> int:
    """RFC 3339 in UTC with up to nanoseconds → wall-clock ns (ValueError if not)."""
    global _parsed
    head, _, frac = text.rstrip("Z").partition(".")
    last = _parsed
    if head != last[0]:
        last = _parsed = head, int(datetime.fromisoformat(head + "+00:00").timestamp())
    return last[1] * 1_000_000_000 + int((frac + "000000000")[:9])
