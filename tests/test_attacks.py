"""Attacks by an unprivileged local user on procscope, which runs as root:
each test makes a real account (useradd), acts as it (runuser) the way
the attack was reproduced, and checks what root's procscope did against
the kernel and the files. Needs root (and BPF where procscope collects)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO
from .test_runc import container  # noqa: F401 - a fixture: a real runc container

ATTACKER = "psattacker"


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("attacks: the victim is root's procscope")


@pytest.fixture(scope="session")
def attacker() -> pwd.struct_passwd:
    """An unprivileged account with a home of its own."""
    _need_root()
    try:
        pwd.getpwnam(ATTACKER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", ATTACKER], check=True)
    user = pwd.getpwnam(ATTACKER)
    os.makedirs(user.pw_dir, exist_ok=True)
    os.chown(user.pw_dir, user.pw_uid, user.pw_gid)
    os.chmod(user.pw_dir, 0o755)
    return user


def as_user(script: str, check: bool = True) -> subprocess.CompletedProcess:
    """``bash -c script`` as the attacker, in their home."""
    home = pwd.getpwnam(ATTACKER).pw_dir
    return subprocess.run(["runuser", "-u", ATTACKER, "--", "bash", "-c", script], cwd=home, check=check,
                          capture_output=True, text=True)  # fmt: skip


def spawn_as_user(script: str) -> subprocess.Popen:
    home = pwd.getpwnam(ATTACKER).pw_dir
    return subprocess.Popen(["runuser", "-u", ATTACKER, "--", "setsid", "bash", "-c", script], cwd=home,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def procscope(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "procscope", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _kill_user_processes() -> None:
    subprocess.run(["pkill", "-KILL", "-u", ATTACKER], check=False)
    time.sleep(0.2)


# -- 1 and 3: the runtime lookup ------------------------------------------------------
FORGED = {
    "Name": "/kube-apiserver",
    "Config": {
        "Image": "registry.k8s.io/kube-apiserver:v1.30.0",
        "Labels": {"io.kubernetes.pod.name": "kube-apiserver-master", "io.kubernetes.pod.namespace": "kube-system"},
    },
    "State": {"StartedAt": "2026-01-01T00:00:00Z", "Pid": 1},
}


@pytest.mark.bpf
def test_a_users_fake_dockerd_can_neither_stall_collection_nor_name_a_real_container(attacker, container):  # noqa: F811
    """A process named dockerd, run by a user, pointing at a FIFO for its
    config and at a forged state directory: `events` and `snapshot` finish
    on time, the real container keeps its id and no forged name, and the
    ignored daemon is counted."""
    _, cid = container
    as_user(f"rm -rf e.json fake; mkfifo e.json; mkdir -p fake/containers/{cid}")
    Path(attacker.pw_dir, "fake", "containers", cid, "config.v2.json").write_text(json.dumps(FORGED))
    os.chown(Path(attacker.pw_dir, "fake", "containers", cid, "config.v2.json"), attacker.pw_uid, attacker.pw_gid)
    fake = spawn_as_user(
        'exec -a dockerd python3 -c "import time; time.sleep(600)" --config-file "$HOME/e.json" --data-root "$HOME/fake"'
    )
    try:
        time.sleep(0.3)
        started = time.monotonic()
        events = procscope("events", "--duration", "3", "--include", "procfs", "--container", cid[:12], timeout=40)
        took = time.monotonic() - started
        assert events.returncode == 0, events.stderr
        assert took < 20, f"events --duration 3 took {took:.1f} s"
        lines = [json.loads(line) for line in events.stdout.splitlines()]
        assert lines, "no event of the container's processes was written"
        assert "kube" not in events.stdout
        assert "enrichment failures" in events.stderr

        started = time.monotonic()
        snap = procscope("snapshot", "--container", cid[:12], timeout=40)
        assert snap.returncode == 0, snap.stderr
        assert time.monotonic() - started < 20
        doc = json.loads(snap.stdout)
        assert doc["processes"] and "kube" not in snap.stdout
        assert doc["counters"]["cache"]["enrichment_failures"] >= 1
    finally:
        fake.kill()
        _kill_user_processes()


def test_a_runtime_state_file_that_is_a_fifo_link_or_not_roots_is_not_read(tmp_path, attacker):
    """Inside a root-owned data root: a FIFO config.v2.json returns at once
    (never waited on), a link to a file is not followed, a file owned by a
    user is not believed; each counted once."""
    from procscope.containers import Container
    from procscope.runtimes import Runtimes

    root = tmp_path / "docker"
    ids = ["ab" * 32, "cd" * 32, "ef" * 32]
    for cid in ids:
        (root / "containers" / cid).mkdir(parents=True)
    os.mkfifo(root / "containers" / ids[0] / "config.v2.json")
    (tmp_path / "real.json").write_text(json.dumps(FORGED))
    os.symlink(tmp_path / "real.json", root / "containers" / ids[1] / "config.v2.json")
    owned = root / "containers" / ids[2] / "config.v2.json"
    owned.write_text(json.dumps(FORGED))
    os.chown(owned, attacker.pw_uid, attacker.pw_gid)
    r = Runtimes(docker=[str(root)], containerd=(), storage=())
    started = time.monotonic()
    for cid in ids:
        assert r.describe(Container(cid, "docker")) is None
    assert time.monotonic() - started < 1.0
    assert r.counters.enrichment_failures == 3
    # The owner's file, made root's and private, is believed.
    os.chown(owned, 0, 0)
    owned.chmod(0o600)
    r = Runtimes(docker=[str(root)], containerd=(), storage=())
    assert r.describe(Container(ids[2], "docker")).name == "kube-apiserver"


def test_a_data_root_below_a_users_directory_is_not_believed(tmp_path, attacker):
    from procscope.containers import Container
    from procscope.runtimes import Runtimes

    cid = "ab" * 32
    user_dir = tmp_path / "user"
    (user_dir / "docker" / "containers" / cid).mkdir(parents=True)
    (user_dir / "docker" / "containers" / cid / "config.v2.json").write_text(json.dumps(FORGED))
    tmp_path.chmod(0o755)
    os.chown(user_dir, attacker.pw_uid, attacker.pw_gid)  # the user could swap anything below it
    r = Runtimes(docker=[str(user_dir / "docker")], containerd=(), storage=())
    assert r.describe(Container(cid, "docker")) is None
    assert r.counters.enrichment_failures == 1


def test_a_stalled_lookup_is_waited_for_a_bounded_time_and_blocks_nothing_after():
    from procscope.safe_read import Deadline

    d = Deadline(0.2)
    assert d.call(lambda: 7) == 7
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        d.call(lambda: time.sleep(3))
    with pytest.raises(TimeoutError):
        d.call(lambda: 8)  # the stalled one still runs: refused at once
    assert time.monotonic() - started < 0.5
    time.sleep(3)
    assert d.call(lambda: 9) == 9


# -- 2: rotation into a directory other users can write ----------------------------------
@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A world-writable sticky directory, as /tmp is (in one the user can reach)."""
    top = Path(tempfile.mkdtemp(prefix="procscope-attack-", dir="/tmp"))
    top.chmod(0o755)
    d = top / "shared"
    d.mkdir()
    d.chmod(0o1777)
    yield d
    shutil.rmtree(top, ignore_errors=True)


