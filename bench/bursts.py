"""What this machine charges for work done in bursts: the same work timed
back to back, and with the sleep a live reader has between batches before
each (the collector's ~0.1 s). A diagnostic, no target: on this repository's
VM a thread that slept 0.1 s runs memory-heavy Python at about half the
speed it has when busy (the working set is gone from the CPU's caches), so
the live figures of the other benchmarks (µs an event) come out up to twice
what their code costs offline. Needs root (a storm's events are captured
with the probes).

    sudo .venv/bin/python bench/bursts.py [--gap 0.1] [--duration 4]
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable

import measure
import workload

from procscope import agent as served
from procscope.cache import ProcessCache
from procscope.probes.collector import Collector
from procscope.stream import EventStream, Output


class Dropped:
    """A sink that keeps nothing: what is timed is making the lines."""

    def write(self, line: bytes) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def timed(bursts: list[Callable[[], int]], gap: float) -> float:
    """CPU µs per unit of work over ``bursts`` (each returns its units), asleep ``gap`` s before each."""
    cpu = units = 0
    for burst in bursts:
        if gap:
            time.sleep(gap)
        t0 = time.thread_time()
        units += burst()
        cpu += time.thread_time() - t0
    return cpu / units * 1e6


def dict_walk() -> list[Callable[[], int]]:
    """Random reads and writes over 200,000 small dicts, 6,000 a burst."""
    objs = {i: {"a": i, "b": str(i)} for i in range(200_000)}
    rnd = random.Random(1)
    steps = [rnd.randrange(200_000) for _ in range(6_000 * 40)]

    def burst(part: list[int]) -> int:
        for k in part:
            o = objs[k]
            o["a"] = (o["a"] + len(o["b"])) & 1023
        return len(part)

    return [lambda part=steps[i : i + 6_000]: burst(part) for i in range(0, len(steps), 6_000)]


def streams(scan: list, batches: list[list]) -> dict[str, Callable[[], list[Callable[[], int]]]]:
    """Each of the live paths, fresh, as bursts of the captured batches."""

    def fresh() -> ProcessCache:
        cache = ProcessCache()
        cache.apply_all(scan)
        return cache

    def cache_alone() -> list[Callable[[], int]]:
        cache = fresh()

        def burst(batch: list) -> int:
            cache.apply_all(batch)
            cache.expire()
            return len(batch)

        return [lambda b=b: burst(b) for b in batches]

    def lines() -> list[Callable[[], int]]:
        stream = EventStream(fresh(), [Output(Dropped(), frozenset({"exec", "exit"}))])
        return [lambda b=b: (stream.feed(b), len(b))[1] for b in batches]

    def agent() -> list[Callable[[], int]]:
        cache = fresh()
        broadcast = served.Broadcast(cache, lambda _: None)
        stream = EventStream(cache, [Output(broadcast, served.KINDS, objects=True)])
        broadcast.exporter = stream.exporter
        client = served.Client("bench", None, [], 1 << 30, broadcast)
        broadcast.clients = [client]

        def burst(batch: list) -> int:
            stream.feed(batch)
            client.take(1 << 62)  # as its connection takes them
            return len(batch)

        return [lambda b=b: burst(b) for b in batches]

    return {"the cache alone (bench/collect.py's)": cache_alone, "`events`' lines": lines,
            "the agent's stream, one client": agent}  # fmt: skip


def capture(duration: float) -> tuple[list, list[list]]:
    """The /proc scan and a storm's batches as the collector decoded them."""
    scratch, binary = measure.storm_binary("bursts")
    collector = Collector()
    collector.open()
    scan = collector.scan()
    batches: list[list] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if batch := collector.poll(100):
                batches.append(batch)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        workload.measure(duration, None, binary)
        time.sleep(0.5)
    finally:
        stop.set()
        reader.join()
        collector.stop()
    return scan, batches


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gap", type=float, default=0.1, help="seconds asleep before each burst (default 0.1)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of the captured storm")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    scan, batches = capture(a.duration)
    print(f"the same work back to back, and {a.gap:g} s asleep before each burst (the machine idle; "
          f"{sum(map(len, batches)):,} events of a storm in {len(batches)} batches, as the collector read them):")  # fmt: skip
    work = {"a dict walk (200,000 dicts, 6,000 steps a burst)": dict_walk, **streams(scan, batches)}
    for name, make in work.items():
        pairs = [(timed(make(), 0), timed(make(), a.gap)) for _ in range(a.rounds)]
        text = ", ".join(f"{b:.2f} → {s:.2f} (×{s / b:.2f})" for b, s in pairs)
        print(f"  {name:52} µs a unit: {text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
