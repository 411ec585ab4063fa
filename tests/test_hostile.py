"""Hostile input: processes whose names, paths, arguments, cwd, comm and
cgroup hold invalid UTF-8, terminal escapes, newlines and Rich markup, some
run as nobody. Every output must survive them: JSON lines valid UTF-8, no
raw control byte on a terminal, markup shown as text, the hostile process
present with its name escaped (losslessly: the kernel's bytes come back)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from procscope.probes import cgroups
from procscope.probes.text import to_bytes

from .conftest import HOSTILE_ARGV0, RAW_FROM_NAMES, Terminal, bpf_unavailable, open_collector, spawn_hostile

pytestmark = pytest.mark.bpf  # root and BPF: every test here

REPO = Path(__file__).resolve().parent.parent
# What a terminal may act on: C0 but newline, DEL, C1 (as UTF-8), bidi overrides, line separators.
TERMINAL_UNSAFE = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


def _procscope(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "procscope.cli", *args], cwd=REPO, capture_output=True, timeout=timeout, **kw
    )


def _json_lines(raw: bytes) -> list[dict]:
    """Every line valid UTF-8 JSON (json.loads of bytes decodes strictly)."""
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.split(b"\n")[:-1]]


def _processes(lines: list[dict]):
    for line in lines:
        for kind in ("process_exec", "process_exit"):
            if kind in line:
                yield kind, line[kind]["process"]


def _assert_hostile_present(procs: list[dict], hostile) -> None:
    """Each hostile binary is there, with its arguments and cwd, byte for byte."""
    by_pid = {p["pid"]: p for p in procs}
    for pid, binary in hostile.runs.items():
        p = by_pid[pid]
        assert to_bytes(p["binary"]) == binary
        assert to_bytes(p["arguments"]) == hostile.arguments
        assert to_bytes(p["cwd"]) == hostile.cwd


def test_events_survive_hostile_processes(scratch):
    """`procscope events` (JSON to -o, a recording, compact to stdout) while
    hostile processes exec and exit, and one moves into a cgroup named with
    0xff: nothing crashes, every line is valid, nothing raw reaches stdout."""
    stream, record = os.path.join(scratch, "stream.json"), os.path.join(scratch, "rec.json")
    compact = subprocess.Popen([sys.executable, "-m", "procscope.cli", "events", "--duration", "8", "--format", "compact"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    js = subprocess.Popen([sys.executable, "-m", "procscope.cli", "events", "--duration", "8", "-o", stream, "--record", record],
                          cwd=REPO, stderr=subprocess.PIPE)  # fmt: skip
    for proc in (compact, js):
        line = b""
        while b"collecting" not in line:
            line = proc.stderr.readline()
            if not line:
                bpf_unavailable(f"procscope events could not start (exit {proc.wait()})")
    h = spawn_hostile(2, cgroups.detect())  # made while it records: execs, the cgroup move, exits
    try:
        out, err = compact.communicate(timeout=60)
        _, err2 = js.communicate(timeout=60)
    finally:
        h.stop()
    assert compact.returncode == 0, err
    assert js.returncode == 0, err2
    # Compact: one event per line, nothing a terminal would act on.
    assert not TERMINAL_UNSAFE.search(out), TERMINAL_UNSAFE.search(out)
    assert not any(seq in out for seq in RAW_FROM_NAMES)
    lines = out.decode().splitlines()
    assert all(line.split(" ", 1)[0] in ("🚀", "💥") for line in lines), [x for x in lines if x[:1] not in "🚀💥"][:3]
    assert rb"\x1b]0;PWNED\x07" in out  # the hostile name, escaped
    # JSON: the stream and the recording, every line valid; the hostile processes there, exact.
    streamed = _json_lines(Path(stream).read_bytes())
    recorded = _json_lines(Path(record).read_bytes())
    for lines_ in (streamed, recorded):
        execs = [p for kind, p in _processes(lines_) if kind == "process_exec"]
        _assert_hostile_present(execs, h)
        exited = {p["pid"] for kind, p in _processes(lines_) if kind == "process_exit"}
        assert set(h.pids) <= exited
    # The deep path: resolved, or flagged as not fully resolved; never a crash.
    deep = next(p for kind, p in _processes(streamed) if kind == "process_exec" and p["pid"] == h.procs[4].pid)
    assert to_bytes(deep["binary"]) == h.deep or "errorFilename" in deep["flags"].split()
    # The recording has the cgroup with 0xff in its name, and the process moved there.
    moves = [x["procscope_cgroup"] for x in recorded if "procscope_cgroup" in x]
    assert any(to_bytes(m["path"]) == h.cgroup and m["op"] == "ATTACH_TASK" and m["pid"] == h.comm_pid for m in moves)
    assert re.search(r"^procscope: lost: 0(;|$)", err2.decode(), re.M)


def test_snapshot_survives_hostile_processes(hostile, scratch):
    """The /proc scan reads a 0xff comm (of a process run as nobody), 200 KB
    of arguments, a non-UTF-8 cwd and a cgroup named with 0xff."""
    for fmt in ("json", "jsonl"):
        target = os.path.join(scratch, f"snap.{fmt}")
        out = _procscope("snapshot", "--format", fmt, "-o", target)
        assert out.returncode == 0, out.stderr
        raw = Path(target).read_bytes()
        if fmt == "json":
            procs = json.loads(raw)["processes"]
        else:
            procs = [line["process_exec"]["process"] for line in _json_lines(raw)]
        by_pid = {p["pid"]: p for p in procs}
        assert set(hostile.pids) <= set(by_pid), set(hostile.pids) - set(by_pid)
        _assert_hostile_present(procs, hostile)
        assert by_pid[hostile.comm_pid]["user"]["name"] == "nobody"
        assert len(to_bytes(by_pid[hostile.long_args_pid]["arguments"])) > 200_000
        if fmt == "json":
            cgroup = by_pid[hostile.comm_pid]["procscope"]["cgroup"]["path"]
            assert to_bytes(cgroup) == hostile.cgroup
            assert to_bytes(by_pid[hostile.argv0_pid]["procscope"]["argv0"]) == HOSTILE_ARGV0
    # To stdout too (a terminal may be there): no raw control character.
    out = _procscope("snapshot", "--format", "jsonl")
    assert out.returncode == 0 and not TERMINAL_UNSAFE.search(out.stdout.replace(b"\n", b""))


def test_recording_of_hostile_processes_replays(hostile, scratch):
    """A recording holding them replays to the same names (the `events
    --replay` stream, compact, stays safe for a terminal)."""
    record = os.path.join(scratch, "rec.json")
    out = _procscope("events", "--duration", "1", "--record", record)
    if out.returncode == 2:
        bpf_unavailable(out.stderr.decode().strip())
    assert out.returncode == 0, out.stderr
    again = _procscope("snapshot", "--replay", record, "--format", "jsonl")
    assert again.returncode == 0, again.stderr
    _assert_hostile_present([line["process_exec"]["process"] for line in _json_lines(again.stdout)], hostile)
    shown = _procscope("events", "--replay", record, "--format", "compact", "--include", "procfs")
    assert shown.returncode == 0 and not TERMINAL_UNSAFE.search(shown.stdout.replace(b"\n", b""))
    assert not any(seq in shown.stdout for seq in RAW_FROM_NAMES)
    assert rb"\xff\xfe a\nb\rc \x1b]0;PWNED\x07 \u009b [/]" in shown.stdout


def test_replay_of_json_with_lone_surrogates_and_bad_bytes_stays_valid(tmp_path):
    """A foreign file may hold JSON escapes of lone surrogates: they are
    escaped, so that what is written again is valid UTF-8."""
    rec = tmp_path / "foreign.json"
    process = {"exec_id": "bm9kZToxMDox", "pid": 1, "binary": "/bin/\\ud800x", "arguments": "\\udcff",
               "flags": "procFS", "start_time": "2026-01-01T00:00:00.000000010Z", "parent_exec_id": "bm9kZToxOjA="}  # fmt: skip
    line = json.dumps({"process_exec": {"process": process}, "time": "2026-01-01T00:00:00.000000010Z"})
    rec.write_bytes(line.replace("\\\\u", "\\u").encode() + b"\n")
    out = _procscope("events", "--replay", str(rec), "--include", "procfs")
    assert out.returncode == 0, out.stderr
    (back,) = _json_lines(out.stdout)
    assert back["process_exec"]["process"]["binary"] == "/bin/\\ud800x"


def test_monitor_in_a_terminal_shows_hostile_names_escaped(hostile):
    """The real monitor in a pseudo-terminal: the bytes it writes hold no
    sequence from a process's name, and the names are drawn escaped."""
    with Terminal(["--filter", "bin:procscope-hostile"], cols=300) as monitor:  # wide: whole commands, none elided
        monitor.read(8)
        out, status = monitor.quit()
    assert status == 0, out[-2000:]
    assert not any(seq in out for seq in RAW_FROM_NAMES), [seq for seq in RAW_FROM_NAMES if seq in out]
    assert rb"\x1b]0;PWNED\x07" in out and rb"[@click=app.quit]z[/]" in out


