"""What procscope costs the machine it watches, on more than one workload.

Each workload runs alone and with procscope in alternating pairs (alone,
with, alone, with, ..., alone); each measurement with procscope is divided
by the mean of the runs alone just before and after it (this VM drifts by
±10% between runs), and the median and spread of those ratios are printed.

Workloads: a tight getppid loop from C pinned to one CPU, which never execs
(any syscall tracepoint puts every syscall of every task on the kernel's
slow path: this is what ordinary servers would pay); fork+execl of a copy
of /bin/true from two C loops; posix_spawn from Python (bench/workload.py);
a shell loop of pipelines. procscope: the collector alone applying its
batches to a process cache (bench/collect.py), `procscope events -o FILE`, the same
with --creds-exact (the syscall tracepoints: reported, no target), the
collector writing as many bytes a line as `events -o FILE` did, its lines
made for nothing (bench/collect.py --write: the floor of `events -o FILE`,
reported, no target: nothing that makes the lines can cost less), the same
writing Tetragon's default objects (--no-process-cred --no-process-ns:
reported, no target), and the
monitor open at 200x50 with its resources view on. Needs root and a C
compiler.

    sudo .venv/bin/python bench/cost.py [--pairs 6] [--duration 3] [--workloads syscalls,fork+exec]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import measure
import workload
from terminal import REPO, Terminal
from usage_cost import live

# Median of the pair ratios, at least (None: reported only).
TARGETS: dict[tuple[str, str], float | None] = {}
for _w in ("fork+exec", "posix_spawn", "shell"):
    TARGETS[(_w, "collector")] = 0.97
    TARGETS[(_w, "events -o FILE")] = 0.97
    TARGETS[(_w, "monitor")] = 0.95
    TARGETS[(_w, "events --creds-exact")] = None
    TARGETS[(_w, "events --no-process-cred --no-process-ns")] = None
    TARGETS[(_w, "the collector writing events' bytes")] = None
TARGETS[("syscalls", "collector")] = 0.99
TARGETS[("syscalls", "events -o FILE")] = 0.99
TARGETS[("syscalls", "monitor")] = 0.99
TARGETS[("syscalls", "events --creds-exact")] = None
TARGETS[("syscalls", "events --no-process-cred --no-process-ns")] = None
TARGETS[("syscalls", "the collector writing events' bytes")] = None

# A C loop: ARGV[1] seconds of BATCH (the work, n counted) at a time; prints "n seconds".
LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    double secs = atof(argv[1]), t0 = now(), t;
    unsigned long n = 0;
    do {
        BATCH
    } while ((t = now()) - t0 < secs);
    printf("%lu %f\n", n, t - t0);
    return 0;
}
"""
SYSCALLS_C = LOOP_C.replace("BATCH", "for (int i = 0; i < 20000; i++) syscall(SYS_getppid); n += 20000;")
FORK_EXEC_C = LOOP_C.replace(
    "BATCH",
    """for (int i = 0; i < 16; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                execl(argv[2], argv[2], (char *)0);
                _exit(127);
            }
            waitpid(pid, 0, 0);
        }
        n += 16;""",
)

# A pipeline per iteration: sh forks twice and execs cat (echo is built in).
SHELL = 'i=0; while [ $i -lt "$1" ]; do echo x | cat > /dev/null; i=$((i + 1)); done'


class Workloads:
    """Each workload: run for about ``duration`` s, return its rate."""

    def __init__(self, scratch: str, duration: float):
        self.duration = duration
        self.true = os.path.join(scratch, "ps-cost-true")
        shutil.copy2("/bin/true", self.true)
        self.bin = {}
        for name, src in (("syscalls", SYSCALLS_C), ("fork+exec", FORK_EXEC_C)):
            path = os.path.join(scratch, name.replace("+", "_"))
            with open(path + ".c", "w") as f:
                f.write(src)
            subprocess.run(["cc", "-O2", "-o", path, path + ".c"], check=True)
            self.bin[name] = path
        self.shell_n = 0

    def run(self, name: str) -> float:
        if name == "syscalls":  # one loop on CPU 0
            return self._c(["taskset", "-c", "0", self.bin[name], str(self.duration)])
        if name == "fork+exec":  # a loop per core
            procs = [subprocess.Popen([self.bin[name], str(self.duration), self.true], stdout=subprocess.PIPE,
                                      text=True) for _ in range(os.cpu_count() or 1)]  # fmt: skip
            return sum(self._rate(p.communicate()[0]) for p in procs)
        if name == "posix_spawn":
            n, s = workload.measure(self.duration, None, self.true)
            return n / s
        if name == "shell":
            if not self.shell_n:  # calibrated once, so that a run takes about `duration`
                self.shell_n = 200
                self.shell_n = max(200, int(self._shell(200) * self.duration))
            return self._shell(self.shell_n)
        raise ValueError(name)

    def _shell(self, n: int) -> float:
        t0 = time.monotonic()
        subprocess.run(["sh", "-c", SHELL, "sh", str(n)], check=True)
        return n / (time.monotonic() - t0)

    def _c(self, argv: list[str]) -> float:
        return self._rate(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)

    @staticmethod
    def _rate(out: str) -> float:
        n, secs = out.split()
        return int(n) / float(secs)


