"""Exec-rate benchmark: can the collector keep up with the machine's full
fork+exec rate without losing events?

Phase 1 runs the workload (bench/workload.py) alone for a baseline exec rate;
phase 2 runs it again with the collector attached and a consumer draining it.
Prints the exec rate against the baseline, workload execs seen / made, events
decoded per second, every drop counter, and collector CPU time per event.
Exit status 1 if any event was lost (the target is zero). Needs root.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time

import workload  # bench/workload.py: this script's own directory is on sys.path

from procscope.probes import procfs
from procscope.probes.collector import Collector
from procscope.probes.counters import Counters
from procscope.probes.errors import SetupError
from procscope.probes.events import ExecEvent
from procscope.probes.loader import DEFAULT_RING_BYTES, PAGE_SIZE, ring_pages

QUIET_S = 1.0  # drain until the workload's exec count has not grown for this long
DRAIN_CAP_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu(tid: int) -> float:
    """CPU seconds (user+sys) of one thread of this process, from /proc."""
    fields = procfs.stat_fields(f"/proc/self/task/{tid}/stat")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (#14, #15)


class Consumer(threading.Thread):
    """Drains the collector like a real client would, counting what it gets."""

    def __init__(self, collector: Collector, binary: str):
        super().__init__(name="bench-consumer", daemon=True)
        self.collector, self.binary = collector, binary
        self.events = 0  # all types, anything on the machine
        self.seen = 0  # ExecEvents of the workload binary
        self.last_seen = time.monotonic()  # when the last workload exec arrived
        self.events_at_last_seen = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            batch = self.collector.get_batch(timeout=0.1)
            if not batch:
                continue
            self.events += len(batch)
            n = sum(1 for ev in batch if isinstance(ev, ExecEvent) and ev.binary == self.binary)
            if n:
                self.seen += n
                self.last_seen, self.events_at_last_seen = time.monotonic(), self.events


def drops_lines(c: Counters) -> list[str]:
    kernel = [f"{op}/{err}={n}" for op, row in c.sent_failed.items() for err, n in row.items() if n]
    return [
        f"  kernel (ring full etc.)  : {c.kernel_dropped}" + (f"  [{', '.join(kernel)}]" if kernel else ""),
        f"  user space (queue full)  : {c.userspace_dropped}",
        f"  decode errors            : {c.decode_errors}",
        f"  total lost               : {c.lost}",
        f"  exec map full (no loss, degraded key): {c.exec_map_full}",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per phase (default 5)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="workload processes (default: cores)")
    ap.add_argument("--ring-size", type=int, default=DEFAULT_RING_BYTES, help="ring buffer bytes (default 16 MiB)")
    a = ap.parse_args()

    # A uniquely named copy of /bin/true, so its ExecEvents are exactly the workload's.
    tmp = tempfile.mkdtemp(prefix="procscope-bench-")
    binary = os.path.realpath(os.path.join(tmp, f"true-{secrets.token_hex(4)}"))
    shutil.copy2("/bin/true", binary)
    try:
        return bench(a, binary)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(a: argparse.Namespace, binary: str) -> int:
    ring = ring_pages(a.ring_size) * PAGE_SIZE
    print(f"procscope exec-rate benchmark: {a.workers} workers on {os.cpu_count()} cores, {a.duration:g} s per phase,"
          f" ring {ring >> 10} KiB, binary {binary}", flush=True)

    def baseline(label: str) -> float:
        n, s = workload.measure(a.duration, a.workers, binary)
        print(f"baseline {label} (no collector) : {n} execs in {s:.2f} s = {n / s:.0f} execs/s", flush=True)
        return n / s

    # Baselines before and after the collector phase, so drift in machine load shows and averages out.
    base_before = baseline("before")

    collector = Collector(ring_bytes=a.ring_size, scan_proc=False)
    try:
        collector.open()  # compiling and attaching stays outside the measured window
    except SetupError as exc:
        print(f"cannot load the collector: {exc}", file=sys.stderr)
        return 2
    try:
        collector.start()
        tid = next(t.native_id for t in threading.enumerate() if t.name == "procscope-collector")
        consumer = Consumer(collector, binary)
        consumer.start()

        cpu0, thr0, t0 = time.process_time(), thread_cpu(tid), time.monotonic()
        made, run_s = workload.measure(a.duration, a.workers, binary)
        print(f"with collector                 : {made} execs in {run_s:.2f} s = {made / run_s:.0f} execs/s",
              flush=True)
        # Drain: the ring may still hold events after the workload ends.
        last, quiet_from, cap = -1, time.monotonic(), time.monotonic() + DRAIN_CAP_S
        while time.monotonic() < cap:
            if consumer.seen != last:
                last, quiet_from = consumer.seen, time.monotonic()
            elif time.monotonic() - quiet_from >= QUIET_S:
                break
            time.sleep(0.05)
        cpu, thr = time.process_time() - cpu0, thread_cpu(tid) - thr0
        counters = collector.counters()
        consumer.done.set()
        consumer.join()
    finally:
        collector.stop()
    base_rate = (base_before + baseline("after ")) / 2

    rate, seen = made / run_s, consumer.seen
    events, decode_s = consumer.events_at_last_seen, max(consumer.last_seen - t0, 1e-9)  # up to the last workload exec
    total = consumer.events  # everything decoded in the CPU-measured window, drain included
    per_ev = (lambda s: f"{s / total * 1e6:.1f} us/event") if total else (lambda s: "n/a")
    ok = counters.lost == 0 and seen == made

    print("with collector, against the baseline:")
    print(f"  exec rate / baseline    : {rate / base_rate:.3f}  (baseline = mean of before/after,"
          f" {base_rate:.0f} execs/s; slowdown {1 - rate / base_rate:.1%})")
    print(f"  workload execs seen/made: {seen} / {made} = {seen / made if made else 0:.4f}  (target 1.0000)")
    print(f"  events decoded          : {events} (all types, whole machine) in {decode_s:.2f} s"
          f" = {events / decode_s:.0f} events/s")
    print(f"  events per workload exec: {total / seen if seen else 0:.2f}  (exec+clone+exit = 3, plus background)")
    print("drops:")
    print("\n".join(drops_lines(counters)))
    print(f"collector CPU time ({total} events decoded in all):")
    print(f"  poll+decode thread      : {thr:.2f} s = {per_ev(thr)}")
    print(f"  whole benchmark process : {cpu:.2f} s = {per_ev(cpu)}  (decoding + queueing + the consumer;"
          " workload excluded)")
    print(f"RESULT: {'PASS' if ok else 'FAIL'} - zero lost events at the full exec rate"
          + ("" if ok else f" ({counters.lost} lost by the counters, {made - seen} workload execs not seen)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
