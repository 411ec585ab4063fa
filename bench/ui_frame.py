"""UI benchmark: frame time and key-to-screen latency of the monitor at 10k
processes under an exec storm.

The app runs headless (App.run_test) on a synthetic source: 10,000 live
processes (services with workers, a fifth in containers, as
bench/cache_memory.py builds them), then a stream of short-lived execs
(default 2,000/s, each exiting after 0.5 s and shown dimmed for the 5 s
grace period: ~20k rows) fed through the source on the app's own timer.
Measured: (a) frame time, the duration of app.monitor.redraw; (b) key to
screen, from pressing a key that changes what is shown until the next
screen update is composed. Baseline, same run: 100 processes, no stream.

    .venv/bin/python bench/ui_frame.py [--processes 10000] [--rate 2000] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import deque

import msgspec
from cache_memory import events as service_events  # bench/ is on sys.path

from procscope.cache import ROOT, ProcessCache
from procscope.probes import wire
from procscope.probes.events import ExecEvent, ExitEvent, Namespaces, ProcessKey
from procscope.tui.app import ProcscopeApp
from procscope.tui.sources import Source

TARGET_MS = 100.0  # key to screen
SIZE = (200, 60)
HOST_NS = {name: 4026531830 + i for i, name in enumerate(Namespaces.__slots__)}  # as cache_memory builds them
T0 = 10**12  # stream event times start here (boot-clock ns): after every initial event
LIFETIME_NS = 500_000_000  # each streamed process exits after this long
GRACE_NS = 5_000_000_000
# (keys typed first, the key measured) in the order pressed: moves, tree/flat, filter on and off, grouping
KEYS = (
    [((), "down")] * 12
    + [((), "pagedown")] * 4
    + [((), "up")] * 8
    + [((), "f5")] * 6
    + [(("backslash", *"bin:worker1"), "enter"), (("backslash", "ctrl+u"), "enter")] * 3
    + [((), "g")] * 6
)


class StreamSource(Source):
    """n live processes at start, then `rate` execs/s (children of the
    services, round robin) with their exits, timed by the wall clock."""

    label = "synthetic"  # not live: ages follow the events' clock

    def __init__(self, n: int, rate: float):
        super().__init__(ProcessCache(grace_ns=GRACE_NS, host_ns=HOST_NS))
        init = msgspec.structs.replace(service_events(1)[0], key=ProcessKey(1, 10), parent=ROOT, cleanup=None,
                                   binary="/sbin/init", args=())  # fmt: skip
        self._initial: list = [init, *service_events(n - 1)]
        self._parents = [ev for ev in self._initial[1:] if ev.binary.startswith("/usr/bin/python3")]
        self.rate = rate
        self._streaming_since: float | None = None
        self._made = 0
        self._due: deque[tuple[int, ProcessKey]] = deque()  # exits to send, in time order

    def stream(self) -> None:
        self._streaming_since = time.monotonic()

    def drain(self) -> list:
        out, self._initial = self._initial, []
        if self._streaming_since is None:
            return out
        now = T0 + int((time.monotonic() - self._streaming_since) * 1e9)
        target = int((now - T0) * self.rate / 1e9)
        for i in range(self._made, target):
            t = T0 + int(i * 1e9 / self.rate)
            while self._due and self._due[0][0] <= t:
                when, key = self._due.popleft()
                out.append(ExitEvent(when, key, key.pid, 0))
            p = self._parents[i % len(self._parents)]
            key = ProcessKey(100_000 + i % 3_000_000, t)
            out.append(ExecEvent(
                t, key, key.pid, key.pid, p.uid, p.auid, wire.FLAG_EXECVE, 0, 1, 7, "/bin/sh", ("-c", f"job {i}"),
                p.cwd, p.key, key, p.creds, p.ns, p.cgroup_id, p.cgroup_tracker_id, p.cgroup_name, p.cgroup_path,
            ))  # fmt: skip
            self._due.append((t + LIFETIME_NS, key))
        self._made = max(self._made, target)
        return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def stats(xs: list[float]) -> tuple[float, float, float]:
    return (statistics.median(xs), percentile(xs, 0.95), max(xs)) if xs else (float("nan"),) * 3


async def run(n: int, rate: float, duration: float) -> dict:
    """One scenario: frame times while streaming (or, without a stream,
    of repeated redraws), then key-to-screen latencies."""
    source = StreamSource(n, rate)
    with tempfile.TemporaryDirectory() as tmp:
        app = ProcscopeApp(source, snapshot_dir=tmp)
        frames: list[float] = []
        # Key to screen: from the key press to the first screen update
        # composed after the key's effect was made: the end of the first
        # action or redraw after which what the key changes has changed.
        changes: list[tuple[float, tuple]] = []  # (when, shown state)
        displays: list[float] = []
        shown = asyncio.Event()
        refresh, display, run_action = app.monitor.redraw, app._display, app.run_action

        def state() -> tuple:
            return (
                app.monitor.tree_pane.selected_key,
                app.monitor.view.tree,
                getattr(app.monitor.view, "group", None),
                str(app.monitor.filter_query),
            )

        def timed(*args, **kwargs) -> None:  # redraw' own arguments, passed through
            t = time.perf_counter()
            refresh(*args, **kwargs)
            changes.append((time.perf_counter(), state()))
            frames.append(changes[-1][0] - t)

        def displayed(screen, renderable) -> None:  # every composed screen update goes through here
            display(screen, renderable)
            displays.append(time.perf_counter())
            shown.set()

        async def acted(*args, **kwargs):  # key bindings run their actions through here
            try:
                return await run_action(*args, **kwargs)
            finally:
                changes.append((time.perf_counter(), state()))

        # The app calls these through the instance: from its timer, keys and mount.
        app.monitor.redraw, app._display, app.run_action = timed, displayed, acted
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            first = frames[0]
            frames.clear()
            if rate:
                source.stream()
                await asyncio.sleep(duration)
            else:
                for _ in range(30):
                    timed(tick=True)
            rows = len(app.monitor.tree_pane.keys)
            latencies: dict[str, list[float]] = {}
            for typed, key in KEYS:
                if typed:
                    await pilot.press(*typed)
                await asyncio.sleep(0.05)  # out of step with the app's 0.1 s timer
                before = state()
                del changes[:], displays[:]
                t = time.perf_counter()
                await pilot.press(key)
                done = next((when for when, after in changes if after != before), None)
                if done is None:  # the key changed nothing (an older app without it)
                    continue
                while not any(d > done for d in displays):
                    shown.clear()
                    await asyncio.wait_for(shown.wait(), 10)
                latencies.setdefault(key, []).append(min(d for d in displays if d > done) - t)
            live = len(source.cache.by_pid)
    frames_ms = [f * 1e3 for f in frames]
    keys_ms = {k: [x * 1e3 for x in v] for k, v in latencies.items()}
    return {"first": first * 1e3, "frames": frames_ms, "keys": keys_ms, "rows": rows, "live": live}


def report(label: str, r: dict) -> None:
    med, p95, mx = stats(r["frames"])
    keys = [x for v in r["keys"].values() for x in v]
    kmed, kp95, kmax = stats(keys)
    print(f"{label}: {r['live']} live processes, {r['rows']} rows shown")
    print(f"  first frame            {r['first']:8.1f} ms")
    print(
        f"  frame time             median {med:7.1f} ms  p95 {p95:7.1f} ms  max {mx:7.1f} ms"
        f"  ({len(r['frames'])} frames)"
    )
    print(f"  key to screen          median {kmed:7.1f} ms  p95 {kp95:7.1f} ms  max {kmax:7.1f} ms  ({len(keys)} keys)")
    per_key = "  ".join(f"{k} {statistics.median(v):.0f}/{max(v):.0f}" for k, v in r["keys"].items())
    print(f"    by key, median/max   {per_key} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=2000.0, help="execs/s streamed (default 2000)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of stream for frame times (default 5)")
    a = ap.parse_args()
    print(f"procscope UI benchmark: {SIZE[0]}x{SIZE[1]} headless, {a.processes} processes,"
          f" {a.rate:g} execs/s for {a.duration:g} s; baseline 100 processes, no stream", flush=True)  # fmt: skip
    base = asyncio.run(run(100, 0, a.duration))
    report("baseline", base)
    big = asyncio.run(run(a.processes, a.rate, a.duration))
    report("under load", big)
    bmed, bp95, _ = stats(base["frames"])
    med, p95, _ = stats(big["frames"])
    keys = [x for v in big["keys"].values() for x in v]
    base_keys = [x for v in base["keys"].values() for x in v]
    kmed, kp95, _ = stats(keys)
    print("under load, against the baseline:")
    print(f"  frame time median / baseline   {med / bmed:8.1f}   p95 / baseline {p95 / bp95:8.1f}")
    print(f"  key to screen median / baseline{kmed / statistics.median(base_keys):8.1f}")
    print(f"  key to screen / target ({TARGET_MS:.0f} ms)  median {kmed / TARGET_MS:.2f}  p95 {kp95 / TARGET_MS:.2f}")
    ok = kp95 <= TARGET_MS
    print(
        f"RESULT: {'PASS' if ok else 'FAIL'} - key to screen p95 within {TARGET_MS:.0f} ms at {big['live']} processes"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
