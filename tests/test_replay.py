"""Recordings and snapshots read back through the same cache (no root):
round trips rebuild the same tree, and bad files give FILE:LINE errors."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from procscope import snapshot
from procscope.cache import ProcessCache
from procscope.export import Exporter
from procscope.probes.counters import Counters
from procscope.probes.events import ProcessKey as K
from procscope.replay import Replay, ReplayError

from .factories import DOCKER, HOST_NS, record, session

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = 1_000_000_000


def tree(cache: ProcessCache) -> list[tuple]:
    return [
        (
            depth,
            p.key,
            p.binary,
            " ".join(p.args),
            p.alive,
            p.not_found,
            p.cgroup,
            p.tree_parent,
            p.parent,
            p.exit.code if p.exit else None,
        )
        for depth, p in cache.walk()
    ]


def replayed(path, **kw) -> ProcessCache:
    cache = ProcessCache()
    Replay(str(path), **kw).feed(cache)
    return cache


def test_recording_replays_to_the_same_tree(tmp_path):
    live = record(session(), tmp_path / "rec.jsonl")
    again = replayed(tmp_path / "rec.jsonl")
    assert tree(again) == tree(live)
    assert again.host_ns == HOST_NS
    # What the user sees: orphans under init, the container with its two processes, the crash.
    by_pid = {p.pid: p for _, p in again.walk()}
    assert by_pid[101].tree_parent == by_pid[1].key and by_pid[102].tree_parent == by_pid[1].key
    assert [p.binary for p in again.exec_chain(by_pid[101])] == ["/bin/sh", "/bin/sleep"]
    assert again.containers["3f2a" * 16].processes == 2
    assert by_pid[300].exit.signal_name == "SIGSEGV" and by_pid[300].exit.core_dumped
    assert by_pid[400].not_found


def test_snapshot_replays_to_the_same_tree_and_document(tmp_path):
    live = record(session(), tmp_path / "rec.jsonl")
    exporter = Exporter(live, node="node-a")
    doc = snapshot.document(live, exporter, Counters(received=16), [], "live")
    snapshot.write(str(tmp_path / "snap.json"), doc)
    assert stat.S_IMODE(os.stat(tmp_path / "snap.json").st_mode) == 0o600
    again = ProcessCache()
    replay = Replay(str(tmp_path / "snap.json"))
    replay.feed(again)
    assert tree(again) == tree(live)
    assert replay.wall_offset == exporter.wall_offset and Counters.from_json(replay.counters) == Counters(received=16)
    doc2 = snapshot.document(
        again, Exporter(again, node="node-a", wall_offset=replay.wall_offset), Counters(received=16), [], "live"
    )
    strip = lambda d: {**d, "clock": None}  # noqa: E731
    assert strip(doc2) == strip(doc)
    assert doc["containers"][0]["short_id"] == "3f2a3f2a3f2a" and doc["containers"][0]["processes"] == 2
    assert doc["cgroups"][DOCKER] == [exporter.exec_id(K(200, 90)), exporter.exec_id(K(201, 110))]


def test_snapshot_jsonl_is_tetragon_process_exec_lines_parents_first(tmp_path):
    live = record(session(), tmp_path / "rec.jsonl")
    lines = snapshot.tetragon_lines(live, Exporter(live, node="node-a", tetragon_only=True))
    seen = set()
    for line in lines:
        assert set(line) == {"process_exec", "node_name", "time"}
        proc = line["process_exec"]["process"]
        assert "cgroup" not in proc and "procscope" not in proc
        assert (
            proc["parent_exec_id"] in seen
            or proc["pid"] == 1
            or proc["parent_exec_id"] not in {x["process_exec"]["process"]["exec_id"] for x in lines}
        )
        seen.add(proc["exec_id"])
    assert {x["process_exec"]["process"]["pid"] for x in lines} == {p.pid for p in live.live()}


def _run(*argv):
    return subprocess.run([sys.executable, "-m", "procscope.cli", *argv], cwd=REPO, capture_output=True, text=True)


def test_corrupt_and_truncated_lines_are_named_and_the_rest_is_read(tmp_path):
    rec = tmp_path / "rec.jsonl"
    record(session(), rec)
    lines = rec.read_text().splitlines()
    lines[2] = "{not json"
    lines[3] = json.dumps({**json.loads(lines[3]), "a_future_field": {"x": 1}})  # ignored
    lines.insert(4, json.dumps({"process_kprobe": {"function_name": "x"}, "time": "2026-01-01T00:00:00Z"}))
    rec.write_text("\n".join(lines)[:-7])  # cut inside the last record
    out = _run("events", "--replay", str(rec), "--format", "compact")
    assert out.returncode == 1
    assert f"{rec}:3: not JSON" in out.stderr
    assert f"{rec}:{len(lines)}: truncated record" in out.stderr
    assert "2 bad lines" in out.stderr
    shown = out.stdout.splitlines()
    assert any("/bin/busybox httpd -f" in s for s in shown) and any("/bin/crash" in s for s in shown)

    strict = _run("events", "--replay", str(rec), "--format", "compact", "--strict")
    assert strict.returncode == 1 and f"{rec}:3: not JSON" in strict.stderr
    assert "truncated record" not in strict.stderr and len(strict.stdout.splitlines()) <= 2


def test_unknown_snapshot_version_and_non_recordings_are_clear_errors(tmp_path):
    bad = tmp_path / "future.json"
    bad.write_text(json.dumps({"schema": "procscope-snapshot", "version": 99, "processes": []}))
    with pytest.raises(ReplayError, match="version 99 is not supported"):
        Replay(str(bad))
    out = _run("snapshot", "--replay", str(bad))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "version 99" in out.stderr
    # A file that is no recording: one line says so (not one per line of it), before anything is read.
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 50)
    with pytest.raises(ReplayError, match="is not a procscope recording, snapshot or Tetragon export"):
        Replay(str(text))
    for command in ("events", "snapshot"):
        out = _run(command, "--replay", str(text))
        assert (
            out.returncode == 2
            and out.stderr.count("\n") == 1
            and "no line of its start is a JSON object" in out.stderr
        )
    # One that starts as one: its bad lines are skipped, counted and said.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"no": "event"}\nhello\n')
    warnings = []
    assert list(Replay(str(mixed), warn=warnings.append).events()) == []
    assert f"{mixed}:2: not JSON (Expecting value: line 1 column 1 (char 0)); skipped" in warnings
    with pytest.raises(ReplayError, match="cannot read recording"):
        Replay(str(tmp_path / "missing.jsonl"))


def test_replay_filters_by_container_on_the_command_line(tmp_path):
    rec = tmp_path / "rec.jsonl"
    record(session(), rec)
    out = _run("events", "--replay", str(rec), "--format", "compact", "--container", "3f2a")
    assert out.returncode == 0, out.stderr
    assert [s.split(" ", 3)[3] for s in out.stdout.splitlines()] == ["/usr/bin/runc-init", "/bin/busybox httpd -f"]
    snap = _run("snapshot", "--replay", str(rec), "--format", "jsonl", "--user", "nobody")
    assert [json.loads(s)["process_exec"]["process"]["binary"] for s in snap.stdout.splitlines()] == ["/bin/busybox"]


def test_a_bad_first_line_is_reported_like_any_other(tmp_path):
    rec = tmp_path / "rec.jsonl"
    record(session(), rec)
    rec.write_bytes(b"\xff\xfe garbage\n" + rec.read_bytes())
    out = _run("events", "--replay", str(rec), "--format", "compact")
    assert out.returncode == 1 and f"{rec}:1: not UTF-8 (byte 0xff at column 1)" in out.stderr
    assert any("/bin/busybox httpd -f" in s for s in out.stdout.splitlines())


def test_deep_nesting_and_endless_lines_are_bounded(tmp_path):
    rec = tmp_path / "rec.jsonl"
    record(session(), rec)
    lines = rec.read_bytes().split(b"\n")
    lines.insert(3, b"[" * 100_000 + b"]" * 100_000)
    rec.write_bytes(b"\n".join(lines))
    out = _run("events", "--replay", str(rec), "--format", "compact")
    assert out.returncode == 1 and f"{rec}:4: nested too deeply" in out.stderr
    assert "Traceback" not in out.stderr and any("/bin/crash" in s for s in out.stdout.splitlines())
    # /dev/zero is no recording: the line limit stops it, quickly and with bounded memory.
    t0 = time.monotonic()
    zero = subprocess.run([sys.executable, "-m", "procscope.cli", "events", "--replay", "/dev/zero"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert zero.returncode == 1 and "/dev/zero:1: line longer than 64 MiB" in zero.stderr
    assert time.monotonic() - t0 < 30


def test_a_fifo_is_read_as_it_comes_and_sigterm_ends_it(tmp_path):
    rec = tmp_path / "rec.jsonl"
    record(session(), rec)
    lines = rec.read_bytes().splitlines(keepends=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "procscope.cli", "events", "--replay", str(fifo), "--format", "compact"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    with open(fifo, "wb", buffering=0) as w:
        w.write(b"".join(lines))  # everything, but the writer stays open: no end of file yet
        first = proc.stdout.readline()  # an event comes out before the input ended
        assert first.startswith("🚀".encode())
        t0 = time.monotonic()
        proc.terminate()
        assert proc.wait(timeout=10) is not None and time.monotonic() - t0 < 10
    assert b"Traceback" not in proc.stderr.read()


def test_replay_of_a_directory_is_one_line(tmp_path):
    out = _run("events", "--replay", str(tmp_path))
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "is a directory" in out.stderr


def test_process_objects_encoded_once_are_the_objects_as_made_each_time():
    """`events` joins its exec and exit lines from process objects encoded
    once per process (a storm's parent with every child), each filled into
    a template encoded once for the processes that show the same (a storm's
    children): the lines are the events' objects, refcnt too, which changes
    between two lines of one object, and a core dump's flag."""
    from procscope.export import json_line
    from procscope.probes import wire
    from procscope.probes.events import ExitEvent

    from .factories import exec_event, exit_event

    cache = ProcessCache(host_ns=HOST_NS)
    exporter = Exporter(cache, node="node-a")
    exits = []
    # Names that a template's filling must not take for its own (%, NUL, escapes), the first
    # two processes sharing one template, of a parent no event described (a placeholder's).
    names = ("/tmp/%s%d%%", "/tmp/%s%d%%", "/tmp/\x00\x01nul", "/tmp/\x1b]0;x\x07\u202e\n")
    hostile = [exec_event(600 + i, 5 * 10**9 + i, K(1, 1), name, args=(name, "%d"), cgroup=f"/{name}.scope")
               for i, name in enumerate(names)]  # fmt: skip
    for ev in [*session(), *hostile, *(exit_event(h.key, 6 * 10**9) for h in hostile)]:
        proc = cache.apply(ev)
        if isinstance(ev, ExitEvent):
            exits.append(ev)
            assert json.loads(exporter.exit_line(ev, proc)) == json.loads(json_line(exporter.exit_event(ev, proc)))
    assert any(ev.core_dumped for ev in exits)
    procs = [p for p in cache.procs.values() if p.image is not None]
    for p in procs:
        assert json.loads(exporter.exec_line(p)) == json.loads(json_line(exporter.exec_event(p)))
    sh = cache.by_pid[101]
    before = json.loads(exporter.exec_line(sh))["process_exec"]["process"]["refcnt"]
    cache.apply(exec_event(500, 3 * 10**9, sh.key, "/bin/child", time=3 * 10**9, flags=wire.FLAG_EXECVE))
    line = json.loads(exporter.exec_line(sh))
    assert line["process_exec"]["process"]["refcnt"] == before + 1 == json.loads(json_line(exporter.exec_event(sh)))[
        "process_exec"]["process"]["refcnt"]  # fmt: skip
    ev = exit_event(sh.key, 4 * 10**9)
    cache.apply(ev)
    assert json.loads(exporter.exit_line(ev, sh)) == json.loads(json_line(exporter.exit_event(ev, sh)))
