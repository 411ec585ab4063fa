"""The per-cgroup rate limit (--cgroup-rate): the sliding window and the
START/STOP logic on their own, then as Tetragon tests it, on real cgroups
with the BPF side: a burst of execs in one cgroup gives exactly one START,
then one STOP, and suppressed + received == made; other cgroups unaffected."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from procscope.cache import ProcessCache
from procscope.export import Exporter
from procscope.live_cache import live_cache
from procscope.probes import cgroups, wire
from procscope.probes.events import CgroupEvent, ExecEvent, ThrottleEvent, ThrottleMsg
from procscope.probes.throttle import RateError, RateLimit, ThrottleMonitor, Window, parse_rate
from procscope.replay import Replay

from .conftest import (
    Live,
    bpf_unavailable,
    evacuate,
    open_collector,
    strictcheck_finds_only_our_extras,
    tetra_reads_every_line,
    unique_copy,
)

S = 1_000_000_000


def test_parse_rate():
    assert parse_rate("1000,1s") == RateLimit(1000, S)
    assert parse_rate("10, 2s") == RateLimit(10, 2 * S)
    assert parse_rate("100,1m") == RateLimit(100, 60 * S)
    assert parse_rate("50,500ms") == RateLimit(50, S // 2)
    for bad in ("1000", "1000,1", "x,1s", "10,1d"):
        with pytest.raises(RateError, match="EVENTS,INTERVAL"):
            parse_rate(bad)
    for bad in ("0,1s", "99999999999999999999,1s", "10,100h", "10,0.1ms"):
        with pytest.raises(RateError, match="must be from"):  # bounds that keep the BPF arithmetic exact
            parse_rate(bad)


def test_window_rate_decays_while_silent():
    # 30 events in the window starting at 10 s, interval 2 s.
    w = Window(curr=30, prev=0, time=10 * S, throttled=0)
    assert w.rate_at(11 * S, 2 * S) == 30  # same window
    assert w.rate_at(13 * S, 2 * S) == pytest.approx(15)  # next window, half of the previous one still counts
    assert w.rate_at(14 * S + 1, 2 * S) == 0  # two windows on: nothing


class Maps:
    """Rate map contents as the BPF side leaves them, per cgroup and CPU."""

    def __init__(self):
        self.rates: dict[int, list[Window]] = {}
        self.counts: dict[int, tuple] = {}
        self.cleared: list[int] = []

    def windows(self, cgroup_id):
        return self.rates.get(cgroup_id)

    def clear_throttled(self, cgroup_id):
        self.cleared.append(cgroup_id)
        for w in self.rates[cgroup_id]:
            w.throttled = 0

    def suppressed(self, cgroup_id):
        return self.counts.get(cgroup_id, (0, 0, 0))

    def forget(self, cgroup_id):
        self.counts.pop(cgroup_id, None)


def test_one_start_per_cgroup_then_stop_after_quiet():
    maps = Maps()
    mon = ThrottleMonitor(RateLimit(10, 2 * S), maps, hierarchy_id=4)
    # Two CPUs cross the limit: one START.
    assert [e.type for e in mon.handle(ThrottleMsg(100 * S, 7, 7, "busy"), 100 * S)] == [wire.THROTTLE_START]
    assert mon.handle(ThrottleMsg(100 * S + 5, 7, 7, "busy"), 100 * S) == []
    maps.rates[7] = [Window(40, 0, 100 * S, 100 * S), Window(12, 0, 100 * S, 100 * S)]
    maps.counts[7] = (30, 29, 31)
    assert mon.check(101 * S) == []  # still over the limit
    assert mon.check(104 * S) == []  # under it since 104 s: not for 5 s yet
    assert mon.check(108 * S) == []
    (stop,) = mon.check(109 * S)
    assert (stop.type, stop.cgroup_id, stop.name, stop.suppressed) == (wire.THROTTLE_STOP, 7, "busy", (30, 29, 31))
    assert maps.cleared == [7] and all(w.throttled == 0 for w in maps.rates[7])
    # A second episode reports only what it suppressed.
    mon.handle(ThrottleMsg(200 * S, 7, 7, "busy"), 200 * S)
    maps.counts[7] = (35, 29, 33)
    maps.rates[7] = [Window(0, 0, 200 * S, 0)]
    mon.check(201 * S)
    (stop,) = mon.check(206 * S)
    assert stop.suppressed == (5, 0, 2)


def test_rmdir_stops_and_forgets():
    maps = Maps()
    mon = ThrottleMonitor(RateLimit(10, S), maps, hierarchy_id=4)
    mon.handle(ThrottleMsg(S, 9, 9, "gone"), S)
    maps.counts[9] = (3, 0, 1)
    other_hierarchy = CgroupEvent(2 * S, wire.CGROUP_RMDIR, 1, 1, 0, 9, 9, 1, 5, "gone", "/gone")
    assert mon.handle(other_hierarchy, 2 * S) == [] and 9 in mon.active
    rmdir = CgroupEvent(2 * S, wire.CGROUP_RMDIR, 1, 1, 0, 9, 9, 1, 4, "gone", "/gone")
    (stop,) = mon.handle(rmdir, 2 * S)
    assert stop.type == wire.THROTTLE_STOP and stop.suppressed == (3, 0, 1)
    assert 9 not in mon.active and 9 not in maps.counts


def test_throttle_events_export_and_replay(tmp_path):
    cache = ProcessCache()
    start = ThrottleEvent(5 * S, wire.THROTTLE_START, 42, "docker-" + "ab" * 32 + ".scope", path="/docker/" + "ab" * 32)
    stop = ThrottleEvent(9 * S, wire.THROTTLE_STOP, 42, start.name, (7, 6, 5), start.path)
    exporter = Exporter(cache, node="n1", wall_offset=0)
    lines = []
    for ev in (start, stop):
        cache.apply(ev)
        lines.append(exporter.throttle_event(ev))
    assert lines[0]["process_throttle"] == {"type": "THROTTLE_START", "cgroup": start.name,
                                            "procscope": {"cgroup_id": "42", "path": start.path}}  # fmt: skip
    assert lines[1]["process_throttle"]["procscope"]["suppressed"] == {"exec": 7, "clone": 6, "exit": 5}
    t = cache.throttles[42]
    assert not t.active and t.suppressed == (7, 6, 5) and t.container.id == "ab" * 32
    exporter.tetragon_only = True
    assert exporter.throttle_event(stop)["process_throttle"] == {"type": "THROTTLE_STOP", "cgroup": start.name}
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert list(Replay(str(path)).events()) == [start, stop]


# -- on real cgroups ---------------------------------------------------------------------------


@pytest.fixture
def rated():
    collector = open_collector(scan_proc=False, cgroup_rate=RateLimit(10, 2 * S))
    collector.start()
    live = Live(collector)
    yield live
    live.close()
    collector.stop()


def _cgroup(collector) -> tuple[str, int]:
    path = os.path.join(collector.hierarchy.mountpoint, f"procscope-test-{uuid.uuid4().hex[:10]}")
    os.mkdir(path)
    return path, os.stat(path).st_ino


def _run_in(cgroup: str, binary: str, n: int) -> None:
    """n execs of binary by a shell moved into the cgroup (the loop is the shell's own)."""
    loop = f"echo $$ > {cgroup}/cgroup.procs; i=0; while [ $i -lt {n} ]; do {binary}; i=$((i+1)); done"
    subprocess.run(["sh", "-c", loop], check=True)


@pytest.mark.bpf
def test_burst_in_one_cgroup_is_throttled_then_resumes(rated, scratch):
    mount = rated.collector.hierarchy.mountpoint
    busy, busy_id = _cgroup(rated.collector)
    calm, calm_id = _cgroup(rated.collector)
    binary = unique_copy("/bin/true", scratch)
    try:
        _run_in(busy, binary, 40)
        _run_in(calm, binary, 2)  # 7 events (a clone, exec and exit each, the shell's exit): under 10
        mine = lambda ev, cid: isinstance(ev, ThrottleEvent) and ev.cgroup_id == cid  # noqa: E731
        start = rated.wait_for(lambda e: mine(e, busy_id) and e.type == wire.THROTTLE_START, timeout=5)
        stop = rated.wait_for(lambda e: mine(e, busy_id) and e.type == wire.THROTTLE_STOP, timeout=20)
        assert start.name == stop.name == os.path.basename(busy) and stop.time > start.time
        throttles = rated.matching(lambda e: mine(e, busy_id))
        assert [e.type for e in throttles] == [wire.THROTTLE_START, wire.THROTTLE_STOP]

        def execs(cid):
            return rated.matching(lambda e: isinstance(e, ExecEvent) and e.binary == binary and e.cgroup_id == cid)

        received = len(execs(busy_id))
        assert 0 < received < 40  # the first ones went out, then the limit held
        assert received + stop.suppressed[wire.RATE_OPS.index("exec")] == 40
        # The calm cgroup: never throttled, every exec delivered.
        assert not rated.matching(lambda e: mine(e, calm_id)) and len(execs(calm_id)) == 2
        # Exits suppressed while throttled leave no ghosts: at STOP the
        # cache asks /proc about the cgroup's processes.
        events = rated.matching(lambda e: True)
        cache = live_cache(rated.collector.hierarchy)
        cache.apply_all(events[: events.index(stop)])
        ghosts = sum(1 for p in cache.live() if p.binary == binary)
        cache.apply(stop)
        assert not [p for p in cache.live() if p.binary == binary] and cache.counters.lost_exits >= ghosts
        assert cache.throttles[busy_id].path == "/" + os.path.basename(busy)
        # Events flow again after the STOP.
        _run_in(busy, binary, 1)
        rated.wait_for(lambda e: isinstance(e, ExecEvent) and e.cgroup_id == busy_id and e.time > stop.time)
        counters = rated.collector.counters()
        assert counters.suppressed["exec"] >= stop.suppressed[0]
        assert counters.suppressed_by_cgroup[os.path.basename(busy)]["exec"] == 40 - received
        assert counters.kernel_dropped == 0
    finally:
        evacuate(mount, busy)
        evacuate(mount, calm)
    # The cgroup's rate state goes with it.
    rated.wait_for(lambda e: isinstance(e, CgroupEvent) and e.op == wire.CGROUP_RMDIR and e.cgroup_id == busy_id)
    assert rated.collector.throttle.maps.windows(busy_id) is None


@pytest.mark.bpf
def test_events_command_writes_throttle_lines(scratch, tmp_path):
    """`procscope events --cgroup-rate` end to end: START and STOP lines
    naming the cgroup, with the suppressed counts."""
    mount = cgroups.detect().mountpoint
    busy = os.path.join(mount, f"procscope-test-{uuid.uuid4().hex[:10]}")
    os.mkdir(busy)
    binary = unique_copy("/bin/true", scratch)
    out = tmp_path / "rec.jsonl"
    cmd = [sys.executable, "-m", "procscope.cli", "events", "--cgroup-rate", "10,1s", "--duration", "14",
           "--bin", os.path.basename(binary), "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # starts collecting after compiling and attaching
            if "collecting" in line:
                break
        else:
            bpf_unavailable(f"procscope events could not start (exit {proc.wait()})")
        _run_in(busy, binary, 30)
        _, err = proc.communicate(timeout=60)
    finally:
        evacuate(mount, busy)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    name = os.path.basename(busy)
    throttles = [x["process_throttle"] for x in lines if x.get("process_throttle", {}).get("cgroup") == name]
    assert [t["type"] for t in throttles] == ["THROTTLE_START", "THROTTLE_STOP"]
    assert throttles[0]["procscope"]["path"] == "/" + name
    execs = [x for x in lines if "process_exec" in x and x["process_exec"]["process"]["binary"] == binary]
    assert len(execs) + throttles[1]["procscope"]["suppressed"]["exec"] == 30
    assert "suppressed by --cgroup-rate" in err
    tetra_reads_every_line(str(out))  # throttle lines too
    strictcheck_finds_only_our_extras(str(out))