@contextmanager
def collecting(argv: list[str]) -> Iterator[int]:
    """A command that says "collecting" on stderr once attached, running: its pid."""
    proc = subprocess.Popen([sys.executable, *argv], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        while "collecting" not in (line := proc.stderr.readline()):
            if not line:
                raise RuntimeError(f"{argv} did not start: " + proc.stderr.read())
        time.sleep(0.5)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


# Bytes per line that `events -o FILE` (no options) wrote in its last run: the floor's lines.
LINE_BYTES: list[int] = []


@contextmanager
def events(*options: str) -> Iterator[int]:
    """`procscope events -o FILE` running (started and collecting): its pid."""
    path = tempfile.mktemp(prefix="procscope-cost-", suffix=".json")
    try:
        with collecting(["-m", "procscope", "events", "-o", path, *options]) as pid:
            yield pid
        if not options:
            with open(path, "rb") as f:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            LINE_BYTES[:] = [os.path.getsize(path) // max(lines, 1)]
    finally:
        if os.path.exists(path):
            os.unlink(path)


@contextmanager
def floor() -> Iterator[int]:
    """The collector writing, for each exec and exit, a line as long as `events -o FILE`'s
    were (its run just before): what `events -o FILE` would cost if its lines cost nothing
    to make."""
    if not LINE_BYTES:
        raise RuntimeError("the floor needs a run of `events -o FILE` before it (its lines' length)")
    path = tempfile.mktemp(prefix="procscope-cost-", suffix=".json")
    try:
        with collecting([str(REPO / "bench" / "collect.py"), "--write", str(LINE_BYTES[0] - 1), path]) as pid:
            yield pid
    finally:
        if os.path.exists(path):
            os.unlink(path)


@contextmanager
def monitor() -> Iterator[int]:
    """The monitor open at 200x50 and showing the live tree: its pid."""
    term = Terminal([], 200, 50)
    try:
        if term.wait(live, 60) is None:
            raise RuntimeError("the monitor did not show the live tree:\n" + "\n".join(term.lines()))
        time.sleep(1.0)
        yield term.proc.pid
    finally:
        term.quit()


TREATMENTS = {"collector": lambda: collecting([str(REPO / "bench" / "collect.py")]), "events -o FILE": lambda: events(),
              "the collector writing events' bytes": floor,
              "events --creds-exact": lambda: events("--creds-exact"), "monitor": monitor,
              # Tetragon's default objects: no cap, process_credentials or ns (reported, no target)
              "events --no-process-cred --no-process-ns": lambda: events("--no-process-cred", "--no-process-ns")}  # fmt: skip


def pairs(work: Callable[[], float], treatment: str, n: int) -> tuple[list[float], list[float]]:
    """Alone, with, alone, with, ..., alone: each rate with procscope over the
    mean of its neighbours alone; and procscope's CPU meanwhile, in cores."""
    work()  # warm up (the first run is always slower)
    alone = [work()]
    ratios, cores = [], []
    for _ in range(n):
        with TREATMENTS[treatment]() as pid:
            cpu, t0 = measure.cpu_seconds(pid), time.monotonic()
            with_it = work()
            cores.append((measure.cpu_seconds(pid) - cpu) / (time.monotonic() - t0))
        alone.append(work())
        ratios.append(with_it / ((alone[-2] + alone[-1]) / 2))
    return ratios, cores


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}; "
            f"{', '.join(f'{v:.3f}' for v in values)})")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds a workload runs")
    ap.add_argument("--workloads", default="syscalls,fork+exec,posix_spawn,shell")
    ap.add_argument(
        "--treatments",
        default="collector,events -o FILE,the collector writing events' bytes,events --creds-exact,"
        "events --no-process-cred --no-process-ns,monitor",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("cost: needs root (the probes)", file=sys.stderr)
        return 2
    if shutil.which("cc") is None:
        print("cost: needs a C compiler (cc) for its workloads: apt install gcc", file=sys.stderr)
        return 2
    scratch = tempfile.mkdtemp(prefix="procscope-cost-")
    checks = []
    try:
        works = Workloads(scratch, args.duration)
        for name in args.workloads.split(","):
            for t in args.treatments.split(","):
                ratios, cores = pairs(lambda name=name: works.run(name), t, args.pairs)
                target = TARGETS.get((name, t))
                print(f"{name:12} with {t:41} {spread(ratios)}" + (f"  target ≥ {target}" if target else "")
                      + f"; procscope's CPU {statistics.median(cores):.3f} core"
                      + (f"; lines of {LINE_BYTES[0]:,} B" if t == "the collector writing events' bytes" else ""),
                      flush=True)  # fmt: skip
                if target is not None:
                    checks.append((f"{name} with {t} {statistics.median(ratios):.3f} < {target}",
                                   statistics.median(ratios) >= target))  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}")
    return measure.result(checks)


if __name__ == "__main__":
    sys.exit(main())
