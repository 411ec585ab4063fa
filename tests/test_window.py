"""The live monitor's window of recent events (procscope.window), without
a terminal: any moment in it rebuilds the cache exactly as a cache fed the
same events up to that moment is, across checkpoints; it holds every event
after the /proc scan; it stays bounded;
and a tree deeper than Python's recursion limit checkpoints all the same."""

from __future__ import annotations

import itertools
import sys

from procscope import window as window_module
from procscope.cache import ROOT, ProcessCache
from procscope.probes import wire
from procscope.probes.events import ExecEvent
from procscope.window import Window

from .factories import HOST_NS, K, S, clone_event, exec_event, exit_event, session


def state(cache: ProcessCache) -> dict:
    """What the monitor shows of a cache: the tree (each process's depth and parent), images and states."""
    return {p.key: (depth, p.tree_parent, p.binary, p.args, p.image and p.image.creds.euid, p.alive, p.in_grace)
            for depth, p in cache.walk()}  # fmt: skip


def storm(first_pid: int, n: int, t0: int) -> list:
    """``n`` short processes, each cloned by init, exec'd and exited within 30 ms."""
    out, init = [], K(1, 10)
    for i in range(n):
        pid, t = first_pid + i, t0 + i * 10**7
        out += [clone_event(pid, t, init), exec_event(pid, t + 1, init, "/bin/true", (str(i),), cleanup=K(pid, t)),
                exit_event(K(pid, t + 1), t + 3 * 10**7)]  # fmt: skip
    return out


def fed(window: Window, events: list, batch: int = 7) -> ProcessCache:
    """A live cache fed in batches, the window told after each, as the monitor's feed does."""
    cache = ProcessCache(grace_ns=S, host_ns=HOST_NS)
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        window.before(cache)
        cache.apply_all(chunk)
        cache.expire()
        window.add(cache, chunk, any(isinstance(e, ExecEvent) and e.flags & wire.FLAG_PROCFS for e in chunk))
    return cache


def truth(events: list, t: int) -> ProcessCache:
    cache = ProcessCache(grace_ns=S, host_ns=HOST_NS)
    cache.apply_all(ev for ev in events if ev.time <= t)
    cache.expire(t)
    return cache


def test_any_moment_of_the_window_is_the_cache_as_it_was_then():
    events = session() + storm(1000, 300, 3 * S)
    window = Window(seconds=3600, max_events=200)  # a checkpoint every 100 events
    live = fed(window, events)
    timeline = window.timeline(live.now)
    assert len(timeline.checkpoints) == 2 and timeline.start > 0  # the oldest events are gone
    for t in range(timeline.start, timeline.end + 1, (timeline.end - timeline.start) // 37):
        assert state(timeline.cache_at(t)) == state(truth(events, t)), t
    assert state(timeline.cache_at(timeline.end)) == state(live)


def test_every_event_after_the_scan_is_in_the_window():
    """The exec stream of a moment travelled to is the window's events: the
    batch after the /proc scan's (its checkpoint waits for it) too."""
    scan = [ev for ev in session() if isinstance(ev, ExecEvent) and ev.flags & wire.FLAG_PROCFS]
    later = storm(1000, 20, 3 * S)
    window = Window(seconds=3600)
    fed(window, scan + later, batch=len(scan))  # the scan in a batch of its own, as the live source gives it
    timeline = window.timeline(later[-1].time)
    assert timeline.events == later
    assert state(timeline.cache_at(timeline.start)) == state(truth(scan, timeline.start))


def test_it_stays_bounded_by_events_and_by_time():
    window = Window(seconds=3600, max_events=100)
    fed(window, session() + storm(1000, 500, 3 * S))
    assert len(window) <= 100
    by_time = Window(seconds=2.0, max_events=10**6)
    live = fed(by_time, session() + storm(1000, 500, 3 * S))  # 5 s of events
    assert live.now - by_time.start <= 2 * S
    off = Window(seconds=0)
    fed(off, session())
    assert not off.enabled and off.timeline(0) is None


def test_a_dropped_half_window_is_freed_a_part_at_a_time(monkeypatch):
    # Freed at once, 125,000 events held the monitor's UI thread 130-180 ms in a storm.
    monkeypatch.setattr(window_module, "FREE_EACH_TIME", 25)
    window = Window(seconds=3600, max_events=400)  # a checkpoint (dropping the oldest half) every 200 events
    cache = fed(window, session())
    held = [0]  # events of dropped halves not yet freed, after each addition
    for ev in storm(1000, 200, 3 * S):  # an event an addition
        cache.apply(ev)
        window.add(cache, [ev])
        held.append(sum(map(len, window._dropped)))
    drops = [(a, b) for a, b in itertools.pairwise(held) if b > a]
    assert len(drops) >= 2 and all(b >= 200 for _, b in drops)  # half a window dropped, not yet freed
    assert all(a - b == min(25, a) for a, b in itertools.pairwise(held) if b <= a)  # then 25 an addition
    assert held[-1] == 0  # all of it, long before the next drop


def test_a_chain_deeper_than_the_recursion_limit_checkpoints():
    depth = sys.getrecursionlimit() * 2
    events, parent = [], ROOT
    for pid in range(2, depth + 2):  # each forks the next: a tree as deep as that
        events.append(exec_event(pid, pid * 10, parent, "/bin/sh", time=pid * 10))
        parent = K(pid, pid * 10)
    window = Window(seconds=3600, max_events=10**6)
    live = fed(window, events, batch=depth // 3)
    assert not window.failed
    rebuilt = window.timeline(live.now).cache_at(live.now)
    assert state(rebuilt) == state(live) and len(rebuilt.by_pid) == depth


def test_usage_passes_weigh_their_processes_against_the_bound():
    """A sampler pass kept for time travel counts as many events as the
    processes it carries: 10,000 busy processes bring a checkpoint nearer
    instead of holding the window's memory past its bound."""
    from procscope.probes.usage import Usage
    from procscope.sampler import UsageEvent

    window = Window(seconds=3600, max_events=200)
    live = fed(window, session())
    first = window.start
    figures = {K(10_000 + i, 1): Usage("S", 0, 0, 0.0, 4096, 8192, 1) for i in range(150)}
    live.now += S
    window.add_usage(live, UsageEvent(live.now, figures, None, {}))  # 150 + the session's: past half the bound
    assert window.start == first and len(window._segments) == 2  # a checkpoint taken: the older segment kept
    window.add_usage(live, UsageEvent(live.now + 1, {}, None, {}))
    assert len(window._segments[-1].events) == 1 and window._segments[-1].weight == 0  # after its checkpoint


def test_a_checkpoint_is_pickled_by_a_child_as_the_cache_was_at_the_fork():
    """The UI thread goes on while a child pickles: what the cache does after
    the fork is not in the checkpoint, and the child is reaped once read."""
    import psutil

    from procscope.probes.forked import Forked

    events = session() + storm(1000, 50, 3 * S)
    window = Window(seconds=3600)
    live = fed(window, events[:40])
    [seg] = window._segments
    pending = seg.data
    assert isinstance(pending, Forked)
    checkpoint_time = seg.time
    live.apply_all(events[40:])  # meanwhile, in the caller: not in the checkpoint
    live.expire()
    timeline = window.timeline(live.now)
    assert isinstance(window._segments[0].data, bytes)
    assert pending.pid not in [p.pid for p in psutil.Process().children()]  # reaped
    then = timeline.cache_at(checkpoint_time)
    assert state(then) == state(truth(events, checkpoint_time)) != state(live)
