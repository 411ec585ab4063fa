"""What reading the resources costs (CPU%, RES, the meters: issue 27), as
users run the monitor: the real monitor in a pseudo-terminal. Needs root
(the probes) and htop (scripts/setup installs it).

Measured:
- idle, with N sleeping processes: the monitor's CPU with the resources
  read every second (the default) against `htop -d 10` (htop refreshing
  every second), in alternating rounds (htop, procscope, htop, ...), each
  procscope figure against the mean of the htop rounds around it; and the
  monitor with `--usage 0` (nothing read) for scale;
- an exec storm with the monitor open: the storm's rate with the resources
  read against with `--usage 0`, in alternating pairs (off, on, off, ...),
  each "on" against the mean of the "off" rounds around it;
- seconds from the command to the first screen whose list shows CPU%
  figures.

    sudo .venv/bin/python bench/usage_cost.py [--rounds 3] [--processes 10000] [--seconds 15] [--storm-rounds 6]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time

import measure
from monitor_storm import header
from startup import Sleepers, idle_cpu, tree_shown
from terminal import Terminal, status

TARGETS = {"idle_vs_htop": 0.25, "storm_on_vs_off": 0.98, "first_cpu_s": 1.5}


def live(lines: list[str]) -> bool:
    return "source: live BPF" in status(lines) and tree_shown(lines)


def cpu_shown(lines: list[str]) -> bool:
    """The list's first row has a figure under CPU%."""
    h = header(lines)
    if "CPU%" not in h:
        return False
    row = lines[lines.index(h) + 1]
    at = h.index("CPU%")
    return bool(re.search(r"\d", row[max(at - 2, 0) : at + 5]))


def monitor_cpu(args: list[str], seconds: float) -> float:
    term = Terminal(args, 200, 50)
    try:
        return idle_cpu(term, live, seconds)
    finally:
        term.quit()


def htop_cpu(seconds: float) -> float:
    term = Terminal([], 200, 50, command=["htop", "-d", "10"])
    try:
        return idle_cpu(term, lambda ls: any("PID" in line for line in ls), seconds)
    finally:
        term.quit()


def first_cpu_figures() -> float:
    term = Terminal([], 200, 50)
    try:
        took = term.wait(cpu_shown, 30, since=term.started)
        if took is None:
            raise RuntimeError("no CPU% figures:\n" + "\n".join(term.lines()))
        return took
    finally:
        term.quit()


def with_monitor(args: list[str]):
    def run(storm) -> None:
        term = Terminal(args, 200, 50)
        try:
            if term.wait(live, 60) is None:
                raise RuntimeError("the monitor did not show the live tree:\n" + "\n".join(term.lines()))
            time.sleep(1.0)
            storm()
        finally:
            term.quit()

    return run


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}; {', '.join(f'{v:.3f}' for v in values)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="idle rounds of procscope between htop rounds")
    ap.add_argument("--processes", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds each idle round is measured")
    ap.add_argument("--storm-rounds", type=int, default=6)
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per storm")
    a = ap.parse_args()
    workers = os.cpu_count() or 1
    print(f"procscope resource-reading cost: {a.processes} idle processes, {a.rounds} rounds; "
          f"{a.storm_rounds} storm pairs of {a.duration:g} s", flush=True)  # fmt: skip
    first = [first_cpu_figures() for _ in range(3)]
    print(f"  first CPU% figures: {', '.join(f'{s:.2f}' for s in first)} s", flush=True)
    sleepers = Sleepers(a.processes)
    try:
        htop = [htop_cpu(a.seconds)]
        ours, off = [], []
        for _ in range(a.rounds):
            ours.append(monitor_cpu([], a.seconds))
            off.append(monitor_cpu(["--usage", "0"], a.seconds))
            htop.append(htop_cpu(a.seconds))
            print(f"  idle: procscope {ours[-1]:.3f} core (--usage 0: {off[-1]:.3f}), htop -d 10 {htop[-2]:.3f}"
                  f" then {htop[-1]:.3f} core", flush=True)  # fmt: skip
    finally:
        sleepers.stop()
    idle = [c / ((htop[i] + htop[i + 1]) / 2) for i, c in enumerate(ours)]
    print("an exec storm with the monitor open, the resources read (on) or not (--usage 0):", flush=True)
    rounds = measure.Rounds()
    measure.storm(2.0, workers, "/bin/true")  # the first storm is always slower: not counted
    for i in range(a.storm_rounds * 2 + 1):
        name = "on" if i % 2 else "off"
        with_monitor([] if name == "on" else ["--usage", "0"])(
            lambda name=name: rounds.measured.setdefault(name, []).append(
                (measure.storm(a.duration, workers, "/bin/true")[1], 0)
            )
        )
        print(f"  {name}: {rounds.measured[name][-1][0]:.0f} execs/s", flush=True)
    offs = [r for r, _ in rounds.measured["off"]]
    storm = [r / ((offs[i] + offs[i + 1]) / 2) for i, (r, _) in enumerate(rounds.measured["on"])]
    print("results:")
    print(f"  first CPU% figures, s            : {spread(first)}; target <= {TARGETS['first_cpu_s']}")
    print(f"  idle CPU, procscope / htop -d 10 : {spread(idle)}; target <= {TARGETS['idle_vs_htop']}")
    print(
        f"  idle CPU with --usage 0 / htop   : {spread([c / ((htop[i] + htop[i + 1]) / 2) for i, c in enumerate(off)])}"
    )
    print(f"  storm rate, usage on / off       : {spread(storm)}; target >= {TARGETS['storm_on_vs_off']}")
    return measure.result([
        (f"first CPU% figures {max(first):.2f} s", max(first) <= TARGETS["first_cpu_s"]),
        (f"idle CPU {statistics.median(idle):.3f} of htop's", statistics.median(idle) <= TARGETS["idle_vs_htop"]),
        (f"storm rate with the resources read {statistics.median(storm):.3f}",
         statistics.median(storm) >= TARGETS["storm_on_vs_off"]),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
