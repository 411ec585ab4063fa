"""The process cache (procscope/cache.py): pure Python, no BPF and no root.

Unit tests of each rule with hand-built event sequences, a 100k-process
storm, and Hypothesis property tests that replay simulated kernel histories
(with pid reuse, lost events and disorder) and check the cache's invariants
after every event."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from procscope import cgroup_index
from procscope.cache import DEFAULT_GRACE_NS, ROOT, ProcessCache
from procscope.cgroup_index import ContainerEntry
from procscope.containers import Container
from procscope.probes import wire
from procscope.probes.events import CgroupEvent, CloneEvent, ExecEvent, ProcessKey
from procscope.process import Shared

from .factories import HOST_NS, clone_event, creds, exec_event, exit_event, namespaces

SEC = 1_000_000_000
DOCKER_A = "bac3df2bc0890cf4c87482f1511df3e1fb3ec677214d58658454aa1d06a7e118"
DOCKER_B = "40623edf02420564b2c4f4ad7c3f773ebd3124b94c5e6d70ee6e8c4842bb7d58"
DOCKER_A_PATH = f"/system.slice/docker-{DOCKER_A}.scope"
DOCKER_B_PATH = f"/system.slice/docker-{DOCKER_B}.scope"
HOST_PIDNS = HOST_NS["pid"]
NOBODY = ProcessKey(0, 0)


def pidns(inum: int):
    """Namespaces of a process living in pid namespace ``inum`` (its children too)."""
    return namespaces(pid=inum, pid_for_children=inum)


def clone_in(pid: int, ktime: int, parent: ProcessKey, nspid: int) -> CloneEvent:
    return CloneEvent(ktime, ProcessKey(pid, ktime), pid, nspid, parent, wire.FLAG_CLONE)


def boot(cache: ProcessCache, t: int = 1):
    """Host init (pid 1) and a shell below it."""
    init = exec_event(1, t, NOBODY, "/sbin/init", ns=pidns(HOST_PIDNS), cgroup="/init.scope")
    shell = exec_event(100, t + 1, init.key, "/bin/bash", ("bash",), ns=pidns(HOST_PIDNS), cgroup="/user.slice")
    cache.apply_all([init, shell])
    return cache.get(init.key), cache.get(shell.key)


def walk_keys(cache: ProcessCache) -> list[ProcessKey]:
    return [p.key for _, p in cache.walk()]


# -- invariants (used by the unit tests too) -----------------------------------
def check_invariants(cache: ProcessCache) -> None:
    procs = cache.procs
    for key, p in procs.items():
        assert p.key == key
        assert not (p.alive and (p.in_grace or p.replaced)), p
        # Nothing is kept that nobody needs.
        assert p.visible or p.refs > 0, p
    # The live image of each pid, and only live images.
    for pid, p in cache.by_pid.items():
        assert p.alive and p.key.pid == pid and procs.get(p.key) is p, (pid, p)
    assert {p.key for p in procs.values() if p.alive} == {p.key for p in cache.by_pid.values()}
    # Every visible process exactly once in the tree, nothing else.
    walked = walk_keys(cache)
    assert len(walked) == len(set(walked)), f"duplicates in walk: {Counter(walked).most_common(3)}"
    visible = {p.key for p in procs.values() if p.visible}
    assert set(walked) == visible, f"missing {visible - set(walked)}, extra {set(walked) - visible}"
    for key, p in cache.roots.items():
        assert p.key == key and procs.get(key) is p
    # Reference counts, as in Tetragon.
    naming = Counter(p.parent for p in procs.values() if p.parent != p.key)
    naming.update(p.previous for p in procs.values() if p.previous is not None)
    for p in procs.values():
        assert p.refs == int(p.alive) + naming[p.key], (p, naming[p.key])
    # Live processes per cgroup and per container.
    by_cgroup: dict[str, set] = {}
    by_container: Counter = Counter()
    for p in procs.values():
        if p.alive and p.cgroup:
            by_cgroup.setdefault(p.cgroup, set()).add(p.key)
            if p.container is not None:
                by_container[p.container.id] += 1
    assert {path: set(members) for path, members in cache.cgroups.items()} == by_cgroup
    assert {cid: e.processes for cid, e in cache.containers.items()} == dict(by_container)
    for cid, e in cache.containers.items():
        assert e.container.id == cid


def assert_empty(cache: ProcessCache) -> None:
    assert not cache.procs and not cache.by_pid and not cache.roots
    assert not cache.cgroups and not cache.containers
    assert list(cache.walk()) == []


# -- identity and exec chains -------------------------------------------------
def test_exec_parent_is_the_real_parent_and_the_chain_goes_through_previous_images():
    """As Tetragon: an exec's parent is the process that forked the task
    (its image then), also after a re-exec; the images the task ran before
    are kept, for the exec chain, through ``previous``."""
    cache = ProcessCache()
    init, shell = boot(cache)
    clone = clone_event(200, 10, shell.key)
    bash = exec_event(200, 11, shell.key, "/bin/bash", ("bash", "-c", "curl x"), cleanup=clone.key)
    curl = exec_event(200, 12, shell.key, "/usr/bin/curl", ("curl", "x"), cleanup=bash.key)
    cache.apply_all([clone, bash, curl])
    c, b, k = cache.get(clone.key), cache.get(bash.key), cache.get(curl.key)
    assert k.parent == shell.key and b.parent == shell.key and c.parent == shell.key
    assert k.previous == bash.key and b.previous == clone.key and c.previous is None
    assert cache.exec_chain(k) == [c, b, k]
    assert cache.exec_chain(b) == [c, b]
    assert cache.exec_chain(shell) == [shell]
    assert [p.key for p in cache.ancestry(k)] == [shell.key, init.key]
    assert cache.parent_of(k) is shell
    # Only the current image runs; the earlier ones are kept (refs), not shown.
    assert cache.by_pid[200] is k and k.alive
    assert b.replaced and c.replaced and not b.visible and not c.visible
    assert b.refs == 1 and c.refs == 1
    assert k.tree_parent == shell.key and shell.children == {curl.key: k}
    assert walk_keys(cache) == [init.key, shell.key, curl.key]
    assert [(d, p.pid) for d, p in cache.walk()] == [(0, 1), (1, 100), (2, 200)]
    check_invariants(cache)
    # When it exits and its grace ends, the whole chain goes.
    cache.apply(exit_event(curl.key, 20))
    assert k.in_grace and k.visible and not k.alive
    cache.expire(20 + DEFAULT_GRACE_NS)
    assert curl.key not in cache.procs and bash.key not in cache.procs and clone.key not in cache.procs
    assert cache.counters.evicted == 3
    check_invariants(cache)


def test_pid_reuse_never_merges():
    cache = ProcessCache(grace_ns=10)
    _init, shell = boot(cache)
    first = exec_event(300, 10, shell.key, "/bin/first")
    second = exec_event(300, 50, shell.key, "/bin/second")
    cache.apply_all([first, exit_event(first.key, 20), second])
    a, b = cache.get(first.key), cache.get(second.key)
    assert a is not b and a.binary == "/bin/first" and b.binary == "/bin/second"
    assert not a.alive and a.in_grace and b.alive and cache.by_pid[300] is b
    assert cache.counters.lost_exits == 0
    assert {k for k in walk_keys(cache) if k.pid == 300} == {first.key, second.key}
    # An exit for the first image does not touch the second.
    cache.apply(exit_event(first.key, 60))
    assert b.alive and cache.by_pid[300] is b
    check_invariants(cache)


def test_reexec_takes_over_children_including_exited_ones():
    cache = ProcessCache(grace_ns=100)
    init, shell = boot(cache)
    kid = clone_event(201, 10, shell.key)
    dead = clone_event(202, 11, shell.key)
    cache.apply_all([kid, dead, exit_event(dead.key, 12)])
    assert set(shell.children) == {kid.key, dead.key}
    again = exec_event(100, 20, init.key, "/usr/bin/zsh", cleanup=shell.key)
    zsh = cache.apply(again)
    assert shell.replaced and not shell.visible
    # The new image is the same task: the kernel's children are still its children.
    assert set(zsh.children) == {kid.key, dead.key}
    assert cache.get(kid.key).tree_parent == zsh.key and cache.get(dead.key).tree_parent == zsh.key
    assert walk_keys(cache) == [init.key, zsh.key, kid.key, dead.key]
    check_invariants(cache)


# -- clones ----------------------------------------------------------------------
def test_clone_copies_binary_args_creds_and_namespaces_until_exec():
    cache = ProcessCache()
    init, _ = boot(cache)
    ns = namespaces(pid=777, pid_for_children=777, net=888, mnt=999)
    app = exec_event(400, 10, init.key, "/usr/sbin/nginx", ("nginx", "-g", "daemon off;"), uid=33, caps=0x3, ns=ns,
                     cgroup=DOCKER_A_PATH, nspid=1)  # fmt: skip
    cache.apply(app)
    worker = cache.apply(clone_in(401, 20, app.key, nspid=2))
    img = worker.image
    assert worker.binary == "/usr/sbin/nginx" and worker.args == ("nginx", "-g", "daemon off;")
    assert img.creds == creds(33, 0x3) and img.uid == 33 and img.ns == ns
    assert img.key == ProcessKey(401, 20) and img.nspid == 2 and img.tid == 401
    assert img.parent == app.key and img.cleanup is None and img.flags == wire.FLAG_CLONE and img.privileges == 0
    assert worker.parent == app.key and worker.tree_parent == app.key and not worker.not_found
    assert worker.cgroup == DOCKER_A_PATH and worker.container == Container(DOCKER_A, "docker")
    assert cache.containers[DOCKER_A].processes == 2
    # After its exec it is itself.
    run = cache.apply(exec_event(401, 30, app.key, "/bin/sh", ("sh",), uid=0, cleanup=worker.key, cgroup=DOCKER_A_PATH))
    assert (
        run.binary == "/bin/sh" and run.image.creds == creds(0) and run.parent == app.key and run.previous == worker.key
    )
    assert cache.exec_chain(run) == [worker, run]
    assert cache.containers[DOCKER_A].processes == 2
    check_invariants(cache)


def test_clone_event_for_a_known_process_changes_nothing():
    cache = ProcessCache()
    init, shell = boot(cache)
    again = cache.apply(clone_event(100, 2, init.key))  # the /proc scan already found the shell
    assert again is shell and shell.binary == "/bin/bash"
    assert cache.counters.late == 0 and cache.counters.misses == 0
    check_invariants(cache)


# -- re-parenting -------------------------------------------------------------------
def test_orphan_goes_to_pid_1():
    cache = ProcessCache()
    init, shell = boot(cache)
    mid = cache.apply(clone_event(500, 10, shell.key))
    leaf = cache.apply(clone_event(501, 11, mid.key))
    cache.apply(exit_event(mid.key, 12))
    assert leaf.tree_parent == init.key and leaf.key in init.children and leaf.key not in (mid.children or {})
    assert leaf.parent == mid.key  # the exec identity does not change
    assert mid.refs == 1 and mid.key in cache.procs
    check_invariants(cache)
    # The exited parent stays cached while its child names it...
    cache.expire(12 + DEFAULT_GRACE_NS)
    assert mid.key in cache.procs and not mid.visible
    check_invariants(cache)
    # ...and goes with it.
    cache.apply(exit_event(leaf.key, 13 + DEFAULT_GRACE_NS))
    cache.expire(13 + 2 * DEFAULT_GRACE_NS)
    assert mid.key not in cache.procs and leaf.key not in cache.procs
    check_invariants(cache)


def test_orphan_goes_to_its_pid_namespace_init():
    cache = ProcessCache()
    init, shell = boot(cache)
    ns = pidns(4026532999)
    shim = cache.apply(exec_event(600, 10, init.key, "/usr/bin/containerd-shim", ns=pidns(HOST_PIDNS)))
    cinit = cache.apply(exec_event(601, 11, shim.key, "/sbin/tini", ns=ns, nspid=1, cgroup=DOCKER_A_PATH))
    sh = cache.apply(exec_event(602, 12, cinit.key, "/bin/sh", ns=ns, nspid=7, cgroup=DOCKER_A_PATH))
    sleeper = cache.apply(exec_event(603, 13, sh.key, "/bin/sleep", ns=ns, nspid=8, cgroup=DOCKER_A_PATH))
    cache.apply(exit_event(sh.key, 14))
    assert sleeper.tree_parent == cinit.key and sleeper.key in cinit.children
    # A host process whose parent dies goes to pid 1, not to the container's init.
    host_kid = cache.apply(exec_event(604, 15, shim.key, "/bin/true", ns=pidns(HOST_PIDNS)))
    cache.apply(exit_event(shim.key, 16))
    assert host_kid.tree_parent == init.key
    # The container's init itself lives in its parent's namespace for this purpose:
    # its parent's namespace has no init below pid 1, so pid 1 takes it.
    assert cinit.tree_parent == init.key
    assert walk_keys(cache)[:2] == [init.key, shell.key]
    check_invariants(cache)


def test_nested_pid_namespace_init_goes_to_its_parents_namespace_init():
    """The kernel picks the reaper in the dead parent's pid namespace: a
    container (ns B) started from inside another (ns A) whose starter dies
    goes to A's init, not to pid 1."""
    cache = ProcessCache()
    init, _ = boot(cache)
    a, b = pidns(4026533001), pidns(4026533002)
    a_init = cache.apply(exec_event(700, 10, init.key, "/sbin/init", ns=a, nspid=1))
    starter = cache.apply(exec_event(701, 11, a_init.key, "/usr/bin/runc", ns=a, nspid=20))
    b_init = cache.apply(exec_event(702, 12, starter.key, "/bin/sh", ns=b, nspid=1))
    cache.apply(exit_event(starter.key, 13))
    assert b_init.tree_parent == a_init.key
    check_invariants(cache)


