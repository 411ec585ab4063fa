"""The start-up /proc scan: every running process, parents first, keyed and
described exactly as the BPF programs would."""

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest

from procscope.live_cache import live_cache
from procscope.probes import cgroups, procfs, scan_job, wire
from procscope.probes.events import ExitEvent

from .conftest import open_collector, unique_copy


def test_scan_lists_running_processes_parents_first():
    events = scan_job.scan(cgroups.detect()).events
    pids = [e.key.pid for e in events]
    assert os.getpid() in pids and os.getppid() in pids
    position = {pid: i for i, pid in enumerate(pids)}
    for ev in events:
        assert ev.flags & wire.FLAG_PROCFS
        if ev.parent.pid in position:
            assert position[ev.parent.pid] < position[ev.key.pid]
    # attrs make psutil skip a process that exits (or whose pid is reused) mid-iteration
    kernel_threads = [p.pid for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == 2]
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
            b.uid,
            b.gid,
            b.suid,
            b.sgid,
            b.euid,
            b.egid,
            b.fsuid,
            b.fsgid,
            b.caps,
        )
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


@pytest.fixture
def sleepers():
    """A few hundred idle processes, so that the scan has many chunks to share."""
    group = subprocess.Popen(["sh", "-c", "for i in $(seq 300); do sleep 600 & done; wait"], start_new_session=True)
    deadline = time.monotonic() + 10

    def sleeping() -> list[int]:  # a child the shell forked may not have exec'd sleep yet: the scans would differ
        found = []
        for child in psutil.Process(group.pid).children():
            with contextlib.suppress(psutil.Error):
                if child.cmdline() == ["sleep", "600"]:
                    found.append(child.pid)
        return found

    while len(sleeping()) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield sleeping()
    os.killpg(group.pid, signal.SIGKILL)
    group.wait()


def _ours(scan: scan_job.Scan, pids) -> dict:
    return {e.key.pid: e for e in scan.events if e.key.pid in set(pids)}


def _children() -> list[psutil.Process]:
    """This process's children, from the kernel's list of them (psutil's
    children() reads every process on the machine: ms, in which a helper
    with its share of a few hundred pids can be done)."""
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            for pid in f.read().split():
                with contextlib.suppress(psutil.Error):
                    found.append(psutil.Process(int(pid)))
    return found


def _helpers() -> list[psutil.Process]:
    """The scan's helper while it runs: a child of this process that is a fork of it."""
    mine = psutil.Process().cmdline()
    found = []
    for p in _children():
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            if p.cmdline() == mine:
                found.append(p)
    return found


def _kill_helpers() -> int:
    """Kills the scan's helper if it still runs; how many were killed."""
    running = _helpers()
    for p in running:
        p.kill()
    return len(running)


def _left() -> list[psutil.Process]:
    """The helper running, or ended and not reaped (a zombie)."""
    found = []
    for p in _children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() == psutil.STATUS_ZOMBIE:
                found.append(p)
    return found + _helpers()


def test_scan_on_both_cores_equals_the_serial_scan(hostile, sleepers):
    """The helper's half comes back through msgpack: hostile bytes, parent keys and order survive it."""
    hierarchy = cgroups.detect()
    mine = [*sleepers, *hostile.pids, os.getpid()]
    serial = scan_job.scan(hierarchy)
    job = scan_job.ScanJob(hierarchy)
    time.sleep(1)  # the monitor loading Textual: the helper reads it all
    shared = job.result()
    assert job.helped > 1
    assert _ours(shared, mine) == _ours(serial, mine)
    assert len(_ours(shared, mine)) == len(mine)
    position = {e.key.pid: i for i, e in enumerate(shared.events)}
    for ev in shared.events:
        if ev.parent.pid in position:
            assert position[ev.parent.pid] < position[ev.key.pid]
            assert shared.events[position[ev.parent.pid]].key == ev.parent
    assert not _left()


def test_scan_whose_helper_dies_is_still_complete(sleepers):
    """Killed before it delivered its share; tried again until it is (its
    share is a few ms), every try complete anyway."""
    hierarchy = cgroups.detect()
    for _ in range(50):
        job = scan_job.ScanJob(hierarchy)
        killed = _kill_helpers()
        result = job.result()
        assert len(_ours(result, sleepers)) == len(sleepers)
        assert _ours(result, sleepers) == _ours(scan_job.scan(hierarchy), sleepers)
        assert not _left()
        if killed and job.helped == 0:
            return
    pytest.fail("the helper was always done before it could be killed")


