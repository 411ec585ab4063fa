"""Tetragon's format, checked with Tetragon's own tools: `tetra getevents
-o compact` must read every line of every Tetragon-format output, and
`strictcheck` (Tetragon's generated API types, parsed strictly) may find
nothing but procscope's documented extra object; and what the lines say
matches the kernel (parents as ps sees them, names from Tetragon's enums,
privileges by Tetragon's rules, in_init_tree)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procscope.probes import cgroups, wire

from .conftest import (
    bpf_unavailable,
    spawn_hostile,
    strictcheck_finds_only_our_extras,
    tetra_reads_every_line,
    unique_copy,
)

pytestmark = pytest.mark.bpf  # root and BPF: every test here

REPO = Path(__file__).resolve().parent.parent
NOBODY = {"user": 65534, "group": 65534, "extra_groups": []}


def _events(*args: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "procscope.cli", "events", *args], cwd=REPO, stdout=stdout,
                            stderr=subprocess.PIPE)  # fmt: skip
    line = b""
    while b"collecting" not in line:
        line = proc.stderr.readline()
        if not line:
            bpf_unavailable(f"procscope events could not start (exit {proc.wait()})")
    return proc


def _ppid(pid: int) -> int:
    return int(subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True).stdout)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One recorded session (stdout, -o, --record) with a fork+exec, a re-exec,
    setuid binaries, a memfd exec, a pid namespace and hostile processes;
    what ps said about parents while they ran."""
    d = tmp_path_factory.mktemp("tetragon")
    os.chmod(d, 0o755)
    files = {k: str(d / f"{k}.json") for k in ("stdout", "stream", "record", "replayed", "snapshot")}
    scratch = "/var/tmp/procscope-tetragon"
    os.makedirs(scratch, exist_ok=True)
    os.chmod(scratch, 0o755)
    tools = {name: unique_copy(src, scratch) for name, src in
             (("sh", "/bin/sh"), ("sleep", "/bin/sleep"), ("resh", "/bin/sh"), ("resleep", "/bin/sleep"),
              ("suid_root", "/usr/bin/id"), ("suid_nobody", "/usr/bin/id"), ("nssleep", "/bin/sleep"))}  # fmt: skip
    os.chmod(tools["suid_root"], 0o4755)
    os.chown(tools["suid_nobody"], 65534, 65534)
    os.chmod(tools["suid_nobody"], 0o4755)
    with open(files["stdout"], "wb") as out:
        live = _events("--duration", "9", stdout=out)
        files_proc = _events("--duration", "9", "-o", files["stream"], "--record", files["record"])
        seen = {}
        # fork + exec: sleep's parent is the shell
        forked = subprocess.Popen([tools["sh"], "-c", f"{tools['sleep']} 2 & wait"])
        time.sleep(0.5)
        sleeper = int(
            subprocess.run(["pgrep", "-f", f"^{tools['sleep']}"], capture_output=True, text=True).stdout.split()[0]
        )
        seen["sleep"] = (sleeper, _ppid(sleeper), forked.pid)
        # re-exec: the shell becomes sleep; its parent stays this test
        reexec = subprocess.Popen([tools["resh"], "-c", f"exec {tools['resleep']} 1"])
        seen["reexec"] = (reexec.pid, os.getpid())
        subprocess.run([tools["suid_root"]], **NOBODY, check=True, capture_output=True)
        subprocess.run([tools["suid_nobody"]], check=True, capture_output=True)
        fd = os.memfd_create("procscope-tetragon", 0)
        os.write(fd, Path("/bin/true").read_bytes())
        subprocess.run([f"/proc/self/fd/{fd}", "memfd-run"], pass_fds=[fd], check=True)
        os.close(fd)
        # a pid namespace: its init and init's child are in its init tree; what nsenter runs there is not
        ns = subprocess.Popen(["unshare", "--pid", "--fork", "--", tools["nssleep"], "4"])
        time.sleep(0.5)
        init = int(
            subprocess.run(["pgrep", "-f", f"^{tools['nssleep']} 4"], capture_output=True, text=True).stdout.split()[0]
        )
        subprocess.run(["nsenter", "-t", str(init), "-p", "--", tools["nssleep"], "0.2"], check=True)
        seen["ns_init"] = init
        hostile = spawn_hostile(1, cgroups.detect())
        for p in (forked, reexec, ns):
            p.wait()
        hostile.stop()
        _, err = live.communicate(timeout=60)
        _, err2 = files_proc.communicate(timeout=60)
    assert live.returncode == files_proc.returncode == 0, (err, err2)
    with open(files["replayed"], "wb") as out:
        subprocess.run([sys.executable, "-m", "procscope.cli", "events", "--replay", files["record"]], cwd=REPO,
                       stdout=out, check=True)  # fmt: skip
    with open(files["snapshot"], "wb") as out:
        subprocess.run([sys.executable, "-m", "procscope.cli", "snapshot", "--format", "jsonl"], cwd=REPO, stdout=out,
                       check=True)  # fmt: skip
    return files, tools, seen


