"""A fleet on one machine: NODES `procscope agent`s (own Unix sockets,
node names node-1..N), each seeing the exec storms of this machine, and one
monitor connected to all of them (`procscope --connect` × N, the app run
headless in this process). Needs root (the probes).

Storms alternate in pairs: without the monitor (the agents only collect),
with it (each agent serves it every event), without; each at RATE execs a
second (--rate), the same with the monitor and without, after one not
counted (an agent's first storm is cheaper than the next ones). Per storm with
the monitor: the storm's execs each node's monitor received (all of them,
or what was lost, per node), the events per second the monitor took in
(all nodes, from the storm's start until the last node had every exec),
the monitor's CPU per event (this process: the gRPC readers, the
decoding, the caches and the frames; beyond its CPU when nothing arrives,
printed too), and each agent's CPU per event served (what the storm cost
it with the monitor, less the mean of the storms beside it without). An
agent's CPU at rest (its timers: ~0.006 core) is taken out of each
storm's first, as what it costs per second, not per event (the storms
with the monitor take a longer window: the time to connect and to drain).
Targets: nothing lost on any node; ≤ 10 µs per event served.

    sudo .venv/bin/python bench/fleet.py [--nodes 4] [--pairs 3] [--duration 4] [--rate 1200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

import measure
import workload

from procscope.agent_client import Remote
from procscope.probes.events import ExecEvent
from procscope.replay import Recorded
from procscope.tui.app import ProcscopeApp
from procscope.tui.sources import RemoteSource

TARGETS = {"lost": 0, "us_per_event_served": 10.0}
# Execs a second in every storm, with the monitor and without: below what the machine does with
# it (~1,700 here), so that both see the same. An agent's CPU per event depends on the rate (no
# client, alternating storms: ~12 µs at 1,700 a second, 9.5-10 at 3,500: fewer events a batch),
# and storms as fast as they go ran half as fast with the monitor, which counted that as serving.
RATE = 1200.0
GRACE = 5 * 10**9


class Counted(RemoteSource):
    """A node's source that counts the storm's execs it delivers."""

    binary = ""

    def __init__(self, remote: Remote):
        super().__init__(remote, GRACE)
        self.storm_execs = 0

    def drain(self) -> list[Recorded]:
        out = super().drain()
        self.storm_execs += sum(1 for ev in out if type(ev) is ExecEvent and ev.binary == self.binary)
        return out


def storm(duration: float, workers: int, binary: str, agents, rate: float) -> tuple[int, list[float], float]:
    """(execs, each agent's CPU seconds during the storm and the second after it, those seconds)."""
    before, t0 = [measure.cpu_seconds(p.pid) for p, _, _ in agents], time.monotonic()
    n, _ = workload.measure(duration, workers, binary, rate=rate)
    time.sleep(1.0)  # the agents' last batches
    cpu = [measure.cpu_seconds(p.pid) - b for (p, _, _), b in zip(agents, before, strict=True)]
    return n, cpu, time.monotonic() - t0


def at_rest(agents, seconds: float = 5.0) -> float:
    """An agent's CPU with nothing happening, in cores (the mean of the agents: the clock ticks
    /proc counts in are 10 ms)."""
    before, t0 = [measure.cpu_seconds(p.pid) for p, _, _ in agents], time.monotonic()
    time.sleep(seconds)
    spent = sum(measure.cpu_seconds(p.pid) for p, _, _ in agents) - sum(before)
    return spent / len(agents) / (time.monotonic() - t0)


async def with_monitor(duration: float, workers: int, binary: str, agents, rate: float) -> dict:
    Counted.binary = binary
    sources = [Counted(Remote(address)) for _, address, _ in agents]
    app = ProcscopeApp(list(sources), snapshot_dir=tempfile.gettempdir())  # type: ignore[arg-type]
    async with app.run_test(size=(200, 50)) as pilot:
        deadline = time.monotonic() + 60
        while not all(os.getpid() in s.cache.by_pid for s in sources):  # connected, the living received
            if time.monotonic() > deadline:
                raise SystemExit("the monitor did not connect to every agent")
            await pilot.pause(0.2)
        await pilot.pause(1.0)
        quiet0, t0 = measure.cpu_seconds(), time.monotonic()
        await pilot.pause(2.0)  # what the monitor costs with nothing arriving: its frames, its timers
        idle = (measure.cpu_seconds() - quiet0) / (time.monotonic() - t0)
        received0 = [m.feed.events_total for m in app.monitors]
        cpu0, began = measure.cpu_seconds(), time.monotonic()
        before, agents0 = [measure.cpu_seconds(p.pid) for p, _, _ in agents], time.monotonic()
        n, _ = await asyncio.to_thread(workload.measure, duration, workers, binary, None, rate)
        deadline = time.monotonic() + 60
        while any(s.storm_execs < n for s in sources) and time.monotonic() < deadline:
            if any(s.counters().lost for s in sources):
                break
            await pilot.pause(0.05)
        took = time.monotonic() - began
        await pilot.pause(1.0)
        agent_cpu = [measure.cpu_seconds(p.pid) - b for (p, _, _), b in zip(agents, before, strict=True)]
        agent_seconds = time.monotonic() - agents0
        events = sum(m.feed.events_total - r for m, r in zip(app.monitors, received0, strict=True))
        cpu, ran = measure.cpu_seconds() - cpu0, time.monotonic() - began
        lost = [max(0, n - s.storm_execs) + s.counters().lost for s in sources]
    busy = cpu - idle * ran  # beyond what it costs idle
    return {"execs": n, "events": events, "rate": events / took, "cpu_per_event": busy / max(events, 1) * 1e6,
            "idle": idle, "agent_cpu": agent_cpu, "agent_seconds": agent_seconds, "lost": lost}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--rate", type=float, default=RATE, help=f"execs a second in every storm (default {RATE:g})")
    a = ap.parse_args()
    workers = os.cpu_count() or 1
    scratch, binary = measure.storm_binary("fleet")
    agents = measure.start_agents(a.nodes, scratch)
    try:
        print(f"{a.nodes} agents, one monitor connected to all: {a.pairs} pairs of {a.duration:g} s storms "
              f"of {a.rate:,.0f} execs a second (without the monitor, with it, without)", flush=True)  # fmt: skip
        workload.measure(1.0, workers, binary)  # warm-up, not counted
        rest = at_rest(agents)
        # An agent's first storm costs it a third less than the next ones, which also expire the
        # processes of the storm before: one as the others, not counted.
        storm(a.duration, workers, binary, agents, a.rate)
        alone = [storm(a.duration, workers, binary, agents, a.rate)]
        rounds = []
        for _ in range(a.pairs):
            rounds.append(asyncio.run(with_monitor(a.duration, workers, binary, agents, a.rate)))
            alone.append(storm(a.duration, workers, binary, agents, a.rate))
            r = rounds[-1]
            print(f"  {r['execs']} execs (without the monitor: {alone[-2][0]}, {alone[-1][0]}): the monitor took "
                  f"{r['events']} events at {r['rate']:,.0f}/s, {r['cpu_per_event']:.1f} µs CPU each; "
                  f"lost per node {r['lost']}", flush=True)  # fmt: skip
        served = []  # per agent and round: its CPU per event with the monitor, less beside it without
        for i, r in enumerate(rounds):
            for k in range(a.nodes):
                without = [(cpu[k] - rest * secs) / (2 * n) for n, cpu, secs in (alone[i], alone[i + 1])]
                with_ = (r["agent_cpu"][k] - rest * r["agent_seconds"]) / (2 * r["execs"])
                served.append((with_ - statistics.mean(without)) * 1e6)
        per, lost = statistics.median(served), [sum(r["lost"][k] for r in rounds) for k in range(a.nodes)]
        rate = statistics.median(r["rate"] for r in rounds)
        mon = statistics.median(r["cpu_per_event"] for r in rounds)
        print(f"  events/s the monitor took in (all nodes) : {rate:,.0f} "
              f"({min(r['rate'] for r in rounds):,.0f}–{max(r['rate'] for r in rounds):,.0f})")  # fmt: skip
        print(f"  monitor CPU per event, beyond idle       : {mon:.1f} µs "
              f"({min(r['cpu_per_event'] for r in rounds):.1f}–{max(r['cpu_per_event'] for r in rounds):.1f})")  # fmt: skip
        idle = statistics.median(r["idle"] for r in rounds)
        print(f"  monitor CPU with nothing arriving        : {idle:.0%} of a core")
        print(f"  agent CPU at rest (taken out per second) : {rest:.1%} of a core")
        print(f"  agent CPU per event served               : {per:.1f} µs ({min(served):.1f}–{max(served):.1f}; "
              f"target <= {TARGETS['us_per_event_served']:.0f})")  # fmt: skip
        print(f"  storm execs lost, per node               : {lost}")
        return measure.result([
            (f"{sum(lost)} execs lost", sum(lost) <= TARGETS["lost"]),
            (f"{per:.1f} µs per event served", per <= TARGETS["us_per_event_served"]),
        ])  # fmt: skip
    finally:
        measure.stop_agents(agents)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
