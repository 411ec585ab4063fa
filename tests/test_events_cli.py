"""`procscope events`: Tetragon-format JSON lines and compact text."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procscope.cache import ProcessCache
from procscope.records import parse_exec_id
from procscope.replay import Replay

from .conftest import bpf_unavailable, unique_copy

REPO = Path(__file__).resolve().parent.parent


def _run_events(extra, action, scratch):
    cmd = [sys.executable, "-m", "procscope.cli", "events", "--duration", "6", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = ""
    while "collecting" not in ready and (line := proc.stderr.readline()):
        ready += line  # the headers fallback note may come first
    if "collecting" not in ready:
        msg = ready + proc.stderr.read()
        if proc.wait() == 2:  # procscope's own set-up error: BPF unusable here
            bpf_unavailable(msg.strip())
        raise AssertionError(msg)
    action()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out, err


@pytest.mark.bpf
def test_json_stream_and_recording_to_files(scratch):
    binary = unique_copy("/bin/sh", scratch)
    stream, target = os.path.join(scratch, "stream.json"), os.path.join(scratch, "events.json")
    _run_events(["-o", stream, "--record", target], lambda: subprocess.run([binary, "-c", "exit 4"]), scratch)
    assert stat.S_IMODE(os.stat(target).st_mode) == stat.S_IMODE(os.stat(stream).st_mode) == 0o600
    # The stream has Tetragon's kinds only; the recording has what a replay needs too:
    # the processes found at start, clones, counters and usage.
    streamed = [json.loads(line) for line in Path(stream).read_text().splitlines()]
    assert {next(iter(line)) for line in streamed} == {"process_exec", "process_exit"}
    assert not any("procFS" in x["process_exec"]["process"]["flags"] for x in streamed if "process_exec" in x)
    lines = [json.loads(line) for line in Path(target).read_text().splitlines()]
    kinds = {next(iter(line)) for line in lines}
    assert {"process_exec", "process_exit", "procscope_clone"} <= kinds <= {
        "process_exec", "process_exit", "procscope_clone", "procscope_counters", "procscope_usage"}  # fmt: skip
    assert any("procFS" in x["process_exec"]["process"]["flags"] for x in lines if "process_exec" in x)
    # (The /proc scan may also catch it, already exec'd: that line says procFS.)
    execs = [
        x["process_exec"] for x in lines if "process_exec" in x
        and x["process_exec"]["process"]["binary"] == binary and "procFS" not in x["process_exec"]["process"]["flags"]
    ]  # fmt: skip
    assert len(execs) == 1
    p = execs[0]["process"]
    assert p["arguments"] == "-c exit 4" and p["cwd"] == str(REPO) and "execve" in p["flags"].split()
    assert execs[0]["parent"]["exec_id"] == p["parent_exec_id"]
    assert p["ns"]["net"]["is_host"] is True and p["user"]["name"] == "root"
    assert "binary_properties" not in p  # as Tetragon: only for setuid/setgid, raised privileges, or no link
    exits = [
        x["process_exit"]
        for x in lines
        if "process_exit" in x and x["process_exit"]["process"]["exec_id"] == p["exec_id"]
    ]
    assert len(exits) == 1 and exits[0]["status"] == 4 and exits[0]["signal"] == ""
    assert all(x["node_name"] == os.uname().nodename and x["time"].endswith("Z") for x in lines)

    # Replayed, the recording rebuilds what the kernel shows: this test process under its parent, the shell's exit.
    cache = ProcessCache(grace_ns=60 * 10**9)  # the shell exited seconds before the recording ended
    Replay(target, strict=True).feed(cache)
    me = cache.by_pid[os.getpid()]
    assert cache.procs[me.tree_parent].pid == os.getppid() and me.binary == os.path.realpath(sys.executable)
    shell = cache.procs[parse_exec_id(p["exec_id"])[1]]
    assert not shell.alive and shell.exit.status == 4 and cache.procs[shell.tree_parent].pid == os.getpid()


@pytest.mark.bpf
def test_compact_and_included_kinds(scratch):
    binary = unique_copy("/bin/true", scratch)
    sleeper = unique_copy("/bin/sleep", scratch)
    before = subprocess.Popen([sleeper, "30"])  # started before procscope: its exit is told from the /proc scan

    def act():
        time.sleep(1.2)  # let one counters line go out
        subprocess.run([binary, "hello", "world"])
        before.kill()
        before.wait()

    out, _ = _run_events(["--format", "compact", "--include", "clone,counters"], act, scratch)
    lines = out.splitlines()
    assert f"🚀 process {os.uname().nodename} {binary} hello world" in lines
    assert f"💥 exit    {os.uname().nodename} {binary} hello world 0" in lines
    assert f"💥 exit    {os.uname().nodename} {sleeper} 30 SIGKILL" in lines
    assert any(line.startswith("🧬 clone") for line in lines)
    assert any(line.startswith("📊 counters received") for line in lines)


def test_bad_include_is_rejected():
    proc = subprocess.run([sys.executable, "-m", "procscope.cli", "events", "--include", "bogus"], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "unknown event kind 'bogus'" in proc.stderr


def test_tetragons_default_fields_leave_out_credentials_and_namespaces(tmp_path):
    """--no-process-cred and --no-process-ns: the process objects Tetragon
    writes without --enable-process-cred and --enable-process-ns (no cap,
    process_credentials or ns); everything else as the full stream has it,
    and tetra and the strict checker read it (no root: a recording replayed)."""
    from .conftest import strictcheck_finds_only_our_extras, tetra_reads_every_line

    demo = str(REPO / "tests" / "data" / "demo.jsonl")
    run = lambda *extra: subprocess.run([sys.executable, "-m", "procscope.cli", "events", "--replay", demo, *extra],  # noqa: E731
                                        cwd=REPO, capture_output=True, check=True).stdout  # fmt: skip
    full, lean = run(), run("--no-process-cred", "--no-process-ns")
    assert len(lean) < len(full) / 3
    lines = [json.loads(x) for x in lean.splitlines()]
    assert [next(iter(x)) for x in lines] == [next(iter(json.loads(x))) for x in full.splitlines()]
    parts = {"cap", "process_credentials", "ns"}
    processes = 0
    for lean_line, full_line in zip(lines, map(json.loads, full.splitlines()), strict=True):
        kind = next(iter(full_line))
        for role in ("process", "parent"):
            p = full_line[kind].get(role)
            if p is not None and "binary" in p:
                processes += 1
                assert {"cap", "process_credentials"} <= p.keys()  # ns: where known (pid 1's is not, here)
                assert {k: v for k, v in p.items() if k not in parts} == lean_line[kind][role]
    assert processes > 40
    out = tmp_path / "lean.json"
    out.write_bytes(lean)
    tetra_reads_every_line(str(out))
    strictcheck_finds_only_our_extras(str(out))
    # Either alone leaves out its own.
    cred_only = json.loads(run("--no-process-cred").splitlines()[0])
    process = cred_only[next(iter(cred_only))]["process"]
    assert "ns" in process and not parts - {"ns"} & process.keys()
    # Read back, what was not said stays unsaid: no empty capability lists, no namespaces numbered 0.
    again = subprocess.run([sys.executable, "-m", "procscope.cli", "events", "--replay", str(out)], cwd=REPO,
                           capture_output=True, check=True).stdout  # fmt: skip
    objects = [
        x[next(iter(x))].get(role) for x in map(json.loads, again.splitlines()) for role in ("process", "parent")
    ]
    assert len([p for p in objects if p and "binary" in p]) > 40
    assert all(not parts & p.keys() for p in objects if p)


@pytest.mark.bpf
def test_sigterm_completes_the_file(scratch):
    binary = unique_copy("/bin/true", scratch)
    target = os.path.join(scratch, "rec.json")
    cmd = [sys.executable, "-m", "procscope.cli", "events", "-o", target]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    while "collecting" not in (line := proc.stderr.readline()):
        if not line:
            if proc.wait() == 2:
                bpf_unavailable("procscope events could not start")
            raise AssertionError("procscope events exited early")
    subprocess.run([binary], check=True)
    time.sleep(0.5)
    proc.terminate()
    err = proc.stderr.read()
    assert proc.wait(timeout=10) == 0
    lines = Path(target).read_text().splitlines()
    assert any(binary in line for line in lines)
    assert f"procscope: events: {len(lines)} written;" in err
    assert not [f for f in os.listdir(scratch) if f.startswith(".rec.json")]  # no temporary left


@pytest.mark.bpf
def test_pid_follows_new_descendants_and_keeps_its_own_procfs_line(scratch):
    """--pid P: P's line from the /proc scan, and the execs of every process
    P starts later (its subtree as it grows), nothing else."""
    shell = unique_copy("/bin/sh", scratch)
    child = unique_copy("/bin/true", scratch)
    other = unique_copy("/bin/true", scratch)
    gate = os.path.join(scratch, "go")
    top = subprocess.Popen(
        [shell, "-c", f"while [ ! -e {gate} ]; do sleep 0.1; done; {child} a; {shell} -c '{child} b'"]
    )
    target = os.path.join(scratch, "rec.json")
    try:
        _run_events(["--pid", str(top.pid), "--record", target],
                    lambda: (subprocess.run([other]), Path(gate).touch(), top.wait()), scratch)  # fmt: skip
    finally:
        top.kill()
    execs = [
        x["process_exec"]["process"]
        for x in map(json.loads, Path(target).read_text().splitlines())
        if "process_exec" in x
    ]
    assert any(p["pid"] == top.pid and "procFS" in p["flags"] for p in execs)
    assert sorted(p["arguments"] for p in execs if p["binary"] == child) == ["a", "b"]
    assert not any(p["binary"] == other for p in execs)


@pytest.mark.bpf
def test_ctrl_c_three_times_keeps_the_recording(scratch):
    marker = unique_copy("/bin/true", scratch)
    target = os.path.join(scratch, "rec.json")
    cmd = [sys.executable, "-m", "procscope.cli", "events", "--record", target]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    while "collecting" not in (line := proc.stderr.readline()):
        if not line:
            bpf_unavailable("procscope events could not start")
    subprocess.run([marker], check=True)
    time.sleep(1.5)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    err = proc.stderr.read()
    assert proc.wait(timeout=15) == 0 and "Traceback" not in err, err
    assert any(marker in line for line in Path(target).read_text().splitlines())
    assert "lost exits" in err and "misses" in err  # the summary names what the cache lost too


@pytest.mark.bpf
def test_a_stop_sent_twice_at_once_is_one_stop(scratch):
    """`timeout` forwards its TERM as the shell's kill sends another, a process
    group gets Ctrl-C's INT and a TERM: the second lands while the first is
    handled (it used to interrupt even a lock's release: a traceback, status 1,
    no summary). It is ignored: the file is completed and said as usual."""
    target = os.path.join(scratch, "rec.json")
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "procscope.cli", "events", "-o", target], cwd=REPO,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        while "collecting" not in (line := proc.stderr.readline()):
            if not line:
                bpf_unavailable("procscope events could not start")
        time.sleep(0.2 * attempt)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read()
        assert proc.wait(timeout=15) == 0 and "Traceback" not in err, err
        lines = Path(target).read_text().splitlines()
        assert all(json.loads(line) for line in lines)
        assert f"procscope: events: {len(lines)} written;" in err, err