PLANT = r"""
import os, sys, time
from datetime import datetime, timedelta, timezone
d, victim, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
now = datetime.now(timezone.utc)
for ms in range(int(seconds * 1000)):
    stamp = (now + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
    for name in (f"rec-{stamp}.json.gz.part", f"rec-{stamp}.json.gz"):
        try:
            os.symlink(victim, os.path.join(d, name))
        except FileExistsError:
            pass
for stamp in ("2099-01-01T00-00-00.000", "2099-01-01T00-00-00.001", "2099-01-01T00-00-00.002"):
    open(os.path.join(d, f"rec-{stamp}.json"), "w").write("planted\n")
"""


def _rotate_under_attack(shared_dir: Path, max_backups: int) -> tuple[list[str], list[int], Path]:
    from procscope.stream_files import Rotation, StreamFile

    victim = shared_dir.parent / "victim"
    victim.write_text("root's own file\n")
    as_user(f"python3 -c '{PLANT}' {shared_dir} {victim} 4")
    f = StreamFile(str(shared_dir / "rec.json"), Rotation(max_bytes=20_000, max_backups=max_backups, compress=True))
    for i in range(3000):
        f.write(json.dumps({"n": i, "pad": "x" * 40}).encode())
        if i % 500 == 0:
            time.sleep(0.01)
    f.close()
    assert victim.read_text() == "root's own file\n" and oct(victim.stat().st_mode & 0o777) == "0o644"
    numbers = []
    import gzip

    for b in f.backups():
        numbers += [json.loads(x)["n"] for x in gzip.decompress(Path(b).read_bytes()).splitlines()]
    numbers += [json.loads(x)["n"] for x in (shared_dir / "rec.json").read_text().splitlines()]
    return f.backups(), numbers, victim


def test_rotation_never_writes_through_planted_links_nor_prunes_planted_names(attacker, shared_dir):
    backups, numbers, _ = _rotate_under_attack(shared_dir, max_backups=2)
    assert len(backups) == 2 and all(b.endswith(".gz") and os.stat(b).st_uid == 0 for b in backups)
    assert numbers == list(range(numbers[0], 3000))  # the newest, in order, nothing missing between
    planted = sorted(p.name for p in shared_dir.iterdir() if p.name.startswith("rec-2099"))
    assert len(planted) == 3  # the user's files: not procscope's to prune


