"""Bad input gets one line naming the problem, never a traceback, and the
exit status says so: impossible exec ids, malformed snapshot headers,
bytes that are not UTF-8, a reader that goes away, SIGTERM while a FIFO
is opened, special files as the config."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import REPO

DEMO = REPO / "tests" / "data" / "demo.jsonl"


def procscope(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "procscope", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kw)  # fmt: skip


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_an_exec_id_with_an_impossible_time_is_one_skipped_line(tmp_path):
    line = json.loads(DEMO.read_text().splitlines()[0])
    line["process_exec"]["process"]["exec_id"] = base64.b64encode(b"vm:100000000000000000000000:77").decode()
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps(line) + "\n" + DEMO.read_text())
    out = procscope("snapshot", "--replay", str(path))
    assert "Traceback" not in out.stderr and "holds a time or pid no kernel gives; skipped" in out.stderr
    assert json.loads(out.stdout)["processes"]


def test_malformed_snapshot_headers_are_one_line_and_status_2(tmp_path):
    good = {"schema": "procscope-snapshot", "version": 1, "processes": []}
    for field, value in (("clock", "garbage"), ("host_ns", [1, 2]), ("events", 5), ("clock", {"boot_ns": "x"}),
                         ("host_ns", {"pid": "many"}), ("clock", {"wall": 7, "boot_ns": 1})):  # fmt: skip
        path = tmp_path / "snap.json"
        path.write_text(json.dumps({**good, field: value}))
        out = procscope("snapshot", "--replay", str(path))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert len(_lines(out.stderr)) == 1 and "malformed snapshot header" in out.stderr, out.stderr


def test_bytes_that_are_not_utf8_are_named_as_such(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"caf\xe9": 1}\n'.encode("latin-1") + '{"a": 1}\n'.encode("utf-16-le"))
    out = procscope("events", "--replay", str(path))
    assert "not UTF-8 (byte 0xe9 at column 6)" in out.stderr
    assert "utf-16" not in out.stderr and "Traceback" not in out.stderr


def test_a_recording_without_credentials_is_refused_in_one_line(tmp_path):
    """A recording keeps everything a replay needs: --no-process-cred and --no-process-ns are for the stream."""
    for flag in ("--no-process-cred", "--no-process-ns"):
        out = procscope("events", "--replay", str(DEMO), flag, "--record", str(tmp_path / "r.json"))
        assert out.returncode == 2 and len(_lines(out.stderr)) == 1 and "record in a run of its own" in out.stderr
        assert not (tmp_path / "r.json").exists()


def test_a_reader_that_goes_away_is_no_error_and_the_summary_still_shows():
    for args in (("events", "--replay", str(DEMO)), ("snapshot", "--replay", str(DEMO), "--format", "jsonl")):
        proc = subprocess.Popen([sys.executable, "-m", "procscope", *args], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        proc.stdout.readline()
        proc.stdout.readline()
        proc.stdout.close()  # as `| head -2` does
        err = proc.stderr.read().decode()
        assert proc.wait(30) == 0, err
        assert "Traceback" not in err and "lost sys.stderr" not in err and "closed file" not in err, err


def test_sigterm_while_a_fifo_is_opened_is_one_line(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "procscope", "events", "--replay", str(fifo)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 130 and _lines(err) == ["procscope: interrupted"], err


def test_a_config_that_is_a_fifo_or_huge_is_refused_at_once(tmp_path):
    config = tmp_path / "procscope"
    config.mkdir()
    os.mkfifo(config / "config.toml")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    started = time.monotonic()
    out = procscope("ui", "--replay", str(DEMO), "--help", env=env)  # parses, opens nothing: a baseline
    assert out.returncode == 0
    from procscope.tui import config as cfg

    warnings: list[str] = []
    cfg.load(config / "config.toml", ["textual-dark"], warnings.append, {})
    assert time.monotonic() - started < 10
    assert len(warnings) == 1 and "not a regular file" in warnings[0]
    (config / "config.toml").unlink()
    Path(config / "config.toml").write_bytes(b"#" * (100 << 20))
    warnings.clear()
    started = time.monotonic()
    cfg.load(config / "config.toml", ["textual-dark"], warnings.append, {})
    assert time.monotonic() - started < 1 and len(warnings) == 1 and "larger than" in warnings[0]


def _exec_lines() -> list[dict]:
    return [json.loads(x) for x in DEMO.read_text().splitlines() if '"process_exec"' in x]


def test_a_duplicate_exec_id_is_skipped_not_shown_as_the_first(tmp_path):
    lines = _exec_lines()
    first = lines[5]
    dup = json.loads(json.dumps(first))
    dup["process_exec"]["process"]["binary"] = "/usr/bin/forged"
    dup["process_exec"]["process"]["arguments"] = "--forged"
    outs = []
    for name, content in (("plain.jsonl", lines), ("dup.jsonl", [*lines, dup])):
        path = tmp_path / name
        path.write_text("\n".join(json.dumps(x) for x in content) + "\n")
        outs.append(procscope("events", "--replay", str(path)))
    assert "duplicate exec_id" in outs[1].stderr and "Traceback" not in outs[1].stderr
    assert outs[1].stdout == outs[0].stdout  # nothing emitted for it, least of all the first one's binary again


def test_an_exit_timed_before_its_start_is_counted(tmp_path):
    execs = _exec_lines()
    proc = execs[3]["process_exec"]["process"]
    exit_line = {"process_exit": {"process": proc, "status": 0, "time": "2000-01-01T00:00:00Z"},
                 "node_name": "vm", "time": "2000-01-01T00:00:00Z"}  # fmt: skip
    path = tmp_path / "early.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [*execs, exit_line]) + "\n")
    out = procscope("events", "--replay", str(path))
    assert "1 exits timed before their start" in out.stderr, out.stderr


def _many(tmp_path, n: int, exiting: bool) -> Path:
    sys.path.insert(0, str(REPO / "bench"))
    from replay_scale import write_recording

    path = tmp_path / "many.jsonl"
    write_recording(str(path), n, exiting)
    return path


def test_a_recording_past_max_processes_is_read_up_to_there_in_one_line(tmp_path):
    path = _many(tmp_path, 3000, exiting=False)
    out = procscope("snapshot", "--replay", str(path), "--max-processes", "1000")
    said = [line for line in _lines(out.stderr) if "--max-processes" in line]
    assert len(said) == 1 and ":1001: more than 1,000 processes at once" in said[0], out.stderr
    assert len(json.loads(out.stdout)["processes"]) == 1001


def test_a_long_recording_of_exiting_processes_keeps_what_it_remembers_bounded(tmp_path, monkeypatch):
    from procscope import replay as replay_module
    from procscope.replay import Replay

    monkeypatch.setattr(replay_module, "EXITED_KEPT", 500)
    r = Replay(str(_many(tmp_path, 12000, exiting=True)))
    cache = r.new_cache(5 * 10**9)
    r.feed(cache)
    assert len(r._exited) == 500 and len(r._seen) <= 2 and len(r._parent_of) <= 2
    assert len(cache.procs) <= 5002  # those exited in the last 5 s (the grace, at 1,000 a second) and init


async def test_the_monitors_replay_is_drained_a_slice_at_a_time_and_time_travel_bounded(tmp_path):
    from procscope.replay import Replay
    from procscope.tui.sources import ReplaySource

    source = ReplaySource(Replay(str(_many(tmp_path, 2500, exiting=False))), 5 * 10**9, max_events=1000)
    source.DRAIN = 1000
    source.start()
    sizes = []
    while batch := source.drain():
        sizes.append(len(batch))
    assert sizes == [1000, 1000, 501] and len(source.recorded) == 1000
    assert source.notes == [
        "time travel reaches the recording's first 1,000 events (--window-events N for more, with more memory)"
    ]


def test_the_monitor_says_a_replay_is_not_a_recording_and_fails(tmp_path):
    """Issue 28, point 9: not an empty monitor and status 0, but one line naming the file, status 2."""
    path = tmp_path / "notes.txt"
    path.write_text("hello world\nthis is not json\n")
    done = subprocess.run([sys.executable, "-m", "procscope.cli", "--replay", str(path)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"procscope: {path} is not a procscope recording, snapshot or Tetragon export (no line of "
                           "its start is a JSON object); name one of those\n")  # fmt: skip


def test_connect_without_an_address_watches_the_nodes_the_config_names(tmp_path, monkeypatch):
    """`--connect` alone: the config's `connect = [...]` (and its TLS files);
    a config that names none, or not as a list of addresses, is one line."""
    from procscope.cli import build_parser
    from procscope.options import Options
    from procscope.tui import config
    from procscope.tui.main import config_nodes

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    path = tmp_path / "procscope" / "config.toml"
    done = procscope("--connect", env=env)
    assert done.returncode == 2 and len(_lines(done.stderr)) == 1, done.stderr
    assert f"--connect without an address watches the nodes of the config: {path} names none" in done.stderr
    path.parent.mkdir()
    path.write_text('connect = "h:1"\n')
    done = procscope("--connect", env=env)
    assert done.returncode == 2 and f"{path}:1: connect must be a list of addresses" in done.stderr, done.stderr
    config.save(path, config.Config(theme="nord", connect=["unix:///a.sock", "unix:///a.sock"]))
    done = procscope("--connect", env=env)  # the config's nodes are the ones checked
    assert done.returncode == 2 and "--connect unix:///a.sock is given twice" in done.stderr, done.stderr
    # Saved by the monitor (a theme chosen), the nodes and TLS files stay.
    kept = config.Config(theme="nord", connect=["unix:///a.sock", "b:54321"], connect_ca="/etc/ca.pem")
    config.save(path, kept)
    assert config.load(path) == kept
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for argv, nodes, ca in [
        (["--connect"], ["unix:///a.sock", "b:54321"], "/etc/ca.pem"),
        (["--connect", "c:1", "--connect"], ["c:1", "unix:///a.sock", "b:54321"], "/etc/ca.pem"),
        (["--connect", "--connect-ca", "mine.pem"], ["unix:///a.sock", "b:54321"], "mine.pem"),
        (["--connect", "c:1"], ["c:1"], None),  # addresses given: the config is not read
    ]:
        opts = Options.from_args(build_parser().parse_args(["ui", *argv]))
        got = config_nodes(opts, print)
        assert got is not None and (got.connect, got.connect_ca) == (nodes, ca), argv


def test_connect_options_that_do_not_go_together_are_one_line_and_status_2(tmp_path):
    for args, said in [
        (["--connect", "unix:///a.sock", "--connect", "unix:///a.sock"], "--connect unix:///a.sock is given twice"),
        (["--connect", "unix:///a.sock", "--replay", str(DEMO)], "--connect watches another machine live"),
        (["--connect", "h:1", "--connect-ca", "ca.pem", "--connect-cert", "c.pem"], "a client certificate needs"),
        (["--connect", "127.0.0.1"], "--connect 127.0.0.1 is not an address; write unix:///PATH or HOST:PORT"),
        (["--connect", "unix:///a.sock", "--connect", "h:99999"], "--connect h:99999 is not an address"),
    ]:
        done = procscope(*args)
        assert done.returncode == 2 and done.stdout == "", done
        assert len(_lines(done.stderr)) == 1 and said in done.stderr, done.stderr


def test_tls_files_that_cannot_be_used_are_one_line_naming_the_file(tmp_path):
    """`--connect-ca` (or a client certificate) that is missing or not PEM: one
    line naming the file, status 2, before any connection is tried."""
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    for path, said in [(junk, "not a PEM certificate or key"), (tmp_path / "none.pem", "No such file or directory")]:
        done = procscope("--connect", "127.0.0.1:1", "--connect-ca", str(path))
        assert done.returncode == 2 and done.stdout == "", done
        assert len(_lines(done.stderr)) == 1 and f"cannot read {path}: {said}" in done.stderr, done.stderr


def test_the_monitor_without_a_terminal_is_one_line_not_a_spinning_core():
    """Textual's driver reads keys from stdin and draws on stderr: with stdin
    at EOF (/dev/null, cron) its input thread spun a core while the screen
    went wherever stderr did; with stderr in a file or a pipe the screen
    went there. Either is one line naming the fix, status 2, at once."""
    import pty

    done = procscope("--replay", str(DEMO), stdin=subprocess.DEVNULL, timeout=30)
    assert done.returncode == 2 and done.stdout == "", done
    assert len(_lines(done.stderr)) == 1 and "reads its keys from stdin, which is not a terminal" in done.stderr
    master, slave = pty.openpty()
    try:  # keys from a terminal, the screen into a pipe
        done = procscope("--replay", str(DEMO), stdin=slave, timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 2 and len(_lines(done.stderr)) == 1, done
    assert "draws on stderr, which is not a terminal" in done.stderr and "procscope events" in done.stderr
