"""The clocks events carry: the kernel's boot clock, the wall clock it is
shown in, and RFC 3339 as Tetragon's JSON (protojson) writes it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def boot_to_wall_offset_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def rfc3339(wall_ns: int) -> str:
    """As protojson writes a Timestamp: 0, 3, 6 or 9 fractional digits, the fewest that are exact."""
    seconds, ns = divmod(wall_ns, 1_000_000_000)
    if seconds != _last_second[0]:  # events come in bursts within one second: formatted once
        _last_second[:] = seconds, datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if ns % 1000:
        return f"{_last_second[1]}.{ns:09d}Z"
    if ns % 1_000_000:
        return f"{_last_second[1]}.{ns // 1000:06d}Z"
    return f"{_last_second[1]}.{ns // 1_000_000:03d}Z" if ns else f"{_last_second[1]}Z"


_last_second: list = [None, ""]


def parse_rfc3339(text: str) -> int:
    """RFC 3339 in UTC with up to nanoseconds → wall-clock ns (ValueError if not)."""
    head, _, frac = text.rstrip("Z").partition(".")
    secs = datetime.fromisoformat(head + "+00:00").timestamp()
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
