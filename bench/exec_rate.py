"""Exec-rate benchmark: can the collector keep up with the machine's full
fork+exec rate, at little cost to it, without losing events?

Rounds alternate the workload (bench/workload.py) alone with the workload
while the collector is attached and a consumer applies its batches to a
process cache, as the monitor does; each rate is compared with the
baselines just before and after it. While the collector runs, BPF's own
statistics give each program's run time. Then the records of a short storm
are decoded again, per op, to time the decoder alone. Needs root.

    sudo .venv/bin/python bench/exec_rate.py [--rounds 3] [--duration 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time

import measure

from procscope.cache import ProcessCache
from procscope.probes import collector as collector_module
from procscope.probes import wire
from procscope.probes.collector import Collector
from procscope.probes.counters import Counters
from procscope.probes.decode import decode
from procscope.probes.errors import SetupError
from procscope.probes.events import ExecEvent
from procscope.probes.loader import DEFAULT_RING_BYTES, PAGE_SIZE, ring_pages
from procscope.probes.programs import program_name

QUIET_S = 1.0  # drain until the workload's exec count has not grown for this long
DRAIN_CAP_S = 60.0
TARGETS = {"rate": 0.95, "bpf_us_per_exec": 12.0, "decode_exec_us": 4.0, "user_us_per_event": 10.0}


class Consumer(threading.Thread):
    """Drains the collector and applies every batch to a process cache."""

    def __init__(self, collector: Collector, binary: str):
        super().__init__(name="bench-consumer", daemon=True)
        self.collector, self.binary = collector, binary
        self.cache = ProcessCache()
        self.events = 0  # all types, anything on the machine
        self.seen = 0  # ExecEvents of the workload binary
        self.last_seen = time.monotonic()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            batch = self.collector.get_batch(timeout=0.1)
            if not batch:
                continue
            self.events += len(batch)
            apply = self.cache.apply
            for ev in batch:
                apply(ev)
            self.cache.expire(self.cache.now)
            n = sum(1 for ev in batch if isinstance(ev, ExecEvent) and ev.binary == self.binary)
            if n:
                self.seen += n
                self.last_seen = time.monotonic()

    def drain(self) -> None:
        """Until the workload's execs have stopped arriving."""
        last, quiet_from, cap = -1, time.monotonic(), time.monotonic() + DRAIN_CAP_S
        while time.monotonic() < cap:
            if self.seen != last:
                last, quiet_from = self.seen, time.monotonic()
            elif time.monotonic() - quiet_from >= QUIET_S:
                break
            time.sleep(0.05)


class Attached:
    """One treatment: the collector attached for one storm, everything it
    cost and lost added up over the rounds."""

    def __init__(self, a: argparse.Namespace, binary: str, exit_cpu: bool = False):
        self.a, self.binary, self.exit_cpu = a, binary, exit_cpu
        self.made = self.seen = self.events = 0
        self.thread_s = self.process_s = 0.0
        self.counters: list[Counters] = []
        self.bpf: dict[str, tuple[int, int]] = {}

    def __call__(self, storm) -> None:
        collector = Collector(ring_bytes=self.a.ring_size, scan_proc=False, exit_cpu=self.exit_cpu)
        others = measure.prog_ids()
        collector.open()  # compiling and attaching stays outside the measured window
        mine = measure.prog_ids() - others
        try:
            collector.start()
            tid = next(t.native_id for t in threading.enumerate() if t.name == "procscope-collector")
            consumer = Consumer(collector, self.binary)
            consumer.start()
            cpu0, thr0 = measure.cpu_seconds(), measure.cpu_seconds(tid=tid)
            seen0 = consumer.seen
            with measure.bpf_stats(mine) as bpf:
                made, _ = storm()
            consumer.drain()
            self.thread_s += measure.cpu_seconds(tid=tid) - thr0
            self.process_s += measure.cpu_seconds() - cpu0
            self.seen += consumer.seen - seen0
            self.made += made
            self.events += consumer.events
            self.counters.append(collector.counters())
            consumer.done.set()
            consumer.join()
        finally:
            collector.stop()
        for name, (runs, ns) in bpf.items():
            r, t = self.bpf.get(name, (0, 0))
            self.bpf[name] = (r + runs, t + ns)


