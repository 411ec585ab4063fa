"""Containers by name, on a real Docker daemon: the suite starts its own
(Debian's docker.io, private data and exec roots and socket), imports a
busybox root filesystem as an image (no registry is reachable), and runs a
container with Kubernetes pod labels and a plain one; a `docker exec`
enters the first. Checked as a user would: the snapshot, the export (with
tetra and strictcheck), a replay elsewhere, the filters, the monitor's
column and container picker. Root and BPF."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from procscope.tui.app import ProcscopeApp
from procscope.tui.screens.pick import PickScreen
from procscope.tui.sources import LiveSource

from .conftest import (
    REPO,
    SIZE,
    bpf_unavailable,
    open_collector,
    screen_text,
    strictcheck_finds_only_our_extras,
    tetra_reads_every_line,
    wait_for,
)

DOCKER = "/usr/bin/docker"  # docker.io's client (another may come first on PATH)
IMAGE = "procscope-busybox:1"
POD_LABELS = {"io.kubernetes.pod.name": "shop-7d4", "io.kubernetes.pod.namespace": "prod",
              "io.kubernetes.container.name": "web", "app": "shop"}  # fmt: skip


class Daemon:
    def __init__(self, root: Path):
        self.root = root
        self.sock = root / "docker.sock"
        rootfs = root / "rootfs" / "bin"
        rootfs.mkdir(parents=True)
        shutil.copy("/bin/busybox", rootfs / "busybox")
        for name in ("sh", "sleep", "cat", "true", "dd", "yes"):
            (rootfs / name).symlink_to("busybox")
        self.log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
             f"--data-root={root / 'data'}", f"--exec-root={root / 'exec'}", "-H", f"unix://{self.sock}",
             f"--pidfile={root / 'pid'}"], stdout=self.log, stderr=self.log,
        )  # fmt: skip
        for _ in range(150):
            if self.sock.exists() and self.docker("version", check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("dockerd did not start: " + (root / "dockerd.log").read_text()[-2000:])
        tar = subprocess.Popen(["tar", "-C", str(root / "rootfs"), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([DOCKER, "-H", f"unix://{self.sock}", "import", "-", IMAGE], stdin=tar.stdout, check=True,
                       capture_output=True)  # fmt: skip
        tar.wait()

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, "-H", f"unix://{self.sock}", *args], capture_output=True, text=True,
                              check=check, timeout=120)  # fmt: skip

    def inspect(self, name: str, what: str) -> str:
        return self.docker("inspect", "-f", what, name).stdout.strip()

    def stop(self) -> None:
        self.docker("rm", "-f", "web-1", "db-2", "burn", check=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def docker():
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    assert shutil.which("dockerd") and os.path.exists(DOCKER), "docker.io is missing: scripts/setup installs it"
    daemon = Daemon(Path(tempfile.mkdtemp(prefix="procscope-docker-", dir="/var/tmp")))
    try:
        labels = [a for k, v in POD_LABELS.items() for a in ("--label", f"{k}={v}")]
        daemon.docker("run", "-d", "--network", "none", "--name", "web-1", *labels, IMAGE, "/bin/sleep", "600")
        daemon.docker("run", "-d", "--network", "none", "--name", "db-2", IMAGE, "/bin/sleep", "601")
        daemon.docker("exec", "-d", "web-1", "/bin/sleep", "602")  # entered from outside
        for _ in range(50):
            if "602" in daemon.docker("top", "web-1").stdout:
                break
            time.sleep(0.1)
        yield daemon
    finally:
        daemon.stop()


def procscope(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "procscope", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, **kw)  # fmt: skip


def snapshot(*args: str) -> dict:
    out = procscope("snapshot", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def by_args(doc: dict) -> dict[str, dict]:
    return {p["arguments"]: p for p in doc["processes"] if p.get("binary") == "/bin/busybox"}


def test_the_snapshot_names_the_container_its_image_and_pod_and_marks_docker_exec(docker):
    doc = snapshot("--container", "web-1")
    procs = by_args(doc)
    assert set(procs) == {"600", "602"}  # web-1's: not db-2's
    first, entered = procs["600"], procs["602"]
    cid = docker.inspect("web-1", "{{.Id}}")
    own = first["procscope"]["container"]
    assert (own["id"], own["name"], own["image"], own["runtime"]) == (cid, "web-1", IMAGE, "docker")
    assert own["image_id"] == docker.inspect("web-1", "{{.Image}}")
    assert own["pid"] == first["pid"] == int(docker.inspect("web-1", "{{.State.Pid}}"))
    assert first["pod"]["namespace"] == "prod" and first["pod"]["name"] == "shop-7d4"
    assert first["pod"]["container"]["name"] == "web" and first["pod"]["container"]["id"] == f"docker://{cid}"
    assert first["pod"]["container"]["image"] == {"id": own["image_id"], "name": IMAGE}
    assert first["pod"]["pod_labels"] == {"app": "shop"}
    assert first["pod"]["container"]["pid"] == 1  # in the container's pid namespace, as Tetragon's
    assert first["in_init_tree"] is True and "exec-in" not in first["procscope"]["badges"]
    assert entered["in_init_tree"] is False and "exec-in" in entered["procscope"]["badges"]
    (entry,) = [c for c in doc["containers"] if c["id"] == cid]
    assert (entry["name"], entry["image"], entry["pod"]["name"]) == ("web-1", IMAGE, "shop-7d4")


def test_a_plain_container_has_its_name_but_no_pod(docker):
    (p,) = by_args(snapshot("--container", "db-2")).values()
    assert p["procscope"]["container"]["name"] == "db-2" and "pod" not in p
    assert p["docker"] == docker.inspect("db-2", "{{.Id}}")[:31]


def test_the_filters_by_name_image_pod_namespace_and_exec_in(docker):
    assert set(by_args(snapshot("--filter", f"image:{IMAGE}"))) == {"600", "601", "602"}
    assert set(by_args(snapshot("--pod", "prod/shop-7d4"))) == {"600", "602"}
    assert set(by_args(snapshot("--filter", "k8s-ns:prod pod:shop-7d4"))) == {"600", "602"}
    assert set(by_args(snapshot("--filter", "badge:exec-in"))) == {"602"}
    assert set(by_args(snapshot("--container", docker.inspect("db-2", "{{.Id}}")[:8]))) == {"601"}  # an id prefix still


def test_a_container_named_must_be_one_this_machine_has(docker):
    """As htop's -u: a name no runtime knows is one line and status 2; one
    Docker created but did not start is known (it may start later)."""
    out = procscope("snapshot", "--container", "web-9")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "--container: no container 'web-9' on this machine (known: " in out.stderr
    assert "db-2" in out.stderr and "web-1" in out.stderr, out.stderr
    docker.docker("create", "--network", "none", "--name", "later", IMAGE, "/bin/sleep", "603")
    try:
        assert by_args(snapshot("--filter", "container:later")) == {}  # nothing yet, and no refusal
    finally:
        docker.docker("rm", "-f", "later", check=False)


def test_the_export_has_tetragons_pod_and_tetra_shows_it(docker, tmp_path):
    out = tmp_path / "events.json"
    events = subprocess.Popen([sys.executable, "-m", "procscope", "events", "-o", str(out), "--container", "web-1"],
                              cwd=REPO, stderr=subprocess.PIPE, text=True)  # fmt: skip
    while "collecting" not in (line := events.stderr.readline()):
        assert line, events.stderr.read()
    docker.docker("exec", "web-1", "/bin/cat", "/dev/null")
    time.sleep(1.0)
    events.send_signal(signal.SIGINT)
    assert events.wait(30) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    execs = [e["process_exec"]["process"] for e in lines if "process_exec" in e]
    (cat,) = [p for p in execs if p["arguments"] == "/dev/null"]
    assert cat["pod"]["name"] == "shop-7d4" and cat["in_init_tree"] is False
    assert cat["procscope"]["container"]["name"] == "web-1"
    compact = tetra_reads_every_line(str(out))
    assert "prod/shop-7d4 /bin/busybox /dev/null" in compact  # tetra names the pod, as for Tetragon's own
    strictcheck_finds_only_our_extras(str(out))


def test_a_replay_elsewhere_still_shows_the_names(docker, tmp_path):
    saved = tmp_path / "snap.json"
    assert procscope("snapshot", "-o", str(saved)).returncode == 0
    docker.docker("rename", "db-2", "db-renamed")  # the runtime's state changes: the recording does not
    try:
        replayed = snapshot("--replay", str(saved), "--container", "db-2")
    finally:
        docker.docker("rename", "db-renamed", "db-2")
    (p,) = by_args(replayed).values()
    assert p["procscope"]["container"]["name"] == "db-2" and p["arguments"] == "601"


@pytest.mark.bpf
async def test_the_monitor_shows_names_in_the_list_and_the_container_picker(docker, tmp_path):
    app = ProcscopeApp(LiveSource(open_collector(), 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_for(pilot, lambda: "web-1" in screen_text(app) and "db-2" in screen_text(app))  # CONTAINER
        await pilot.press("C")
        assert await wait_for(pilot, lambda: isinstance(app.screen, PickScreen) and "web-1" in screen_text(app))
        picker = screen_text(app)
        assert "web-1" in picker and f"image {IMAGE}" in picker and "pod prod/shop-7d4" in picker
        await pilot.press("escape")
        # Picked under a filter, the container is named as the user knows it, and an empty list says why.
        await pilot.press("backslash", *f"pid:{os.getpid()}", "enter", "C")  # this test and below: no container
        assert await wait_for(pilot, lambda: isinstance(app.screen, PickScreen))
        choices = app.screen.query_one("#choices")
        web = next(i for i in range(choices.option_count) if "web-1" in str(choices.get_option_at_index(i).prompt))
        choices.highlighted = web
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert str(app.monitor.filter_query) == f"pid:{os.getpid()} container:web-1"
        assert str(app.query_one("#tree").border_title) == f"no process matches: pid:{os.getpid()} container:web-1"


def docker_stats(docker: Daemon, name: str) -> dict:
    return json.loads(docker.docker("stats", "--no-stream", "--format", "{{json .}}", name).stdout)


def mib(text: str) -> float:
    """`101.2MiB` (docker's units) in MiB."""
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    unit = text.lstrip("0123456789.")
    return float(text[: len(text) - len(unit)]) * units[unit]


@pytest.mark.bpf
async def test_a_container_uses_what_docker_stats_says(docker, tmp_path):
    """Issue 27, per container: CPU%, memory against its limit and pids against
    theirs, in the group header (g) and the picker (C), as `docker stats` has them."""
    docker.docker("run", "-d", "--network", "none", "--name", "burn", "--memory", "256m", "--pids-limit", "50",
                  "--shm-size", "200m", IMAGE, "sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=100; "
                  "yes > /dev/null")  # fmt: skip
    cid = docker.inspect("burn", "{{.Id}}")
    try:
        app = ProcscopeApp(LiveSource(open_collector(), 5 * 10**9), snapshot_dir=str(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(100):
                await pilot.pause(0.1)
                u = app.monitor.cache.usage.containers.get(cid)
                if u is not None and u.cpu_pct is not None and (u.mem_used or 0) > 100 << 20:
                    break
            await pilot.pause(1.5)
            theirs = docker_stats(docker, "burn")
            ours = app.monitor.cache.usage.containers[cid]
            their_cpu = float(theirs["CPUPerc"].rstrip("%"))
            assert abs(ours.cpu_pct - their_cpu) <= 0.1 * their_cpu, (ours, theirs)
            used, limit = (mib(part.strip()) for part in theirs["MemUsage"].split("/"))
            assert abs(ours.mem_used / 2**20 - used) <= 0.1 * used, (ours, theirs)
            assert ours.mem_limit == 256 << 20 and limit == 256
            assert ours.pids == int(theirs["PIDs"]) and ours.pids_limit == 50
            await pilot.press("g")  # grouped by container: the header says what it uses
            await pilot.pause(1.2)
            rows = [row.plain for row in app.query_one("#tree").rows]  # the host's come first: maybe below the screen
            header = next(line for line in rows if line.startswith("▾") and "container burn" in line)
            assert "CPU " in header and "/256M" in header and f"pids {ours.pids}/50" in header, header
            await pilot.press("C")
            await pilot.pause(0.3)
            assert "/256M" in next(line for line in screen_text(app).splitlines() if "burn" in line)
        # A snapshot says it too.
        (entry,) = [c for c in snapshot()["containers"] if c["id"] == cid]
        assert entry["usage"]["memory_limit_bytes"] == 256 << 20 and entry["usage"]["pids_limit"] == 50
        assert abs(entry["usage"]["memory_bytes"] - ours.mem_used) <= 0.1 * ours.mem_used
    finally:
        docker.docker("rm", "-f", "burn", check=False)


@pytest.mark.bpf
def test_metrics_have_a_series_per_container_and_none_for_the_gone(docker):
    from .test_metrics import scrape, start_events, stop

    docker.docker("run", "-d", "--network", "none", "--name", "burn", "--memory", "128m", IMAGE, "sleep", "600")
    burn = docker.inspect("burn", "{{.Id}}")
    proc, url = start_events([])
    try:
        for _ in range(50):  # once the /proc scan is in the cache
            series = scrape(url)
            limits = {dict(k[1])["container_name"]: v for k, v in series.items()
                      if k[0] == "procscope_container_memory_limit_bytes"}  # fmt: skip
            if limits:
                break
            time.sleep(0.2)
        assert limits.get("burn") == 128 << 20 and "web-1" not in limits  # web-1 has no limit: no series
        used = {
            dict(k[1])["container_name"]: v for k, v in series.items() if k[0] == "procscope_container_memory_bytes"
        }
        assert {"web-1", "db-2", "burn"} <= set(used) and all(v > 0 for v in used.values())
        cpu = {
            dict(k[1])["container_id"]: v for k, v in series.items() if k[0] == "procscope_container_cpu_seconds_total"
        }
        assert burn[:12] in cpu
        docker.docker("rm", "-f", "burn")
        time.sleep(6)  # the exits applied, the grace period over
        after = scrape(url)
        assert not [k for k in after if k[0].startswith("procscope_container_") and ("container_id", burn[:12]) in k[1]]
    finally:
        docker.docker("rm", "-f", "burn", check=False)
        stop(proc)
