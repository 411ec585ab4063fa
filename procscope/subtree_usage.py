"""A folded subtree's CPU%: what the whole subtree used over the last
interval, the children that exited during it included (htop sums only the
living, and only in a patch; procscope sees every exit).

Over two usage passes: the subtree's CPU time (its root's and its living
descendants' own as last read, and what the exited passed to each of them,
procscope.exited_cpu) and the time between. A descendant that exits leaves
the living sum as its figure joins its parent's: only what it used since
its last reading counts. No UI here."""

from __future__ import annotations

import time

from . import describe
from .cache import ProcessCache
from .exited_cpu import exited_children_ns
from .process import Process

KEPT = 4096  # folded roots remembered (those drawn): more is a user folding everything, forgotten at once


def subtree_cpu_ns(root: Process, cache: ProcessCache) -> int:
    """Its CPU time and its subtree's: the living as last read, the exited as counted at their end."""
    total = 0
    pending = [root]
    while pending:  # not recursion: a subtree is as deep as a process makes it
        p = pending.pop()
        if p.alive or p is root:
            u = describe.usage(p, cache)
            total += describe.cpu_ns(p, cache, u) or 0
            # What its exited children passed since procscope started (a rate needs no more), else the kernel's.
            total += exited_children_ns(cache, p) if cache.exit_cpu else (u.children_cpu_ns if u is not None else 0)
        if p.children:
            pending.extend(p.children.values())
    return total


class SubtreeRates:
    """CPU% of folded rows, each over the time since it was last drawn in an earlier pass."""

    def __init__(self) -> None:
        self._last: dict[Process, tuple[int, int, int, float | None]] = {}  # (pass, at, total, CPU%)

    def cpu_pct(self, root: Process, cache: ProcessCache) -> float | None:
        """None until a second pass has been read since it was first drawn folded."""
        generation = cache.usage.generation
        last = self._last.get(root)
        if last is not None and last[0] == generation:
            return last[3]
        now, total = time.monotonic_ns(), subtree_cpu_ns(root, cache)
        pct = None
        if last is not None and now > last[1]:
            pct = max(0.0, 100.0 * (total - last[2]) / (now - last[1]))
        if len(self._last) >= KEPT:
            self._last.clear()
        self._last[root] = (generation, now, total, pct)
        return pct
