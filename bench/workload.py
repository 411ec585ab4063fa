"""Exec-storm workload: one worker process per core, each spawning a tiny
binary and reaping it in a tight loop, for a fixed time or a fixed count.

    python bench/workload.py --duration 5          # prints the number of execs
    from bench.workload import run; run(5, 2, "/bin/true")
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import time

DEFAULT_BINARY = "/bin/true"


def _worker(binary: str, deadline_s: float, count: int | None, rate: float | None, go, result) -> None:
    argv, env = [binary], {}  # empty env: less to copy per exec
    go.wait()  # all workers start together, after the (slow) spawn start-up
    start = time.monotonic()
    deadline = start + deadline_s
    done = 0
    try:
        # posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)) measured ~2x faster than fork+execv.
        while (done < count) if count is not None else (time.monotonic() < deadline):
            pid = os.posix_spawn(binary, argv, env)
            os.waitpid(pid, 0)
            done += 1
            if rate is not None and (ahead := start + done / rate - time.monotonic()) > 0.001:
                time.sleep(ahead)
    finally:
        result.put(done)  # even on error, so the parent never waits forever


def measure(
    duration: float = 5.0,
    workers: int | None = None,
    binary: str = DEFAULT_BINARY,
    count: int | None = None,
    rate: float | None = None,
) -> tuple[int, float]:
    """Run the workload (``rate``: at most that many execs a second in all, else as fast as
    it can); return (execs done, wall seconds of the exec loop)."""
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"not an executable: {binary}")
    workers = workers or os.cpu_count() or 1
    # "spawn", not fork: the caller may have threads running (the collector's poller).
    ctx = mp.get_context("spawn")
    go, result = ctx.Event(), ctx.Queue()
    shares = [None] * workers if count is None else [count // workers + (i < count % workers) for i in range(workers)]
    each = rate / workers if rate is not None else None
    procs = [ctx.Process(target=_worker, args=(binary, duration, n, each, go, result), daemon=True) for n in shares]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let the interpreters finish importing so they start in step
    t0 = time.monotonic()
    go.set()
    total = 0
    for _ in procs:  # get before join: a child blocks at exit until its queued result is read
        while True:
            try:
                total += result.get(timeout=1)
                break
            except queue.Empty:
                if not any(p.is_alive() for p in procs):  # killed without reporting
                    raise RuntimeError("workload workers died") from None
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"workload worker exited with {p.exitcode}")
    return total, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds to run (default 5)")
    ap.add_argument("--count", type=int, help="total execs instead of a duration")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="worker processes (default: cores)")
    ap.add_argument("--binary", default=DEFAULT_BINARY, help=f"binary to exec (default {DEFAULT_BINARY})")
    ap.add_argument("--rate", type=float, help="at most this many execs a second in all (default: as fast as it can)")
    a = ap.parse_args()
    total, elapsed = measure(a.duration, a.workers, a.binary, a.count, a.rate)
    print(f"{total} execs in {elapsed:.2f} s ({total / elapsed:.0f}/s, {a.workers} workers)")


if __name__ == "__main__":
    main()
