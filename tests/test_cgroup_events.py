"""Cgroup events from the kernel (MsgCgroupEvent): real cgroups made in a
v1 hierarchy (memory) and in the v2 one, a process moved into them, then
removed. Root and BPF needed; with PROCSCOPE_REQUIRE_BPF=1 they fail, not
skip, when something is missing."""

import json
import os
import signal
import subprocess
import uuid

import pytest

from procscope.cache import ProcessCache
from procscope.probes import cgroups, wire
from procscope.probes.events import CgroupEvent, ExecEvent, ProcessKey

from .conftest import REQUIRE_BPF, evacuate, unique_copy

CGROUP_ROOT = "/sys/fs/cgroup"


def _mount_of(kind: str) -> tuple[str, int]:
    """(mountpoint, hierarchy id) of the memory v1 hierarchy or the v2 one."""
    want = ("cgroup", "memory") if kind == "memory" else ("cgroup2", None)
    for fstype, mnt, opts in cgroups._mounts():
        if fstype == want[0] and (want[1] is None or want[1] in opts):
            return mnt, cgroups.v1_hierarchy_ids().get("memory", -1) if kind == "memory" else 0
    message = f"no {kind} cgroup hierarchy mounted"
    if REQUIRE_BPF:
        pytest.fail(f"PROCSCOPE_REQUIRE_BPF=1 but {message}", pytrace=False)
    pytest.skip(message)


def _is(op: int, **fields):
    def pred(e):
        return isinstance(e, CgroupEvent) and e.op == op and all(getattr(e, k) == v for k, v in fields.items())

    return pred


@pytest.fixture(params=["memory", "unified"])
def hierarchy(request):
    mount, hid = _mount_of(request.param)
    top = os.path.join(mount, f"procscope-test-{uuid.uuid4().hex[:10]}")
    yield mount, hid, top
    evacuate(mount, top)


@pytest.mark.bpf
def test_collector_reports_the_tracked_hierarchy_id(live):
    h = live.collector.hierarchy
    assert live.collector.hierarchy_id == h.hierarchy_id
    if h.controller is None:
        assert h.hierarchy_id == 0
    else:
        assert h.hierarchy_id == cgroups.v1_hierarchy_ids()[h.controller] > 0