async def test_monitor_pilot_hostile_rows_details_clicks_and_snapshots(hostile, tmp_path):
    """Every hostile row drawn escaped; selecting each shows its detail
    (markup shown as text: a path ending in /[/] no longer crashes); a click
    on one triggers nothing; `W` twice writes two snapshots, both valid."""
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import LiveSource

    app = ProcscopeApp(LiveSource(open_collector(), 5 * 10**9), query_text="bin:procscope-hostile",
                       snapshot_dir=str(tmp_path))  # fmt: skip
    async with app.run_test(size=(200, 50)) as pilot:
        tree = app.query_one("#tree")
        for _ in range(100):
            await pilot.pause(0.1)
            if set(hostile.pids) - {hostile.comm_pid} <= set(tree.keys[i].pid for i in range(len(tree.keys))):
                break
        rows = [tree.rows[i].plain for i in range(len(tree.rows))]
        assert not any(TERMINAL_UNSAFE.search(r.encode()) for r in rows)
        assert any("[@click=app.quit]z[/]" in r for r in rows) and any("\\x1b]0;PWNED\\x07" in r for r in rows)
        for i in range(len(tree.rows)):
            tree.cursor = i
            await pilot.pause()
            app.monitor.select()
        # A click on each row (and the detail pane): the app is still there.
        for y in range(3, 3 + min(len(tree.rows), 20)):
            await pilot.click("#tree", offset=(40, y))
        await pilot.click("#detail", offset=(30, 5))
        await pilot.pause(0.3)
        assert app.is_running and app.return_code is None
        await pilot.press("W")
        await pilot.pause()
        first = app.monitor.last_snapshot
        await pilot.press("W")
        await pilot.pause()
        assert app.monitor.last_snapshot != first
        for path in (first, app.monitor.last_snapshot):
            doc = json.loads(Path(path).read_bytes())
            assert {p["pid"] for p in doc["processes"]} >= set(hostile.pids) - {hostile.comm_pid}
