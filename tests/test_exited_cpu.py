"""The CPU of the short-lived (issue 27, point 3): the kernel's count of
each process's CPU at its exit, summed into its ancestors, against the
cgroup's own count (cpuacct.usage), where reading the living (htop's way)
and the kernel's waited-for figure (cutime) see almost nothing."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time

import pytest

from procscope import describe
from procscope.cache import ProcessCache
from procscope.exited_cpu import MAX_DEPTH, exited_children_ns
from procscope.export import Exporter
from procscope.live_cache import live_cache
from procscope.probes import wire
from procscope.probes.events import CloneEvent, ExitEvent, ProcessKey
from procscope.probes.procfs import TICK_NS, start_key
from procscope.process import ROOT
from procscope.sampler import Sampler
from procscope.subtree_usage import SubtreeRates
from procscope.tui.columns import COLUMNS, Context
from procscope.tui.panes.detail import render_detail
from procscope.tui.usage import UsageFeed

from .conftest import open_collector, plain
from .factories import clone_event, exec_event, exit_event

# 150 children that each fork a grandchild and exit unwaited for (SIGCHLD
# ignored: the kernel reaps them); each of the 300 burns ~10 ms of CPU. The
# parent is a subreaper, so the orphaned grandchildren are reaped at once
# (this VM's init reaps late) and nothing of them reaches its cutime.
BURST = """
import ctypes, os, signal, sys, time
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
def burn():
    t = time.thread_time()
    while time.thread_time() - t < 0.01:
        pass
for _ in range(150):
    if os.fork() == 0:
        if os.fork() == 0:
            burn()
            os._exit(0)
        burn()
        os._exit(0)
    time.sleep(0.005)
print("done", flush=True)
sys.stdin.read()
"""


def settle(collector, cache, seconds: float = 15.0) -> None:
    """Until every event up to now is in the cache: a marker process's exit,
    which the ring delivers after them (a loaded machine delays batches)."""
    marker = subprocess.Popen(["true"])
    marker.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = collector.get_batch(timeout=0.05) or []
        cache.apply_all(batch)
        if any(isinstance(ev, ExitEvent) and ev.key.pid == marker.pid for ev in batch):
            return
    raise AssertionError(f"the marker's exit did not come within {seconds} s")


def cgroup_usage(cg: str) -> int:
    with open(f"{cg}/cpuacct.usage") as f:
        return int(f.read())


def proc_stat_times(pid: int) -> tuple[int, int]:
    """(own, waited-for children's) CPU time: own as the scheduler counts it (/proc/PID/schedstat,
    to the ns, as the cgroup counts; a single-threaded process), the children's from /proc/PID/stat."""
    with open(f"/proc/{pid}/schedstat", "rb") as f:
        own = int(f.read().split()[0])
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return own, (int(fields[13]) + int(fields[14])) * TICK_NS