@pytest.mark.bpf
def test_mkdir_attach_rmdir_release(live, hierarchy):
    mount, hid, top = hierarchy
    child = os.path.join(top, "inner")
    rel_top, rel_child = top[len(mount) :], child[len(mount) :]
    os.mkdir(top)
    os.mkdir(child)
    ids = {rel_top: os.stat(top).st_ino, rel_child: os.stat(child).st_ino}
    me = os.getpid()

    for rel, level in ((rel_top, 1), (rel_child, 2)):
        ev = live.wait_for(_is(wire.CGROUP_MKDIR, path=rel, hierarchy_id=hid))
        assert (ev.cgroup_id, ev.tracker_id, ev.level) == (ids[rel], ids[rel], level)
        assert ev.name == os.path.basename(rel) and ev.pid == me and ev.flags == 0
        assert ev.op_name == "MKDIR"

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(child, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        ev = live.wait_for(_is(wire.CGROUP_ATTACH_TASK, pid=sleeper.pid, hierarchy_id=hid))
        assert (ev.cgroup_id, ev.path, ev.name, ev.level, ev.flags) == (ids[rel_child], rel_child, "inner", 2, 0)
        assert ev.op_name == "ATTACH_TASK"
        with open(f"/proc/{sleeper.pid}/cgroup") as f:
            assert any(line.split(":", 2)[2] == rel_child for line in f.read().splitlines())
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()

    evacuate(mount, top)
    for rel in (rel_child, rel_top):
        ev = live.wait_for(_is(wire.CGROUP_RMDIR, path=rel, hierarchy_id=hid))
        assert ev.cgroup_id == ids[rel] and ev.pid == me and ev.level == rel.count("/")
    # The kernel releases a removed cgroup later, from a kworker: the same
    # cgroup, sent by another task.
    for rel in (rel_child, rel_top):
        ev = live.wait_for(_is(wire.CGROUP_RELEASE, path=rel, hierarchy_id=hid))
        assert ev.cgroup_id == ids[rel] and ev.name == os.path.basename(rel) and ev.pid != me
    assert not any(live.collector.counters().sent_failed.get("CGROUP", {}).values())


@pytest.mark.bpf
def test_cache_follows_a_process_moved_in_the_tracked_hierarchy(live, scratch):
    h = live.collector.hierarchy
    mount = h.mountpoint
    top = os.path.join(mount, f"procscope-test-{uuid.uuid4().hex[:10]}")
    binary = unique_copy("/bin/sleep", scratch)
    sleeper = subprocess.Popen([binary, "60"])
    try:
        exec_ev = live.exec_of(binary)
        os.mkdir(top)
        with open(os.path.join(top, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        rel = top[len(mount) :]
        attach = live.wait_for(_is(wire.CGROUP_ATTACH_TASK, pid=sleeper.pid, hierarchy_id=h.hierarchy_id))
        cache = ProcessCache(cgroup_path=cgroups.PathIndex(h).path, cgroup_hierarchy=live.collector.hierarchy_id)
        events = live.matching(lambda e: True)
        cache.apply_all(events[events.index(exec_ev) : events.index(attach) + 1])
        proc = cache.get(exec_ev.key)
        assert proc is not None and proc.alive and proc.cgroup == rel
        assert set(cache.cgroups[rel]) == {exec_ev.key}
    finally:
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
        evacuate(mount, top)


@pytest.mark.bpf
def test_moving_one_thread_is_flagged(live, scratch):
    """A v1 cgroup.tasks write moves one thread; the event says so (the
    process, as /proc/PID/cgroup shows it, stays)."""
    mount, hid = _mount_of("memory")
    top = os.path.join(mount, f"procscope-test-{uuid.uuid4().hex[:10]}")
    code = "import threading, time, ctypes, sys; threading.Thread(target=lambda: (print(ctypes.CDLL(None).gettid(), flush=True), time.sleep(60))).start(); time.sleep(60)"
    proc = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        tid = int(proc.stdout.readline())
        assert tid != proc.pid
        os.mkdir(top)
        with open(os.path.join(top, "tasks"), "w") as f:
            f.write(str(tid))
        ev = live.wait_for(_is(wire.CGROUP_ATTACH_TASK, pid=proc.pid, hierarchy_id=hid))
        assert ev.flags == wire.CGROUP_FLAG_THREAD_ONLY and ev.nspid == tid
        assert ev.path == top[len(mount) :]
    finally:
        proc.kill()
        proc.wait()
        evacuate(mount, top)


@pytest.mark.bpf
def test_cache_keeps_the_cgroup_tree(live):
    """Cgroups made and removed in the tracked hierarchy appear in and leave
    the cache's cgroup tree, as the directories do."""
    h = live.collector.hierarchy
    top = os.path.join(h.mountpoint, f"procscope-test-{uuid.uuid4().hex[:10]}")
    inner = os.path.join(top, "inner")
    rel_top, rel_inner = top[len(h.mountpoint) :], inner[len(h.mountpoint) :]
    cache = ProcessCache(cgroup_hierarchy=h.hierarchy_id)
    os.makedirs(inner)
    try:
        mkdir = live.wait_for(_is(wire.CGROUP_MKDIR, path=rel_inner, hierarchy_id=h.hierarchy_id))
        cache.apply_all(e for e in live.matching(lambda e: isinstance(e, CgroupEvent)) if e.time <= mkdir.time)
        assert cache.cgroup_tree[rel_top] == {rel_inner} and cache.cgroup_tree[rel_inner] == set()
        assert rel_top in cache.cgroup_tree["/"]
        assert sorted(os.listdir(top)) and os.path.isdir(inner)
    finally:
        evacuate(h.mountpoint, top)
    rmdir = live.wait_for(_is(wire.CGROUP_RMDIR, path=rel_top, hierarchy_id=h.hierarchy_id))
    cache.apply_all(e for e in live.matching(lambda e: isinstance(e, CgroupEvent)) if mkdir.time < e.time <= rmdir.time)
    assert rel_top not in cache.cgroup_tree and rel_inner not in cache.cgroup_tree
    assert rel_top not in cache.cgroup_tree["/"]


def test_recorded_cgroup_events_replay_into_the_cache(tmp_path):
    """A recording keeps cgroup events (procscope_cgroup lines): replayed,
    a process moved into a container's cgroup moves there again."""
    from procscope.export import Exporter
    from procscope.replay import Replay

    from .factories import exec_event

    cid = "3f2a" * 16
    sleeper = exec_event(4242, 10**9, ProcessKey(0, 0), binary="/bin/sleep", cgroup="/user.slice")
    events = [
        sleeper,
        CgroupEvent(sleeper.time + 1, wire.CGROUP_MKDIR, 1, 1, 0, 77, 77, 2, 4, cid, f"/docker/{cid}"),
        CgroupEvent(sleeper.time + 2, wire.CGROUP_ATTACH_TASK, 4242, 4242, 0, 77, 77, 2, 4, cid, f"/docker/{cid}"),
    ]
    cache = ProcessCache(cgroup_hierarchy=4)
    exporter = Exporter(cache, node="n", wall_offset=0)
    lines = []
    for ev in events:
        proc = cache.apply(ev)
        lines.append(exporter.exec_event(proc) if isinstance(ev, ExecEvent) else exporter.cgroup_event(ev))
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    replay = Replay(str(path))
    again = replay.new_cache(5 * 10**9)
    replay.feed(again)
    proc = again.by_pid[4242]
    assert proc.cgroup == f"/docker/{cid}" and proc.container.id == cid
    assert again.containers[cid].processes == 1 and f"/docker/{cid}" in again.cgroup_tree["/docker"]
    # Exported after the move (its exit, say), the cgroup is the new one: path, id and name.
    moved = exporter.process(cache.by_pid[4242])["procscope"]["cgroup"]
    assert moved == {"id": "77", "name": cid, "path": f"/docker/{cid}"}
    assert exporter.process(cache.by_pid[4242])["docker"] == cid[:31]
