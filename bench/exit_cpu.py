"""What counting the exited's CPU costs (issue 27, point 3): the collector
with the exit event's CPU field (procscope.exited_cpu; the monitor's) against
without (the exporters'), in an exec storm, alternating rounds, a consumer
applying every event to a process cache as the monitor does. Needs root.

    sudo .venv/bin/python bench/exit_cpu.py [--rounds 4] [--duration 4]

Targets: the field adds <= 0.5 us of BPF time per exit (bpf_stats: the exit
program's run time per exit, with against without), and the storm's rate
with it >= 0.97 of without (median of the rounds' ratios, each against the
baselines around it)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys

import measure
from exec_rate import Attached

from procscope.probes.loader import DEFAULT_RING_BYTES
from procscope.probes.programs import program_name

TARGETS = {"bpf_us_per_exit": 0.5, "rate": 0.97}
EXIT_PROG = program_name("sched_process_exit").decode()  # as bpf_stats name it


def per_exit(a: Attached) -> tuple[float, int]:
    """(exit program ns per exit, exits)."""
    exits, exit_ns = a.bpf.get(EXIT_PROG, (0, 0))
    if not exits:  # the program not found by its name: no figure, rather than 0
        raise SystemExit(f"exit_cpu: no runs of {EXIT_PROG} in {sorted(a.bpf)}")
    return exit_ns / max(exits, 1), exits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4, help="rounds of baseline, without, with (default 4)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per storm (default 4)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="workload processes (default: cores)")
    a = ap.parse_args()
    a.ring_size = DEFAULT_RING_BYTES
    tmp, binary = measure.storm_binary("exit")
    try:
        off, on = Attached(a, binary, exit_cpu=False), Attached(a, binary, exit_cpu=True)
        print(f"procscope exit-CPU benchmark: {a.workers} workers, {a.rounds} rounds of {a.duration:g} s storms",
              flush=True)  # fmt: skip
        rounds = measure.alternate(a.rounds, a.duration, a.workers, binary, {"without": off, "with": on})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Each round's "with" against its "without", both as ratios to the baselines around them (the VM drifts).
    pairs = [w / o for w, o in zip(rounds.ratios("with"), rounds.ratios("without"), strict=True)]
    ratio = statistics.median(pairs)
    exit_off, exits_off = per_exit(off)
    exit_on, exits_on = per_exit(on)
    extra_us = (exit_on - exit_off) / 1000
    lost = sum(c.lost for c in off.counters + on.counters)
    print(f"  exits measured          : {exits_off} without, {exits_on} with")
    print(f"  exit program per exit   : {exit_off:.0f} ns without the field, {exit_on:.0f} ns with")
    print(f"  added BPF time per exit : {extra_us:.3f} us  (target <= {TARGETS['bpf_us_per_exit']})")
    print(f"  storm rate with/without : {ratio:.3f} median of {', '.join(f'{r:.3f}' for r in pairs)}"
          f"  (target >= {TARGETS['rate']})")  # fmt: skip
    print(f"  user space per event    : {off.process_s / max(off.events, 1) * 1e6:.1f} us without, "
          f"{on.process_s / max(on.events, 1) * 1e6:.1f} us with")  # fmt: skip
    print(f"  events lost             : {lost}")
    return measure.result([
        (f"{extra_us:.2f} us of BPF per exit", extra_us <= TARGETS["bpf_us_per_exit"]),
        (f"rate ratio {ratio:.3f}", ratio >= TARGETS["rate"]),
        (f"lost {lost}", lost == 0),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
