"""`procscope agent`: Tetragon's gRPC API, read by Tetragon's own client
(tetra getevents, status, version) as it reads Tetragon."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import msgspec
import pytest

from procscope.agent_messages import Converter
from procscope.agent_objects import json_object
from procscope.api import tetragon_pb2 as pb
from procscope.api import tetragon_pb2_grpc
from procscope.stream import ProcessEvent

from .conftest import REPO, _tool, bpf_unavailable, unique_copy

pytestmark = pytest.mark.bpf


class Agent:
    """`procscope agent ARGS` until stop(); its log kept."""

    def __init__(self, address: str, *args: str, node: str | None = None):
        """``node``: its node name (NODE_NAME, as a DaemonSet sets it)."""
        if os.geteuid() != 0:
            bpf_unavailable("tests are not running as root")
        self.address = address
        env = {**os.environ, "NODE_NAME": node} if node else None
        self.proc = subprocess.Popen([sys.executable, "-m", "procscope.cli", "agent", "--address", address, *args],
                                     cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while not any("serving" in line for line in self.log):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the agent did not start:\n" + "".join(self.log))
            time.sleep(0.1)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def said(self, text: str, seconds: float = 10) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(text in line for line in self.log):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(30)
        self._reader.join(5)
        return status


@pytest.fixture
def agent():
    directory = tempfile.mkdtemp(prefix="procscope-agent-")
    running = Agent(f"unix://{directory}/agent.sock")
    yield running
    assert running.stop() == 0, "".join(running.log)


def tetra(address: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("tetra"), "--server-address", address, *args], capture_output=True, text=True,
                          timeout=60, **kw)  # fmt: skip


class Reader:
    """`tetra getevents -o json ARGS` reading the agent in the background."""

    def __init__(self, address: str, *args: str):
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - read while tetra writes it
        self.proc = subprocess.Popen([_tool("tetra"), "--server-address", address, "getevents", "-o", "json", *args],
                                     stdout=self.out, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def events(self) -> list[dict]:
        # pread: tetra's stdout shares this file's offset; a seek here would make it write over earlier lines.
        fd = self.out.fileno()
        text = os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        *whole, _ = text.split("\n")  # the last: being written (or empty)
        return [json.loads(line) for line in whole if line.strip()]

    def stop(self) -> list[dict]:
        self.proc.terminate()
        self.proc.wait(10)
        return self.events()


def wait_until(check, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _ours(events: list[dict], binary: str) -> list[tuple[str, str]]:
    """(kind, arguments) of each event of ``binary``, in the order received."""
    out = []
    for ev in events:
        kind = next(k for k in ("process_exec", "process_exit") if k in ev) if set(ev) & {"process_exec",
                                                                                          "process_exit"} else None  # fmt: skip
        if kind and ev[kind]["process"].get("binary") == binary:
            out.append((kind, ev[kind]["process"].get("arguments", "")))
    return out


def _stable(value):
    """An event without the fields two collectors stamp differently."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in ("exec_id", "parent_exec_id", "start_time",
                                                                      "time", "refcnt")}  # fmt: skip
    return [_stable(v) for v in value] if isinstance(value, list) else value


def test_tetra_reads_every_exec_and_exit_live_in_order_as_the_json_export(agent, scratch, tmp_path):
    """Each event as `procscope events` writes it to a file (both read back by
    tetra), with node_name and time; nothing missing, in order."""
    binary = unique_copy("/bin/true", scratch)
    export = tmp_path / "export.jsonl"
    said = tmp_path / "events.log"
    with open(said, "w") as log:
        events = subprocess.Popen([sys.executable, "-m", "procscope.cli", "events", "-o", str(export)], cwd=REPO,
                                  stderr=log)  # fmt: skip
    reader = Reader(agent.address)
    try:
        assert wait_until(lambda: reader.events() and "collecting" in said.read_text(), 60), said.read_text()
        time.sleep(1)
        for i in range(30):
            subprocess.run([binary, f"run{i}"], check=True)
        assert wait_until(lambda: len(_ours(reader.events(), binary)) == 60 and
                          len(_ours([json.loads(x) for x in export.read_text().splitlines()], binary)) == 60)  # fmt: skip
    finally:
        got = reader.stop()
        events.send_signal(signal.SIGTERM)  # as Ctrl-C (SIGINT may be ignored: a background job)
        events.wait(30)
    expected = [(kind, f"run{i}") for i in range(30) for kind in ("process_exec", "process_exit")]
    assert _ours(got, binary) == expected
    assert all(ev["node_name"] == os.uname().nodename and ev["time"] for ev in got)
    # tetra's reading of the file and of the stream: the same events, field for field but what each
    # collector stamps itself (the time its program ran, in exec_id and times) and its cache's refcnt
    from_file = tetra(agent.address, "getevents", "-o", "json", input=export.read_text())
    file_events = [json.loads(line) for line in from_file.stdout.splitlines()]
    mine = [ev for ev in got if (ev.get("process_exec") or ev.get("process_exit"))["process"].get("binary") == binary]
    theirs = [ev for ev in file_events
              if (ev.get("process_exec") or ev.get("process_exit") or {}).get("process", {}).get("binary") == binary]  # fmt: skip
    assert [_stable(ev) for ev in mine] == [_stable(ev) for ev in theirs]
    assert mine[0]["process_exec"]["process"]["process_credentials"]["caps"]["permitted"]  # root's, all there


