"""The start-up /proc scan: every running process, parents first, keyed and
described exactly as the BPF programs would."""

import os
import subprocess

import psutil
import pytest

from procscope.probes import cgroups, procfs, wire
from procscope.probes.events import ExitEvent

from .conftest import open_collector, unique_copy


def test_scan_lists_running_processes_parents_first():
    events = procfs.scan(cgroups.detect()).events
    pids = [e.key.pid for e in events]
    assert os.getpid() in pids and os.getppid() in pids
    position = {pid: i for i, pid in enumerate(pids)}
    for ev in events:
        assert ev.flags & wire.FLAG_PROCFS
        if ev.parent.pid in position:
            assert position[ev.parent.pid] < position[ev.key.pid]
    kernel_threads = [p.pid for p in psutil.process_iter() if p.ppid() == 2]
    assert kernel_threads and not set(kernel_threads) & set(pids)
    me = events[position[os.getpid()]]
    assert me.binary == os.path.realpath(psutil.Process().exe())
    assert list(me.args) == psutil.Process().cmdline()[1:]
    assert me.parent == procfs.start_key(os.getppid())


@pytest.mark.bpf
def test_scan_agrees_with_bpf(live, scratch):
    """The same process seen at exec by BPF and later by the scan."""
    binary = unique_copy("/bin/sleep", scratch)
    child = subprocess.Popen([binary, "30", "1"], cwd=scratch)
    try:
        seen = live.exec_of(binary)
        scanned = procfs.process_event(child.pid, live.collector.hierarchy)
        for field in ("binary", "args", "cwd", "uid", "nlink", "ino", "ns", "cgroup_id", "cgroup_name", "nspid"):
            assert getattr(scanned, field) == getattr(seen, field), field
        a, b = scanned.creds, seen.creds
        # securebits and the user namespace owner's gid are not in /proc.
        assert (a.uid, a.gid, a.suid, a.sgid, a.euid, a.egid, a.fsuid, a.fsgid, a.caps) == (
            b.uid, b.gid, b.suid, b.sgid, b.euid, b.egid, b.fsuid, b.fsgid, b.caps)
        assert (a.user_ns.level, a.user_ns.uid, a.user_ns.inum) == (b.user_ns.level, b.user_ns.uid, b.user_ns.inum)
        assert scanned.parent.pid == seen.parent.pid
    finally:
        child.kill()
        child.wait()


@pytest.mark.bpf
def test_exit_of_a_process_older_than_procscope_matches_its_scan_key(scratch):
    binary = unique_copy("/bin/sleep", scratch)
    child = subprocess.Popen([binary, "30"])
    collector = open_collector(scan_proc=False)
    try:
        scanned = {e.key.pid: e for e in collector.scan()}[child.pid]
        child.kill()
        child.wait()
        exits = []
        while batch := collector.poll(300):
            exits += [e for e in batch if isinstance(e, ExitEvent) and e.key.pid == child.pid]
    finally:
        collector.stop()
    assert [e.key for e in exits] == [scanned.key]
    assert exits[0].signal == 9
