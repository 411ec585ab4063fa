"""One monitor, several nodes (`procscope --connect A --connect B`): each
node's tree by its name, ctrl+n to pick the one shown, each node's
connection and losses in the status line and the losses panel, and a node
that goes away, floods or stalls never stops the others."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time

import pytest

from procscope.api import tetragon_pb2 as pb
from procscope.tui.fleet import FleetScreen

from .conftest import SIZE, Terminal, plain, unique_copy, wait_for
from .test_agent import Agent, FakeAgent

pytestmark = pytest.mark.bpf

GRACE = 5 * 10**9


def _sock() -> str:
    return f"unix://{tempfile.mkdtemp(prefix='procscope-node-')}/agent.sock"


def _status(app) -> str:
    return plain(app, app.screen.query_one("#status").content)


def _fleet_status(app) -> str:
    return (
        plain(app, app.screen.query_one("#fleet-status").content)
        + " | "
        + " ".join(line.plain for line in app.screen.lines)
    )


def _app(*remotes, **kw):
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import RemoteSource

    return ProcscopeApp([RemoteSource(r, GRACE) for r in remotes], **kw)


async def test_one_monitor_shows_two_nodes_by_name_and_ctrl_n_picks_one(scratch):
    from procscope.agent_client import Remote

    a, b = Agent(_sock(), node="node-a"), Agent(_sock(), node="node-b")
    binary = unique_copy("/bin/sleep", scratch)
    try:
        app = _app(Remote(a.address), Remote(b.address), snapshot_dir=str(scratch))
        async with app.run_test(size=SIZE) as pilot:
            first, second = app.monitors
            # Both collect from the start, the second while the first is shown.
            assert await wait_for(pilot, lambda: all(os.getpid() in m.cache.by_pid for m in app.monitors), 30)
            await pilot.pause(1.2)
            status = _status(app)
            assert "node node-a (connected)" in status and "2 of 2 nodes connected (^N)" in status, status
            await pilot.press("ctrl+n")
            picker = " | ".join(label for _, label in app.screen.choices)
            assert "node-a" in picker and "node-b" in picker and "connected" in picker, picker
            await pilot.press("down", "enter")
            await pilot.pause(0.3)
            assert app.screen is second
            assert await wait_for(pilot, lambda: "node node-b (connected)" in _status(app))
            assert second.exporter.node == "node-b"  # its exports and exec ids carry its name
            assert "node&#160;node-b&#160;(connected)" in app.export_screenshot()  # what the terminal gets

            # All nodes in one list: a header row per node, the NODE column, one filter for all;
            # Enter opens a process in its node's monitor, on it.
            sleeper = subprocess.Popen([binary, "31"])
            try:
                assert await wait_for(pilot, lambda: all(sleeper.pid in m.cache.by_pid for m in app.monitors), 15)
                await pilot.press("ctrl+n", "home", "enter")
                await pilot.pause(0.3)
                fleet = app.screen
                assert isinstance(fleet, FleetScreen)
                await pilot.press("backslash", *f"pid:{sleeper.pid}", "enter")
                await pilot.pause(0.3)
                lines = [line.plain for line in fleet.lines]
                heads = [i for i, line in enumerate(lines) if line.startswith("▼ ")]
                assert [lines[i].split()[1] for i in heads] == ["node-a", "node-b"], lines
                found = [line for line in lines if f" {sleeper.pid} " in line]
                assert [line.split()[0] for line in found] == ["node-a", "node-b"], lines  # NODE first
                status = plain(app, fleet.query_one("#fleet-status").content)
                assert re.search(rf"filter: pid:{sleeper.pid} │ \d+ shown │ 2 of 2 nodes connected \(\^N\)", status)
                await pilot.press("end", "enter")  # the last row: node-b's sleeper
                await pilot.pause(0.3)
                assert app.screen is second
                tree = second.tree_pane
                assert tree.selected_key == second.cache.by_pid[sleeper.pid].key
                assert (
                    tree.scroll_offset.y <= tree.cursor < tree.scroll_offset.y + tree.scrollable_content_region.height
                )
            finally:
                sleeper.kill()
                sleeper.wait()

            # One node goes away: said as such; the other goes on collecting.
            assert b.stop() == 0
            assert await wait_for(pilot, lambda: "down since" in _status(app) and "1 of 2 nodes" in _status(app), 15)
            proc = subprocess.Popen([binary, "30"])
            try:
                assert await wait_for(pilot, lambda: proc.pid in first.cache.by_pid, 15)
                assert proc.pid not in second.cache.by_pid
            finally:
                proc.kill()
                proc.wait()
            await pilot.press("ctrl+n", "up", "enter")
            await pilot.pause(0.3)
            assert app.screen is first
    finally:
        for agent in (a, b):
            if agent.proc.poll() is None:
                assert agent.stop() == 0, "".join(agent.log)


async def test_processes_that_ended_while_a_node_was_away_end_when_it_comes_back(scratch):
    """The agent goes away; a process of its node ends meanwhile (no exit
    event can reach the monitor); when the agent is back, its list of the
    living lacks that process: the monitor ends it, and only it."""
    from procscope.agent_client import Remote

    address = _sock()
    agent = Agent(address, node="node-r")
    sleeper = subprocess.Popen([unique_copy("/bin/sleep", scratch), "60"])
    try:
        app = _app(Remote(address), snapshot_dir=str(scratch))
        async with app.run_test(size=SIZE) as pilot:
            cache = app.monitor.cache
            assert await wait_for(pilot, lambda: sleeper.pid in cache.by_pid, 30)
            key = cache.by_pid[sleeper.pid].key
            assert agent.stop() == 0, "".join(agent.log)
            assert await wait_for(pilot, lambda: "down since" in _status(app), 15)
            sleeper.kill()
            sleeper.wait()
            assert cache.procs[key].alive  # nothing told the monitor yet
            agent = Agent(address, node="node-r")
            assert await wait_for(pilot, lambda: not cache.procs[key].alive, 30)
            assert cache.by_pid[os.getpid()].alive and "node node-r (connected)" in _status(app)
    finally:
        sleeper.kill()
        sleeper.wait()
        if agent.proc.poll() is None:
            assert agent.stop() == 0, "".join(agent.log)


def _exec(i: int, node: str = "flood") -> bytes:
    import base64

    message = pb.GetEventsResponse(node_name=node, process_exec=pb.ProcessExec(process=pb.Process(
        exec_id=base64.b64encode(f"{node}:{10**9 + i}:{1000 + i}".encode()).decode(), pid={"value": 1000 + i},
        binary="/bin/true", flags="execve", start_time={"seconds": 1_700_000_000})))  # fmt: skip
    message.time.FromSeconds(1_700_000_000)
    return message.SerializeToString()


def _flood(context):
    for i in range(20_000):
        if not context.is_active():
            return
        yield _exec(i)
    while context.is_active():
        time.sleep(0.1)


def _stall(context):
    while context.is_active():  # accepts the call, never sends
        time.sleep(0.1)
    yield from ()


async def test_a_node_that_floods_or_stalls_never_stops_another(tmp_path, scratch):
    """A node that sends faster than the monitor takes: what did not fit
    its queue is counted as lost, for that node; one that never sends
    stays "connecting"; the node beside them goes on, and keys answer."""
    from procscope.agent_client import Remote

    flooding, stalling = f"unix://{tmp_path}/flood.sock", f"unix://{tmp_path}/stall.sock"
    flood, stall = FakeAgent(flooding, _flood), FakeAgent(stalling, _stall)
    real = Agent(_sock(), node="real")
    binary = unique_copy("/bin/sleep", scratch)
    try:
        app = _app(Remote(real.address), Remote(flooding, queue_size=100), Remote(stalling),
                   snapshot_dir=str(scratch))  # fmt: skip
        async with app.run_test(size=SIZE) as pilot:
            first, flooded, stalled = app.monitors
            assert await wait_for(pilot, lambda: os.getpid() in first.cache.by_pid, 30)
            assert await wait_for(pilot, lambda: flooded.source.counters().userspace_dropped > 0, 30)
            proc = subprocess.Popen([binary, "30"])
            try:
                # the selection follows its process as rows come and go: the key
                # moved it if another process is selected (bench/fleet.py: how fast)
                selected = first.tree_pane.selected_key
                await pilot.press("down")
                assert first.tree_pane.selected_key != selected
                assert await wait_for(pilot, lambda: proc.pid in first.cache.by_pid, 30)
            finally:
                proc.kill()
                proc.wait()
            assert first.source.counters().lost == 0
            await pilot.press("ctrl+n", "down", "enter")
            await pilot.pause(1.2)
            assert app.screen is flooded
            status = _status(app)
            assert "⚠ lost" in status and "user-space queue" in status, status
            assert "1 of 3 nodes connected" in status or "2 of 3 nodes connected" in status, status
            assert stalled.source.remote.state == "connecting" and len(stalled.cache.by_pid) == 0
    finally:
        flood.stop()
        stall.stop()
        assert real.stop() == 0, "".join(real.log)


def test_quitting_a_monitor_of_nodes_gives_the_terminal_back_and_leaves_them_serving():
    """q ends a monitor connected to two nodes as it ends the local one (at
    once, without unmounting: the local one timed in bench/startup.py): the
    terminal as it was, status 0, each agent saw its client leave and goes
    on serving."""
    a, b = Agent(_sock(), node="node-a"), Agent(_sock(), node="node-b")
    try:
        with Terminal(["--connect", a.address, "--connect", b.address]) as t:
            deadline = time.monotonic() + 60
            # Read as a terminal does while both connect: a full one would stop the monitor drawing.
            while not all(any(" joined" in line for line in agent.log) for agent in (a, b)):
                assert time.monotonic() < deadline, "the monitor did not connect to both nodes"
                t.read(0.2)
            t.read(1.0)  # both nodes' first frame
            out, status = t.quit()
        assert status == 0 and b"Traceback" not in out, out[-3000:]
        tail = out[out.rindex(b"\x1b[?1049l") :]  # the alternate screen left, after the last frame
        assert b"\x1b[?25h" in tail  # the cursor shown again
        assert a.said("left: ") and b.said("left: ")
        assert a.proc.poll() is None and b.proc.poll() is None
    finally:
        a.stop()
        b.stop()


def test_node_name_follows_tetragons_environment(monkeypatch):
    from procscope.export import node_name

    monkeypatch.delenv("HUBBLE_NODE_NAME", raising=False)
    monkeypatch.delenv("NODE_NAME", raising=False)
    assert node_name() == os.uname().nodename
    monkeypatch.setenv("NODE_NAME", "from-node-name")
    assert node_name() == "from-node-name"
    monkeypatch.setenv("HUBBLE_NODE_NAME", "from-hubble")
    assert node_name() == "from-hubble"  # the export's, as Tetragon's GetNodeNameForExport


def test_the_reader_does_not_write_each_frame_it_receives_in_hex():
    """h2 formats every frame it receives for its trace log, logged or not;
    hyperframe's repr of a DATA frame was all its payload in hex (2.5% of a
    monitor's CPU reading four agents). The reader's module makes it the
    length, and h2 still hands over the data as it came (no root)."""
    import h2.config
    import h2.connection
    import h2.events
    import hyperframe.frame

    import procscope.agent_stream  # noqa: F401 - what it changes on import

    payload = bytes(range(256)) * 64
    assert repr(hyperframe.frame.DataFrame(1, data=payload)).endswith(f"<{len(payload)} bytes>")
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":path", "/p"), (":scheme", "http"), (":authority", "a")])
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, payload[:16384])
    got = client.receive_data(server.data_to_send())
    assert [e.data for e in got if isinstance(e, h2.events.DataReceived)] == [payload[:16384]]
