"""A rise of privileges in a process that then neither clones, execs nor
exits, which the kernel side (without --creds-exact) would see only when
it does: the monitor's resources sampler sees it in /proc, and the cache
takes it as a change, as /proc says. Needs root (setresuid), not BPF."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from procscope import describe
from procscope.creds_watch import SEEN
from procscope.export import Exporter
from procscope.probes.procfs import start_key
from procscope.tui.feed import Feed
from procscope.tui.sources import ProcfsSource
from procscope.tui.usage import UsageFeed

from .conftest import proc_status

# Root that lowers its euid to nobody (root kept as the saved uid) and makes
# itself dumpable again, so /proc/PID is nobody's; on a line, euid 0 again.
CHILD = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.setresuid(-1, 65534, 0) == 0 and libc.prctl(4, 1, 0, 0, 0) == 0  # PR_SET_DUMPABLE
print("low", flush=True)
sys.stdin.readline()
assert libc.setresuid(-1, 0, -1) == 0
print("high", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def child():
    if os.geteuid() != 0:
        pytest.skip("needs root (setresuid)")
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "low\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_rise_without_clone_exec_or_exit_is_seen_in_proc(child):
    source = ProcfsSource("test", 5 * 10**9)
    source.start()
    feed = Feed(source, Exporter(source.cache), None)
    feed.ingest()
    key = start_key(child.pid)
    assert feed.cache.procs[key].image.creds.euid == 65534  # as scanned
    usage = UsageFeed(True, 1.0, feed.keep_usage)
    usage.sampler.wanted = frozenset({child.pid})  # on screen: read every pass
    usage.sampler.table = usage.sampler.sample()  # its owner: nobody
    usage.take(feed.cache)
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline() == "high\n"
    usage.sampler.table = usage.sampler.sample()  # root's now
    assert [f.key for f in usage.sampler.table.creds] == [key]
    usage.take(feed.cache)
    feed.ingest()
    proc = feed.cache.procs[key]
    (change,) = proc.changes
    assert (change.syscall, change.old_creds.euid, change.creds.euid) == (SEEN, 65534, 0)
    st = proc_status(child.pid)
    c = proc.image.creds
    assert [str(x) for x in (c.uid, c.euid, c.suid, c.fsuid)] == st["Uid"]
    assert c.caps.effective == int(st["CapEff"][0], 16)
    assert change.rose and "creds+" in describe.badges(proc, feed.cache)
    # Nothing more while nothing changes.
    usage.sampler.table = usage.sampler.sample()
    assert usage.sampler.table.creds == ()


def test_a_change_told_by_the_sampler_and_again_by_the_kernel_side_is_one_change():
    """The sampler saw a rise; the kernel side, at the process's next clone,
    sends the same credentials against what it last sent (the exec's): the
    cache keeps one change."""
    from procscope.cache import ROOT, ProcessCache
    from procscope.probes.events import CapSets, CredsEvent

    from .factories import creds, exec_event, namespaces

    cache = ProcessCache()
    ev = exec_event(100, 10, ROOT, uid=1000, caps=0)
    cache.apply(ev)
    root, full, fewer = creds(0), CapSets(2**41 - 1, 0), CapSets(2**41 - 1 - 2**13, 0)
    cache.apply(CredsEvent(20, ev.key, 100, SEEN, root, namespaces(), fewer))  # the sampler's: sets as /proc says
    cache.apply(CredsEvent(30, ev.key, 100, "seen at clone", root, namespaces(), fewer, full))  # old: the exec's
    (change,) = cache.procs[ev.key].changes
    assert change.syscall == SEEN and change.creds.euid == 0
