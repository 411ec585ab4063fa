"""Actions of the monitor: tagging, signals (refused on a replay, really
sent on /proc), the container picker, the command palette, clicks, drop
rates; and the signal safety checks on their own."""

import os
import signal
import subprocess
import sys

import pytest
from textual.binding import Binding

from procscope import signals
from procscope.cache import ROOT, ProcessCache
from procscope.probes import procfs, wire
from procscope.probes.counters import Counters
from procscope.probes.events import ProcessKey as K
from procscope.replay import Replay
from procscope.tui.app import ProcscopeApp
from procscope.tui.feed import loss_totals, per_second
from procscope.tui.palette import BindingCommands
from procscope.tui.panes.drops import render_drops
from procscope.tui.screens.help import HelpScreen
from procscope.tui.screens.pick import PickScreen
from procscope.tui.screens.signal import SignalScreen
from procscope.tui.sources import ProcfsSource, ReplaySource

from .conftest import SIZE, pids, plain
from .factories import DOCKER, clone_event, exec_event, exit_event, record, session

CONTAINER = DOCKER.split("-")[1].removesuffix(".scope")


def App(source, **kw) -> ProcscopeApp:
    """The app, keeping what it was told to say in ``notes``."""
    app = ProcscopeApp(source, **kw)
    app.notes, notify = [], app.notify

    def keep(message, **kw):
        app.notes.append(message)
        notify(message, **kw)

    app.notify = keep
    return app


@pytest.fixture
def replay_app(tmp_path):
    path = tmp_path / "rec.jsonl"
    record(session(), path)
    return App(ReplaySource(Replay(str(path)), 5 * 10**9), snapshot_dir=str(tmp_path))


@pytest.fixture
def sleepers():
    children = [subprocess.Popen(["sleep", "300"]) for _ in range(2)]
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture
def sleeper(sleepers):
    return sleepers[0]


# -- the safety module -------------------------------------------------------------


def procfs_image(pid: int, ktime: int):
    return exec_event(pid, ktime, ROOT, "/bin/sleep", ("300",), flags=wire.FLAG_PROCFS)


def test_signal_refuses_pid_1_and_what_is_not_running():
    cache = ProcessCache()
    init = cache.apply(procfs_image(1, 10))
    assert signals.send(cache, init, signal.SIGTERM).status == "refused"
    assert "pid 1" in signals.check(cache, init)
    me = cache.apply(procfs_image(os.getpid(), procfs.start_key(os.getpid()).ktime))
    assert signals.check(cache, me) == "procscope itself"
    gone = cache.apply(procfs_image(123456, 10))
    cache.apply(exit_event(gone.key, 20))
    assert str(signals.send(cache, gone, signal.SIGKILL)) == "123456 /bin/sleep: refused (not running)"


def test_signal_refuses_a_pid_whose_start_time_differs(sleeper):
    cache = ProcessCache()
    start = procfs.start_key(sleeper.pid).ktime
    wrong = cache.apply(procfs_image(sleeper.pid, start + procfs.TICK_NS))  # e.g. an earlier owner of the pid
    outcome = signals.send(cache, wrong, signal.SIGTERM)
    assert outcome.status == "refused" and "another process" in outcome.reason
    assert sleeper.poll() is None


def test_signal_reaches_an_exec_image_through_its_clone(sleeper):
    """An exec's key is its exec time: the start is the clone's key."""
    cache = ProcessCache()
    start = procfs.start_key(sleeper.pid).ktime
    parent = cache.apply(procfs_image(os.getpid(), procfs.start_key(os.getpid()).ktime))
    cache.apply(clone_event(sleeper.pid, start, parent.key))
    proc = cache.apply(exec_event(sleeper.pid, start + 12_345, parent.key, "/bin/sleep", cleanup=K(sleeper.pid, start)))
    assert cache.start_times(proc) == {start}
    assert str(signals.send(cache, proc, signal.SIGTERM)) == f"{sleeper.pid} /bin/sleep: sent (SIGTERM)"
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    assert signals.send(cache, proc, signal.SIGTERM).status == "gone"  # reaped: no such pid