@pytest.mark.parametrize("output", ["stdout", "stream", "replayed", "snapshot"])
def test_tetra_reads_every_line(session, output):
    files, _, _ = session
    tetra_reads_every_line(files[output])
    strictcheck_finds_only_our_extras(files[output])


def test_stream_to_a_file_is_what_stdout_shows(session):
    files, _, _ = session
    kinds = lambda path: {next(iter(json.loads(x))) for x in Path(path).read_text().splitlines()}  # noqa: E731
    assert kinds(files["stream"]) == kinds(files["stdout"]) == {"process_exec", "process_exit"}
    assert {"procscope_counters", "procscope_usage"} <= kinds(files["record"])  # the recording is the superset


def _execs(path: str) -> list[dict]:
    return [x["process_exec"] for x in map(json.loads, Path(path).read_text().splitlines()) if "process_exec" in x]


def test_exec_parents_are_the_real_parents_as_ps_says(session):
    files, tools, seen = session
    execs = _execs(files["stream"])
    assert execs and not [e for e in execs if e["parent"]["pid"] == e["process"]["pid"]]
    by_binary = {e["process"]["binary"]: e for e in execs}
    sleeper, ps_parent, shell = seen["sleep"]
    sleep = by_binary[tools["sleep"]]
    assert sleep["process"]["pid"] == sleeper and sleep["parent"]["pid"] == ps_parent == shell
    assert sleep["parent"]["binary"] == tools["sh"] and sleep["process"]["flags"] == "execve clone"
    assert (
        sleep["process"]["parent_exec_id"] == sleep["parent"]["exec_id"] == by_binary[tools["sh"]]["process"]["exec_id"]
    )
    # A re-exec: the same pid, the same real parent; only the first exec after the fork is "clone".
    pid, me = seen["reexec"]
    resh, resleep = by_binary[tools["resh"]], by_binary[tools["resleep"]]
    assert resh["process"]["pid"] == resleep["process"]["pid"] == pid
    assert resh["parent"]["pid"] == resleep["parent"]["pid"] == me
    assert resh["process"]["flags"] == "execve clone" and resleep["process"]["flags"] == "execve"
    assert resleep["process"]["procscope"]["previous_exec_id"] == resh["process"]["exec_id"]


def test_names_privileges_credentials_and_init_tree_are_tetragons(session):
    files, tools, seen = session
    execs = _execs(files["stream"])
    by_binary = {e["process"]["binary"]: e["process"] for e in execs}
    text = Path(files["stream"]).read_text()
    assert '"DAC_OVERRIDE"' in text and "CAP_DAC_OVERRIDE" not in text
    # setuid to root gives Tetragon's privilege word; setuid to another user only the id.
    root = by_binary[tools["suid_root"]]["binary_properties"]
    assert root == {"setuid": 0, "privileges_changed": ["PRIVILEGES_RAISED_EXEC_FILE_SETUID"]}
    other = by_binary[tools["suid_nobody"]]["binary_properties"]
    assert other == {"setuid": 65534}
    # The binary's inode only when it has no link.
    memfd = next(e["process"] for e in execs if e["process"]["arguments"] == "memfd-run")
    assert memfd["binary_properties"]["file"]["inode"]["links"] == 0
    assert "binary_properties" not in by_binary[tools["sh"]]
    for e in execs:
        p = e["process"]
        assert p["process_credentials"]["caps"] == p["cap"]
    # in_init_tree: the pid namespace's init, not the host's processes nor what nsenter ran in it.
    ns = [e["process"] for e in execs if e["process"]["binary"] == tools["nssleep"]]
    assert [(p["pid"] == seen["ns_init"], p["in_init_tree"]) for p in ns] == [(True, True), (False, False)]
    assert "inInitTree" in ns[0]["flags"].split()
    assert not any(e["process"]["in_init_tree"] for e in execs if e["process"]["ns"]["pid"]["is_host"])


def test_the_proc_scan_writes_no_unknown_id_as_a_number(session):
    """The /proc scan cannot learn a nested user namespace's owner gid: it
    is left out rather than written as 4294967295; the host's is root's."""
    files, _, _ = session
    for e in _execs(files["snapshot"]):
        user_ns = e["process"]["process_credentials"]["user_ns"]
        assert wire.UNKNOWN_ID not in (user_ns.get("uid"), user_ns.get("gid")), user_ns
        if user_ns["ns"]["is_host"]:
            assert (user_ns["level"], user_ns["uid"], user_ns["gid"]) == (0, 0, 0)