def test_orphan_goes_to_the_current_parent_callbacks_answer():
    answers = {}
    cache = ProcessCache(current_parent=lambda pid: answers.get(pid))
    init, shell = boot(cache)
    reaper = cache.apply(exec_event(800, 10, shell.key, "/usr/lib/systemd/systemd", ("systemd", "--user")))
    mid = cache.apply(clone_event(801, 11, reaper.key))
    leaf = cache.apply(clone_event(802, 12, mid.key))
    other = cache.apply(clone_event(803, 13, mid.key))
    answers[802] = 800  # a subreaper: the kernel says so
    answers[803] = 4242  # a pid the cache does not know: fall back to the namespace init
    cache.apply(exit_event(mid.key, 14))
    assert leaf.tree_parent == reaper.key and leaf.key in reaper.children
    assert other.tree_parent == init.key
    check_invariants(cache)


def test_orphan_with_no_init_known_becomes_a_root():
    cache = ProcessCache()
    parent = cache.apply(exec_event(900, 10, NOBODY, "/bin/parent"))
    child = cache.apply(clone_event(901, 11, parent.key))
    cache.apply(exit_event(parent.key, 12))
    assert child.tree_parent == ROOT and child.key in cache.roots
    check_invariants(cache)


def test_walk_is_depth_first_each_after_its_parent_by_pid():
    cache = ProcessCache()
    init, shell = boot(cache)
    for pid, t in ((150, 10), (120, 11), (130, 12)):
        cache.apply(clone_event(pid, t, shell.key))
    cache.apply(clone_event(121, 13, ProcessKey(120, 11)))
    cache.apply(clone_event(50, 14, init.key))
    assert [(d, p.pid) for d, p in cache.walk()] == [(0, 1), (1, 50), (1, 100), (2, 120), (3, 121), (2, 130), (2, 150)]
    assert [p.pid for p in cache.subtree(cache.by_pid[120])] == [120, 121]
    check_invariants(cache)


