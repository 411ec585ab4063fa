"""A real container, run by runc with a docker-like cgroup path and id:
procscope groups its processes under that id, sees its namespaces as the
kernel does, and `--container` shows exactly them. Needs root, BPF and
runc (scripts/setup installs runc and busybox-static)."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import pytest

from procscope.live_cache import live_cache
from procscope.probes import cgroups
from procscope.probes.events import ExecEvent
from procscope.probes.procfs import host_namespaces
from procscope.query import Query

from .conftest import REQUIRE_BPF, proc_ns

pytestmark = pytest.mark.bpf  # root and BPF: every test here

CONTAINER_NS = ("pid", "mnt", "uts", "ipc", "net")


def _need(tool: str) -> str:
    path = shutil.which(tool) or (f"/bin/{tool}" if os.path.exists(f"/bin/{tool}") else None)
    if path is None:
        message = f"{tool} is not installed (scripts/setup installs it)"
        if REQUIRE_BPF:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def container(scratch):
    """A running runc container: busybox rootfs, pid/mnt/uts/ipc/net
    namespaces, cgroup /docker/<64 hex> as docker's cgroupfs driver makes."""
    runc, busybox = _need("runc"), _need("busybox")
    cid = secrets.token_hex(32)
    bundle = os.path.join(scratch, "bundle")
    os.makedirs(os.path.join(bundle, "rootfs", "bin"))
    shutil.copy2(busybox, os.path.join(bundle, "rootfs", "bin", "busybox"))
    for applet in ("sh", "sleep", "cat"):
        os.symlink("busybox", os.path.join(bundle, "rootfs", "bin", applet))
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sh", "-c", "sleep 300 & sleep 301 & wait"]
    spec["linux"]["cgroupsPath"] = f"/docker/{cid}"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    # Not a pipe for its output: the detached container would hold it open.
    with open(os.path.join(scratch, "runc.log"), "w+") as log:
        started = subprocess.run([runc, "run", "-d", "--bundle", bundle, cid], stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=log)  # fmt: skip
        log.seek(0)
        assert started.returncode == 0, f"runc run failed: {log.read()}"
    try:
        yield runc, cid
    finally:
        subprocess.run([runc, "kill", cid, "KILL"], stderr=subprocess.DEVNULL)
        for _ in range(50):
            if subprocess.run([runc, "delete", "--force", cid], stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)


def _members(hierarchy: cgroups.Hierarchy, cid: str) -> set[int]:
    with open(os.path.join(hierarchy.mountpoint, "docker", cid, "cgroup.procs")) as f:
        return {int(pid) for pid in f.read().split()}


def test_container_processes_grouped_and_filtered(live, container):
    runc, cid = container
    h = live.collector.hierarchy
    # The container's own processes, then one more started by `runc exec`.
    live.wait_for(lambda e: isinstance(e, ExecEvent) and e.cgroup_name == cid and e.args == ("301",))
    subprocess.run([runc, "exec", "-d", cid, "sleep", "302"], check=True)
    live.wait_for(lambda e: isinstance(e, ExecEvent) and e.cgroup_name == cid and e.args == ("302",))

    cache = live_cache(h)
    cache.apply_all(live.matching(lambda e: True))
    kernel = _members(h, cid)
    assert len(kernel) == 4  # sh, two sleeps, the exec'd sleep
    entry = cache.containers[cid]
    assert (entry.container.runtime, entry.processes) == ("docker", len(kernel))
    grouped = {p.pid for p in cache.live() if p.container is not None and p.container.id == cid}
    assert grouped == kernel
    host = host_namespaces()
    for pid in kernel:
        proc = cache.by_pid[pid]
        assert proc.cgroup == f"/docker/{cid}"
        ns, kernel_ns = proc.image.ns, proc_ns(pid)
        for name in CONTAINER_NS:
            field = {"mnt": "mnt"}.get(name, name)
            assert getattr(ns, field) == kernel_ns[name] != host[name], (pid, name)
    init = next(cache.by_pid[pid] for pid in kernel if cache.by_pid[pid].args == ("-c", "sleep 300 & sleep 301 & wait"))
    assert init.image.nspid == 1  # the container's init, pid 1 inside

    for text in (f"container:{cid[:12]}", f"container:{cid.upper()[:8]}"):
        assert {p.pid for p in Query.parse(text).filter(cache, cache.live())} == kernel
    assert not {p.pid for p in Query.parse("container:host").filter(cache, cache.live())} & kernel


def test_events_container_filter_end_to_end(container, tmp_path):
    """`procscope events --container ID` while the container and the host
    both exec: only the container's execs come out."""
    runc, cid = container
    out = tmp_path / "events.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "procscope.cli",
        "events",
        "--container",
        cid[:12],
        "--duration",
        "8",
        "--record",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "collecting" in line:
            break
    else:
        pytest.fail(f"procscope events could not start (exit {proc.wait()})", pytrace=False)
    subprocess.run([runc, "exec", cid, "cat", "/proc/self/cgroup"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cat", "/proc/self/cgroup"], check=True, stdout=subprocess.DEVNULL)  # the host's: filtered out
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    execs = [
        x["process_exec"]["process"]
        for x in lines
        if "process_exec" in x and "procFS" not in x["process_exec"]["process"]["flags"]
    ]
    assert [(p["binary"], p["arguments"]) for p in execs] == [("/bin/busybox", "/proc/self/cgroup")]
    listed = {x["process_exec"]["process"]["pid"] for x in lines if "process_exec" in x} - {execs[0]["pid"]}
    assert listed == _members(cgroups.detect(), cid)  # the procFS lines: exactly the container's processes
    assert all(x[k]["process"]["docker"] == cid[:31] for x in lines for k in ("process_exec", "process_exit") if k in x)