def test_tetra_filters_go_through_the_allow_list(agent, scratch):
    wanted, other = unique_copy("/bin/true", scratch), unique_copy("/bin/true", scratch)
    by_name = Reader(agent.address, "--processes", os.path.basename(wanted))
    exits = Reader(agent.address, "--event-types", "PROCESS_EXIT")
    in_pod = Reader(agent.address, "--pods", "no-such-pod")
    try:
        assert agent.said("client 3")
        time.sleep(0.5)
        for binary in (wanted, other, wanted):
            subprocess.run([binary], check=True)
        assert wait_until(lambda: len(_ours(exits.events(), wanted)) == 2 and len(_ours(by_name.events(), wanted)) == 4)
        time.sleep(0.5)
    finally:
        named, exited, pods = by_name.stop(), exits.stop(), in_pod.stop()
    assert {ev["process_exec" if "process_exec" in ev else "process_exit"]["process"]["binary"] for ev in named} == {
        wanted
    }
    assert all("process_exit" in ev for ev in exited) and _ours(exited, other) == [("process_exit", "")]
    assert pods == []  # host processes have no pod


def test_an_agent_asked_for_tetragons_default_objects_leaves_out_credentials_and_namespaces(agent, scratch):
    """--no-process-cred --no-process-ns: the objects a Tetragon agent sends
    without --enable-process-cred and --enable-process-ns, as tetra reads
    them; the default agent beside it sends them all."""
    directory = tempfile.mkdtemp(prefix="procscope-agent-")
    lean = Agent(f"unix://{directory}/agent.sock", "--no-process-cred", "--no-process-ns")
    binary = unique_copy("/bin/true", scratch)
    readers = [Reader(agent.address), Reader(lean.address)]
    try:
        assert wait_until(lambda: all(r.events() for r in readers), 60)  # joined: the living came first
        subprocess.run([binary, "lean"], check=True)
        assert wait_until(lambda: all(len(_ours(r.events(), binary)) == 2 for r in readers))
    finally:
        full, got = (r.stop() for r in readers)
        assert lean.stop() == 0, "".join(lean.log)
    parts = {"cap", "process_credentials", "ns"}
    for events, kept in ((full, parts), (got, set())):
        execs = [ev["process_exec"] for ev in events if ev.get("process_exec", {}).get("process", {}).get("binary")
                 == binary]  # fmt: skip
        assert len(execs) == 1 and execs[0]["process"]["arguments"] == "lean"
        assert parts & execs[0]["process"].keys() == parts & execs[0]["parent"].keys() == kept
    assert all(not parts & (ev.get("process_exec") or ev.get("process_exit") or {}).get(role, {}).keys()
               for ev in got for role in ("process", "parent"))  # fmt: skip


def test_a_filter_procscope_cannot_apply_is_refused_not_ignored(agent):
    done = tetra(agent.address, "getevents", "--cel-expression", "process.pid > 0")
    assert done.returncode != 0 and "cel_expression filter is not supported by procscope" in done.stderr


def test_tetra_status_and_version(agent):
    status = tetra(agent.address, "status")
    assert status.returncode == 0 and "Health Status: running" in status.stdout
    version = tetra(agent.address, "version", "--server")
    from procscope import __version__

    assert version.returncode == 0 and f"Server version: {__version__}" in version.stdout


