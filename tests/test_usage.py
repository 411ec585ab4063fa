"""What processes and the machine use (issue 27): the sampler's figures
against what the kernel says in /proc, and the monitor as an htop user
tries it: `yes` first after P, a 300 MB allocation first after M, the
header at 80x24 leaving the list 15 rows."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from procscope import describe
from procscope.probes.events import ProcessKey
from procscope.probes.procfs import TICK_NS, start_key
from procscope.probes.usage import CPUS, Reading, read_process
from procscope.replay import Replay
from procscope.sampler import FULL_PASSES, SLICES, Sampler
from procscope.tui.app import ProcscopeApp
from procscope.tui.sources import LiveSource, ProcfsSource, ReplaySource
from procscope.tui.status import fit as status_line
from procscope.tui.widgets.meters import Bars

from .conftest import open_collector, plain, wait_for

HOLD = 300 << 20


def parent_pid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return None  # gone


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:  # bytes: a process's name may be anything
        kib = next(line.split()[1] for line in f if line.startswith(b"VmRSS:"))
    return int(kib) << 10


def read(pid: int, before=None):
    fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_process(fd, str(pid), before or {}, time.clock_gettime_ns(time.CLOCK_BOOTTIME), True, True)
    finally:
        os.close(fd)


@pytest.fixture
def burner():
    p = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    yield p
    p.kill()
    p.wait()


def largest_rss() -> int:
    sizes = [0]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, StopIteration):
            sizes.append(vm_rss(int(pid)))
    return max(sizes)


@pytest.fixture
def holder():
    """A process holding HOLD bytes (more if another process here holds as much:
    the test runner itself may), touched (resident), then waiting."""
    size = max(HOLD, largest_rss() + (64 << 20))
    code = f"b = bytearray({size})\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ready', flush=True)\ninput()"
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    time.sleep(0.1)  # on to input(): asleep from now on
    yield p
    p.kill()
    p.wait()


def test_a_process_reads_as_proc_says(holder):
    key, usage, _ = read(holder.pid)
    assert key == start_key(holder.pid)  # the cache's key for it
    assert abs(usage.rss - vm_rss(holder.pid)) <= 0.02 * vm_rss(holder.pid)
    assert usage.rss >= HOLD
    assert usage.threads == len(os.listdir(f"/proc/{holder.pid}/task"))
    nice = os.getpriority(os.PRIO_PROCESS, holder.pid)
    assert (usage.nice, usage.priority, usage.kernel) == (nice, 20 + nice, False)  # htop's NI and PRI
    assert usage.state == "S"  # waiting on its stdin
    assert usage.shared is not None and 0 < usage.shared < usage.rss
    assert usage.virt > usage.rss


def test_cpu_is_over_the_interval_and_bounded(burner):
    key, first, reading = read(burner.pid)
    assert first.cpu_pct > 50  # the first reading: since it started, all of it busy
    time.sleep(1)
    _, second, _ = read(burner.pid, {key: reading})
    assert 80 <= second.cpu_pct <= 100 * CPUS
    assert second.cpu_ns > first.cpu_ns
    # A reading that claims more CPU than it has now (a pid reused, a counter gone back) is never negative ...
    _, again, _ = read(burner.pid, {key: Reading(time.monotonic_ns() - 10**9, second.cpu_ns + 10**12, None, None)})
    assert again.cpu_pct == 0.0
    # ... and another process's reading under the same pid (another start) is not used.
    other = ProcessKey(burner.pid, key.ktime - TICK_NS)
    _, fresh, _ = read(burner.pid, {other: Reading(time.monotonic_ns() - 10**9, 0, None, None)})
    assert 50 < fresh.cpu_pct <= 100 * CPUS


def test_children_cpu_counts_the_waited_for():
    """Exited children's CPU (what a build or a fork storm spends) is in the parent's figures."""
    code = "import os\nfor _ in range(20):\n    if os.fork() == 0:\n        t = __import__('time').process_time()\n" \
           "        while __import__('time').process_time() - t < 0.02: pass\n        os._exit(0)\n    os.wait()\n" \
           "print('done', flush=True)\ninput()"  # fmt: skip
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"done\n"
        time.sleep(0.1)  # waiting on its stdin: its figures stand still
        _, usage, _ = read(p.pid)
        with open(f"/proc/{p.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        assert usage.children_cpu_ns == (int(fields[13]) + int(fields[14])) * TICK_NS  # cutime, cstime
        assert usage.children_cpu_ns >= 20 * 0.015 * 1e9
    finally:
        p.kill()
        p.wait()


def test_the_sampler_reads_the_busy_every_pass_and_the_idle_in_slices(burner):
    sampler = Sampler()
    tables = [sampler.sample() for _ in range(FULL_PASSES)]
    everyone = len(tables[-1].procs)
    assert tables[0].read == everyone and tables[-1].read >= everyone - 5
    times = []
    sliced = time.monotonic_ns()
    for _ in range(SLICES):
        time.sleep(0.2)
        table = sampler.sample()
        assert table.read < everyone  # the idle: a slice
        times.append(table.procs[start_key(burner.pid)].cpu_ns)
    assert times == sorted(times) and len(set(times)) == len(times)  # the busy one: read every pass
    # Every process still there was read again within SLICES passes.
    assert not [k for k in table.procs if sampler._readings[k].at < sliced]
    machine = table.machine
    assert machine is not None and len(machine.cpus) == os.cpu_count()
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) << 10 for line in f}
    assert machine.mem_total == info["MemTotal"]
    # Used as htop counts it (what a user compares it with), not total − available (`free`, psutil).
    htop_used = info["MemTotal"] - info["MemFree"] - info["Buffers"] - info["Cached"] - info["SReclaimable"]
    assert abs(machine.mem_used - htop_used) < 32 << 20, (machine.mem_used, htop_used)
    assert all(0 <= c.busy <= 1.0001 for c in machine.cpus)
    assert any(c.busy > 0.8 for c in machine.cpus)  # yes keeps one CPU busy (mostly in write(2))
    # Tasks as htop's meter: the processes, their threads but the first, the kernel threads apart
    # (the kernel's: pid 2 and its children).
    kthreads = {k.pid for k, u in table.procs.items() if u.kernel}
    kernels = {int(p) for p in os.listdir("/proc") if p.isdigit() and (p == "2" or parent_pid(p) == 2)}
    assert 2 in kthreads and len(kthreads ^ kernels) <= 3 and machine.kthreads == len(kthreads)
    assert machine.processes == len(table.procs) - len(kthreads)
    assert machine.threads == sum(u.threads - 1 for u in table.procs.values() if not u.kernel)
    with open("/proc/loadavg") as f:
        tasks = int(f.read().split()[3].split("/")[1])  # every task of the machine
    assert abs(machine.processes + machine.threads + machine.kthreads - tasks) <= 50


def test_htop_formats():
    assert [describe.memory_text(n) for n in (5 << 20, 500 << 20, 3 << 30, 25 << 30)] == ["5120", "500M", "3.0G", "25G"]
    assert [describe.cpu_time_text(int(t * 1e9)) for t in (1.23, 62.5, 3700)] == ["0:01.23", "1:02.50", "1h01:40"]
    assert [describe.rate_text(r) for r in (512, 5000, 5e6)] == ["512", "4.9K", "4.8M"]
    # The Mem and Swp meters' own (htop's Meter_humanUnit): always a unit, decimals below 100.
    from procscope.tui.widgets.meters import meter_memory

    sizes = (0, 214 << 20, int(23.54 * (1 << 30)), 3 << 30, int(1.5 * (1 << 40)), 1000 << 20)
    assert [meter_memory(n) for n in sizes] == ["0K", "214M", "23.5G", "3.00G", "1.50T", "1000M"]


def test_the_status_line_drops_whole_parts_and_keeps_the_losses():
    parts = [(0, "⚠ lost 12: exec ENOSPC 12 (L)"), (2, "filter: user:root"), (3, "80 processes, 3 shown"),
             (5, "1 container"), (4, "12 events/s"), (6, "source: live BPF")]  # fmt: skip
    line = status_line(parts, 60)
    assert line == "⚠ lost 12: exec ENOSPC 12 (L) │ filter: user:root"
    assert status_line(parts, 10) == parts[0][1]  # too narrow for it: it stays whole
    assert status_line(parts, 200).count("│") == 5
    # A part with shorter forms takes them before it goes: the time travel's bar.
    bar = ("⏱ 12:00:03.2 [██░░] -2.0 s of the last 60 s, Z: live (, . { } @)", "⏱ 12:00:03.2 [██░░] -2.0 s, Z: live",
           "⏱ 12:00:03.2 -2.0 s, Z: live")  # fmt: skip
    travelling = [(0, "lost 0"), (1, bar), (3, "19 processes, 13650 shown")]
    assert status_line(travelling, 200) == f"lost 0 │ {bar[0]} │ 19 processes, 13650 shown"
    assert status_line(travelling, 60) == f"lost 0 │ {bar[1]}"
    assert status_line(travelling, 40) == f"lost 0 │ {bar[2]}"
    assert status_line(travelling, 20) == "lost 0"


def rows_of(app) -> list[str]:
    return [row.plain for row in app.query_one("#tree").rows]


async def test_yes_is_first_after_p_and_the_allocation_after_m(burner, holder, tmp_path):
    app = ProcscopeApp(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        header = app.query_one("#tree").header.plain.split()
        assert header == ["PID", "USER", "CPU%", "MEM%", "RES", "S", "TIME+", "COMMAND"]  # htop's, at 80 columns
        await pilot.press("P")
        assert await wait_for(pilot, lambda: rows_of(app)[0].split()[0] == str(burner.pid))
        await pilot.pause(1.2)  # a pass over an interval, not the first reading's since-start figure
        first = rows_of(app)[0].split()
        assert first[0] == str(burner.pid) and float(first[2]) >= 80, first
        await pilot.press("M")
        assert await wait_for(pilot, lambda: rows_of(app)[0].split()[0] == str(holder.pid))
        usage = app.monitor.cache.usage.procs[start_key(holder.pid)]
        assert abs(usage.rss - vm_rss(holder.pid)) <= 0.02 * vm_rss(holder.pid)
        mem_pct = float(rows_of(app)[0].split()[3])
        assert abs(mem_pct - 100 * vm_rss(holder.pid) / os.sysconf("SC_PHYS_PAGES") / os.sysconf("SC_PAGE_SIZE")) < 0.2
        # Its detail: what it uses, and its last passes as sparklines (on screen: read every pass).
        await pilot.press("home", "enter")
        assert await wait_for(pilot, lambda: app.query_one("#detail-history").display)
        detail = plain(app, app.query_one("#detail").content)
        memory = next(line for line in detail.splitlines() if line.startswith("memory"))
        assert f"RES {describe.memory_text(usage.rss, unit=True)}" in memory and "VIRT" in memory, memory
        # Its state as the kernel has it (the S column's: "running" would say R), its threads and nice.
        assert re.search(r"state +S \(sleeping\)  \(age ", detail), detail
        assert re.search(rf"threads +1;  nice {os.getpriority(os.PRIO_PROCESS, holder.pid)}", detail), detail
        assert "exited children's (waited for)" in detail
        points = app.monitor.cache.usage.history[start_key(holder.pid)]
        assert len(points) >= 2 and all(abs(rss - usage.rss) < 0.02 * usage.rss for _, rss in points)
        await pilot.press("escape", "T")
        assert "TIME+▼" in app.query_one("#tree").header.plain


async def test_the_header_at_80x24_leaves_the_list_15_rows(tmp_path):
    def loadavg() -> list[float]:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]

    app = ProcscopeApp(LiveSource(open_collector(), 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        before = loadavg()  # the kernel's figures move every 5 s (by more than 0.5 after a load): read around
        await pilot.pause(1.5)
        meters = app.query_one("#meters")
        assert meters.display and meters.region.height <= 4
        tree = app.query_one("#tree")
        assert tree.scrollable_content_region.height - 1 >= 15  # the column titles aside
        bars = plain(app, meters.query_one("#bars").render()).splitlines()
        assert len(bars) == 4 and bars[0].startswith("0[") and [b.split("[")[0] for b in bars[2:]] == ["Mem", "Swp"]
        assert all(len(line) <= meters.query_one("#bars").size.width for line in bars)
        tasks = plain(app, meters.query_one("#tasks").render())
        assert re.fullmatch(r"Tasks: \d+, \d+ thr, \d+ kthr; \d+ running", tasks.strip()), tasks  # htop's
        load = plain(app, meters.query_one("#load").render())
        shown = [float(f) for f in load.split() if f.replace(".", "").isdigit()][:3]
        after = loadavg()
        assert len(shown) == 3, load
        assert all(min(b, a) - 0.5 < s < max(b, a) + 0.5 for s, b, a in zip(shown, before, after, strict=True)), load
        status = plain(app, app.query_one("#status").content)
        assert " processes, " in status and " running" not in status  # running is htop's R state: the header's
        # A process started (cloned, then exec'd) under the probes: its image is keyed by its exec, its
        # figures by its start, and they meet.
        assert await wait_for(pilot, lambda: "source: live BPF" in plain(app, app.query_one("#status").content), 30.0)
        burner = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
        try:
            await pilot.press("P")
            assert await wait_for(pilot, lambda: rows_of(app)[0].split()[0] == str(burner.pid))
            proc = app.monitor.cache.by_pid[burner.pid]
            assert proc.previous is not None and proc.key != start_key(burner.pid)  # exec'd: keyed by the exec
            assert await wait_for(pilot, lambda: float(rows_of(app)[0].split()[2]) >= 80)
        finally:
            burner.kill()
            burner.wait()


async def test_a_recording_has_no_usage_to_show(tmp_path):
    app = ProcscopeApp(ReplaySource(Replay("tests/data/demo.jsonl"), 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        assert not app.query_one("#meters").display
        header = app.query_one("#tree").header.plain.split()
        assert "CPU%" not in header and "MEM%" not in header  # empty on every row: the command gets the room


CHILD_CODE = """
import os, sys, time
for _ in range(300):
    if os.fork() == 0:
        t = time.thread_time()
        while time.thread_time() - t < 0.01:
            pass
        os._exit(0)
    os.wait()