def test_scan_not_wanted_leaves_no_helper_behind(sleepers):
    with scan_job.ScanJob(cgroups.detect()):
        assert len(_left()) == 1  # running, or done and not reaped
    assert not _left()  # killed and reaped: no zombie either


@pytest.fixture
def unshared():
    """A process in namespaces of its own (net, uts, ipc): they differ from its parent's."""
    proc = subprocess.Popen(["unshare", "--net", "--uts", "--ipc", "sleep", "600"])
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).cmdline() != ["sleep", "600"] and time.monotonic() < deadline:
        time.sleep(0.05)  # unshare execs sleep once its namespaces are made
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_deferred_scan_completes_to_the_full_scan(hostile, sleepers, unshared):
    """The monitor's first frame: of the namespaces the pid one only (the
    merge marks container init trees by it), no login uid, cwd or binary
    inode; the rest read by the helper meanwhile and filled into the cache,
    which then holds what a full scan would."""
    hierarchy = cgroups.detect()
    mine = [*sleepers, *hostile.pids, unshared, os.getpid()]
    job = scan_job.ScanJob(hierarchy, defer=True)
    first = job.result()
    assert job.defer and job.helped >= 1
    full = _ours(scan_job.scan(hierarchy), mine)
    light = _ours(first, mine)
    assert light.keys() == full.keys()
    for pid, ev in light.items():
        assert ev.ns.pid == full[pid].ns.pid and ev.ns.net == ev.ns.mnt == ev.creds.user_ns.inum == 0
        assert (ev.cwd, ev.nlink, ev.ino, ev.auid) == ("", 0, 0, wire.UNKNOWN_ID) != (full[pid].cwd, full[pid].nlink,
                                                                                    full[pid].ino, full[pid].auid)  # fmt: skip
        assert (ev.binary, ev.args, ev.parent, ev.flags) == (full[pid].binary, full[pid].args, full[pid].parent,
                                                             full[pid].flags)  # fmt: skip
    cache = live_cache(hierarchy, 5 * 10**9)
    cache.apply_all(first.events)
    filled = job.completed(wait=True)
    assert filled is not None and not _left()
    assert _ours(scan_job.Scan(filled), mine) == full
    cache.rescan(filled, complete=False)
    for pid, ev in full.items():
        assert cache.by_pid[pid].image == ev
    assert cache.by_pid[unshared].image.ns.net != cache.by_pid[os.getpid()].image.ns.net
    assert job.completed() is None  # once


@pytest.mark.parametrize("before_its_share", [False, True])
def test_a_deferred_part_whose_helper_dies_is_read_in_process(sleepers, before_its_share):
    """Killed before it delivered its share, or while it reads the deferred
    part: a scan here takes a few ms, so the helper may be done before the
    test can kill it (it was, once, in CI). The job is tried again until
    one is killed in time; every try must be complete anyway."""
    hierarchy = cgroups.detect()
    for _ in range(50):
        job = scan_job.ScanJob(hierarchy, defer=True)
        if before_its_share:
            killed = _kill_helpers()
        first = job.result()
        if not before_its_share:
            killed = _kill_helpers()
        filled = job.completed(wait=True)
        assert filled is not None and not _left()
        assert _ours(scan_job.Scan(filled), sleepers) == _ours(scan_job.scan(hierarchy), sleepers)
        assert len(filled) >= len(_ours(first, sleepers))
        if killed and (job.helped == 0 or not before_its_share):
            return
    pytest.fail("the helper was always done before it could be killed")


def test_rescan_of_the_deferred_part_ends_nothing(sleepers):
    """A partial look (the deferred part) is not a census: a process it did
    not find is not taken for exited."""
    hierarchy = cgroups.detect()
    job = scan_job.ScanJob(hierarchy, defer=True)
    first = job.result()
    cache = live_cache(hierarchy, 5 * 10**9)
    cache.apply_all(first.events)
    filled = [ev for ev in job.completed(wait=True) or [] if ev.key.pid != sleepers[0]]
    cache.rescan(filled, complete=False)
    assert cache.by_pid[sleepers[0]].alive and cache.by_pid[sleepers[0]].image.ns.mnt == 0
    assert cache.by_pid[sleepers[1]].image.ns.mnt != 0