def test_a_client_that_speaks_no_grpc_is_closed_and_the_others_served(agent):
    """Garbage instead of HTTP/2, a method the service lacks, a request that
    is not a message: each ends that client's call or connection only."""
    import socket

    path = agent.address.removeprefix("unix://")
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100_000, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff"):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.settimeout(10)
            with contextlib.suppress(OSError):
                s.sendall(garbage)
                while s.recv(65536):  # closed by the agent
                    pass
    with grpc.insecure_channel(agent.address) as channel:
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary("/tetragon.FineGuidanceSensors/GetStackTraceTree")(b"", timeout=10)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as bad:
            channel.unary_unary("/tetragon.FineGuidanceSensors/GetHealth")(b"\xff\xff\xff", timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Health Status: running" in tetra(agent.address, "status").stdout


def test_a_client_opening_its_window_a_little_at_a_time_gets_every_message_whole(tmp_path):
    """The server makes its DATA frames itself (the messages as they are,
    h2 told how much went): a client whose stream window is 1,000 bytes,
    smaller than most messages, opened as it reads, gets each one whole and
    in order, and the call's OK (no root: a server of its own)."""
    import socket

    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    from procscope.agent_server import Methods, Server, frame

    messages = [bytes([i % 251]) * (1 + i * 37 % 3000) for i in range(300)]

    class Feed:
        def __init__(self):
            self.left, self.wake = list(messages), os.eventfd(1)  # always readable

        def fileno(self):
            return self.wake

        def take(self, limit):
            if not self.left:
                return None
            out, self.left = [frame(m) for m in self.left[:40]], self.left[40:]
            return out

        def close(self):
            os.close(self.wake)

    server = Server(Methods(unary={}, streams={"/t.S/Get": lambda request, peer: (Feed(), [])}))
    server.listen(f"unix://{tmp_path}/s.sock")
    server.start()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    body, status, largest = bytearray(), None, 0
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(f"{tmp_path}/s.sock")
            sock.settimeout(10)
            stream = client.get_next_available_stream_id()
            client.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", "/t.S/Get"),
                                         (":authority", "t"), ("content-type", "application/grpc")])  # fmt: skip
            client.send_data(stream, frame(b""), end_stream=True)
            sock.sendall(client.data_to_send())
            while status is None:
                data = sock.recv(1 << 16)
                assert data, "the server closed the connection"
                for event in client.receive_data(data):  # h2 refuses data beyond the window it gave
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        largest = max(largest, len(event.data))
                        client.acknowledge_received_data(event.flow_controlled_length, stream)
                    elif isinstance(event, h2.events.TrailersReceived):
                        status = dict(event.headers)["grpc-status"]
                    assert not isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)), event
                sock.sendall(client.data_to_send())
    finally:
        server.stop(0)
    got = []
    while body:
        n = int.from_bytes(body[1:5], "big")
        got.append(bytes(body[5 : 5 + n]))
        del body[: 5 + n]
    assert status == "0"
    assert largest <= 1000
    assert got == messages