# -- grace period and reference counts ----------------------------------------
def test_exited_process_visible_for_the_grace_period_then_gone():
    cache = ProcessCache(grace_ns=5 * SEC)
    _init, shell = boot(cache)
    job = cache.apply(exec_event(1000, 1 * SEC, shell.key, "/bin/make"))
    cache.apply(exit_event(job.key, 2 * SEC, code=2 << 8))
    assert not job.alive and job.in_grace and job.visible and 1000 not in cache.by_pid
    assert job.exit_time == 2 * SEC and job.exit.status == 2
    assert job.key in walk_keys(cache) and job.key in shell.children
    assert cache.expire(7 * SEC - 1) == 0
    assert job.in_grace and job.key in cache.procs
    assert cache.expire(7 * SEC) == 1
    assert job.key not in cache.procs and job.key not in walk_keys(cache) and not shell.children
    assert cache.counters.evicted == 1
    check_invariants(cache)


def test_expire_uses_event_time_when_not_given():
    cache = ProcessCache(grace_ns=10)
    _init, shell = boot(cache)
    job = cache.apply(exec_event(1000, 100, shell.key))
    cache.apply(exit_event(job.key, 101))
    cache.apply(exec_event(1001, 111, shell.key))
    assert cache.expire() == 1 and job.key not in cache.procs


def test_exited_parent_of_a_grace_child_keeps_its_image():
    cache = ProcessCache(grace_ns=10)
    init, shell = boot(cache)
    p = cache.apply(exec_event(1100, 100, shell.key, "/bin/p"))
    c = cache.apply(clone_event(1101, 101, p.key))
    cache.apply_all([exit_event(c.key, 102), exit_event(p.key, 103)])
    assert p.refs == 1 and c.refs == 0
    cache.expire(112)  # the child's grace is over
    assert c.key not in cache.procs and p.key in cache.procs and p.refs == 0
    cache.expire(113)
    assert p.key not in cache.procs
    assert set(cache.procs) == {init.key, shell.key}
    check_invariants(cache)


# -- loss and disorder -------------------------------------------------------------
def test_exit_of_an_unknown_process_makes_a_placeholder_and_a_miss():
    cache = ProcessCache(grace_ns=10)
    ghost = ProcessKey(1200, 50)
    proc = cache.apply(exit_event(ghost, 60, code=9))
    assert proc.not_found and proc.image is None and proc.binary == "" and proc.args == ()
    assert not proc.alive and proc.in_grace and proc.exit.signal_name == "SIGKILL"
    assert cache.counters.misses == 1 and 1200 not in cache.by_pid
    assert walk_keys(cache) == [ghost]
    check_invariants(cache)
    cache.expire(70)
    assert_empty(cache)


def test_clone_with_an_unknown_parent_makes_a_placeholder_and_a_miss():
    cache = ProcessCache()
    lost = ProcessKey(1300, 5)
    child = cache.apply(clone_event(1301, 10, lost))
    parent = cache.get(lost)
    assert parent is not None and parent.not_found and parent.image is None
    assert cache.counters.misses == 1
    assert child.parent == lost and child.tree_parent == lost and parent.children == {child.key: child}
    assert child.image is None  # nothing to copy
    assert parent.refs == 2 and cache.by_pid[1300] is parent
    assert walk_keys(cache) == [lost, child.key]
    check_invariants(cache)
    # The parent's exec arrives late: the placeholder is filled in.
    filled = cache.apply(exec_event(1300, 5, NOBODY, "/usr/sbin/sshd", time=20))
    assert filled is parent and not parent.not_found and parent.binary == "/usr/sbin/sshd"
    assert cache.counters.late == 1 and cache.counters.misses == 1
    check_invariants(cache)


