"""A recording as of any moment, on a recording made here: `snapshot
--replay FILE --at TIME` shows the processes alive then, with their
credentials then, and not those started later; `--diff T1 T2` lists what
started, exited, and changed privileges in between."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from .conftest import REPO, unique_copy
from .test_creds import CHILD


def procscope(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "procscope", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A recording in which A runs, then (after T1) A drops to nobody, B
    starts and a short C runs and exits (T2 after)."""
    import os

    if os.geteuid() != 0:
        pytest.fail("needs root: it records with the probes") if os.environ.get(
            "PROCSCOPE_REQUIRE_BPF"
        ) else pytest.skip("not root")
    d = tmp_path_factory.mktemp("timetravel")
    os.chmod(d, 0o755)
    rec = d / "rec.jsonl"
    # --creds-exact: A's drop is recorded as it happens, not when A next clones, execs or exits.
    events = subprocess.Popen([sys.executable, "-m", "procscope", "events", "--creds-exact", "--record", str(rec)],
                              cwd=REPO, stderr=subprocess.PIPE, text=True)  # fmt: skip
    while "collecting" not in (line := events.stderr.readline()):
        assert line, events.stderr.read()
    a = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    t1 = now_rfc3339()
    time.sleep(0.5)
    a.stdin.write("setresuid\n")
    a.stdin.flush()
    assert a.stdout.readline() == "done\n"
    b = subprocess.Popen(["sleep", "60"])
    c = unique_copy("/bin/true", str(d))
    subprocess.run([c], check=True)
    time.sleep(0.5)
    t2 = now_rfc3339()
    time.sleep(0.5)
    events.send_signal(signal.SIGINT)
    assert events.wait(30) == 0
    yield {"path": str(rec), "a": a.pid, "b": b.pid, "c": c, "t1": t1, "t2": t2}
    for p in (a, b):
        p.kill()
        p.wait()


def at(recording, when: str) -> dict:
    r = procscope("snapshot", "--replay", recording["path"], f"--at={when}")  # = : argparse takes -0s for an option
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def alive(doc: dict) -> dict[int, dict]:
    return {p["pid"]: p for p in doc["processes"] if p.get("procscope", {}).get("state") == "running"}


def test_the_snapshot_at_t1_has_a_as_root_and_not_b(recording):
    doc = at(recording, recording["t1"])
    procs = alive(doc)
    assert recording["a"] in procs and recording["b"] not in procs
    assert procs[recording["a"]]["process_credentials"]["euid"] == 0  # its credentials then
    assert doc["as_of"] <= recording["t1"]


def test_the_snapshot_at_the_end_has_a_as_nobody_and_b(recording):
    procs = alive(at(recording, "-0s"))
    assert procs[recording["a"]]["process_credentials"]["euid"] == 65534 and recording["b"] in procs


def test_the_diff_between_t1_and_t2(recording):
    r = procscope("snapshot", "--replay", recording["path"], "--diff", recording["t1"], recording["t2"])
    assert r.returncode == 0, r.stderr
    diff = json.loads(r.stdout)
    started = {p["pid"] for p in diff["started"]}
    assert recording["b"] in started and recording["a"] not in started
    assert any(p["binary"] == recording["c"] for p in diff["exited"])  # started and exited in between
    (change,) = [p for p in diff["privileges"] if p["pid"] == recording["a"]]
    assert change["what"].startswith("setresuid: uid 0→65534") and change["gained"] is False


def test_times_are_checked_and_need_a_recording(recording):
    bad = procscope("snapshot", "--replay", recording["path"], "--at", "yesterday")
    assert bad.returncode == 2 and "bad time 'yesterday'" in bad.stderr
    live = procscope("snapshot", "--at=-5s")
    assert live.returncode == 2 and "add --replay FILE" in live.stderr