# -- the app ------------------------------------------------------------------------


async def test_tagging_marks_rows_and_moves_down(replay_app):
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        tree = app.query_one("#tree")
        await pilot.press("space", "down", "space")  # init, then skip one, then 101
        await pilot.pause()
        assert {k.pid for k in app.monitor.tagged} == {1, 101} and tree.cursor == 3
        marked = [int(row.plain[1:].split()[0]) for row in tree.rows if row.plain.startswith("*")]
        assert marked == [1, 101]  # the marker takes the pid's padding
        assert "yellow" in str(tree.rows[2].spans[-1].style)
        await pilot.press("up", "space")  # untag
        await pilot.pause()
        assert {k.pid for k in app.monitor.tagged} == {1}
        await pilot.press("U")
        await pilot.pause()
        assert not app.monitor.tagged and not any(row.plain.startswith("*") for row in tree.rows)


async def test_replay_refuses_signals(replay_app):
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "k")
        await pilot.pause()
        assert not isinstance(app.screen, SignalScreen)
        assert "signals need a live source" in app.notes
        await pilot.press("f9")
        await pilot.pause()
        assert not isinstance(app.screen, SignalScreen)
        await pilot.press("f7")
        await pilot.pause()
        assert app.notes[-1] == "priorities need a live source"


async def test_live_signal_kills_the_selected_process(sleeper, tmp_path):
    app = App(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        tree = app.query_one("#tree")
        key = procfs.start_key(sleeper.pid)
        assert key in tree.keys
        tree.cursor = tree.keys.index(key)
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, SignalScreen)
        targets = plain(app, app.screen.query_one("#targets").content)
        assert str(sleeper.pid) in targets and "sleep 300" in targets  # the command, as the list shows it
        await pilot.press("escape")  # cancel: nothing sent
        await pilot.pause()
        assert not isinstance(app.screen, SignalScreen) and sleeper.poll() is None
        await pilot.press("k")
        await pilot.pause()
        await pilot.press("k", "c", "space")  # app keys do nothing behind the dialog
        await pilot.pause()
        assert isinstance(app.screen, SignalScreen) and len(app.screen_stack) == 2 and not app.monitor.tagged
        await pilot.press("enter")  # SIGTERM, the default
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        await pilot.pause()
        assert any(n.startswith(f"{sleeper.pid} ") and n.endswith("sleep: sent (SIGTERM)") for n in app.notes)


def nices(pid: int) -> list[int]:
    """The kernel's nice of each thread of ``pid`` (/proc/PID/task/TID/stat)."""
    out = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
            out.append(int(f.read().rsplit(b")", 1)[1].split()[16]))
    return out