def test_exec_under_the_same_key_replaces_the_image():
    """When the BPF exec-time map is full an exec keeps its start-time key:
    the cache shows the new image rather than the old one."""
    cache = ProcessCache()
    _init, shell = boot(cache)
    cache.apply(clone_event(200, 10, shell.key))
    ev = exec_event(200, 10, shell.key, "/usr/bin/curl", ("curl", "x"), time=15, cleanup=ProcessKey(200, 10))
    proc = cache.apply(ev)
    assert proc.binary == "/usr/bin/curl" and cache.by_pid[200] is proc and proc.alive
    assert cache.apply(ev) is proc and proc.image == ev  # the same event again changes nothing
    check_invariants(cache)


def test_exec_arriving_after_its_exit_fills_the_placeholder():
    cache = ProcessCache(grace_ns=100)
    init, shell = boot(cache)
    key = ProcessKey(1400, 50)
    cache.apply(exit_event(key, 60))
    proc = cache.apply(exec_event(1400, 50, shell.key, "/bin/late", time=55))
    assert proc.binary == "/bin/late" and not proc.not_found and cache.counters.late == 1
    assert not proc.alive and proc.in_grace and 1400 not in cache.by_pid
    assert proc.parent == shell.key and proc.tree_parent == shell.key and proc.key in shell.children
    assert shell.refs == 2
    check_invariants(cache)
    cache.expire(200)
    assert set(cache.procs) == {init.key, shell.key} and shell.refs == 1
    check_invariants(cache)


def test_new_process_on_a_held_pid_ends_the_older_one():
    cache = ProcessCache(grace_ns=10)
    _init, shell = boot(cache)
    old = cache.apply(exec_event(1500, 10, shell.key, "/bin/old", cgroup=DOCKER_A_PATH))
    new = cache.apply(clone_event(1500, 40, shell.key))  # the old one's exit was lost
    assert cache.counters.lost_exits == 1
    assert not old.alive and old.in_grace and old.exit is None and old.exit_time == 40
    assert cache.by_pid[1500] is new and new.alive
    assert DOCKER_A not in cache.containers
    check_invariants(cache)


def test_an_older_image_never_displaces_the_live_one():
    """Events for an older image of a pid arriving after a newer one (late
    clone, late exit placeholder) must not take the pid from the live image."""
    cache = ProcessCache(grace_ns=10)
    init, shell = boot(cache)
    live = cache.apply(exec_event(1600, 100, shell.key, "/bin/live"))
    # The exit of an earlier process with that pid, arriving late.
    ghost = cache.apply(exit_event(ProcessKey(1600, 50), 101))
    assert ghost.not_found and not ghost.alive
    assert cache.by_pid[1600] is live and live.alive and cache.counters.lost_exits == 0
    check_invariants(cache)
    # A clone of an earlier process with that pid, arriving late: it is over already.
    stale = cache.apply(clone_event(1600, 60, shell.key))
    assert cache.by_pid[1600] is live and live.alive and not stale.alive
    check_invariants(cache)
    # A late placeholder parent for an older image of that pid.
    kid = cache.apply(clone_event(1601, 70, ProcessKey(1600, 65), time=102))
    assert cache.by_pid[1600] is live and not cache.get(ProcessKey(1600, 65)).alive and kid.alive
    check_invariants(cache)
    # The live one still ends normally, and then nothing is left over.
    cache.apply_all([exit_event(live.key, 110), exit_event(kid.key, 111), exit_event(shell.key, 112)])
    cache.apply(exit_event(init.key, 113))
    cache.expire(10_000)
    assert_empty(cache)


def test_odd_input_never_raises():
    cache = ProcessCache(grace_ns=10)
    _init, shell = boot(cache)
    job = exec_event(1700, 10, shell.key)
    events = [
        job,
        job,  # duplicate
        exit_event(job.key, 11),
        exit_event(job.key, 12),  # duplicate exit
        clone_event(1701, 13, ProcessKey(0, 0)),  # parent pid 0
        exec_event(1702, 14, shell.key, cleanup=shell.key),  # cleanup of another pid
        exec_event(1703, 15, ProcessKey(1703, 15)),  # its own parent
        exec_event(1704, 16, shell.key, cleanup=ProcessKey(1704, 1)),  # unknown previous image
        clone_event(1705, 5, shell.key, time=17),  # old ktime
    ]
    for ev in events:
        cache.apply(ev)
        check_invariants(cache)
    for p in list(cache.live()):
        cache.apply(exit_event(p.key, 100))
    cache.expire(10_000)
    assert_empty(cache)


# -- cgroups and containers --------------------------------------------------------
def test_container_table_counts_live_processes():
    cache = ProcessCache(grace_ns=10)
    init, shell = boot(cache)
    shim = cache.apply(exec_event(1800, 100, init.key, "/usr/bin/containerd-shim-runc-v2", cgroup="/system.slice/containerd.service"))  # fmt: skip
    assert cache.containers == {}
    app = cache.apply(exec_event(1801, 110, shim.key, "/app", cgroup=DOCKER_A_PATH))
    assert cache.containers == {DOCKER_A: ContainerEntry(Container(DOCKER_A, "docker"), 110, 1)}
    worker = cache.apply(clone_event(1802, 120, app.key))
    assert worker.cgroup == DOCKER_A_PATH and cache.containers[DOCKER_A].processes == 2
    other = cache.apply(exec_event(1803, 125, shim.key, "/other", cgroup=DOCKER_B_PATH))
    assert cache.containers[DOCKER_B].processes == 1
    assert set(cache.cgroups[DOCKER_A_PATH]) == {app.key, worker.key}
    # A re-exec in the same container does not change the count.
    cache.apply(exec_event(1802, 126, app.key, "/bin/sh", cleanup=worker.key, cgroup=DOCKER_A_PATH))
    assert cache.containers[DOCKER_A].processes == 2
    check_invariants(cache)
    cache.apply(exit_event(ProcessKey(1802, 126), 130))
    assert cache.containers[DOCKER_A].processes == 1 and cache.containers[DOCKER_A].first_seen == 110
    cache.apply(exit_event(app.key, 140))
    assert DOCKER_A not in cache.containers and DOCKER_A_PATH not in cache.cgroups
    cache.apply(exit_event(other.key, 150))
    assert cache.containers == {}
    check_invariants(cache)
    # A container started again is seen anew.
    again = cache.apply(exec_event(1804, 200, shim.key, "/app", cgroup=DOCKER_A_PATH))
    assert cache.containers[DOCKER_A] == ContainerEntry(Container(DOCKER_A, "docker"), 200, 1)
    for p in (again, shim, shell, init):
        cache.apply(exit_event(p.key, 300))
    assert cache.cgroups == {} and cache.containers == {}
    cache.expire(1000)
    assert_empty(cache)