def test_max_backups_0_keeps_every_rotated_file(attacker, shared_dir):
    backups, numbers, _ = _rotate_under_attack(shared_dir, max_backups=0)
    assert len(backups) > 5
    assert numbers == list(range(3000))  # nothing pruned


def test_an_output_owned_by_another_user_or_under_proc_or_sys_is_refused(attacker, shared_dir):
    as_user(f"echo mine > {shared_dir}/out.json")
    for path, why in ((shared_dir / "out.json", "belongs to uid"), ("/proc/version", "kernel interface"),
                      ("/sys/kernel/uevent_seqnum", "kernel interface")):  # fmt: skip
        out = procscope("events", "--duration", "1", "-o", str(path), timeout=30)
        assert out.returncode == 2 and why in out.stderr, out.stderr
        assert len([line for line in out.stderr.splitlines() if line.strip()]) == 1, out.stderr
    assert (shared_dir / "out.json").read_text() == "mine\n"


# -- 5: snapshots into a directory other users can write ---------------------------------
TOGGLE = r"""
d=$1; mkfifo "$d/fifo"; : > "$d/captured"
( while :; do cat "$d/fifo" >> "$d/captured"; done ) &
end=$((SECONDS+6))
while [ $SECONDS -lt $end ]; do
  for n in "$d"/snap-*.json.next; do :; done
  ln -sfn "$d/fifo" "$d/snap.json" 2>/dev/null; rm -f "$d/snap.json"
  ln -sfn "$d/fifo" "$d/snap-2.json" 2>/dev/null; mkfifo "$d/snap-3.json" 2>/dev/null; rm -f "$d/snap-2.json" "$d/snap-3.json"
done
kill %1
"""


def test_a_toggling_link_or_fifo_never_captures_a_snapshot(attacker, shared_dir):
    from procscope.safe_write import OutputError
    from procscope.snapshot import write

    toggler = spawn_as_user(f"bash -c '{TOGGLE}' x {shared_dir}")
    try:
        time.sleep(0.3)
        written = refused = 0
        for i in range(300):
            name = ("snap.json", "snap-2.json", "snap-3.json")[i % 3]
            try:
                write(str(shared_dir / name), {"secret": "root's snapshot"}, replace=False)
                st = os.lstat(shared_dir / name)
                assert st.st_uid == 0 and oct(st.st_mode & 0o777) == "0o600"
                os.unlink(shared_dir / name)
                written += 1
            except OutputError as exc:
                assert "\n" not in str(exc)
                refused += 1
    finally:
        toggler.terminate()
        _kill_user_processes()
    assert written + refused == 300
    captured = shared_dir / "captured"
    assert not captured.exists() or "secret" not in captured.read_text()


# -- 4: serve ------------------------------------------------------------------------------
def _serve(*args: str):
    from .test_serve import start_server

    return start_server(*args)


def _monitors(server: subprocess.Popen) -> list:
    """The server's monitors still running (a reaped one may be a zombie for a moment)."""
    import psutil

    running = []
    for p in psutil.Process(server.pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "ui" in p.cmdline():
                running.append(p)
        except psutil.Error:  # gone meanwhile
            continue
    return running


async def _status(url: str, **headers) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_serve_lets_in_only_the_token_holder_and_no_other_site(attacker):
    import asyncio
    import urllib.error
    import urllib.request

    from .test_metrics import free_port
    from .test_serve import stop_server, token_of

    port = free_port()
    server, said = _serve("--port", str(port))
    try:
        token = token_of(said)
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=10)
            assert refused.value.code == 403
        assert urllib.request.urlopen(f"{base}/?token={token}", timeout=10).status == 200
        ws = f"ws://127.0.0.1:{port}/ws"
        assert asyncio.run(_status(ws + "?width=80&height=24")) == 403
        assert asyncio.run(_status(ws + "/wrong?width=80&height=24")) == 403
        assert asyncio.run(_status(f"{ws}/{token}?width=80&height=24", Origin="http://evil.example")) == 403
        # The user on this machine, without the token: refused as well.
        got = as_user(f"python3 -c 'import urllib.request as u; u.urlopen(\"{base}/\")'", check=False)
        assert got.returncode != 0 and "HTTP Error 403" in got.stderr
        assert _monitors(server) == []  # nothing refused started a monitor
    finally:
        stop_server(server)


