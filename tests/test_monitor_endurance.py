"""The monitor as people run it: in a real terminal, for minutes (live
BPF, and a replay): still running, and still answering keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import Terminal
from .test_setup import _gone_soon, _prog_ids

pytestmark = pytest.mark.bpf  # root and BPF: every test here

DEMO = str(Path(__file__).parent / "data" / "demo.jsonl")
MINUTES = float(os.environ.get("PROCSCOPE_ENDURANCE_MINUTES", "2"))


def test_monitor_runs_for_minutes_live_and_replaying():
    with Terminal([]) as live, Terminal(["--replay", DEMO]) as replay:
        seconds = MINUTES * 60
        while seconds > 0:  # both read in turns, so neither blocks on a full terminal
            for t in (live, replay):
                t.read(0.5)
            seconds -= 1.0
        for t in (live, replay):
            assert t.alive(), t.out[-3000:]
            t.type(b"\x1b[B")  # down: the selection moves, the screen changes
            assert t.read(3), "no drawing after a key"
            out, status = t.quit()
            assert status == 0 and b"Traceback" not in out, out[-3000:]


def test_quitting_gives_the_terminal_back_and_leaves_no_probe():
    """q ends the monitor at once (benchmarked: bench/startup.py); what it
    skips on the way out must not be the terminal's state or the probes."""
    before = _prog_ids()
    with Terminal([]) as t:
        for _ in range(60):
            if b"live BPF" in t.read(0.5):
                break
        loaded = _prog_ids() - before
        assert len(loaded) >= 4, t.out[-3000:]
        out, status = t.quit()
    assert status == 0 and b"Traceback" not in out, out[-3000:]
    tail = out[out.rindex(b"\x1b[?1049l") :]  # the alternate screen left, after the last frame
    assert b"\x1b[?25h" in tail  # the cursor shown again
    assert _gone_soon(loaded)