def cgroup_event(op: int, pid: int, path: str, time: int, hierarchy_id: int = 4, flags: int = 0) -> CgroupEvent:
    return CgroupEvent(
        time=time, op=op, pid=pid, nspid=pid, flags=flags, cgroup_id=1000 + len(path), tracker_id=1000 + len(path),
        level=path.count("/"), hierarchy_id=hierarchy_id, name=path.rsplit("/", 1)[-1], path=path,
    )  # fmt: skip


def test_attach_task_moves_a_process_in_the_tracked_hierarchy():
    cache = ProcessCache(grace_ns=10, cgroup_hierarchy=4)
    init, shell = boot(cache)
    app = cache.apply(exec_event(1950, 100, shell.key, "/app", cgroup="/user.slice"))
    worker = cache.apply(clone_event(1951, 110, app.key))
    moved = cache.apply(cgroup_event(wire.CGROUP_ATTACH_TASK, app.pid, DOCKER_A_PATH, 120))
    assert moved is app and app.cgroup == DOCKER_A_PATH and app.container == Container(DOCKER_A, "docker")
    assert set(cache.cgroups[DOCKER_A_PATH]) == {app.key}
    assert cache.containers == {DOCKER_A: ContainerEntry(Container(DOCKER_A, "docker"), 120, 1)}
    assert worker.cgroup == "/user.slice" and app.key not in cache.cgroups["/user.slice"]
    assert cache.now == 120
    # A child cloned afterwards inherits the new cgroup.
    child = cache.apply(clone_event(1952, 130, app.key))
    assert child.cgroup == DOCKER_A_PATH and cache.containers[DOCKER_A].processes == 2
    # Moving again, to another container.
    cache.apply(cgroup_event(wire.CGROUP_ATTACH_TASK, app.pid, DOCKER_B_PATH, 140))
    assert app.cgroup == DOCKER_B_PATH and cache.containers[DOCKER_A].processes == 1
    assert cache.containers[DOCKER_B].processes == 1
    check_invariants(cache)
    for p in (child, worker, app, shell, init):
        cache.apply(exit_event(p.key, 200))
    assert cache.cgroups == {} and cache.containers == {}
    cache.expire(1000)
    assert_empty(cache)


def test_cgroup_events_that_do_not_move_a_tracked_process():
    cache = ProcessCache(cgroup_hierarchy=4)
    _init, shell = boot(cache)
    app = cache.apply(exec_event(1960, 100, shell.key, "/app", cgroup="/user.slice"))
    ignored = [
        cgroup_event(wire.CGROUP_ATTACH_TASK, app.pid, DOCKER_A_PATH, 110, hierarchy_id=0),  # another hierarchy
        cgroup_event(wire.CGROUP_ATTACH_TASK, app.pid, DOCKER_A_PATH, 111, flags=wire.CGROUP_FLAG_THREAD_ONLY),
        cgroup_event(wire.CGROUP_ATTACH_TASK, 99999, DOCKER_A_PATH, 112),  # not a live process
        cgroup_event(wire.CGROUP_MKDIR, app.pid, DOCKER_A_PATH, 113),
        cgroup_event(wire.CGROUP_RMDIR, app.pid, "/user.slice", 114),
        cgroup_event(wire.CGROUP_RELEASE, app.pid, "/user.slice", 115),
    ]
    for ev in ignored:
        assert cache.apply(ev) is None
    assert app.cgroup == "/user.slice" and cache.containers == {} and 99999 not in cache.by_pid
    cache.apply(exit_event(app.key, 120))
    assert cache.apply(cgroup_event(wire.CGROUP_ATTACH_TASK, app.pid, DOCKER_A_PATH, 130)) is None  # exited
    assert app.cgroup == "/user.slice" and cache.containers == {}
    # Without a tracked hierarchy every cgroup event is ignored.
    blind = ProcessCache()
    p = blind.apply(exec_event(1961, 10, NOBODY, cgroup="/user.slice"))
    assert blind.apply(cgroup_event(wire.CGROUP_ATTACH_TASK, p.pid, DOCKER_A_PATH, 20, hierarchy_id=0)) is None
    assert p.cgroup == "/user.slice"
    check_invariants(cache)
    check_invariants(blind)


def test_cgroup_from_resolver_or_leaf_name():
    paths = {42: DOCKER_B_PATH}
    cache = ProcessCache(cgroup_path=paths.get)
    bpf = msgspec.structs.replace(exec_event(1900, 10, NOBODY), cgroup_path="", cgroup_id=42, cgroup_name="x")
    proc = cache.apply(bpf)
    assert proc.cgroup == DOCKER_B_PATH and proc.container == Container(DOCKER_B, "docker")
    leaf = f"docker-{DOCKER_A}.scope"
    unknown = msgspec.structs.replace(exec_event(1901, 11, NOBODY), cgroup_path="", cgroup_id=43, cgroup_name=leaf)
    proc2 = cache.apply(unknown)
    assert proc2.cgroup == leaf and proc2.container == Container(DOCKER_A, "docker")
    assert set(cache.cgroups) == {DOCKER_B_PATH, leaf}
    check_invariants(cache)


def test_cgroups_dict_empties():
    cache = ProcessCache(grace_ns=10)
    procs = [cache.apply(exec_event(2000 + i, 10 + i, NOBODY, cgroup=f"/user.slice/s{i % 3}.scope")) for i in range(9)]
    assert {path: len(m) for path, m in cache.cgroups.items()} == {f"/user.slice/s{i}.scope": 3 for i in range(3)}
    for i, p in enumerate(procs):
        cache.apply(exit_event(p.key, 100 + i))
        check_invariants(cache)
    assert cache.cgroups == {}
    cache.expire(1000)
    assert_empty(cache)


def test_shared_tables_stay_bounded(monkeypatch):
    """Every process in its own cgroup and directory (transient scopes, temp
    dirs): the cache must not keep one entry per string ever seen."""
    monkeypatch.setattr(Shared, "LIMIT", 1000)
    monkeypatch.setattr(cgroup_index, "MEMO_LIMIT", 1000)
    cache = ProcessCache(grace_ns=10)
    base = exec_event(2, 2, NOBODY)
    for i in range(5000):
        ev = msgspec.structs.replace(base, time=10 * i, key=ProcessKey(2, 10 * i), cwd=f"/tmp/t{i}",
                                 cgroup_path=f"/system.slice/run-r{i}.scope", cgroup_name=f"run-r{i}.scope")  # fmt: skip
        cache.apply(ev)
        cache.apply(exit_event(ev.key, 10 * i + 1))
    cache.expire()
    assert len(cache.procs) <= 2
    assert len(cache._shared._table) <= 1000 and len(cache.cgroup_index._containers_of) <= 1000
    # Values are still right after the tables started again.
    last = cache.apply(msgspec.structs.replace(base, time=10**9, key=ProcessKey(3, 10**9), cgroup_path=DOCKER_A_PATH))
    assert last.cgroup == DOCKER_A_PATH and cache.containers[DOCKER_A].processes == 1
    check_invariants(cache)


