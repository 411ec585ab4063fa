"""Python's garbage collector in a long run (the monitor, `procscope events`,
the agent). Memory is freed by reference counting; the collector only finds
reference cycles, and with its defaults it walks the live objects again and
again: a young collection every 700 new objects, a full one every second or
two in an exec storm, when the cache holds thousands of exited processes for
their grace period (40 ms each in `procscope events`; the monitor's, with its
widgets, ~0.1 s at 10,000 processes). In `procscope events` through a
6 s storm that was 100 ms of collections (132 young ones 25 ms, 12 middle
ones 45 ms, one full 40 ms); with these settings 29 ms and none full. So,
once a start is done: what it made is frozen (never walked again), young
collections come every YOUNG new objects (the monitor's every YOUNG_EVERY
seconds), and full ones only every FULL_EVERY seconds (Full), for the cycles
among what lives on (the monitor's between keys: IDLE)."""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Iterator

YOUNG = 20_000  # new objects between young collections (Python's default: 700)
FULL_EVERY = 60.0  # seconds between full collections
# The monitor's full collection (0.1 s in a storm) waits for a moment without keys, so that none
# waits behind it: IDLE seconds since the last key or click, or FULL_LATEST seconds at most.
IDLE = 2.0
FULL_LATEST = 300.0
# The monitor's young collections, on a timer: Python's count is of objects made less objects
# freed, old ones too, and in a storm the cache frees about as many as it makes, so the young
# generation grew to ~100,000 objects between collections (40-85 ms each, a key waiting behind).
YOUNG_EVERY = 0.1
_NEVER = 1 << 30  # as the oldest generation's threshold: no full collection but Full's


def settle() -> tuple[int, ...]:
    """The start is done: freeze what it made and collect as above. Returns
    the thresholds before (unsettle puts them back)."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG, before[1], _NEVER)
    gc.enable()
    return before


def unsettle(before: tuple[int, ...]) -> None:
    gc.set_threshold(*before)
    gc.unfreeze()


class Full:
    """Full collections, every FULL_EVERY seconds: due() at each turn of a loop."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def due(self, idle: float = math.inf) -> bool:
        """Collect when FULL_EVERY seconds have passed and the user has been ``idle``
        (seconds since a key) IDLE seconds, or FULL_LATEST have passed; whether it did."""
        now = time.monotonic()
        waited = now - self._last
        if waited >= FULL_EVERY and (idle >= IDLE or waited >= FULL_LATEST):
            self._last = now
            gc.collect()
            return True
        return False


@contextlib.contextmanager
def settled() -> Iterator[Full]:
    """settle() for a loop that calls the Full given at each turn; as before after."""
    before = settle()
    try:
        yield Full()
    finally:
        unsettle(before)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No collection while a start makes what settle() will freeze (the monitor's:
    40 ms of the first screen at 10,000 processes, a full collection among Textual's
    imports; what it would have found unreachable, 1.6 MB, most of it Textual's parsed
    CSS, is frozen with the rest); on again after, if the start did not settle (it failed first)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
