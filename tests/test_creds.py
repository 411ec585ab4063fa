"""Credentials and namespaces that change after exec, from real syscalls
(ctypes, in a child started after the probes are attached), against what
/proc says afterwards: the cache's image follows, the change is kept,
rises are badged, and `procscope events --include creds` writes them. By
default a change is seen where the process next clones, execs or exits
(no syscall tracepoint); with --creds-exact at the call that made it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from procscope import describe
from procscope.live_cache import live_cache
from procscope.probes import wire
from procscope.probes.events import NAMESPACES, CredsEvent, ExecEvent

from .conftest import REPO, proc_ns, proc_status, running_live, unique_copy

# The child: waits for a line, runs CALLS[line], prints "done", waits to be killed.
CHILD = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)

def check(r):
    if r != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

def drop_caps():
    data = (Data * 2)()  # all zero: every capability gone
    check(libc.capset(ctypes.byref(Header(0x20080522, 0)), data))

def inherit(bit):
    data = (Data * 2)()
    check(libc.capget(ctypes.byref(Header(0x20080522, 0)), data))
    data[bit // 32].inheritable |= 1 << bit % 32
    check(libc.capset(ctypes.byref(Header(0x20080522, 0)), data))

NET_BIND_SERVICE, NET_RAW = 10, 13

CALLS = {
    "setresuid": lambda: check(libc.setresuid(65534, 65534, 65534)),
    "capset": drop_caps,
    "euid-back": lambda: (check(libc.setresuid(-1, 65534, 0)), time.sleep(0.2), check(libc.setresuid(-1, 0, -1))),
    "setns": lambda: check(libc.setns(os.open(sys.argv[1], os.O_RDONLY), 0x40000000)),
    "unshare": lambda: check(libc.unshare(0x00020000)),
    "nothing": lambda: check(libc.prctl(15, b"renamed", 0, 0, 0)),
    "capbset": lambda: check(libc.prctl(24, NET_RAW, 0, 0, 0)),  # PR_CAPBSET_DROP
    "inherit": lambda: inherit(NET_BIND_SERVICE),
    "ambient": lambda: check(libc.prctl(47, 2, NET_BIND_SERVICE, 0, 0)),  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE
}
for line in sys.stdin:
    CALLS[line.strip()]()
    print("done", flush=True)
"""


@pytest.fixture(scope="module")
def exact():
    """A collector with --creds-exact: the syscall tracepoints attached."""
    yield from running_live(scan_proc=False, creds_exact=True)


def perf_attachments(pid: int) -> list[str]:
    """The tracepoints a process's BPF programs are attached to, as bpftool lists them."""
    out = subprocess.run(["bpftool", "-j", "perf", "list"], capture_output=True, text=True, check=True).stdout
    return [a.get("tracepoint", "") for a in json.loads(out) if a["pid"] == pid]