def test_a_second_agent_on_the_same_socket_is_refused_and_the_first_serves_on(agent):
    second = subprocess.run([sys.executable, "-m", "procscope.cli", "agent", "--address", agent.address], cwd=REPO,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert second.returncode == 2 and "is another agent there?" in second.stderr, second.stderr
    assert "Health Status: running" in tetra(agent.address, "status").stdout


def test_the_socket_is_roots_alone(agent):
    path = agent.address.removeprefix("unix://")
    st = os.lstat(path)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(path)).st_mode & 0o077 == 0
    as_nobody = subprocess.run(["runuser", "-u", "nobody", "--", _tool("tetra"), "--server-address", agent.address,
                                "--timeout", "3s", "status"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert as_nobody.returncode != 0 and "Health Status" not in as_nobody.stdout


def test_a_directory_others_can_write_is_refused(tmp_path):
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o1777)
    done = subprocess.run([sys.executable, "-m", "procscope.cli", "agent", "--address", f"unix://{shared}/a.sock"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "only this user can write to" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_slow_client_misses_events_counted_and_told_while_others_get_all(scratch):
    """A client that does not read: its queue fills, what it misses is counted,
    said in the agent's log and told to it (rate_limit_info) when it reads
    again; tetra, reading meanwhile, misses nothing."""
    directory = tempfile.mkdtemp(prefix="procscope-agent-")
    agent = Agent(f"unix://{directory}/agent.sock", "--client-queue", "5000")
    binary = unique_copy("/bin/true", scratch)
    channel = grpc.insecure_channel(agent.address, options=[("grpc.http2.bdp_probe", 0)])  # a 64 KiB window
    stalled = tetragon_pb2_grpc.FineGuidanceSensorsStub(channel).GetEvents(pb.GetEventsRequest())
    never = grpc.insecure_channel(agent.address, options=[("grpc.http2.bdp_probe", 0)])  # full when the agent stops
    never_reads = tetragon_pb2_grpc.FineGuidanceSensorsStub(never).GetEvents(pb.GetEventsRequest())
    reader = Reader(agent.address)
    try:
        assert agent.said("client 3")
        time.sleep(0.5)
        subprocess.run(["sh", "-c", f"for i in $(seq 4000); do {binary} $i; done"], check=True)
        assert wait_until(lambda: len(_ours(reader.events(), binary)) == 8000, 90), agent.log[-5:]
        told = 0
        for message in stalled:  # reading again: the queue's 5,000, then what it missed is said
            if message.WhichOneof("event") == "rate_limit_info":
                told = message.rate_limit_info.number_of_dropped_process_events
                break
        assert told > 0
    finally:
        stalled.cancel()
        channel.close()
        got = reader.stop()
        assert agent.stop() == 0  # with a client whose queue is full: it still ends at once
        never_reads.cancel()
        never.close()
    assert _ours(got, binary) == [(k, str(i)) for i in range(1, 4001) for k in ("process_exec", "process_exit")]
    assert len([line for line in agent.log if "not sent (it read too slowly)" in line]) == 2, agent.log


class Objects:
    """An object sink: what the event stream hands the agent."""

    def __init__(self):
        self.objects: list[dict] = []
        self.messages: list = []  # of each exec and exit, the agent's own conversion from its processes
        self.converter = Converter()

    def write(self, event) -> None:
        if isinstance(event, ProcessEvent):
            data = self.converter.frames([event], framed=False)[0]  # as Broadcast.write makes it
            self.messages.append((pb.GetEventsResponse.FromString(data), event.object()))
            event = event.object()
        self.objects.append(event)

    def write_all(self, events: list) -> None:
        """A batch's execs and exits, as the agent converts them (framed for gRPC)."""
        for event, data in zip(events, self.converter.frames(events), strict=True):
            assert data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5
            self.messages.append((pb.GetEventsResponse.FromString(data[5:]), event.object()))
            self.objects.append(event.object())

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_messages_are_what_protobufs_own_reader_makes_of_the_export():
    """Every exec, exit and throttle of a recording (root's capabilities,
    containers, the /proc scan's processes): the agent's conversion equals
    json_format.ParseDict of the same object, field for field, and back
    (no root)."""
    from google.protobuf import json_format

    from procscope.agent import KINDS
    from procscope.replay import Replay
    from procscope.stream import EventStream, Output

    replay = Replay(str(REPO / "tests" / "data" / "demo.jsonl"))
    sink = Objects()
    stream = EventStream(replay.new_cache(5 * 10**9), [Output(sink, KINDS, objects=True)])
    stream.feed(list(replay.events()))
    assert len(sink.objects) > 40 and {next(iter(o)) for o in sink.objects} >= {"process_exec", "process_exit"}
    convert = Converter()
    # The agent's messages, made from the processes' (each kept while the process shows the same): the same.
    assert len(sink.messages) > 40
    for message, obj in sink.messages:
        assert message == convert.response(obj), obj
    for obj in sink.objects:
        message = convert.response(obj)
        assert message == json_format.ParseDict(obj, pb.GetEventsResponse(), ignore_unknown_fields=True)
        # And back, as the monitor reads another machine: what protobuf's own writer makes.
        assert json_object(message) == json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert convert.response(sink.objects[0]).process_exec.process.process_credentials.caps.permitted


def test_processes_read_from_one_template_are_each_their_own():
    """The monitor reads a storm's children from the object of the first
    (json_object keeps what they show alike): each one's own exec id, pid,
    start, parent, tid and refcnt are its own, and one without them has
    none; as protobuf's own writer makes them (no root)."""
    from google.protobuf import json_format

    def child(**own) -> pb.Process:
        return pb.Process(binary="/tmp/storm/true", arguments="-x", cwd="/", flags="execve clone", uid={"value": 0},
                          cap=pb.Capabilities(permitted=[pb.CAP_CHOWN], effective=[pb.CAP_CHOWN]),
                          in_init_tree={"value": False}, **own)  # fmt: skip

    children = [child(), child(pid={"value": 0}, tid={"value": 7}), child(exec_id="b3RoZXI=", refcnt=2)]
    for n in range(3):
        start = {"seconds": 1_700_000_000 + n, "nanos": n}
        children.insert(n, child(exec_id=f"bm9kZTox{n}", pid={"value": 100 + n}, tid={"value": 200 + n}, refcnt=n,
                                 parent_exec_id="cGFyZW50", start_time=start))  # fmt: skip
    for message in children * 2:  # again: from the memo of each whole process too
        assert json_object(message) == json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_a_node_sending_huge_processes_does_not_fill_the_monitors_memory():
    """A node (a hostile agent, or one whose users run processes with
    megabytes of arguments) sends processes of 256 KiB, each new: the
    monitor reads each as protobuf's own writer would and keeps none of them
    (the objects it keeps by their bytes are those of a few KB), where it
    kept up to 8,192 of any size (no root)."""
    import gc
    import tracemalloc

    from google.protobuf import json_format

    def huge(n: int) -> pb.Process:
        return pb.Process(exec_id=f"aHVnZTo{n}", binary="/bin/x", arguments=f"{n} " + "A" * (256 << 10),
                          cap=pb.Capabilities(permitted=[pb.CAP_CHOWN] * (64 << 10)))  # fmt: skip

    first = huge(0)
    assert json_object(first) == json_format.MessageToDict(first, preserving_proto_field_name=True)
    gc.collect()
    tracemalloc.start()
    try:
        for n in range(1, 61):
            json_object(huge(n))
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 4 << 20, f"{held >> 20} MiB held after 60 processes of 256 KiB"


def test_the_numbers_encoded_by_hand_are_protobufs_own():
    """The agent writes pids, times and refcnts into protobuf's wire format
    itself: each as protobuf's own encoder writes it, at every length (no root)."""
    from google.protobuf import timestamp_pb2

    from procscope.agent_messages import _stamp, _varint

    for bits in range(40):
        for n in {(1 << bits) - 1, 1 << bits, (1 << bits) + 1} - {0}:  # 0: a field left out
            assert b"\x08" + _varint(n) == timestamp_pb2.Timestamp(seconds=n).SerializeToString(), n
    for wall in (
        0,
        999_999_999,
        1_000_000_000,
        1_796_000_000_123_456_789,
        1_796_000_001_000_000_000,
        (1 << 28) - 1,
        1 << 28,
        1_796_000_000_000_000_000 + (1 << 28),
    ):  # nanos in four bytes, and five
        t = timestamp_pb2.Timestamp(seconds=wall // 10**9, nanos=wall % 10**9).SerializeToString()
        assert _stamp(wall) == bytes([len(t)]) + t, wall
    with pytest.raises(ValueError):
        _varint(-1)


def test_a_storms_messages_made_from_one_template_are_each_its_own():
    """Children of one parent in a Kubernetes pod, alike but for what is
    each one's own (exec id, pid, start, tid, the pid in its container):
    the agent's message of each exec and exit, joined from the template and
    its own fields, is what protobuf's reader makes of the export (no root)."""
    from google.protobuf import json_format

    from procscope.agent import KINDS
    from procscope.cache import ProcessCache
    from procscope.containers import container_of
    from procscope.probes.events import ExitEvent
    from procscope.runtimes import ContainerInfo, Pod
    from procscope.stream import EventStream, Output

    from .factories import DOCKER, ROOT, exec_event

    cache = ProcessCache()
    sink = Objects()
    stream = EventStream(cache, [Output(sink, KINDS, objects=True)])
    shell = exec_event(300, 20, ROOT, "/bin/sh", cgroup=DOCKER, nspid=1)
    stream.feed([shell])
    c = container_of(DOCKER)
    cache.cgroup_index.info[c.id] = ContainerInfo(
        c.id, "docker", "web-1", "nginx:1.27", "sha256:ab", pod=Pod("shop-1", "prod")
    )
    for i in range(1, 40):
        child = exec_event(1000 + i, 100 * i, shell.key, "/bin/true", args=("x",), cgroup=DOCKER, nspid=i + 1)
        child = msgspec.structs.replace(child, ino=77, tid=1000 + i, time=100 * i + i)  # the same binary
        stream.feed([child, *([ExitEvent(100 * i + 50, child.key, child.key.pid, i % 3, 0)] if i % 2 else [])])
    assert len(sink.messages) >= 55
    pids = set()
    for message, obj in sink.messages:
        assert message == json_format.ParseDict(obj, pb.GetEventsResponse(), ignore_unknown_fields=True), obj
        body = message.process_exec if message.HasField("process_exec") else message.process_exit
        pids.add(body.process.pod.container.pid.value)
    assert pids == {0, *range(2, 41)}  # each child's own pid in its container (the shell's exec came before the pod)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificates(d) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, by openssl."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca", "-keyout", "ca.key",
        "-out", "ca.pem")  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out",
            f"{name}.csr")  # fmt: skip
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", f"{name}.ext", "-out", f"{name}.pem")  # fmt: skip
    return {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_a_client_whose_headers_are_not_utf8_costs_only_its_connection(agent):
    """A call whose headers are not UTF-8: that connection ends, the agent
    serves on, and its log holds no traceback."""
    import socket

    import h2.config
    import h2.connection

    h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    h.initiate_connection()
    h.send_headers(h.get_next_available_stream_id(), [
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/tetragon.FineGuidanceSensors/GetHealth"),
        (b":authority", b"localhost"), (b"content-type", b"application/grpc"), (b"x-evil", b"\xff\xfe"),
    ])  # fmt: skip
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(agent.address.removeprefix("unix://"))
        s.sendall(h.data_to_send())
        s.settimeout(3)
        with contextlib.suppress(OSError):
            while s.recv(65536):
                pass
    assert "Health Status: running" in tetra(agent.address, "status").stdout
    assert not any("Traceback" in line for line in agent.log), "".join(agent.log)


def test_tcp_without_tls_is_said_loudly():
    agent = Agent(f"127.0.0.1:{_free_port()}")
    try:
        assert any("WITHOUT TLS" in line for line in agent.log)
        assert "Health Status: running" in tetra(agent.address, "status").stdout
    finally:
        assert agent.stop() == 0


def test_mutual_tls_lets_in_only_a_client_with_a_certificate_of_the_ca(tmp_path):
    c = _certificates(tmp_path)
    agent = Agent(f"127.0.0.1:{_free_port()}", "--tls-cert", c["server.pem"], "--tls-key", c["server.key"],
                  "--tls-client-ca", c["ca.pem"])  # fmt: skip
    try:
        assert not any("WITHOUT TLS" in line for line in agent.log)
        trusted = ("--tls-ca-cert-files", c["ca.pem"])
        mine = ("--tls-cert-file", c["client.pem"], "--tls-key-file", c["client.key"])
        assert "Health Status: running" in tetra(agent.address, *trusted, *mine, "status").stdout
        for refused in (tetra(agent.address, *trusted, "--timeout", "3s", "status"),  # no client certificate
                        tetra(agent.address, "--timeout", "3s", "status")):  # plain text to a TLS port  # fmt: skip
            assert refused.returncode != 0 and "Health Status" not in refused.stdout
    finally:
        assert agent.stop() == 0


async def test_the_monitor_watches_another_machine_through_its_agent(agent, scratch):
    """`procscope --connect ADDR`: the remote node's processes (those alive
    when it connected, then its execs and exits) in the tree, the node and
    the connection in the status line; no signal goes to a remote pid."""
    from procscope.agent_client import Remote
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import RemoteSource

    from .conftest import SIZE, plain, wait_for

    binary = unique_copy("/bin/sleep", scratch)
    app = ProcscopeApp(RemoteSource(Remote(agent.address), 5 * 10**9), snapshot_dir=str(scratch))
    async with app.run_test(size=SIZE) as pilot:
        cache = app.monitor.cache
        assert await wait_for(pilot, lambda: os.getpid() in cache.by_pid, seconds=20)  # alive when it connected
        proc = subprocess.Popen([binary, "30"])
        try:
            assert await wait_for(pilot, lambda: proc.pid in cache.by_pid and cache.by_pid[proc.pid].binary == binary)
            key = cache.by_pid[proc.pid].key
            await pilot.pause(1.2)
            status = plain(app, app.query_one("#status").content)
            assert f"node {os.uname().nodename} (connected)" in status
            assert app.monitor.source.live is False  # another machine's pids: signals refused
        finally:
            proc.kill()
            proc.wait()
        assert await wait_for(pilot, lambda: (p := cache.procs.get(key)) is None or not p.alive)  # its exit came


async def test_an_agent_that_cannot_be_reached_is_said_and_tried_again(tmp_path):
    from procscope.agent_client import Remote
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import RemoteSource

    from .conftest import SIZE, plain, wait_for

    remote = Remote(f"unix://{tmp_path}/nobody-here.sock")
    app = ProcscopeApp(RemoteSource(remote, 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: "reconnecting in 2 s" in plain(app, app.query_one("#status").content))
        said = [str(n.message) for n in app._notifications]
        assert len([m for m in said if "cannot reach it" in m and "is an agent listening there?" in m]) == 1, said
        await pilot.press("j")  # the screen answers meanwhile


async def test_the_monitor_connects_over_mutual_tls(tmp_path):
    from procscope.agent_client import credentials

    c = _certificates(tmp_path)
    agent = Agent(f"127.0.0.1:{_free_port()}", "--tls-cert", c["server.pem"], "--tls-key", c["server.key"],
                  "--tls-client-ca", c["ca.pem"])  # fmt: skip
    try:
        assert await _connects(credentials(c["ca.pem"], c["client.pem"], c["client.key"]), agent.address, tmp_path)
        assert not await _connects(credentials(c["ca.pem"]), agent.address, tmp_path)  # no certificate of its own
    finally:
        assert agent.stop() == 0


async def _connects(tls, address: str, tmp_path) -> bool:
    """Whether a monitor with ``tls`` gets the agent's processes (else it says it reconnects)."""
    from procscope.agent_client import Remote
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import RemoteSource

    from .conftest import SIZE, plain, wait_for

    app = ProcscopeApp(RemoteSource(Remote(address, tls=tls), 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        if await wait_for(pilot, lambda: os.getpid() in app.monitor.cache.by_pid, seconds=10):
            return True
        assert "reconnecting in" in plain(app, app.query_one("#status").content)
        return False


class FakeAgent:
    """A gRPC server at ``address`` that answers GetEvents with ``answer(context)``'s bytes: garbage, or nothing."""

    def __init__(self, address: str, answer):
        from concurrent import futures

        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        handler = grpc.method_handlers_generic_handler("tetragon.FineGuidanceSensors", {
            "GetEvents": grpc.unary_stream_rpc_method_handler(
                lambda request, context: answer(context), request_deserializer=pb.GetEventsRequest.FromString,
                response_serializer=lambda data: data),
        })  # fmt: skip
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(address)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


def _garbage(context):
    good = pb.GetEventsResponse(node_name="evil").SerializeToString()
    yield good
    yield b"\xff\xff\xff\xff not a message"
    while context.is_active():
        time.sleep(0.1)


def _hostile_names(context):
    """Events whose names and arguments hold escapes, markup, newlines and invalid text."""
    for i, binary in enumerate(["/tmp/\x1b]0;PWNED\x07x", "/tmp/[@click=app.quit]z[/]", "/tmp/a\nb"]):
        message = pb.GetEventsResponse(node_name="evil\x1b[2J", process_exec=pb.ProcessExec(process=pb.Process(
            exec_id=base64.b64encode(f"evil:{10**9 + i}:{100 + i}".encode()).decode(), pid={"value": 100 + i},
            binary=binary, arguments="\x1b[31m[red]x[/]",
            flags="execve", start_time={"seconds": 1_700_000_000 + i})))  # fmt: skip
        message.time.FromSeconds(1_700_000_000 + i)
        yield message.SerializeToString()
    while context.is_active():
        time.sleep(0.1)


async def test_a_server_that_sends_garbage_is_said_and_left(tmp_path):
    """A message that is not a GetEventsResponse: said once, the connection
    tried again; the screen answers meanwhile."""
    from procscope.agent_client import Remote
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import RemoteSource

    from .conftest import SIZE, plain, wait_for

    address = f"unix://{tmp_path}/fake.sock"
    fake = FakeAgent(address, _garbage)
    try:
        app = ProcscopeApp(RemoteSource(Remote(address), 5 * 10**9), snapshot_dir=str(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: "reconnecting in" in plain(app, app.query_one("#status").content))
            await pilot.pause(2.5)  # tried again meanwhile: not said again
            said = [str(n.message) for n in app._notifications]
            assert said == [f"{address}: it sent what is not a Tetragon event (GetEventsResponse); is it a procscope "
                            "or Tetragon agent?; reconnecting"], said  # fmt: skip
            await pilot.press("j", "k")
    finally:
        fake.stop()


class RawAgent:
    """An HTTP/2 server at a Unix socket that answers any call with ``headers``
    (invalid UTF-8 among them, as a hostile server may send) and ``messages``,
    then holds the stream open."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]], messages: list[bytes]):
        import socket

        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(4)
        self.headers, self.messages = headers, messages
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import h2.config
        import h2.connection
        import h2.events

        from procscope.agent_server import frame

        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
                h.initiate_connection()
                while data := conn.recv(65536):
                    for event in h.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            h.send_headers(event.stream_id, [(b":status", b"200"), *self.headers])
                            h.send_data(event.stream_id, b"".join(frame(m) for m in self.messages))
                    conn.sendall(h.data_to_send())

    def stop(self) -> None:
        self.sock.close()


async def test_a_server_whose_headers_are_not_utf8_is_read_all_the_same(tmp_path):
    """Metadata that is not UTF-8 (or holds escapes) neither stops the node's
    reader nor reaches the screen raw: its events arrive."""
    from procscope.agent_client import Remote

    path = f"{tmp_path}/raw.sock"
    exec_message = pb.GetEventsResponse(node_name="raw", process_exec=pb.ProcessExec(process=pb.Process(
        exec_id=base64.b64encode(b"raw:1000000000:4242").decode(), pid={"value": 4242}, binary="/bin/true",
        flags="execve", start_time={"seconds": 1_700_000_000})))  # fmt: skip
    raw = RawAgent(path, [(b"content-type", b"application/grpc"), (b"x-evil", b"\xff\xfe\x1b[2J")],
                   [exec_message.SerializeToString()])  # fmt: skip
    remote = Remote(f"unix://{path}")
    remote.start()
    try:
        deadline = time.monotonic() + 10
        while not remote.events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remote.state == "connected" and remote.node == "raw"
        assert any(getattr(ev, "binary", "") == "/bin/true" for ev in remote.drain())
    finally:
        remote.stop()
        raw.stop()


async def test_a_servers_frames_larger_than_http2s_default_are_read(tmp_path):
    """The reader asks for DATA frames of up to 1 MiB (HTTP/2's default is
    16 KiB, and h2 handles each frame in Python at both ends): a server that
    sends ~44 KiB of events in one frame (h2 refuses to send a frame larger
    than the reader asked for) is read, every event."""
    from procscope.agent_client import Remote

    path = f"{tmp_path}/raw.sock"
    messages = [pb.GetEventsResponse(node_name="raw", process_exec=pb.ProcessExec(process=pb.Process(
        exec_id=base64.b64encode(f"raw:1000000000:{pid}".encode()).decode(), pid={"value": pid}, binary="/bin/true",
        arguments="x" * 1000, flags="execve", start_time={"seconds": 1_700_000_000})))
        .SerializeToString() for pid in range(5000, 5040)]  # fmt: skip
    assert sum(map(len, messages)) > 2 * 16384
    raw = RawAgent(path, [(b"content-type", b"application/grpc")], messages)
    remote = Remote(f"unix://{path}")
    remote.start()
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 40 and time.monotonic() < deadline:
            seen |= {ev.key.pid for ev in remote.drain() if getattr(ev, "binary", "") == "/bin/true"}
            time.sleep(0.05)
        assert seen == set(range(5000, 5040)) and remote.state == "connected"
    finally:
        remote.stop()
        raw.stop()


async def test_hostile_names_from_another_machine_never_reach_the_terminal_raw(tmp_path):
    from procscope.agent_client import Remote
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import RemoteSource

    from .conftest import SIZE, wait_for

    address = f"unix://{tmp_path}/fake.sock"
    fake = FakeAgent(address, _hostile_names)
    try:
        app = ProcscopeApp(RemoteSource(Remote(address), 5 * 10**9), snapshot_dir=str(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            assert await wait_for(pilot, lambda: len(app.monitor.cache.by_pid) == 3, seconds=15)
            await pilot.pause(1.2)
            shown = app.export_screenshot()
            assert "\x1b" not in shown and "PWNED" in shown  # the text is shown, escaped, never interpreted
            assert app.is_running  # [@click=app.quit] was not markup
    finally:
        fake.stop()


def test_the_monitors_filter_becomes_the_agents_allow_and_deny_lists():
    from procscope.agent_client import request_for
    from procscope.query import Query

    request = request_for(Query.parse("bin:nginx args:/--port=\\d+/ pid:42,43 k8s-ns:web -bin:/sh$/ user:root"))
    [allow] = request.allow_list
    assert list(allow.binary_regex) == ["nginx"] and list(allow.arguments_regex) == ["--port=\\d+"]
    assert list(allow.pid_set) == [42, 43] and list(allow.namespace) == ["web"]
    assert [list(d.binary_regex) for d in request.deny_list] == [["sh$"]]
    assert request_for(Query.parse("bin:a.b")).allow_list[0].binary_regex == ["a\\.b"]  # text, not a regex
    assert request_for(Query.parse("user:root curl")) == pb.GetEventsRequest()  # nothing the lists can say


async def test_a_connected_monitor_is_sent_only_what_its_filter_may_show(agent, scratch):
    """The filter goes to the agent: another binary's events never arrive
    (not merely hidden), the filtered one's do, with its parents."""
    from procscope.agent_client import Remote, request_for
    from procscope.query import Query
    from procscope.tui.app import ProcscopeApp
    from procscope.tui.sources import RemoteSource

    from .conftest import SIZE, wait_for

    wanted, other = unique_copy("/bin/sleep", scratch), unique_copy("/bin/sleep", scratch)
    query = Query.parse(f"bin:{os.path.basename(wanted)}")
    app = ProcscopeApp(RemoteSource(Remote(agent.address, request_for(query)), 5 * 10**9),
                       query_text=str(query), snapshot_dir=str(scratch))  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: agent.said("client 1 (unix:) joined"))
        await pilot.pause(0.5)
        procs = [subprocess.Popen([binary, "30"]) for binary in (other, wanted)]
        try:
            cache = app.monitor.cache
            assert await wait_for(pilot, lambda: procs[1].pid in cache.by_pid, seconds=15)
            await pilot.pause(2.5)
            assert procs[0].pid not in cache.by_pid  # never sent
            assert os.getpid() in cache.by_pid  # the wanted one's ancestors come with it (parent objects)
            # No event since: its age still goes on, by that machine's clock (from the wall clock), as there.
            age = app.monitor.now() - cache.by_pid[procs[1].pid].image.time
            assert 2 * 10**9 <= age <= 10 * 10**9
        finally:
            for p in procs:
                p.kill()
                p.wait()