# -- a storm of short-lived processes -----------------------------------------------
STORM = 100_000
STORM_GAP = 50_000_000  # a new child every 50 ms: ~100 children per 5 s grace period


@pytest.fixture(scope="module")
def storm():
    """pid 1 and a shell; the shell starts STORM children (clone, exec, exit
    after 1 ms); pids wrap as in the kernel."""
    init = exec_event(1, 1, NOBODY, "/sbin/init", cgroup="/init.scope")
    shell = exec_event(100, 2, init.key, "/bin/bash", ("bash",), cgroup="/user.slice/session-1.scope")
    template = exec_event(2, 3, shell.key, "/bin/true", ("true",), cgroup="/user.slice/session-1.scope")
    events = [init, shell]
    t = 1_000
    for i in range(STORM):
        pid = 300 + i % 30_000
        clone = CloneEvent(t, ProcessKey(pid, t), pid, pid, shell.key, wire.FLAG_CLONE)
        run = msgspec.structs.replace(
            template, time=t + 1000, key=ProcessKey(pid, t + 1000), tid=pid, nspid=pid, cleanup=clone.key
        )
        events += [clone, run, exit_event(run.key, t + 1_000_000)]
        t += STORM_GAP
    return events


def _grace_images(cache: ProcessCache) -> int:
    """Images kept for processes in their grace period: each child's exec
    image and the clone image it replaced (its previous image)."""
    return sum(1 + (p.previous in cache.procs) for p in cache.procs.values() if p.in_grace)


def test_storm_leaves_only_live_processes_and_the_grace_window(storm):
    cache = ProcessCache()
    cache.apply_all(storm)
    cache.expire()
    last_exit = storm[-1].time
    in_grace = [p for p in cache.procs.values() if p.in_grace]
    # Exactly the children that exited within the grace window are still shown.
    expected = sum(1 for ev in storm[4::3] if ev.time + DEFAULT_GRACE_NS > last_exit)
    assert len(in_grace) == expected and 90 <= expected <= 110
    assert len(cache.by_pid) == 2  # pid 1 and the shell
    assert len(cache.procs) == 2 + 2 * expected == 2 + _grace_images(cache)
    assert cache.counters.evicted == 2 * (STORM - expected) and cache.counters.misses == cache.counters.lost_exits == 0
    assert {path: len(m) for path, m in cache.cgroups.items()} == {"/init.scope": 1, "/user.slice/session-1.scope": 1}
    assert len(cache.by_pid[100].children) == expected
    check_invariants(cache)
    # Once the window has passed only the live ones remain.
    cache.expire(last_exit + DEFAULT_GRACE_NS)
    assert set(cache.procs) == {storm[0].key, storm[1].key}
    assert cache.by_pid[100].refs == 1 and cache.by_pid[1].refs == 2
    check_invariants(cache)