def decode_costs(a: argparse.Namespace, binary: str) -> dict[str, float]:
    """µs per record and op: the records of a short storm, decoded again."""
    records: list[bytes] = []

    def keep(record: bytes):
        records.append(record)
        return decode(record)

    collector_module.decode = keep
    try:
        collector = Collector(ring_bytes=a.ring_size, scan_proc=False)
        collector.open()
        try:
            collector.start()
            measure.storm(1.0, a.workers, binary)
            time.sleep(0.5)
        finally:
            collector.stop()
    finally:
        collector_module.decode = decode
    out = {}
    for op, name in wire.OP_NAMES.items():
        mine = [r for r in records if r[0] == op]
        if not mine:
            continue
        best = float("inf")
        for _ in range(5):  # fresh memo tables each time would be unfair both ways: the best of 5
            t = time.perf_counter()
            for r in mine:
                decode(r)
            best = min(best, (time.perf_counter() - t) / len(mine))
        out[name] = best * 1e6
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of baseline + collector (default 3)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per storm (default 4)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="workload processes (default: cores)")
    ap.add_argument("--ring-size", type=int, default=DEFAULT_RING_BYTES, help="ring buffer bytes (default 16 MiB)")
    a = ap.parse_args()
    tmp, binary = measure.storm_binary("exec")
    try:
        return bench(a, binary)
    except SetupError as exc:
        print(f"cannot load the collector: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(a: argparse.Namespace, binary: str) -> int:
    ring = ring_pages(a.ring_size) * PAGE_SIZE
    print(
        f"procscope exec-rate benchmark: {a.workers} workers on {os.cpu_count()} cores, {a.rounds} rounds of"
        f" {a.duration:g} s storms, ring {ring >> 10} KiB",
        flush=True,
    )
    attached = Attached(a, binary)
    rounds = measure.alternate(a.rounds, a.duration, a.workers, binary, {"with collector": attached})
    costs = decode_costs(a, binary)

    lost = sum(c.lost for c in attached.counters)
    ratios = rounds.ratios("with collector")
    ratio = rounds.ratio("with collector")
    made = attached.made
    execs = attached.bpf.get(program_name("sched_process_exec").decode(), (0, 0))[0]  # every exec on the machine
    if not execs:  # the program not found by its name: no figure, rather than a wrong one
        raise SystemExit(f"exec_rate: no runs of the exec program in {sorted(attached.bpf)}")
    bpf_ns = sum(ns for _, ns in attached.bpf.values())
    user_us = attached.process_s / attached.events * 1e6 if attached.events else float("inf")
    print("with the collector attached, against the baselines around it:")
    print(
        f"  exec rate / baseline    : {ratio:.3f} median of {', '.join(f'{r:.3f}' for r in ratios)}"
        f"  (target >= {TARGETS['rate']})"
    )
    print(f"  workload execs seen     : {attached.seen} of {made}")
    print(f"  events decoded          : {attached.events} (all types, whole machine)")
    print("drops (all rounds):")
    print(f"  kernel (ring full etc.) : {sum(c.kernel_dropped for c in attached.counters)}")
    print(f"  user space (queue full) : {sum(c.userspace_dropped for c in attached.counters)}")
    print(f"  decode errors           : {sum(c.decode_errors for c in attached.counters)}")
    print(f"  total lost              : {lost}")
    print("BPF run time (kernel.bpf_stats_enabled, while the storms ran):")
    for name, (runs, ns) in sorted(attached.bpf.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:40} {runs:8} runs {ns / runs:7.0f} ns/run {ns / max(execs, 1) / 1000:6.2f} us/exec")
    bpf_per_exec = bpf_ns / max(execs, 1) / 1000
    print(f"  all programs per exec   : {bpf_per_exec:.2f} us  (target <= {TARGETS['bpf_us_per_exec']})")
    print("user-space CPU:")
    print(f"  poll+decode thread      : {attached.thread_s / max(attached.events, 1) * 1e6:.1f} us/event")
    print(
        f"  ring buffer -> cache    : {user_us:.1f} us/event  (the whole process: reading, decoding, queueing,"
        f" applying to the cache; target <= {TARGETS['user_us_per_event']})"
    )
    print(
        "decoding one record     : "
        + ", ".join(f"{op} {us:.2f} us" for op, us in costs.items())
        + f"  (exec target <= {TARGETS['decode_exec_us']})"
    )
    return measure.result([
        (f"lost {lost} events", lost == 0),
        (f"saw {attached.seen} of {made} workload execs", attached.seen == made),
        (f"exec rate ratio {ratio:.3f} < {TARGETS['rate']}", ratio >= TARGETS["rate"]),
        (f"BPF {bpf_per_exec:.1f} us/exec", bpf_per_exec <= TARGETS["bpf_us_per_exec"]),
        (f"decoding an exec {costs.get('EXECVE', 0):.1f} us", costs.get("EXECVE", 0) <= TARGETS["decode_exec_us"]),
        (f"{user_us:.1f} us/event in user space", user_us <= TARGETS["user_us_per_event"]),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