def test_the_short_lived_unwaited_are_counted_as_the_cgroup_counts_them():
    cg = f"/sys/fs/cgroup/cpuacct/procscope-exited-{os.getpid()}"
    if not os.path.isdir("/sys/fs/cgroup/cpuacct"):
        pytest.fail("no cpuacct hierarchy: this machine's cgroup v1 layout is expected (see the README)")
    collector = open_collector(exit_cpu=True, scan_proc=False)  # every process below is born watched
    cache = live_cache(collector.hierarchy)
    collector.start()
    os.mkdir(cg)
    sampler = Sampler()
    p = None
    exits = at_exits = 0  # the descendants' exits seen, and the sum of their CPU
    descendants: set[int] = set()

    def drain(timeout: float) -> None:
        nonlocal exits, at_exits
        for ev in collector.get_batch(timeout=timeout) or []:
            cache.apply(ev)
            if isinstance(ev, CloneEvent) and (ev.parent.pid == p.pid or ev.parent.pid in descendants):
                descendants.add(ev.key.pid)
            elif isinstance(ev, ExitEvent) and ev.key.pid in descendants:
                exits += 1
                at_exits += ev.cpu_ns

    try:
        p = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$1"', sys.executable, BURST],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        seen: dict[ProcessKey, int] = {}  # the descendants as a sampler of the living, once a second, saw them
        started = start_key(p.pid).ktime
        while not select.select([p.stdout], [], [], 0)[0]:
            for key, u in sampler.sample().procs.items():
                if key.pid != p.pid and key.ktime >= started and u.cpu_ns:
                    seen[key] = max(seen.get(key, 0), u.cpu_ns)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not select.select([p.stdout], [], [], 0)[0]:
                drain(0.05)
        assert p.stdout.readline() == b"done\n"
        deadline = time.monotonic() + 10  # the last grandchildren may still be burning their 10 ms
        while exits < 300 and time.monotonic() < deadline:
            drain(0.1)
        drain(0.2)
        parent = cache.by_pid[p.pid]
        assert exits == 300, f"{exits} of the 300 descendants' exits seen"
        cgroup_ns = cgroup_usage(cg)
        own, waited = proc_stat_times(p.pid)
        children = describe.children_cpu_ns(parent, cache, None)
        print(f"cgroup {cgroup_ns / 1e6:.1f} ms, own {own / 1e6:.1f} ms, descendants {children / 1e6:.1f} ms")
        assert children is not None and children >= 300 * 0.009e9
        assert children == at_exits  # each credited once, whether waited for or not
        # What each exit does after its exit event (closing its files, notifying its parent) is
        # the cgroup's and not in the event: up to ~0.5 ms an exit here.
        gap = cgroup_ns - (own + children)
        assert -0.01 * cgroup_ns <= gap <= 0.05 * cgroup_ns + 300 * 500_000, (own, children, cgroup_ns)
        # What htop shows: the kernel's figure for children waited for, and the living as sampled.
        assert waited < 0.05 * cgroup_ns
        assert sum(seen.values()) < 0.2 * cgroup_ns, (sum(seen.values()), cgroup_ns)
        # The columns say it: CTIME+ the descendants', TOTAL+ with its own.
        ctx = Context(cache, time.clock_gettime_ns(time.CLOCK_BOOTTIME), 0)
        assert COLUMNS["CTIME+"].value(parent, ctx) == describe.cpu_time_text(children)
        detail = plain(None, render_detail(parent, cache, ctx.now, Exporter(cache, node="n")))
        assert f"{describe.cpu_time_text(children)} its exited descendants'" in detail, detail
        # Each descendant's own CPU, final, on its exited row (the sampler never read most of them).
        exited = [q for q in cache.procs.values() if q.parent == parent.key and not q.alive and q.exit is not None]
        assert len(exited) == 150 and all(q.cpu_ns and q.cpu_ns >= 0.009e9 for q in exited)
        assert COLUMNS["TIME+"].value(exited[0], ctx) == describe.cpu_time_text(exited[0].cpu_ns)
    finally:
        if p is not None:
            p.kill()
            p.wait()
        collector.stop()
        with contextlib.suppress(OSError):
            os.rmdir(cg)


def test_an_orphan_counts_for_the_chain_that_started_it_and_a_deep_chain_is_counted():
    """By origin, not by the kernel's current parent: a double fork's
    grandchild is re-parented to init when its parent exits, yet its CPU
    goes through that exited parent to the one running that started the
    chain (a re-exec keeps what the image before it was given), and a
    process passes it all on when it exits. A chain of exited parents
    deeper than exited_cpu.MAX_DEPTH is followed that far, and counted. An
    exit without a figure (a recording's) gives nothing. (The cache alone.)"""
    cache = ProcessCache()
    init = ProcessKey(1, 10)
    shell, shell_exec = ProcessKey(100, 1_000), ProcessKey(100, 2_000)
    child, grandchild = ProcessKey(101, 3_000), ProcessKey(102, 4_000)
    cache.apply_all([
        exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS),
        exec_event(100, 1_000, init, "/bin/sh", flags=wire.FLAG_PROCFS),
        clone_event(101, 3_000, shell),
        exec_event(100, 2_000, init, "/bin/bash", cleanup=shell),  # the shell re-exec'd since it forked
        clone_event(102, 4_000, child),
        exit_event(child, 5_000, cpu_ns=5_000_000),  # the grandchild is an orphan now: the tree puts it under init
        exit_event(grandchild, 6_000, cpu_ns=70_000_000),
    ])  # fmt: skip
    bash = cache.procs[shell_exec]
    assert cache.procs[grandchild].tree_parent == init and cache.procs[grandchild].cpu_ns == 70_000_000
    assert cache.exit_cpu and cache.procs[child].exited_cpu_ns == 70_000_000
    # Found by the /proc scan: its descendants' sum is not all it had, the kernel's figure stands (none read here).
    assert describe.children_cpu_ns(bash, cache, None) is None
    assert exited_children_ns(cache, bash) == 75_000_000
    assert cache.procs[init].exited_cpu_ns == 0  # the shell runs: it has it
    cache.apply_all([clone_event(103, 7_000, init), exit_event(ProcessKey(103, 7_000), 8_000)])  # no figure
    assert cache.procs[init].exited_cpu_ns == 0
    cache.apply(exit_event(shell_exec, 9_000, cpu_ns=2_000_000))  # the shell exits: all of it goes up
    assert cache.procs[init].exited_cpu_ns == 77_000_000
    # A chain of exited parents longer than MAX_DEPTH: followed that far, and counted.
    parent, keys = init, []
    for i in range(MAX_DEPTH + 10):
        key = ProcessKey(1000 + i, 10_000 + i)
        cache.apply(clone_event(key.pid, key.ktime, parent))
        parent = key
        keys.append(key)
    cache.apply_all(exit_event(key, 20_000) for key in keys[:-1])
    cache.apply(exit_event(keys[-1], 21_000, cpu_ns=1))
    assert cache.procs[keys[-2]].exited_cpu_ns == cache.procs[keys[9]].exited_cpu_ns == 1  # MAX_DEPTH up
    assert cache.procs[keys[8]].exited_cpu_ns == 0 and cache.procs[init].exited_cpu_ns == 77_000_000
    assert cache.counters.cpu_too_deep == 1