async def test_f7_and_f8_renice_every_thread_of_the_selected_process(tmp_path):
    """htop's F7/F8 (and ] [): each thread's nice moves by one (renice -p moves only the
    first), within -20..19 (a replay refuses: test_replay_refuses_signals)."""
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n" \
           "print('ready', flush=True)\ntime.sleep(300)"  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n" and nices(child.pid) == [0, 0]
        app = App(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            tree = app.query_one("#tree")
            tree.cursor = tree.keys.index(procfs.start_key(child.pid))
            await pilot.press("f8", "f8", "left_square_bracket")
            await pilot.pause()
            assert nices(child.pid) == [3, 3]
            await pilot.press("f7", "right_square_bracket")
            await pilot.pause()
            said = app.notes[-1]
            assert (
                nices(child.pid) == [1, 1] and said.startswith(f"{child.pid} /") and said.endswith(": reniced (nice 1)")
            )
            os.setpriority(os.PRIO_PROCESS, child.pid, -19)
            await pilot.press("f7", "f7")
            await pilot.pause()
            assert nices(child.pid) == [-20, -20]
    finally:
        child.kill()
        child.wait()


async def test_live_signal_goes_to_the_tagged_processes(sleepers, tmp_path):
    app = App(ProcfsSource("test", 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.monitor.tagged.update(procfs.start_key(c.pid) for c in sleepers)
        await pilot.press("k")
        await pilot.pause()
        targets = plain(app, app.screen.query_one("#targets").content)
        assert all(str(c.pid) in targets for c in sleepers)
        await pilot.press("down", "down", "enter")  # TERM, KILL, INT
        assert [c.wait(timeout=10) for c in sleepers] == [-signal.SIGINT] * 2


async def test_container_picker_narrows_every_pane_and_keeps_the_filter(replay_app):
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("backslash", *"-bin:nothing", "enter")
        await pilot.press("C")
        await pilot.pause()
        assert isinstance(app.screen, PickScreen)
        # Each choice starts with what names the container (here its id: no name): what is looked for.
        assert str(app.screen.query_one("#choices").get_option_at_index(1).prompt).startswith(CONTAINER[:12] + "  ")
        await pilot.press("down", "enter")  # the one container, after "all containers"
        await pilot.pause()
        assert str(app.monitor.filter_query) == f"-bin:nothing container:{CONTAINER}"
        assert pids(app.query_one("#tree")) == [1, 200, 201]
        assert sorted(pids(app.query_one("#execs"), column=1)) == [200, 201]
        assert len(app.query_one("#exits").rows) == 0
        await pilot.press("C")
        await pilot.pause()
        assert app.screen.query_one("#choices").highlighted == 1  # the current one
        await pilot.press("up", "enter")  # all containers
        await pilot.pause()
        assert str(app.monitor.filter_query) == "-bin:nothing"
        assert pids(app.query_one("#tree")) == [1, 100, 101, 102, 200, 201, 300]  # not 400: no binary known


async def test_palette_offers_every_bound_action(replay_app):
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        provider = BindingCommands(app.screen)
        found = [hit.text async for hit in provider.discover()]
        described = [b.description for b in type(app.monitor).BINDINGS if isinstance(b, Binding) and b.description]
        assert found == described and {"Kill", "Untag all", "Show one container", "Setup"} <= set(found)
        assert "Untag all" in [hit.text async for hit in provider.search("untag")]
        # Run one through the palette itself.
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Tree")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.monitor.view.tree is False
        await pilot.press("ctrl+p")  # a dialog from the palette
        await pilot.pause()
        await pilot.press(*"Show one container")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, PickScreen)


async def test_help_lists_the_new_keys(replay_app):
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = plain(app, app.screen.query_one("#help Static").content)
        # Keys as typed, grouped by purpose; the filter language after them.
        for line in ("F9 k", "F5 t", "F1 h ?", "space", "Untag all", "Show one container", "< ", "> ", "I ",
                     "Find and narrow", "Panels", "Filter"):  # fmt: skip
            assert line in text, line
        assert "question_mark" not in text and "less_than_sign" not in text


async def test_clicks_select_from_streams_and_sort_by_header(replay_app):
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        tree, execs, exits = (app.query_one(f"#{i}") for i in ("tree", "execs", "exits"))
        # A click on a tree row selects that row (below the border and the column titles).
        await pilot.click("#tree", offset=(3, 1 + 1 + 2))
        await pilot.pause()
        assert tree.cursor == 2 and tree.selected_key == tree.keys[2]
        # A click on a row of the exec stream: the tree follows.
        await pilot.click(
            "#execs", offset=(3, 1 + pids(execs, column=1).index(201))
        )  # below its column titles (the panel has the border)
        await pilot.pause()
        assert tree.selected_key.pid == 201 and "httpd -f" in plain(app, app.query_one("#detail").content)
        # An exit whose process is not in the tree (init is folded): its detail shows anyway.
        tree.focus()  # the click focused the stream
        await pilot.press("home", "minus")
        await pilot.pause()
        assert pids(tree) == [1, 400]  # 400's parent is unknown: a root
        await pilot.press("X")  # the exits shown: a stream is drawn while it is the panel shown
        await pilot.pause()
        exits.cursor = pids(exits, column=1).index(300)
        await pilot.pause()
        assert "/bin/crash" in plain(app, app.query_one("#detail").content)
        # The USER title of the tree's header: flat, sorted by user.
        x = tree.header.plain.index("USER") + 2
        await pilot.click("#tree", offset=(1 + x, 1))  # inside the border
        await pilot.pause()
        assert app.monitor.view.tree is False and app.monitor.view.sort == "USER"
        await pilot.click("#tree", offset=(2, 1))  # over the pids, left of the right-aligned title
        await pilot.pause()
        assert app.monitor.view.sort == "PID"


def test_drop_rates_and_received():
    before = Counters.from_json(
        {"sent_failed": {"EXECVE": {"EAGAIN": 10}}, "userspace_dropped": 5, "cache": {"misses": 1}}
    )
    after = Counters.from_json({"sent_failed": {"EXECVE": {"EAGAIN": 30}, "EXIT": {"ENOSPC": 4}}, "userspace_dropped": 9,
                                "cache": {"misses": 1}})  # fmt: skip
    rates = per_second(loss_totals(before) | {"received": 100}, loss_totals(after) | {"received": 500}, 2.0)
    assert rates == {"EXECVE": 10.0, "EXIT": 2.0, "user space": 2.0, "undecodable": 0.0, "cache misses": 0.0,
                     "lost exits": 0.0, "received": 200.0}  # fmt: skip
    assert per_second({}, loss_totals(after), 0) == {}
    lines = {line.split()[0]: line.split() for line in plain(None, render_drops(after, rates, 500)).splitlines()[1:]}
    assert lines["EXECVE"][-3:] == ["30", "30", "10.0"]  # EAGAIN, total, /s
    assert lines["user"][-2:] == ["9", "2.0"]
    assert lines["received"][-2:] == ["500", "200.0"]


def test_drops_pane_shows_throttled_cgroups():
    recorded = {"sent_failed": {}, "suppressed_by_cgroup": {"busy.scope": {"exec": 30, "clone": 29, "exit": 31},
                "old.scope": {"exec": 2, "clone": 0, "exit": 1}}, "throttled_now": ["busy.scope"]}  # fmt: skip
    counters = Counters.from_json(recorded)
    before = loss_totals(
        Counters.from_json({**recorded, "suppressed_by_cgroup": {"busy.scope": {"exec": 10}, "old.scope": {"exec": 3}}})
    )
    rates = per_second(before, loss_totals(counters), 2.0)
    assert rates["throttled busy.scope"] == 40.0
    lines = [line.split() for line in plain(None, render_drops(counters, rates, 0)).splitlines()]
    assert ["⏸", "throttled", "busy.scope", "90", "40.0"] in lines  # throttled now: marked
    assert ["throttled", "old.scope", "3", "0.0"] in lines


async def test_drops_pane_shows_rates(replay_app):
    app = replay_app
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("L")  # the losses panel shown: drawn while it is
        await pilot.pause()
        text = plain(app, app.query_one("#drops").content)
        received = next(line for line in text.splitlines() if line.strip().startswith("received"))
        assert received.split()[1] == str(app.monitor.feed.events_total)


@pytest.mark.parametrize("events, containers", [(session(), True), (session()[:7], False)])
async def test_the_exec_stream_shows_a_container_column_only_where_there_are_containers(events, containers, tmp_path):
    """Without containers the exec stream leaves CONTAINER out, as the list
    does (a column of dashes took 15 of 80 columns from the commands), and
    each command starts under COMMAND either way."""
    path = tmp_path / "rec.jsonl"
    record(events, path)
    app = App(ReplaySource(Replay(str(path)), 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("E")
        await pilot.pause()
        execs = app.query_one("#execs")
        header = execs.header.plain
        assert ("CONTAINER" in header) is containers and execs.rows
        at = header.index("COMMAND")
        for row in execs.rows:
            assert row.plain[at - 1 : at + 1] == " /", (header, row.plain)  # a binary's path, under COMMAND
