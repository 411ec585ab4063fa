"""The monitor driven by a recording, with Textual's Pilot."""

import asyncio
import gc
import json
import os
import re
import stat
from pathlib import Path

import pytest

from procscope.probes import cgroups
from procscope.probes.collector import Collector
from procscope.probes.events import ExecEvent
from procscope.probes.scan_job import ScanJob
from procscope.replay import Replay
from procscope.tui.app import ProcscopeApp
from procscope.tui.columns import COLUMNS
from procscope.tui.screens.help import HelpScreen
from procscope.tui.sources import LiveSource, ReplaySource
from procscope.window import Window

from .conftest import SIZE, bpf_unavailable, open_collector, pids, plain, screen_text, unique_copy, wait_for
from .factories import record, session


@pytest.fixture
def recording(tmp_path):
    path = tmp_path / "rec.jsonl"
    record(session(), path)
    return str(path)


def app_for(recording, tmp_path, **kw) -> ProcscopeApp:
    return ProcscopeApp(ReplaySource(Replay(recording), 5 * 10**9), snapshot_dir=str(tmp_path), **kw)


async def test_tree_selection_and_detail(recording, tmp_path):
    app = app_for(recording, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        tree = app.query_one("#tree")
        assert pids(tree) == [1, 100, 101, 102, 200, 201, 300, 400]
        # Orphans hang under init, one level down; the exited shell is dimmed, not gone.
        assert tree.rows[2].plain.index("/bin/sleep 5") > tree.rows[0].plain.index("/sbin/init")
        assert "dim" in str(tree.rows[1].style)
        for _ in range(5):
            await pilot.press("down")
        await pilot.pause()
        assert tree.selected_key.pid == 201
        detail = app.query_one("#detail").content
        text = plain(app, detail)
        assert "nobody" in text and "/bin/busybox" in text and "httpd -f" in text
        assert "NOT HOST" in text and "3f2a" * 16 in text
        assert "ancestry" in text and "200 /usr/bin/runc-init" in text


async def test_credentials_a_source_did_not_send_are_said_unknown_not_none(tmp_path):
    """A Tetragon export without --enable-process-cred (here procscope's
    --no-process-cred of the demo): the detail says so, and shows no ids or
    capabilities as if they were known."""
    import subprocess
    import sys

    demo = Path(__file__).resolve().parent / "data" / "demo.jsonl"
    lean = tmp_path / "lean.jsonl"
    lean.write_bytes(subprocess.run([sys.executable, "-m", "procscope.cli", "events", "--replay", str(demo),
                                     "--no-process-cred"], capture_output=True, check=True).stdout)  # fmt: skip
    for path, known in ((demo, True), (lean, False)):
        app = ProcscopeApp(ReplaySource(Replay(str(path)), 5 * 10**9), snapshot_dir=str(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("down")
            await pilot.pause()
            text = plain(app, app.query_one("#detail").content)
            assert ("cap effective" in text and "uids" in text) is known, text
            assert ("not sent by its source" in text) is not known, text
            assert "user" in text
            caps = COLUMNS["CAPS"].value(app.monitor.cache.by_pid[1], None)  # type: ignore[arg-type]
            assert (caps == "all") is known and (caps == "?") is not known


async def test_container_filter_narrows_every_pane(recording, tmp_path):
    app = app_for(recording, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert len(app.query_one("#execs").rows) > 2
        await pilot.press("X")  # a stream is drawn while it is the panel shown
        await pilot.pause()
        assert len(app.query_one("#exits").rows) == 3
        await pilot.press("backslash")
        await pilot.press(*"container:3f2a", "enter")
        await pilot.pause()
        # The tree keeps the path down to what matched (init), the streams only the matches.
        assert pids(app.query_one("#tree")) == [1, 200, 201]
        assert len(app.query_one("#exits").rows) == 0
        await pilot.press("E")
        await pilot.pause()
        assert sorted(pids(app.query_one("#execs"), column=1)) == [200, 201]  # after the time column
        assert "filter: container:3f2a" in plain(app, app.query_one("#status").content)
        # A bad filter is refused with a message, and the old one stays.
        await pilot.press("backslash", "ctrl+u", *"cap:FLY", "enter")
        await pilot.pause()
        assert str(app.monitor.filter_query) == "container:3f2a"


async def test_flat_sort_pause_help_and_snapshot_key(recording, tmp_path):
    app = app_for(recording, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6", "down", "enter")  # sort by: PID, then USER: a flat list
        await pilot.pause()
        users = [row.plain.split()[1] for row in app.query_one("#tree").rows]
        assert users == sorted(users)
        await pilot.press("Z")
        await pilot.pause()
        assert "FROZEN" in plain(app, app.query_one("#status").content)
        await pilot.press("W")
        await pilot.pause()
        path = app.monitor.last_snapshot
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        doc = json.loads(Path(path).read_text())
        assert doc["schema"] == "procscope-snapshot" and {p["pid"] for p in doc["processes"]} >= {1, 101, 201}
        await pilot.press("Z")  # thaw: the panes keep refreshing under the help screen
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_w_writes_what_the_view_shows_to_the_state_directory(recording, tmp_path, monkeypatch):
    """Issue 28, point 7: with a filter the snapshot holds its processes and
    their execs only; without --snapshot-dir it goes to the XDG state
    directory (made 0700), not wherever the monitor was started; the path is said."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = ProcscopeApp(ReplaySource(Replay(recording), 5 * 10**9), query_text="bin:sleep",
                       config_path=tmp_path / "config.toml")  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        await pilot.press("W")
        await pilot.pause()
        path = Path(app.monitor.last_snapshot)
        assert path.parent == tmp_path / "state" / "procscope" and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert any(str(path) in str(n.message) for n in app._notifications)
    doc = json.loads(path.read_text())
    assert {p["pid"] for p in doc["processes"]} == {101, 102}
    assert doc["events"] and all(e["process_exec"]["process"]["binary"] == "/bin/sleep" for e in doc["events"])


@pytest.mark.bpf
async def test_live_bpf_exec_shows_in_the_exec_stream(scratch, tmp_path):
    collector = open_collector()
    app = ProcscopeApp(LiveSource(collector, 5 * 10**9), snapshot_dir=str(tmp_path))
    binary = unique_copy("/bin/true", scratch)
    async with app.run_test(size=SIZE) as pilot:
        assert "source: live BPF" in plain(app, app.query_one("#status").content)
        for _ in range(100):
            await pilot.pause(0.1)
            if os.getpid() in pids(app.query_one("#tree")):  # the /proc scan filled the tree
                break
        assert os.getpid() in pids(app.query_one("#tree"))
        proc = await asyncio.create_subprocess_exec(binary, "procscope-ui-test")
        await proc.wait()
        for _ in range(100):
            await pilot.pause(0.1)
            if any(binary in row.plain for row in app.query_one("#execs").rows):
                break
        row = next(row.plain for row in app.query_one("#execs").rows if binary in row.plain)
        assert f"{binary} procscope-ui-test" in row and str(proc.pid) in row.split()
        await pilot.press("X")
        await pilot.pause()
        assert any(binary in row.plain for row in app.query_one("#exits").rows)


@pytest.mark.bpf
async def test_live_time_travel_through_the_window_while_events_keep_arriving(scratch, tmp_path):
    """Live, `,` goes back through the monitor's window: a process that ran
    and exited a second ago is running there, as it was; the events that
    arrive meanwhile are applied behind the view (Z, or stepping to the end,
    is live again, with them); Z then `,` steps back from the moment frozen."""
    app = ProcscopeApp(LiveSource(open_collector(), 5 * 10**9), snapshot_dir=str(tmp_path), window=Window(60))
    sleeper = unique_copy("/bin/sleep", scratch)
    later = unique_copy("/bin/true", scratch)
    async with app.run_test(size=(160, 50)) as pilot:
        assert await wait_for(pilot, lambda: os.getpid() in app.monitor.cache.by_pid)
        proc = await asyncio.create_subprocess_exec(sleeper, "3")
        assert await wait_for(
            pilot, lambda: proc.pid in app.monitor.cache.by_pid and app.monitor.cache.by_pid[proc.pid].binary == sleeper
        )
        await proc.wait()
        await pilot.press("X")  # the exits shown (and kept open when the terminal narrows)
        assert await wait_for(pilot, lambda: any(sleeper in row.plain for row in app.query_one("#exits").rows))
        await pilot.press("comma", "comma")  # two seconds back: it was sleeping
        await pilot.pause()
        status = plain(app, app.query_one("#status").content)
        assert app.monitor.travel is not None and "⏱" in status and "Z: live" in status
        await pilot.resize_terminal(80, 24)  # narrow: the bar shortens, the moment stays
        await pilot.pause(0.3)
        status = plain(app, app.query_one("#status").content)
        assert re.match(r"(⚠ )?lost \d+.* │ ⏱ \d\d:\d\d:\d\d\.\d .*-\d+\.\d s, Z: live", status), status
        there = app.monitor.cache.by_pid.get(proc.pid)
        assert there is not None and there.alive and there.binary == sleeper
        assert not any(sleeper in row.plain for row in app.query_one("#exits").rows)  # it had not exited yet
        await pilot.press("E")
        await pilot.pause()
        assert any(sleeper in row.plain for row in app.query_one("#execs").rows)
        everything = pids(app.query_one("#tree"))
        await pilot.press("backslash", *f"bin:{os.path.basename(sleeper)}", "enter")  # the moment, filtered
        await pilot.pause()
        shown = pids(app.query_one("#tree"))  # the path down to it, nothing else
        assert proc.pid in shown and len(shown) < len(everything)
        await pilot.press("backslash", "ctrl+u", "enter")
        await pilot.pause()
        assert app.monitor.travel.at is not None and not app.monitor.filter_query
        done = await asyncio.create_subprocess_exec(later)  # behind the view
        await done.wait()
        assert await wait_for(pilot, lambda: any(k.pid == done.pid for k in app.monitor.feed.cache.procs))
        assert not any(k.pid == done.pid for k in app.monitor.cache.procs)
        assert not any(later in r.plain for r in app.query_one("#execs").rows)
        await pilot.press("Z")  # live again, with what arrived meanwhile
        await pilot.pause()
        assert app.monitor.travel is None and app.monitor.cache is app.monitor.feed.cache
        assert await wait_for(pilot, lambda: any(later in row.plain for row in app.query_one("#execs").rows))
        await pilot.press("Z")  # frozen; , steps back from the moment frozen
        frozen_at = app.monitor.frozen_at
        await pilot.pause(1.0)
        await pilot.press("comma")
        await pilot.pause()
        assert app.monitor.travel.at is not None and abs(app.monitor.travel.at - (frozen_at - 10**9)) < 10**8
        await pilot.press("at")
        await pilot.press(*"now", "enter")
        await pilot.pause()
        assert app.monitor.travel is None and not app.monitor.frozen


async def until_attached(app, pilot, seconds: float) -> None:
    """Until the status says the probes are attached (BPF unavailable: fails or skips, as conftest says)."""
    status = app.query_one("#status")
    for _ in range(int(seconds * 10)):
        if "source: live BPF" in plain(app, status.content) or app.monitor.source.collector.setup_error:
            break
        await pilot.pause(0.1)
    if app.monitor.source.collector.setup_error:
        bpf_unavailable(app.monitor.source.collector.setup_error)


@pytest.mark.bpf
async def test_live_monitor_draws_the_proc_tree_first_and_attaches_behind_it(scratch, tmp_path, monkeypatch):
    """Given a collector not yet attached, the first frame is the /proc scan
    (status: attaching probes); once attached, a second scan settles what
    happened meanwhile: a process started then is in the tree, one killed
    then is not, and execs after it are live."""
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # compiled: a second of "meanwhile"
    before = await asyncio.create_subprocess_exec("sleep", "60")
    app = ProcscopeApp(LiveSource(Collector(), 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        status = app.query_one("#status")
        assert "attaching probes" in plain(app, status.content)
        assert {os.getpid(), before.pid} <= set(pids(app.query_one("#tree")))  # the first frame has the tree
        during = await asyncio.create_subprocess_exec("sleep", "60")
        before.kill()
        await before.wait()
        await until_attached(app, pilot, seconds=10)
        assert "source: live BPF" in plain(app, status.content)
        await pilot.pause(0.3)
        shown = set(pids(app.query_one("#tree")))
        assert during.pid in shown and before.pid not in app.monitor.cache.by_pid
        binary = unique_copy("/bin/true", scratch)
        proc = await asyncio.create_subprocess_exec(binary)
        await proc.wait()
        for _ in range(50):
            await pilot.pause(0.1)
            if any(binary in row.plain for row in app.query_one("#execs").rows):
                break
        assert any(binary in row.plain for row in app.query_one("#execs").rows)
    during.kill()
    await during.wait()


@pytest.mark.bpf
async def test_what_the_first_frame_defers_fills_in_before_the_probes_attach(tmp_path, monkeypatch):
    """As `procscope` starts: the first scan's namespaces (but the pid
    namespace), login uid, cwd and binary inode are read by its helper after
    the first frame, and fill in the images well before the probes' second
    scan would."""
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    # No compile kept from an earlier start: the probes attach a second after the first frame
    # (0.15 s with one), so what fills in before they do is the helper's doing.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    apart = await asyncio.create_subprocess_exec("unshare", "--net", "--uts", "sleep", "60", cwd=tmp_path)
    await asyncio.sleep(0.3)  # unshare has exec'd sleep
    job = ScanJob(cgroups.detect(), defer=True)
    source = LiveSource(Collector(), 5 * 10**9, job)
    drained: list = []  # each batch the monitor took: the first is the first frame's
    drain = source.drain
    source.drain = lambda: drained.append(drain()) or drained[-1]  # type: ignore[method-assign]
    app = ProcscopeApp(source, snapshot_dir=str(tmp_path))
    try:
        async with app.run_test(size=SIZE) as pilot:
            cache = app.monitor.cache
            first = {ev.key.pid: ev for ev in drained[0] if isinstance(ev, ExecEvent)}
            assert apart.pid in first and first[apart.pid].ns.net == 0  # the first frame's
            net = int(os.readlink(f"/proc/{apart.pid}/ns/net").split("[")[1].rstrip("]"))
            assert await wait_for(pilot, lambda: cache.by_pid[apart.pid].image.ns.net == net, seconds=5)
            assert "attaching probes" in plain(app, app.query_one("#status").content)  # not the second scan's doing
            assert cache.by_pid[apart.pid].image.ns.net != cache.by_pid[os.getpid()].image.ns.net
            assert cache.by_pid[os.getpid()].image.creds.user_ns.inum != 0
            assert cache.by_pid[apart.pid].image.cwd == str(tmp_path)
    finally:
        apart.kill()
        await apart.wait()


async def test_throttled_container_is_marked(tmp_path):
    """A recording in which the container's cgroup is throttled: the status
    line says so, the container's group header and the picker mark it; the
    STOP clears it and reports the suppressed counts."""
    from procscope.probes import wire
    from procscope.probes.events import ThrottleEvent

    from .factories import DOCKER

    events = session()
    last = max(e.time for e in events)
    name = DOCKER.rsplit("/", 1)[1]
    start = ThrottleEvent(last + 1, wire.THROTTLE_START, 4711, name, path=DOCKER)
    path = tmp_path / "rec.jsonl"
    record([*events, start], path)
    app = app_for(str(path), tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert f"THROTTLED: {DOCKER}" in plain(app, app.query_one("#status").content)
        assert app.query_one("#status").has_class("throttled")
        await pilot.press("g")  # grouped by container
        await pilot.pause()
        header = next(r.plain for r in app.query_one("#tree").rows if r.plain.lstrip("▾▸ ").startswith("container"))
        assert "3f2a3f2a3f2a" in header and "⏸ throttled" in header
        app.monitor.cache.apply(ThrottleEvent(last + 2, wire.THROTTLE_STOP, 4711, name, (5, 4, 3), DOCKER))
        app.monitor.redraw()
        assert "THROTTLED" not in plain(app, app.query_one("#status").content)
        assert app.monitor.cache.throttles[4711].suppressed == (5, 4, 3)


async def test_a_failure_stops_the_monitor_with_one_line_and_a_private_log(recording, tmp_path, monkeypatch):
    """Whatever goes wrong inside, the monitor stops with exit status 1, one
    line naming the cause (escaped: it may quote a process), and the full
    traceback in a file of mode 0600."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    class Failing(ReplaySource):
        def drain(self):
            raise RuntimeError("cannot cope with [/] \x1b]0;x\x07")

    app = ProcscopeApp(Failing(Replay(recording), 5 * 10**9), snapshot_dir=str(tmp_path))
    with pytest.raises(RuntimeError):
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
    assert app.return_code == 1
    assert app.failure.startswith("the monitor stopped on an error (RuntimeError: cannot cope with [/] \\x1b]0;x\\x07)")
    log = app.failure.rsplit("full traceback in ", 1)[1]
    assert "Traceback" in Path(log).read_text() and stat.S_IMODE(os.stat(log).st_mode) == 0o600


async def test_markup_in_the_filter_a_search_a_replay_path_or_the_config_is_text(session_file_with_markup, tmp_path):
    """`[/]` and friends typed by the user or found in a path or a config
    value are shown as they are: nothing parses them as markup."""
    config = tmp_path / "config.toml"
    config.write_text('theme = "[/][@click=app.quit]x"\n')
    app = ProcscopeApp(ReplaySource(Replay(session_file_with_markup), 5 * 10**9), query_text="bin:[/]",
                       snapshot_dir=str(tmp_path), config_path=config)  # fmt: skip
    async with app.run_test(size=(250, 48)) as pilot:  # wide enough for the status line to name the source
        await pilot.pause()
        status = plain(app, app.query_one("#status").content)
        assert "filter: bin:'[/]'" in status and "[/]" in status.split("source: replay ")[1]
        await pilot.press("slash", "[", "/", "]", "enter")  # a search that finds nothing
        await pilot.pause()
        await pilot.press("backslash", "ctrl+u", *"[link=x]", "enter")  # a filter with markup: fine, and no match
        await pilot.pause()
        assert str(app.monitor.filter_query) == "'[link=x]'" and app.is_running
        assert any("unknown theme '[/][@click=app.quit]x'" in str(n.message) for n in app._notifications)


@pytest.fixture
def session_file_with_markup(tmp_path):
    d = tmp_path / "[" / "]"
    d.mkdir(parents=True)
    path = d / "[@click=app.quit]rec.jsonl"
    record(session(), path)
    return str(path)


async def test_time_travel_through_a_recording(recording, tmp_path):
    """`,` `.` step seconds, `{` `}` events, `@` goes to a time; the whole
    screen shows that moment (the shell that exits at 1 s is running at
    0.5 s, the crash at 2 s has not happened), and the time bar says where."""
    app = app_for(recording, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        status = app.query_one("#status")
        assert "⏱" not in plain(app, status.content)
        await pilot.press("at")
        await pilot.press(*"+0.5s", "enter")
        await pilot.pause()
        text = plain(app, status.content)
        assert "⏱" in text and "0.5 of 2.0 s" in text
        sh = app.monitor.cache.by_pid[100]
        assert sh.alive and sh.binary == "/bin/sh" and app.monitor.cache.by_pid[300].alive  # it crashes at 2 s
        assert not any("crash" in row.plain for row in app.query_one("#exits").rows)
        await pilot.press("full_stop", "full_stop")  # 2.0 s: the end
        await pilot.pause()
        assert not app.monitor.cache.procs[sh.key].alive and "end" in plain(app, status.content)
        await pilot.press("left_curly_bracket")  # one event back: before the last exit
        await pilot.pause()
        assert "end" not in plain(app, status.content).split("⏱")[1].split("│")[0]
        await pilot.press("at")
        await pilot.press(*"yesterday", "enter")
        await pilot.pause()
        assert any("bad time 'yesterday'" in str(n.message) for n in app._notifications)


async def test_event_steps_follow_the_filter_to_the_millisecond(recording, tmp_path):
    """Issue 28, point 8: with a filter set, `{` `}` step through the events of
    the processes it shows (not every process's); the time bar then reads to
    the millisecond; a moment where nothing matches says so."""
    app = app_for(recording, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("backslash", *"bin:crash", "enter")
        await pilot.press("at", *"+0s", "enter")  # the start: the crash has not been exec'd
        await pilot.pause()
        assert str(app.query_one("#tree").border_title) == "no process matches: bin:crash"
        await pilot.press("right_curly_bracket")  # its exec, past the other processes' events in between
        await pilot.pause()
        status = plain(app, app.query_one("#status").content)
        assert re.search(r"⏱ \d\d:\d\d:\d\d\.\d{3} \[", status), status
        assert (
            app.monitor.cache.by_pid[300].binary == "/bin/crash" and 100 in app.monitor.cache.by_pid
        )  # the shell still runs
        await pilot.press("right_curly_bracket")  # its exit, at 2 s: the shell's at 1 s is stepped over
        await pilot.pause()
        assert 300 not in app.monitor.cache.by_pid and "2.0 of 2.0 s" in plain(app, app.query_one("#status").content)
        await pilot.press("left_curly_bracket")
        await pilot.pause()
        assert 300 in app.monitor.cache.by_pid and 100 in app.monitor.cache.by_pid


async def test_live_time_travel_needs_the_window(tmp_path):
    from procscope.tui.sources import ProcfsSource

    app = ProcscopeApp(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path), window=Window(0))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("comma")
        await pilot.pause()
        assert app.monitor.travel is None
        assert any("no time travel: --window 0" in str(n.message) for n in app._notifications)


async def test_the_history_panel_lists_every_process_seen_exited_ones_too(recording, tmp_path):
    app = app_for(recording, tmp_path, config_path=None)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("Y")
        await pilot.pause()
        rows = [row.plain for row in app.query_one("#history").rows]
        assert any("/bin/crash" in r and "SIGSEGV" in r for r in rows)  # exited, and shown
        assert any("/bin/sh -c sleep 5 & sleep 6" in r for r in rows)
        # One row per process (an exec's image in place of its fork's), newest first by time.
        pids = [r.split()[1] for r in rows]
        assert len(pids) == len(set(pids)), rows
        times = [r.split()[0] for r in rows]
        assert times == sorted(times, reverse=True), rows
        await pilot.press("backslash")
        await pilot.press(*"bin:crash", "enter")
        await pilot.pause()
        rows = [row.plain for row in app.query_one("#history").rows]
        assert rows and all("/bin/crash" in r for r in rows)  # the filter narrows it


@pytest.mark.bpf
async def test_how_the_probes_were_built_is_told_in_the_help_not_over_the_list(tmp_path, monkeypatch):
    """At 80x24, while the probes attach, the kernel tree they are compiled
    against (a fact that asks nothing of the user) is no notification over
    the processes: F1 shows it, under "This session"."""
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    from procscope.probes import kernel_tree

    monkeypatch.setattr(kernel_tree, "_has_own_headers", lambda release: False)  # as on this VM, whatever the machine
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    app = ProcscopeApp(LiveSource(Collector(), 5 * 10**9), snapshot_dir=str(tmp_path))
    told: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (told.append(message), notify(message, **kw))[1]
    async with app.run_test(size=(80, 24)) as pilot:
        await until_attached(app, pilot, seconds=15)
        await pilot.pause(0.5)
        assert not [m for m in told if "kernel headers" in m], told
        assert any("compiling against" in f for f in app.monitor.source.facts)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        await pilot.press("end")
        await pilot.pause(0.2)
        text += screen_text(app)
        assert "This session" in text and re.search(r"compiling\W+against", text)  # wrapped where it falls


async def test_the_collector_of_garbage_is_back_once_the_start_is_frozen(recording, tmp_path):
    """`procscope` turns Python's garbage collection off for its start (commands.ui); the monitor,
    mounted, freezes what the start made and turns it back on, or reference cycles would never be freed."""
    gc.disable()
    try:
        app = app_for(recording, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.enable()
