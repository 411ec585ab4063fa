"""The cache and `procscope snapshot` on the real machine, against /proc."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import psutil
import pytest

from procscope.live_cache import live_cache
from procscope.probes import cgroups
from procscope.probes.events import ExecEvent

from .conftest import REQUIRE_BPF, proc_ns, proc_status, running_live, unique_copy

pytestmark = pytest.mark.bpf  # root and BPF: every test here

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def scanned():
    """A collector that starts with the /proc scan, as the monitor does."""
    yield from running_live(scan_proc=True)


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_shell_tree_has_the_kernels_parent_links_and_exec_chain(scanned, scratch):
    sh = unique_copy("/bin/sh", scratch)
    sleep = unique_copy("/bin/sleep", scratch)
    script = f"{sleep} 300 & {sleep} 301 & exec {sleep} 302"
    proc = subprocess.Popen([sh, "-c", script])
    try:
        for arg in ("300", "301", "302"):
            scanned.wait_for(lambda e, a=arg: isinstance(e, ExecEvent) and e.binary == sleep and e.args == (a,))
        cache = live_cache(scanned.collector.hierarchy)
        cache.apply_all(scanned.matching(lambda e: True))
        top = cache.by_pid[proc.pid]
        assert (top.binary, top.args) == (sleep, ("302",))
        # The exec chain: the shell's image, then the sleep it became.
        assert [p.binary for p in cache.exec_chain(top)][-2:] == [sh, sleep]
        kids = sorted(top.children.values(), key=lambda c: c.args)
        assert [(c.binary, c.args) for c in kids] == [(sleep, ("300",)), (sleep, ("301",))]
        for kid in kids:
            assert proc_status(kid.pid)["PPid"] == [str(proc.pid)]  # what the kernel says
            # As Tetragon: the exec parent is the process that forked it, as it was at the exec
            # (the shell, or already the sleep it became: the shell races its children).
            assert cache.parent_of(kid).pid == proc.pid and cache.parent_of(kid).binary in (sh, sleep)
        # The test process itself was found by the /proc scan, so the tree reaches it.
        assert cache.procs[top.tree_parent].pid == os.getpid()

        # Kill the parent: the kernel re-parents the sleeps, and so does the cache.
        proc.kill()
        proc.wait()
        scanned.wait_for(lambda e: type(e).__name__ == "ExitEvent" and e.key == top.key)
        cache.apply_all(scanned.matching(lambda e: e.time > cache.now))
        assert not top.alive and top.in_grace and top.exit.signal_name == "SIGKILL"
        for kid in kids:
            kernel_ppid = int(proc_status(kid.pid)["PPid"][0])
            assert cache.procs[kid.tree_parent].pid == kernel_ppid != proc.pid
            assert kid in cache.procs[kid.tree_parent].children.values()
        # After the grace period the images the live sleeps name as parent stay; the rest goes.
        named = {kid.parent for kid in kids}
        cache.expire(top.exit_time + cache.grace_ns)
        assert named <= set(cache.procs) and (top.key in cache.procs) == (top.key in named)
        assert all(cache.parent_of(kid).pid == proc.pid for kid in kids)
    finally:
        for p in psutil.process_iter(["exe"]):
            if p.info["exe"] == sleep:
                p.kill()
        proc.kill()
        proc.wait()


def test_snapshot_matches_ps_and_proc(scratch, tmp_path):
    if os.geteuid() != 0 and REQUIRE_BPF:
        pytest.fail("PROCSCOPE_REQUIRE_BPF=1 but tests are not running as root")
    sleep = unique_copy("/bin/sleep", scratch)
    # One unprivileged process in its own namespaces, to see more than root and the host.
    odd = subprocess.Popen(
        ["unshare", "--uts", "--ipc", "--net", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "--inh-caps=-all", "--bounding-set=-all", sleep, "300"],
    )  # fmt: skip
    try:
        _wait(lambda: psutil.Process(odd.pid).children() and psutil.Process(odd.pid).children()[0].exe() == sleep
              or psutil.Process(odd.pid).exe() == sleep)  # fmt: skip
        before = set(psutil.pids())
        out = tmp_path / "snap.json"
        run = subprocess.run(
            [sys.executable, "-m", "procscope.cli", "snapshot", "-o", str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        doc = json.loads(out.read_text())
        assert doc["schema"] == "procscope-snapshot" and doc["version"] == 1 and doc["source"] == "live"
        running = {p["pid"]: p for p in doc["processes"] if p["procscope"]["state"] == "running"}
        by_exec_id = {p["exec_id"]: p for p in doc["processes"]}
        stable = [pid for pid in before & set(psutil.pids()) if not _is_kthread(pid)]
        checked = 0
        for pid in stable:
            try:
                st = proc_status(pid)
                try:
                    ns = proc_ns(pid)
                except PermissionError:  # init in this sandbox: unreadable to us as well
                    ns = {}
                ps = psutil.Process(pid)
                ppid, user = ps.ppid(), ps.username()
            except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess):
                continue  # exited meanwhile
            assert pid in running, f"pid {pid} ({ps.name()}) missing from the snapshot"
            p = running[pid]
            if ppid:
                assert by_exec_id[p["procscope"]["ppid_exec_id"]]["pid"] == ppid
            assert p["uid"] == int(st["Uid"][1]) and p["user"]["name"] == user
            eff = sum(1 << i for i in range(64) if int(st["CapEff"][0], 16) >> i & 1)
            assert len(p["cap"]["effective"]) == bin(eff).count("1")
            for name, inum in ns.items():
                assert p["ns"][name]["inum"] == inum
            checked += 1
        assert checked >= 5
        sleeper = next(p for p in running.values() if p["binary"] == sleep)
        assert sleeper["user"]["name"] == "nobody" and sleeper["cap"]["effective"] == []
        assert {n for n, v in sleeper["ns"].items() if not v["is_host"]} == {"uts", "ipc", "net"}
        assert "ns" in sleeper["procscope"]["badges"] and "root" not in sleeper["procscope"]["badges"]
        assert running[os.getpid()]["procscope"]["cgroup"]["path"] == cgroups.detect().path_of(os.getpid())
    finally:
        odd.send_signal(signal.SIGKILL)
        odd.wait()
        for p in psutil.process_iter(["exe"]):
            if p.info["exe"] == sleep:
                p.kill()


def _is_kthread(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return bool(int(raw[raw.rindex(b")") + 2 :].split()[6]) & 0x00200000)
    except OSError:
        return True