# Children of 10 ms each, one after another for 6 s: about half a CPU, all of it the short-lived's.
STORM = """
import os, signal, sys, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
end = time.monotonic() + 6
while time.monotonic() < end:
    if os.fork() == 0:
        t = time.thread_time()
        while time.thread_time() - t < 0.01:
            pass
        os._exit(0)
    time.sleep(0.01)
"""


def test_a_folded_subtree_shows_the_cpu_of_the_children_that_exited_in_the_interval():
    cg = f"/sys/fs/cgroup/cpuacct/procscope-folded-{os.getpid()}"
    collector = open_collector(exit_cpu=True, scan_proc=False)
    cache = live_cache(collector.hierarchy)
    collector.start()
    os.mkdir(cg)
    sampler, rates = Sampler(), SubtreeRates()
    p = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$1"', sys.executable, STORM])

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            cache.apply_all(collector.get_batch(timeout=0.05) or [])

    try:
        drain(1.0)
        root = cache.by_pid[p.pid]
        cache.usage = sampler.sample()
        assert rates.cpu_pct(root, cache) is None  # one pass: no interval yet
        used, at = cgroup_usage(cg), time.monotonic_ns()
        drain(2.0)
        cache.usage = sampler.sample()
        drain(0.3)  # the exits of the interval's last moments
        pct = rates.cpu_pct(root, cache)
        expected = 100 * (cgroup_usage(cg) - used) / (time.monotonic_ns() - at)
        print(f"folded CPU% {pct:.1f}, the cgroup's {expected:.1f}")
        assert expected > 25
        assert pct is not None and abs(pct - expected) <= 0.15 * expected, (pct, expected)
        # What htop shows for the same subtree: its living's CPU%, nearly nothing.
        living = [u.cpu_pct for k, u in cache.usage.procs.items() if (q := cache.by_pid.get(k.pid)) is not None
                  and (q is root or q.parent == root.key)]  # fmt: skip
        assert sum(living) < 0.5 * expected, (living, expected)
    finally:
        p.kill()
        p.wait()
        collector.stop()
        with contextlib.suppress(OSError):
            os.rmdir(cg)


def test_a_storm_started_before_procscope_counts_from_its_first_pass_on():
    """Where procscope is most needed, the storm was there first: found by
    the /proc scan, the parent's CTIME+ starts from the kernel's figure (its
    children waited for before) and grows by every exit from then on."""
    cg = f"/sys/fs/cgroup/cpuacct/procscope-before-{os.getpid()}"
    os.mkdir(cg)
    p = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$1"', sys.executable, STORM])
    collector = None
    try:
        time.sleep(0.5)
        collector = open_collector(exit_cpu=True)
        cache = live_cache(collector.hierarchy)
        collector.start()

        def drain(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                cache.apply_all(collector.get_batch(timeout=0.05) or [])

        settle(collector, cache)  # the /proc scan, then the first exits
        feed = UsageFeed(live=True, interval=1.0)
        feed.sampler.table = feed.sampler.sample()  # the first pass, as the sampler's thread makes it
        assert feed.take(cache)
        root = cache.by_pid[p.pid]
        assert root.image.flags & wire.FLAG_PROCFS and root.exited_cpu_base is not None
        settle(collector, cache)  # each figure read right after every exit before it is in the cache
        before, used, own = describe.children_cpu_ns(root, cache, None), cgroup_usage(cg), proc_stat_times(p.pid)[0]
        drain(2.0)
        settle(collector, cache)
        grew = describe.children_cpu_ns(root, cache, None) - before
        spent = cgroup_usage(cg) - used - (proc_stat_times(p.pid)[0] - own)
        print(f"CTIME+ grew {grew / 1e6:.0f} ms, the cgroup's children {spent / 1e6:.0f} ms")
        assert spent > 0.5e9 and abs(grew - spent) <= 0.1 * spent, (grew, spent)
        assert describe.all_exits_seen(root, cache)
    finally:
        p.kill()
        p.wait()
        if collector is not None:
            collector.stop()
        with contextlib.suppress(OSError):
            os.rmdir(cg)
