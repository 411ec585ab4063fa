"""`procscope agent` under an exec storm: what serving Tetragon's gRPC API
costs the agent, per event served. Needs root (the probes).

One agent on a Unix socket; storms alternate in pairs without a client and
with CLIENTS clients (gRPC streams of every event, read by threads of this
benchmark as tetra reads them). Per storm: the agent's CPU (all its
threads, from the storm's start until the clients have every event of it),
the storm's events (an exec and an exit per spawn) and, per client, those
it received and those it was told it missed (rate_limit_info). Printed:
the agent's CPU per event without a client (collecting, the cache, the
exporter) and with them, and the difference per event served, what
serving adds (the conversion, once per event, and each client's queue and
gRPC send), with the spread of the pairs; target ≤ 10 µs and no event lost.

    sudo .venv/bin/python bench/agent.py [--pairs 4] [--duration 3] [--clients 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time

import grpc
import measure
import workload

from procscope.api import tetragon_pb2 as pb
from procscope.api import tetragon_pb2_grpc

TARGETS = {"us_per_event_served": 10.0}


class Client(threading.Thread):
    """Every event, counting the storm's binary's and any drops said."""

    def __init__(self, address: str, binary: str):
        super().__init__(daemon=True)
        self.binary = binary
        self.ours = self.lost = 0
        self._channel = grpc.insecure_channel(address)
        self._call = tetragon_pb2_grpc.FineGuidanceSensorsStub(self._channel).GetEvents(pb.GetEventsRequest())
        self.start()

    def run(self) -> None:
        try:
            for m in self._call:
                kind = m.WhichOneof("event")
                if kind == "rate_limit_info":
                    self.lost += m.rate_limit_info.number_of_dropped_process_events
                elif kind in ("process_exec", "process_exit") and getattr(m, kind).process.binary == self.binary:
                    self.ours += 1
        except grpc.RpcError:
            pass  # cancelled

    def stop(self) -> None:
        self._call.cancel()
        self._channel.close()
        self.join(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=2)
    a = ap.parse_args()
    workers = os.cpu_count() or 1
    scratch, binary = measure.storm_binary("agent")
    agents = measure.start_agents(1, scratch)
    [(agent, address, _)] = agents
    try:
        print(f"procscope agent: {a.pairs} pairs of {a.duration:.0f} s storms, without a client and with {a.clients}",
              flush=True)  # fmt: skip
        workload.measure(1.0, workers, binary)  # warm-up, not counted

        def storm(clients: list[Client]) -> tuple[float, int]:
            """(agent CPU seconds, the storm's events) until every client has them all."""
            before = [c.ours for c in clients]
            cpu0 = measure.cpu_seconds(agent.pid)
            n, _ = workload.measure(a.duration, workers, binary)
            end = time.monotonic() + 30
            while any(c.ours - b < 2 * n for c, b in zip(clients, before, strict=True)) and time.monotonic() < end:
                if any(c.lost for c in clients):
                    break
                time.sleep(0.05)
            time.sleep(0.5)  # the last batch applied with or without clients alike
            return measure.cpu_seconds(agent.pid) - cpu0, 2 * n

        alone: list[float] = []
        served: list[tuple[float, int]] = []
        lost = 0
        alone.append(_per_event(*storm([])))
        for _ in range(a.pairs):
            clients = [Client(address, binary) for _ in range(a.clients)]
            time.sleep(1.0)  # joined, and sent the processes alive
            cpu, events = storm(clients)
            lost += sum(c.lost for c in clients) + sum(max(0, events - c.ours) for c in clients)
            for c in clients:
                c.stop()
            served.append((cpu, events))
            alone.append(_per_event(*storm([])))
            print(f"  without: {alone[-2]:.1f} µs/event   with {a.clients}: {_per_event(cpu, events):.1f} µs/event  "
                  f"({events} events)", flush=True)  # fmt: skip
        added = [
            (_per_event(cpu, ev) - (alone[i] + alone[i + 1]) / 2) / a.clients for i, (cpu, ev) in enumerate(served)
        ]
        per = statistics.median(added)
        print(f"  agent CPU per event, no client : {statistics.median(alone):.1f} µs "
              f"({min(alone):.1f}–{max(alone):.1f})")  # fmt: skip
        print(f"  added per event served         : {per:.1f} µs ({min(added):.1f}–{max(added):.1f}; "
              f"target <= {TARGETS['us_per_event_served']:.0f})")  # fmt: skip
        print(f"  events lost by the clients     : {lost}")
        return measure.result([
            (f"{per:.1f} µs per event served", per <= TARGETS["us_per_event_served"]),
            (f"{lost} events lost", lost == 0),
        ])  # fmt: skip
    finally:
        measure.stop_agents(agents)
        shutil.rmtree(scratch, ignore_errors=True)


def _per_event(cpu: float, events: int) -> float:
    return cpu / max(events, 1) * 1e6


if __name__ == "__main__":
    sys.exit(main())
