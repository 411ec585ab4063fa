"""What the benchmarks share: rounds that alternate the workload alone with
the workload under test (this VM's exec rate drifts by ±10% from one run to
the next, so each measurement is compared with the baselines just before
and after it), CPU time of a process, BPF run time per program, and the
RESULT line."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import workload  # bench/workload.py: the scripts' own directory is on sys.path

REPO = Path(__file__).resolve().parent.parent
Agent = tuple[subprocess.Popen, str, Path]  # the process, its address, its log


def storm_binary(stem: str) -> tuple[str, str]:
    """(a new scratch directory, a uniquely named copy of /bin/true in it): its execs are
    exactly the workload's."""
    scratch = tempfile.mkdtemp(prefix=f"procscope-bench-{stem}-")
    binary = os.path.realpath(os.path.join(scratch, f"true-{secrets.token_hex(4)}"))
    shutil.copy2("/bin/true", binary)
    return scratch, binary


def start_agents(n: int, scratch: str) -> list[Agent]:
    """``n`` `procscope agent`s serving (node names node-1.., Unix sockets in ``scratch``);
    SystemExit with the log of one that did not start."""
    agents = []
    for i in range(1, n + 1):
        address, log = f"unix://{scratch}/node-{i}.sock", Path(scratch, f"node-{i}.log")
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "procscope.cli", "agent", "--address", address],
                                    cwd=REPO, stderr=f, env={**os.environ, "NODE_NAME": f"node-{i}"})  # fmt: skip
        agents.append((proc, address, log))
    deadline = time.monotonic() + 120
    for proc, _, log in agents:
        while "serving" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_agents(agents)
                raise SystemExit(f"an agent did not start:\n{log.read_text()}")
            time.sleep(0.2)
    return agents


def stop_agents(agents: list[Agent]) -> None:
    for proc, _, _ in agents:
        proc.send_signal(signal.SIGTERM)
    for proc, _, _ in agents:
        proc.wait(30)


def cpu_seconds(pid: int | str = "self", tid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads, ended ones
    too), or of one thread, in the scheduler's nanoseconds: /proc/PID/stat's
    are 10 ms ticks, up to a sixth of what an agent spends in a 2 s storm."""
    if tid is not None:
        with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
            return int(f.read().split()[0]) / 1e9
    if pid == "self":
        return time.process_time()
    return time.clock_gettime(~int(pid) << 3 | 2)  # the process's CPU-time clock (MAKE_PROCESS_CPUCLOCK, SCHED)


@dataclass
class Rounds:
    """Storm rates: the baselines, and per treatment the rates measured between two of them."""

    baselines: list[float] = field(default_factory=list)
    measured: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # name → (rate, baseline index)

    def ratios(self, name: str) -> list[float]:
        b = self.baselines
        return [rate / ((b[i] + b[i + 1]) / 2) for rate, i in self.measured.get(name, [])]

    def ratio(self, name: str) -> float:
        return statistics.median(self.ratios(name))


def storm(duration: float, workers: int, binary: str) -> tuple[int, float]:
    """One storm: (execs, execs per second)."""
    n, s = workload.measure(duration, workers, binary)
    return n, n / s


def alternate(rounds: int, duration: float, workers: int, binary: str,
              treatments: dict[str, Callable[[Callable[[], tuple[int, float]]], None]], log=print) -> Rounds:  # fmt: skip
    """``rounds`` times: a baseline storm, then each treatment, which sets
    itself up, calls the function it is given (a storm; it returns the
    execs and their rate) and tears down; a last baseline closes. A short storm first warms
    the machine up (the first is always slower) and is not counted."""
    storm(min(duration, 2.0), workers, binary)
    out = Rounds()

    def baseline() -> None:
        n, rate = storm(duration, workers, binary)
        out.baselines.append(rate)
        log(f"  baseline: {n} execs, {rate:.0f}/s")

    for _ in range(rounds):
        baseline()
        for name, run in treatments.items():

            def measured(name=name) -> tuple[int, float]:
                n, rate = storm(duration, workers, binary)
                out.measured.setdefault(name, []).append((rate, len(out.baselines) - 1))
                log(f"  {name}: {n} execs, {rate:.0f}/s")
                return n, rate

            run(measured)
    baseline()
    return out


@contextlib.contextmanager
def bpf_stats(ids: set[int]) -> Iterator[dict[str, tuple[int, int]]]:
    """Run time of the BPF programs ``ids`` while the block runs: name →
    (runs, ns), from bpftool with kernel.bpf_stats_enabled on only meanwhile."""
    out: dict[str, tuple[int, int]] = {}
    path = "/proc/sys/kernel/bpf_stats_enabled"
    with open(path) as f:
        was = f.read().strip()
    with open(path, "w") as f:
        f.write("1")
    before = _progs()
    try:
        yield out
    finally:
        after = _progs()
        with open(path, "w") as f:
            f.write(was)
        for pid, p in after.items():
            if pid not in ids:
                continue
            b = before.get(pid, {})
            runs = p.get("run_cnt", 0) - b.get("run_cnt", 0)
            if runs:
                name = p.get("name", str(pid))
                r, ns = out.get(name, (0, 0))
                out[name] = (r + runs, ns + p.get("run_time_ns", 0) - b.get("run_time_ns", 0))


def prog_ids() -> set[int]:
    """The BPF programs loaded now (to tell which ones a load added)."""
    return set(_progs())


def _progs() -> dict[int, dict]:
    done = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True)
    return {p["id"]: p for p in json.loads(done.stdout)}


def result(checks: list[tuple[str, bool]]) -> int:
    """Print RESULT PASS/FAIL with what failed; the exit status."""
    failed = [name for name, ok in checks if not ok]
    print(f"RESULT: {'PASS' if not failed else 'FAIL'}" + (f" ({'; '.join(failed)})" if failed else ""))
    return 1 if failed else 0