def test_storm_with_periodic_expire_stays_small(storm):
    cache = ProcessCache()
    bound = 2 + 2 * (DEFAULT_GRACE_NS // STORM_GAP + 2) + 2  # live + images in grace + one in flight
    largest = 0
    for i, ev in enumerate(storm):
        cache.apply(ev)
        if i % 300 == 0:
            cache.expire()
            largest = max(largest, len(cache.procs))
    largest = max(largest, len(cache.procs))
    assert largest <= bound, (largest, bound)
    cache.expire(storm[-1].time + DEFAULT_GRACE_NS)
    assert set(cache.procs) == {storm[0].key, storm[1].key}
    check_invariants(cache)


# -- property tests: simulated kernel histories ---------------------------------------
CGROUPS = ("/init.scope", "/user.slice/session-1.scope", DOCKER_A_PATH, DOCKER_B_PATH,
           f"/kubepods/besteffort/pod1/{DOCKER_B}", "")  # fmt: skip
PIDS = range(2, 9)  # a small pid space: pids are reused all the time
GRACE = 20


@dataclass
class KTask:
    """A task as the simulated kernel sees it."""

    pid: int
    key: ProcessKey  # current image
    ppid: int
    pidns: int
    nspid: int
    cgroup: str
    subreaper: bool = False


class Kernel:
    """A tiny model of the kernel's process table: fork (optionally into a
    new pid namespace, then exec at once, as container runtimes do), exec,
    exit with the kernel's re-parenting (subreaper, else the init of the dead
    parent's pid namespace), and PR_SET_CHILD_SUBREAPER."""

    def __init__(self):
        self.t = 1
        self.tasks: dict[int, KTask] = {}
        self.inits = {HOST_PIDNS: 1}
        self.ns_parent: dict[int, int] = {}
        self.subreapers = False  # PR_SET_CHILD_SUBREAPER was ever used
        self.next_ns = 4026540000
        init = KTask(1, ProcessKey(1, self.t), 0, HOST_PIDNS, 1, "/init.scope")
        self.tasks[1] = init
        self.history: list = [self._exec_event(init, None)]
        self.snapshots: list = [self.snapshot()]

    def __repr__(self) -> str:
        return "Kernel(\n  " + "\n  ".join(map(_describe, self.history)) + "\n)"

    def tick(self) -> int:
        self.t += 1
        return self.t

    def snapshot(self) -> dict[int, tuple[ProcessKey, ProcessKey, str]]:
        return {pid: (k.key, self.tasks[k.ppid].key if k.ppid else NOBODY, k.cgroup) for pid, k in self.tasks.items()}

    def _emit(self, ev) -> None:
        self.history.append(ev)
        self.snapshots.append(self.snapshot())

    def _exec_event(self, task: KTask, cleanup: ProcessKey | None) -> ExecEvent:
        parent = self.tasks[task.ppid].key if task.ppid else NOBODY
        return exec_event(task.pid, task.key.ktime, parent, f"/bin/p{task.pid}", (f"p{task.pid}",), cleanup=cleanup,
                          ns=pidns(task.pidns), cgroup=task.cgroup, nspid=task.nspid)  # fmt: skip

    def fork(self, parent_pid: int, pid: int, new_ns: bool, cgroup: str) -> None:
        parent = self.tasks[parent_pid]
        t = self.tick()
        if new_ns:
            ns = self.next_ns = self.next_ns + 1
            self.ns_parent[ns] = parent.pidns
            task = KTask(pid, ProcessKey(pid, t), parent_pid, ns, 1, parent.cgroup)
            self.inits[ns] = pid
        else:
            task = KTask(pid, ProcessKey(pid, t), parent_pid, parent.pidns, pid + 1000 * (parent.pidns != HOST_PIDNS), parent.cgroup)  # fmt: skip
        self.tasks[pid] = task
        self._emit(CloneEvent(t, task.key, pid, task.nspid, parent.key, wire.FLAG_CLONE))
        if new_ns:  # runc: the container's init execs into its cgroup at once
            task.cgroup = cgroup
            self.exec(pid, cgroup)

    def exec(self, pid: int, cgroup: str | None) -> None:
        task = self.tasks[pid]
        old = task.key
        task.key = ProcessKey(pid, self.tick())
        if cgroup is not None:
            task.cgroup = cgroup  # moved (e.g. `docker exec`) before the exec
        self._emit(self._exec_event(task, old))

    def exit(self, pid: int) -> None:
        task = self.tasks[pid]
        if pid != 1 and self.inits.get(task.pidns) == pid:
            # A namespace's init dying takes the namespace (and those nested in it) with it.
            for other in sorted(self.tasks.values(), key=lambda k: -k.key.ktime):
                if other.pid != pid and self.tasks.get(other.pid) is other and self._within(other.pidns, task.pidns):
                    self.exit(other.pid)
            del self.inits[task.pidns]
        del self.tasks[pid]
        for child in self.tasks.values():
            if child.ppid == pid:
                child.ppid = self._reaper(task)
        self._emit(exit_event(task.key, self.tick()))

    def _within(self, ns: int, outer: int) -> bool:
        while ns != outer and ns in self.ns_parent:
            ns = self.ns_parent[ns]
        return ns == outer

    def _reaper(self, dead: KTask) -> int:
        ns_init = self.inits.get(dead.pidns, 1)
        up = dead.ppid
        while up and up != ns_init and up in self.tasks:
            if self.tasks[up].subreaper:
                return up
            up = self.tasks[up].ppid
        return ns_init if ns_init in self.tasks else 1

    def finish(self) -> None:
        """Everything exits, leaves first, pid 1 last."""
        while self.tasks:
            parents = {k.ppid for k in self.tasks.values()}
            leaf = max((k for k in self.tasks.values() if k.pid not in parents), key=lambda k: k.key.ktime)
            self.exit(leaf.pid)


def _describe(item) -> str:
    if isinstance(item, tuple):
        return f"expire({item[1]})"
    k = f"{item.key.pid}:{item.key.ktime}"
    if isinstance(item, ExecEvent):
        cleanup = f"{item.cleanup.pid}:{item.cleanup.ktime}" if item.cleanup not in (None, item.key) else "-"
        return f"exec {k} parent={item.parent.pid}:{item.parent.ktime} cleanup={cleanup} nspid={item.nspid} pidns={item.ns.pid} cg={item.cgroup_path!r}"
    if isinstance(item, CloneEvent):
        return f"clone {k} parent={item.parent.pid}:{item.parent.ktime} nspid={item.nspid} t={item.time}"
    return f"exit {k} t={item.time}"


def test_an_exec_under_a_process_that_was_given_its_placeholder_makes_no_cycle():
    """Found by the property below: B's parent A exits unseen (its pid is
    reused), and the kernel says B's parent is now pid 6, known only as a
    placeholder (the parent named by a clone whose exec is late). When 6's
    exec arrives, its parent is B: the link B → 6 goes (B to init), not the
    exec's, and the tree stays a tree."""
    kernel_ppid = {2: 6}
    cache = ProcessCache(grace_ns=GRACE, current_parent=kernel_ppid.get)
    init = exec_event(1, 1, NOBODY, "/sbin/init", ns=pidns(HOST_PIDNS))
    a = exec_event(3, 2, init.key, "/bin/a", ns=pidns(HOST_PIDNS))
    b = exec_event(2, 3, a.key, "/bin/b", ns=pidns(HOST_PIDNS))
    six = ProcessKey(6, 5)
    cache.apply_all([init, a, b, clone_in(3, 6, six, 3)])  # pid 3 again, cloned by 6, whose exec is late
    assert cache.get(b.key).tree_parent == six  # given to the placeholder, as the kernel said
    cache.apply(exec_event(6, 5, b.key, "/bin/six", ns=pidns(HOST_PIDNS), time=7))
    check_invariants(cache)
    assert cache.get(six).tree_parent == b.key and cache.get(b.key).tree_parent == init.key


@st.composite
def histories(draw, subreapers: bool = True):
    """Kernel histories: half the time the newest task forks (deep chains,
    namespaces nested in namespaces) and a parent exits (orphans)."""
    kernel = Kernel()
    for _ in range(draw(st.integers(0, 45))):
        op = draw(st.sampled_from(("fork", "fork", "exec", "exit", "expire", "subreaper")))
        live = sorted(kernel.tasks)
        newest = max(kernel.tasks.values(), key=lambda k: k.key.ktime).pid
        if op == "fork":
            free = [p for p in PIDS if p not in kernel.tasks]
            if free:
                parent = draw(st.sampled_from(live) | st.just(newest))
                kernel.fork(
                    parent,
                    draw(st.sampled_from(free) | st.just(free[0])),
                    draw(st.integers(0, 3)) == 0,
                    draw(st.sampled_from(CGROUPS)),
                )
        elif op == "exec":
            kernel.exec(draw(st.sampled_from(live)), draw(st.none() | st.sampled_from(CGROUPS)))
        elif op == "exit" and len(live) > 1:
            parents = sorted({k.ppid for k in kernel.tasks.values()} - {0, 1})
            kernel.exit(draw(st.sampled_from(live[1:]) | (st.sampled_from(parents) if parents else st.nothing())))
        elif op == "expire":
            kernel.t += draw(st.integers(0, 2 * GRACE))
            kernel.history.append(("expire", kernel.t))
            kernel.snapshots.append(kernel.snapshot())
        elif op == "subreaper" and subreapers:
            kernel.tasks[draw(st.sampled_from(live))].subreaper = kernel.subreapers = True
    return kernel


def _apply(cache: ProcessCache, item) -> None:
    if isinstance(item, tuple):
        cache.expire(item[1])
    else:
        cache.apply(item)


def _drain(cache: ProcessCache, t: int) -> None:
    """Exit whatever the cache still thinks runs (exits that were lost),
    then let every grace period pass: nothing may be left."""
    for proc in list(cache.live()):
        cache.apply(exit_event(proc.key, t))
        check_invariants(cache)
    assert not any(p.alive for p in cache.procs.values())
    cache.expire(t + 10 * GRACE)
    check_invariants(cache)
    assert_empty(cache)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.booleans().flatmap(lambda ask: st.tuples(histories(subreapers=ask), st.just(ask))))