def test_serve_on_a_unix_socket_is_roots_only(attacker, shared_dir):
    from .test_serve import stop_server

    path = str(shared_dir / "procscope.sock")
    server, said = _serve("--unix", path)
    try:
        assert "mode 0600" in said
        assert oct(os.lstat(path).st_mode & 0o777) == "0o600" and os.lstat(path).st_uid == 0
        got = as_user(f"python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"{path}\")'", check=False)
        assert got.returncode != 0 and "PermissionError" in got.stderr
    finally:
        stop_server(server)


@pytest.mark.bpf
def test_serve_limits_sessions_and_reaps_a_monitor_whose_page_went_away():
    """--max-sessions 2: a third page is refused; a page that cannot take a
    screen update (its message limit is tiny) closes, and its root monitor
    is gone within seconds, its process group with it."""
    import asyncio

    import aiohttp

    from .test_metrics import free_port
    from .test_serve import stop_server, token_of, ws_url

    port = free_port()
    server, said = _serve("--port", str(port), "--max-sessions", "2")
    token = token_of(said)

    async def scenario() -> tuple[int, list]:
        async with aiohttp.ClientSession() as http:
            a = await http.ws_connect(ws_url(port, token))
            b = await http.ws_connect(ws_url(port, token), max_msg_size=512)
            await asyncio.sleep(1.0)
            third = await _status(ws_url(port, token))
            for _ in range(100):  # b's first big screen update: its client gives up on it
                msg = await b.receive(timeout=30)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            await b.close()
            running = []
            for _ in range(100):
                await asyncio.sleep(0.2)
                running = _monitors(server)
                if len(running) <= 1:
                    break
            await a.close()
            return third, running

    try:
        third, running = asyncio.run(scenario())
        assert third == 503
        assert len(running) == 1, [p.cmdline() for p in running]  # b's monitor reaped, a's still up
        for _ in range(100):
            if not _monitors(server):
                break
            time.sleep(0.2)
        assert _monitors(server) == []
    finally:
        stop_server(server)


def _served_monitors() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if "--no-writes" in (p.info["cmdline"] or [])]


@pytest.mark.bpf
def test_a_stopped_server_leaves_no_monitor_behind():
    import asyncio

    import aiohttp

    from .test_metrics import free_port
    from .test_serve import stop_server, token_of, ws_url

    port = free_port()
    server, said = _serve("--port", str(port))

    async def open_one() -> aiohttp.ClientSession:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(ws_url(port, token_of(said)))
        await ws.receive(timeout=30)
        return http

    http = asyncio.run(open_one())
    assert len(_served_monitors()) == 1
    server.send_signal(signal.SIGTERM)
    server.wait(20)
    for _ in range(50):
        if not _served_monitors():
            break
        time.sleep(0.2)
    assert _served_monitors() == []
    asyncio.run(http.close())
    stop_server(server)


@pytest.mark.bpf
def test_a_users_arguments_against_an_agent_clients_regex_never_stall_collection(attacker, tmp_path):
    """An agent's client filters on arguments with a pattern a backtracking
    engine takes hours over, `(a+)+$`; an unprivileged user runs a program
    with 40 a's and a `!` as its argument. Collection goes on: another
    client, unfiltered, gets the user's exec and root's next one at once."""
    import grpc

    from procscope.api import tetragon_pb2 as pb
    from procscope.api import tetragon_pb2_grpc

    from .test_agent import Agent, Reader, wait_until

    agent = Agent(f"unix://{tmp_path}/agent.sock")
    channel = grpc.insecure_channel(agent.address)
    try:
        request = pb.GetEventsRequest(allow_list=[pb.Filter(arguments_regex=["(a+)+$"])])
        filtered = tetragon_pb2_grpc.FineGuidanceSensorsStub(channel).GetEvents(request)
        assert agent.said("client 1 (unix:) joined")
        everything = Reader(agent.address)
        assert wait_until(lambda: bool(everything.events()))  # admitted: the processes alive came first
        as_user("/bin/echo " + "a" * 40 + "! > /dev/null")
        marker = shutil.copy("/bin/true", tmp_path / "after-the-attack")
        subprocess.run([marker], check=True)

        def seen() -> set[tuple[str, str]]:
            processes = [ev["process_exec"]["process"] for ev in everything.events() if "process_exec" in ev]
            return {(p.get("binary", ""), p.get("arguments", "")) for p in processes}

        assert wait_until(lambda: (str(marker), "") in seen(), 15), sorted(seen())[-5:]
        assert ("/bin/echo", "a" * 40 + "!") in seen() or ("/usr/bin/echo", "a" * 40 + "!") in seen()
        everything.stop()
        filtered.cancel()
    finally:
        channel.close()
        assert agent.stop() == 0, "".join(agent.log)
    assert any("lost: 0" in line for line in agent.log), "".join(agent.log)
