"""How long and how much memory `procscope snapshot --replay` takes on a
large recording: 500,000 processes alive at its end (one exec line each,
as short as a Tetragon export's lines get), and 2,000,000 that exec and
exit (memory must stay bounded however long a recording is).

Targets: the 500,000 in at most 20 s and 1.5 GB, the 2,000,000 in at most
1.5 GB. Baseline, measured in the same run: reading the same file with
Python's json, a line at a time (what any reader of it pays at least).

    .venv/bin/python bench/replay_scale.py [--processes 500000] [--exiting 2000000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

TARGET_S = 20.0
TARGET_RSS = 1.5 * (1 << 30)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_recording(path: str, n: int, exiting: bool) -> None:
    def exec_id(pid: int, kt: int) -> str:
        return base64.b64encode(f"vm:{kt}:{pid}".encode()).decode()

    def stamp(kt: int) -> str:
        d = kt - t0
        return f"2026-11-25T{1 + d // 3_600_000_000_000:02d}:{d // 60_000_000_000 % 60:02d}:{d // 10**9 % 60:02d}.{d % 10**9:09d}Z"

    t0 = 1_000_000_000
    init = {"exec_id": exec_id(1, t0), "pid": 1, "uid": 0, "cwd": "/", "binary": "/sbin/init", "arguments": "",
            "flags": "procFS", "start_time": stamp(t0), "parent_exec_id": exec_id(0, 0), "tid": 1}  # fmt: skip
    with open(path, "w") as out:
        out.write(json.dumps({"process_exec": {"process": init}, "node_name": "vm", "time": stamp(t0)}) + "\n")
        for i in range(n):
            pid = 100 + i % 4_000_000
            kt = t0 + 1_000_000 * (i + 1)  # 1,000 execs a second
            p = {"exec_id": exec_id(pid, kt), "pid": pid, "uid": 1000, "cwd": "/home/u", "binary": "/usr/bin/sleep",
                 "arguments": str(i), "flags": "execve clone", "start_time": stamp(kt), "parent_exec_id": init["exec_id"],
                 "tid": pid}  # fmt: skip
            out.write(json.dumps({"process_exec": {"process": p}, "node_name": "vm", "time": stamp(kt)}) + "\n")
            if exiting:
                out.write(json.dumps({"process_exit": {"process": p, "status": 0}, "node_name": "vm",
                                      "time": stamp(kt + 500_000)}) + "\n")  # fmt: skip


def timed(args: list[str]) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stderr) of a command run alone."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak
        took = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        said = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed: {said}")
    return took, usage.ru_maxrss * 1024, said


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=500_000)
    ap.add_argument("--exiting", type=int, default=2_000_000)
    a = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="procscope-replay-") as d:
        for name, n, exiting in (("alive", a.processes, False), ("exiting", a.exiting, True)):
            rec = os.path.join(d, f"{name}.jsonl")
            write_recording(rec, n, exiting)
            size = os.path.getsize(rec)
            base, _, _ = timed(
                [sys.executable, "-c", "import json,sys\nfor line in open(sys.argv[1], 'rb'): json.loads(line)", rec]
            )
            took, rss, err = timed(
                [sys.executable, "-m", "procscope", "snapshot", "--replay", rec, "-o", os.path.join(d, "snap.json")]
            )
            os.unlink(rec)
            passed = rss <= TARGET_RSS and (exiting or took <= TARGET_S)
            ok &= passed
            print(f"{name}: {n:,} processes, {size / 1e6:.0f} MB: snapshot --replay {took:.1f} s "
                  f"({took / base:.1f}x json.loads alone, {base:.1f} s), peak {rss / 2**30:.2f} GB "
                  f"[{'ok' if passed else 'over target'}]; {err.strip().splitlines()[-1]}")  # fmt: skip
    print(f"targets: {a.processes:,} alive in <= {TARGET_S:.0f} s, every replay <= {TARGET_RSS / 2**30:.1f} GB")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