print("done", flush=True)
sys.stdin.read()
"""


def test_the_short_lived_are_counted_as_the_cgroup_counts_them():
    """A parent in a cgroup of its own forks 300 children that burn ~10 ms each
    and exit: its own and its exited children's CPU time add up to the cgroup's
    (cpuacct.usage), while reading the living (htop's way) sees almost none of it."""
    cg = f"/sys/fs/cgroup/cpuacct/procscope-test-{os.getpid()}"
    if not os.path.isdir("/sys/fs/cgroup/cpuacct"):
        pytest.fail("no cpuacct hierarchy: this machine's cgroup v1 layout is expected (see the README)")
    os.mkdir(cg)
    sampler = Sampler()
    p = None
    try:
        # In the cgroup before the interpreter starts: all its CPU is the cgroup's.
        p = subprocess.Popen(["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$1"', sys.executable,
                              CHILD_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        # Read every pass, as the rows on screen are: an idle process's figures are otherwise up to
        # SLICES passes old (the last pass could give the parent's as of the middle of its children).
        sampler.wanted = frozenset({p.pid})
        seen: dict[ProcessKey, int] = {}  # the children as a sampler of the living, once a second, saw them
        while True:
            for key, u in sampler.sample().procs.items():
                if key.pid != p.pid and u.cpu_ns:
                    seen[key] = max(seen.get(key, 0), u.cpu_ns)
            if select.select([p.stdout], [], [], 1.0)[0]:
                break
        assert p.stdout.readline() == b"done\n"
        time.sleep(0.1)
        with open(f"{cg}/cpuacct.usage") as f:
            cgroup_ns = int(f.read())
        u = sampler.sample().procs[start_key(p.pid)]
        ours = u.cpu_ns + u.children_cpu_ns
        assert abs(ours - cgroup_ns) <= 0.05 * cgroup_ns, (u, cgroup_ns)
        assert u.children_cpu_ns >= 300 * 0.009 * 1e9
        started = start_key(p.pid).ktime
        children = sum(ns for key, ns in seen.items() if key.ktime >= started)  # started after it: its children
        assert children < 0.2 * cgroup_ns, (children, cgroup_ns)
    finally:
        if p is not None:
            p.kill()
            p.wait()
        with contextlib.suppress(OSError):
            os.rmdir(cg)


def test_a_snapshot_carries_what_each_process_uses(holder):
    out = subprocess.run([sys.executable, "-m", "procscope", "snapshot"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    entry = next(p for p in doc["processes"] if p["pid"] == holder.pid)
    usage = entry["procscope"]["usage"]
    assert abs(usage["rss_bytes"] - vm_rss(holder.pid)) <= 0.02 * vm_rss(holder.pid)
    assert usage["threads"] == 1 and usage["state"] == "S" and usage["cpu_ns"] > 0
    assert set(usage) == {"cpu_ns", "children_cpu_ns", "rss_bytes", "threads", "state"}


def test_many_cpus_share_the_header_rows_as_htop_packs_them():
    from procscope.probes.usage import CpuShare, Machine
    from procscope.tui.widgets.meters import cpu_bars

    machine = Machine(
        tuple(CpuShare(0.5, 0.25, 0.0, 0.0) for _ in range(16)), 1, 2, 0, 0, (0.0, 0.0, 0.0), 1.0, 1, 1, 1
    )
    # Wide enough: eight bars a row, each its own CPU's.
    lines = [line.plain for line in cpu_bars(machine, 2, 120)]
    assert len(lines) == 2 and all(len(line) <= 120 for line in lines)
    assert [line.count("[") for line in lines] == [8, 8] and lines[0].startswith(" 0[") and "15[" in lines[1]
    assert all("75.0%]" in line for line in lines)
    # At 80 columns (40 for the bars) eight would be unreadable: a bar per row averages its CPUs.
    lines = [line.plain for line in cpu_bars(machine, 2, 40)]
    assert [line.split("[")[0] for line in lines] == ["0-7", "8-15"] and all(len(line) == 40 for line in lines)
    inner = [40 - len(line.split("[")[0]) - 2 for line in lines]
    assert all(
        line.endswith("75.0%]") and abs(line.count("|") - 0.75 * n) <= 1 for line, n in zip(lines, inner, strict=True)
    ), lines


async def test_f2_hides_the_header_and_the_list_takes_its_rows(tmp_path):
    config = tmp_path / "config.toml"
    app = ProcscopeApp(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path), config_path=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        before = app.query_one("#tree").region.height
        assert app.query_one("#meters").display
        await pilot.press("f2", "shift+tab", "space", "enter")  # the header's box (above the columns) off, saved
        await pilot.pause(0.3)
        assert not app.query_one("#meters").display
        assert app.query_one("#tree").region.height == before + 4
    assert "header = false" in config.read_text()
    app = ProcscopeApp(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path), config_path=config)
    async with app.run_test(size=(80, 24)) as pilot:  # remembered
        await pilot.pause(0.3)
        assert not app.query_one("#meters").display


async def test_dash_s_starts_sorted_the_busiest_first(burner, tmp_path):
    app = ProcscopeApp(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path), sort="CPU%")
    async with app.run_test(size=(80, 24)) as pilot:
        assert "CPU%▼" in app.query_one("#tree").header.plain and not app.monitor.view.tree
        assert await wait_for(pilot, lambda: rows_of(app)[0].split()[0] == str(burner.pid))


async def test_the_meters_keep_updating_under_a_dialog(tmp_path):
    """The header is the main screen's: with the help open for seconds, the monitor runs on."""
    app = ProcscopeApp(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("f1")
        before = app.monitor.cache.usage.generation
        await pilot.pause(2.5)
        assert app.is_running and app.monitor.cache.usage.generation > before
        await pilot.press("escape")
        await pilot.pause(0.3)
        tasks = plain(app, app.query_one("#tasks").render())
        assert tasks.startswith("Tasks: ")


@pytest.mark.bpf
async def test_a_recording_carries_the_usage_and_its_replay_shows_it(burner, tmp_path):
    """Issue 27, point 6: `events --record` writes what processes use each second (a process
    again only when its figures changed); the replayed monitor shows CPU% as it was, and a
    snapshot of the recording carries it."""
    rec = tmp_path / "rec.jsonl"
    out = subprocess.run([sys.executable, "-m", "procscope", "events", "--record", str(rec), "--duration", "3.5"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    records = [
        json.loads(line)["procscope_usage"] for line in rec.read_text().splitlines() if "procscope_usage" in line
    ]
    assert len(records) >= 2
    mine = start_key(burner.pid)
    from procscope.records import parse_exec_id

    def entries(record: dict) -> dict:
        return {parse_exec_id(p["exec_id"])[1]: p for p in record["processes"]}

    assert all(mine in entries(r) for r in records)  # busy: in every record
    assert len(records[-1]["processes"]) < len(records[0]["processes"]) / 2  # the idle: only when they change
    assert records[-1]["machine"]["mem_total"] > 0 and len(records[-1]["machine"]["cpus"]) == os.cpu_count()
    app = ProcscopeApp(ReplaySource(Replay(str(rec)), 5 * 10**9), snapshot_dir=str(tmp_path), sort="CPU%")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        first = rows_of(app)[0].split()
        assert first[0] == str(burner.pid) and float(first[2]) >= 80, first
        # The header as it was: the recording's machine (its memory, its CPUs), not this one's now.
        assert app.query_one("#meters").display
        assert app.query_one(Bars).machine == app.monitor.cache.usage.machine
        assert app.monitor.cache.usage.machine.mem_total == records[-1]["machine"]["mem_total"]
    snap = subprocess.run([sys.executable, "-m", "procscope", "snapshot", "--replay", str(rec)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    entry = next(p for p in json.loads(snap.stdout)["processes"] if p["pid"] == burner.pid)
    assert entry["procscope"]["usage"]["cpu_ns"] > 0
    # A filter narrows the usage lines as it does the rest.
    only = tmp_path / "only.jsonl"
    out = subprocess.run([sys.executable, "-m", "procscope", "events", "--record", str(only), "--duration", "2.5",
                          "--pid", str(burner.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    narrowed = [
        json.loads(line)["procscope_usage"] for line in only.read_text().splitlines() if "procscope_usage" in line
    ]
    assert narrowed and all(set(entries(r)) == {mine} for r in narrowed)


def test_time_travel_in_the_live_window_shows_what_processes_used_then(burner):
    """Issue 27, point 6: each sampler pass is kept in the live window, so a
    moment travelled to shows CPU% and the meters as they were: `yes` busy
    before it was stopped, stopped and idle after, as /proc said each time."""
    from procscope.export import Exporter
    from procscope.tui.feed import Feed
    from procscope.tui.usage import UsageFeed
    from procscope.window import Window

    source = ProcfsSource("test", 5 * 10**9)
    source.start()
    feed = Feed(source, Exporter(source.cache), Window(600))
    feed.ingest()
    usage = UsageFeed(True, 1.0, feed.keep_usage)
    key = start_key(burner.pid)
    try:
        usage.sampler.table = usage.sampler.sample()
        assert usage.take(feed.cache)
        busy_at = feed.now()
        os.kill(burner.pid, signal.SIGSTOP)
        time.sleep(1.0)
        usage.sampler.table = usage.sampler.sample()
        assert usage.take(feed.cache)
        stopped_at = feed.now()
        assert feed.cache.usage.procs[key].state == "T"
        timeline = feed.window.timeline(feed.now())
        then, after = timeline.cache_at(busy_at), timeline.cache_at(stopped_at)
        assert then.usage.procs[key].cpu_pct >= 50 and then.usage.procs[key].state == "R"
        assert after.usage.procs[key].state == "T" and after.usage.procs[key].cpu_pct < 5
        assert then.usage.machine is not None and usage.machine(then) is then.usage.machine  # the header of then
        assert usage.machine(feed.cache) is feed.cache.usage.machine  # the live one's now
    finally:
        os.kill(burner.pid, signal.SIGCONT)