@pytest.fixture
def netns():
    """A process in a network namespace of its own, to setns into."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "120"])
    for _ in range(50):
        if os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
            break
        time.sleep(0.1)
    yield f"/proc/{holder.pid}/ns/net"
    holder.kill()
    holder.wait()


def run(live, scratch, *calls: str, netns_path: str = "") -> tuple[subprocess.Popen, object]:
    """A child that makes ``calls``; the cache fed with every event up to
    them, and the child's process in it."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, netns_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
    live.wait_for(lambda e: isinstance(e, ExecEvent) and e.key.pid == child.pid)
    for call in calls:
        child.stdin.write(call + "\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
    live.sync(scratch)
    cache = live_cache()
    cache.apply_all(live.matching(lambda e: True))
    return child, cache.by_pid[child.pid], cache


def assert_matches_proc(pid: int, proc) -> None:
    st, ns = proc_status(pid), proc_ns(pid)
    c = proc.image.creds
    assert [str(x) for x in (c.uid, c.euid, c.suid, c.fsuid)] == st["Uid"]
    assert [str(x) for x in (c.gid, c.egid, c.sgid, c.fsgid)] == st["Gid"]
    assert c.caps.effective == int(st["CapEff"][0], 16) and c.caps.permitted == int(st["CapPrm"][0], 16)
    assert {n: getattr(proc.image.ns, n) for n in NAMESPACES if n in ns} == {n: ns[n] for n in NAMESPACES if n in ns}
    if proc.cap_sets is not None:  # known once a change told them
        assert proc.cap_sets.bounding == int(st["CapBnd"][0], 16) and proc.cap_sets.ambient == int(st["CapAmb"][0], 16)


def finish(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


@pytest.mark.bpf
def test_setresuid_to_nobody_is_followed_and_is_no_rise(exact, scratch):
    child, proc, cache = run(exact, scratch, "setresuid")
    try:
        assert_matches_proc(child.pid, proc)
        assert proc.image.creds.euid == 65534 and describe.user(proc) == "nobody"
        (change,) = proc.changes
        assert (change.syscall, change.old_creds.euid, change.creds.euid, change.rose) == ("setresuid", 0, 65534, False)
        assert "creds+" not in describe.badges(proc, cache)
    finally:
        finish(child)


@pytest.mark.bpf
def test_capset_dropping_every_capability(exact, scratch):
    child, proc, cache = run(exact, scratch, "capset")
    try:
        assert_matches_proc(child.pid, proc)
        assert proc.image.creds.caps.effective == 0 and proc.changes[-1].syscall == "capset"
        assert "caps -" in describe.change_text(proc.changes[-1], cache.host_ns)
    finally:
        finish(child)


@pytest.mark.bpf
def test_euid_raised_back_to_0_from_the_saved_uid_is_a_rise(exact, scratch):
    child, proc, cache = run(exact, scratch, "euid-back")
    try:
        assert_matches_proc(child.pid, proc)
        assert [(c.old_creds.euid, c.creds.euid) for c in proc.changes] == [(0, 65534), (65534, 0)]
        assert proc.changes[-1].rose and "creds+" in describe.badges(proc, cache)
    finally:
        finish(child)


@pytest.mark.bpf
def test_setns_into_another_network_namespace(exact, scratch, netns):
    child, proc, cache = run(exact, scratch, "setns", netns_path=netns)
    try:
        assert_matches_proc(child.pid, proc)
        assert proc.image.ns.net == int(os.readlink(netns)[5:-1])
        assert proc.changes[-1].syscall == "setns" and "ns net" in describe.change_text(proc.changes[-1], cache.host_ns)
        assert "creds+" in describe.badges(proc, cache)  # a namespace joined
    finally:
        finish(child)


@pytest.mark.bpf
def test_unshare_of_the_mount_namespace_and_a_prctl_that_changes_nothing(exact, scratch):
    child, proc, cache = run(exact, scratch, "nothing", "unshare", "nothing")
    try:
        assert_matches_proc(child.pid, proc)
        assert [c.syscall for c in proc.changes] == ["unshare"]
        sent = exact.matching(lambda e: isinstance(e, CredsEvent) and e.key == proc.key)
        assert [e.syscall for e in sent] == ["unshare"]  # the prctls changed nothing: not even sent
    finally:
        finish(child)


@pytest.mark.bpf
def test_the_bounding_set_dropped_and_an_ambient_capability_raised(exact, scratch):
    """The sets Tetragon's credentials leave out: a bounding drop is a change
    (no rise), an ambient raise a rise; both as /proc says afterwards."""
    child, proc, cache = run(exact, scratch, "capbset", "inherit", "ambient")
    try:
        assert_matches_proc(child.pid, proc)
        assert proc.cap_sets is not None and not proc.cap_sets.bounding & 1 << 13  # NET_RAW
        drop, inherit, ambient = proc.changes
        assert drop.syscall == "prctl" and not drop.rose
        assert "bounding -NET_RAW" in describe.change_text(drop, cache.host_ns)
        assert inherit.syscall == "capset" and inherit.creds.caps.inheritable == 1 << 10
        assert ambient.rose and "ambient +NET_BIND_SERVICE" in describe.change_text(ambient, cache.host_ns)
        assert "creds+" in describe.badges(proc, cache)
    finally:
        finish(child)


@pytest.mark.bpf
def test_events_include_creds_writes_old_and_new(scratch, tmp_path):
    out = tmp_path / "events.json"
    events = subprocess.Popen([sys.executable, "-m", "procscope", "events", "-o", str(out), "--include", "creds",
                               "--creds-exact", "--record", str(tmp_path / "rec.jsonl")], cwd=REPO, stderr=subprocess.PIPE, text=True)  # fmt: skip
    while "collecting" not in (line := events.stderr.readline()):
        assert line, events.stderr.read()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    child.stdin.write("setresuid\n")
    child.stdin.flush()
    assert child.stdout.readline() == "done\n"
    time.sleep(1.0)
    finish(child)
    events.send_signal(signal.SIGINT)
    assert events.wait(30) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    (creds,) = [
        e["procscope_creds"]
        for e in lines
        if "procscope_creds" in e and e["procscope_creds"]["process"]["pid"] == child.pid
    ]
    assert creds["syscall"] == "setresuid"
    assert creds["old"]["process_credentials"]["euid"] == 0 and creds["new"]["process_credentials"]["euid"] == 65534
    assert creds["process"]["process_credentials"]["euid"] == 65534  # the process as it is now
    assert creds["old"]["cap_sets"] == creds["new"]["cap_sets"]  # known since its exec, and unchanged
    assert "CAP_SYS_ADMIN" in creds["new"]["cap_sets"]["bounding"]
    # A replay of the recording has the change too.
    snap = subprocess.run([sys.executable, "-m", "procscope", "snapshot", "--replay", str(tmp_path / "rec.jsonl"),
                           "--pid", str(child.pid)], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    (p,) = [p for p in json.loads(snap.stdout)["processes"] if p["pid"] == child.pid]
    assert p["process_credentials"]["euid"] == 65534


# Without --creds-exact: the child drops to nobody, then forks, execs or exits.
THEN = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
print("ready", flush=True)
sys.stdin.readline()
assert libc.setresuid(65534, 65534, 65534) == 0
if sys.argv[1] == "fork":
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print("forked", flush=True)
    time.sleep(60)
elif sys.argv[1] == "exec":
    os.execv(sys.argv[2], [sys.argv[2], "60"])
"""


def drop_then(live, scratch, then: str):
    """A child started after the probes attached that, told to, becomes
    nobody and then forks, execs a copy of sleep, or exits; returns it,
    its exec event, the copy's path and the cache fed with everything."""
    sleeper = unique_copy("/bin/sleep", scratch)
    child = subprocess.Popen([sys.executable, "-c", THEN, then, sleeper], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout.readline() == "ready\n"
    exec_ev = live.wait_for(lambda e: isinstance(e, ExecEvent) and e.key.pid == child.pid)
    child.stdin.write("go\n")
    child.stdin.flush()
    if then == "fork":
        assert child.stdout.readline() == "forked\n"
    elif then == "exec":
        live.exec_of(sleeper)
    else:
        child.wait(10)
    live.sync(scratch)
    cache = live_cache()
    cache.apply_all(live.matching(lambda e: True))
    return child, exec_ev, sleeper, cache


def attached_by_events(*options: str) -> list[str]:
    """The tracepoints of a running `procscope events`."""
    events = subprocess.Popen([sys.executable, "-m", "procscope", "events", "-o", "/dev/null", *options], cwd=REPO,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        while "collecting" not in (line := events.stderr.readline()):
            assert line, events.stderr.read()
        return perf_attachments(events.pid)
    finally:
        events.terminate()
        events.wait(30)


@pytest.mark.bpf
def test_default_attaches_no_syscall_tracepoint():
    """Every syscall of every task takes the kernel's slow path while a
    syscall tracepoint is on: by default procscope attaches none."""
    default = attached_by_events()
    assert "sched_prepare_exec" in default or "sys_enter_execve" in default  # the exec's creds before (6.10+)
    assert not [t for t in default if t.startswith("sys_") and t != "sys_enter_execve" and t != "sys_enter_execveat"]
    if os.path.exists("/sys/kernel/tracing/events/sched/sched_prepare_exec"):
        assert not [t for t in default if t.startswith("sys_")]
    exact = attached_by_events("--creds-exact")
    assert {"sys_exit_setresuid", "sys_exit_capset", "sys_exit_setns", "sys_exit_prctl"} <= set(exact)


@pytest.mark.bpf
def test_a_change_is_seen_when_the_process_next_clones(live, scratch):
    child, exec_ev, _, cache = drop_then(live, scratch, "fork")
    try:
        proc = cache.procs[exec_ev.key]
        assert_matches_proc(child.pid, proc)
        (change,) = proc.changes
        assert (change.syscall, change.old_creds.euid, change.creds.euid) == ("seen at clone", 0, 65534)
        # Sent before the clone, so the child starts as nobody.
        mine = [e for e in live.matching(lambda e: True) if getattr(e, "key", None) == exec_ev.key
                or getattr(e, "parent", None) == exec_ev.key]  # fmt: skip
        kinds = [type(e).__name__ for e in mine]
        assert kinds.index("CredsEvent") < kinds.index("CloneEvent")
    finally:
        finish(child)


@pytest.mark.bpf
def test_a_change_is_seen_when_the_process_exits(live, scratch):
    child, exec_ev, _, cache = drop_then(live, scratch, "exit")
    proc = cache.procs[exec_ev.key]
    (change,) = proc.changes
    assert (change.syscall, change.creds.uid, change.creds.euid, change.creds.suid) == ("seen at exit", 65534, 65534,
                                                                                         65534)  # fmt: skip
    assert proc.image.creds.euid == 65534 and proc.exit is not None


@pytest.mark.bpf
def test_a_change_is_seen_at_the_exec_that_follows(live, scratch):
    """setresuid then exec of a plain binary: the old image changed, the new
    one is nobody's, and the exec raised no privilege (Tetragon's flags)."""
    child, exec_ev, sleeper, cache = drop_then(live, scratch, "exec")
    try:
        old = cache.procs[exec_ev.key]
        (change,) = old.changes
        assert (change.syscall, change.creds.euid) == ("seen at exec", 65534)
        new = cache.by_pid[child.pid]
        assert new.image.binary == sleeper and new.image.creds.euid == 65534 and new.image.privileges == 0
        assert_matches_proc(child.pid, new)
    finally:
        finish(child)


@pytest.mark.bpf
def test_execveat_is_told_from_execve(live, scratch):
    """The flag Tetragon's exec carries for execveat, without a syscall
    tracepoint (the syscall's number at sched_prepare_exec)."""
    true = unique_copy("/bin/true", scratch)
    code = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
            "fd = os.open(os.path.dirname(sys.argv[1]), os.O_RDONLY); "
            "argv = (ctypes.c_char_p * 2)(b'x', None); envp = (ctypes.c_char_p * 1)(None); "
            "libc.syscall(322, fd, os.path.basename(sys.argv[1]).encode(), argv, envp, 0); sys.exit(3)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code, true]).returncode == 0
    subprocess.run([true], check=True)
    live.sync(scratch)
    at, plain = [e for e in live.matching(lambda e: isinstance(e, ExecEvent) and e.binary == true)]
    assert at.flags & wire.FLAG_EXECVEAT and not at.flags & wire.FLAG_EXECVE
    assert plain.flags & wire.FLAG_EXECVE and not plain.flags & wire.FLAG_EXECVEAT