def test_lossless_history_matches_the_kernel(case):
    """In order and nothing lost: the cache's live processes, their current
    parents and cgroups are the kernel's, after every event. Without the
    current_parent callback there are no subreapers to know about."""
    kernel, ask_kernel = case
    current: dict = {}
    cache = ProcessCache(grace_ns=GRACE, current_parent=(lambda pid: current[pid][1].pid if pid in current else None) if ask_kernel else None)  # fmt: skip
    kernel.finish()
    for item, snap in zip(kernel.history, kernel.snapshots, strict=True):
        current = snap
        _apply(cache, item)
        check_invariants(cache)
        seen = {pid: (p.key, p.tree_parent, p.cgroup) for pid, p in cache.by_pid.items()}
        assert seen == snap, (_describe(item), {pid: (seen.get(pid), snap.get(pid)) for pid in seen.keys() | snap.keys() if seen.get(pid) != snap.get(pid)})  # fmt: skip
        live_cgroups: dict = {}
        for key, _, path in snap.values():
            if path:
                live_cgroups.setdefault(path, set()).add(key)
        assert {path: set(m) for path, m in cache.cgroups.items()} == live_cgroups
    assert cache.counters.misses == cache.counters.lost_exits == cache.counters.late == 0
    assert not any(p.not_found for p in cache.procs.values())
    _drain(cache, kernel.t + 1)


@PROPERTY
@given(histories(), st.data())
def test_lossy_disordered_history_keeps_invariants(kernel, data):
    """Events dropped and some delivered late (per-CPU buffers), then every
    process exits: invariants hold after each event and nothing leaks."""
    drop = data.draw(st.sampled_from((0.0, 0.1, 0.3)))
    swap = data.draw(st.sampled_from((0.0, 0.1, 0.3)))
    rng = data.draw(st.randoms(use_true_random=False))
    items = [ev for ev in kernel.history if isinstance(ev, tuple) or rng.random() >= drop]
    # Some events are late by up to three places (expire calls stay put).
    late = [
        i + (rng.randint(1, 3) + 0.5 if not isinstance(ev, tuple) and rng.random() < swap else 0)
        for i, ev in enumerate(items)
    ]
    items = [ev for _, ev in sorted(zip(late, items, strict=False), key=lambda pair: pair[0])]
    note("delivered:\n  " + "\n  ".join(map(_describe, items)))
    answers = data.draw(st.booleans())
    cache = ProcessCache(grace_ns=GRACE, current_parent=(lambda pid: kernel.tasks[pid].ppid if pid in kernel.tasks else None) if answers else None)  # fmt: skip
    for item in items:
        _apply(cache, item)
        check_invariants(cache)
    # The rest of the history (everything exits) arrives intact.
    start = len(kernel.history)
    kernel.finish()
    for item in kernel.history[start:]:
        _apply(cache, item)
        check_invariants(cache)
    _drain(cache, kernel.t + 1)


def test_stale_current_parent_answer_never_makes_a_cycle():
    """The kernel answers for now; the cache is behind. If the orphan's pid
    answer names a pid the cache still gives to one of the orphan's own
    descendants, taking it would make a cycle and drop both from the tree."""
    cache = ProcessCache(current_parent=lambda pid: {3: 4}.get(pid))
    init, shell = boot(cache)
    mid = cache.apply(clone_event(2, 10, shell.key))
    orphan = cache.apply(clone_event(3, 11, mid.key))
    below = cache.apply(clone_event(5, 12, orphan.key))
    grandchild = cache.apply(clone_event(4, 13, below.key))  # the cache's pid 4: below the orphan
    cache.apply(exit_event(mid.key, 14))
    assert orphan.tree_parent == init.key and grandchild.tree_parent == below.key
    check_invariants(cache)


def test_late_child_of_a_replaced_image_goes_under_its_newest_image():
    """A clone event arriving after its parent's exec names the parent's
    previous image: the kernel's parent is the same task, now the new image."""
    cache = ProcessCache()
    _init, shell = boot(cache)
    wrapper = cache.apply(exec_event(2100, 10, shell.key, "/entrypoint.sh"))
    server = cache.apply(exec_event(2100, 12, shell.key, "/usr/sbin/server", cleanup=wrapper.key))
    helper = cache.apply(clone_event(2101, 11, wrapper.key, time=13))  # forked before the exec, seen after
    assert helper.parent == wrapper.key and helper.binary == "/entrypoint.sh"  # cloned from the old image
    assert helper.tree_parent == server.key and helper.key in server.children and helper.key not in cache.roots
    check_invariants(cache)


def test_the_second_proc_scan_settles_what_happened_before_the_probes():
    """The monitor draws a first /proc scan before the probes are attached
    and takes a second once they are: a process only the first found has
    exited unseen; one found again with another command exec'd unseen; one
    the probes have seen since is theirs; a new one is added."""
    P = wire.FLAG_PROCFS
    cache = ProcessCache()
    init = exec_event(1, 10, ROOT, "/sbin/init", flags=P)
    gone = exec_event(50, 20, init.key, "/bin/sleep", ("9",), flags=P)
    execd = exec_event(60, 30, init.key, "/bin/sh", flags=P)
    seen = exec_event(70, 40, init.key, "/bin/old", flags=P)
    cache.apply_all([init, gone, execd, seen])
    cache.apply(exec_event(70, 45 * SEC, init.key, "/bin/new", cleanup=seen.key))  # the probes saw this one
    second = [init, exec_event(60, 30, init.key, "/usr/bin/python3", ("-c", "1"), flags=P),
              exec_event(70, 40, init.key, "/bin/old", flags=P), exec_event(80, 50, init.key, "/bin/cat", flags=P)]  # fmt: skip
    cache.rescan(second)
    cache.apply_all(second)
    assert not cache.procs[gone.key].alive
    assert cache.by_pid[60].image.binary == "/usr/bin/python3" and cache.by_pid[60].image.args == ("-c", "1")
    assert cache.by_pid[70].image.binary == "/bin/new"
    assert cache.by_pid[80].image.binary == "/bin/cat"
    assert sorted(cache.by_pid) == [1, 60, 70, 80]
