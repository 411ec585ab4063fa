"""Namespaces of processes in new namespaces equal what /proc/PID/ns says."""

import subprocess

import pytest

from procscope.probes.events import NAMESPACES
from procscope.probes.procfs import host_namespaces

from .conftest import proc_ns, unique_copy

pytestmark = pytest.mark.bpf  # root and BPF: every test here


def test_unshared_namespaces_match_proc(live, scratch):
    binary = unique_copy("/bin/sleep", scratch)
    cmd = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--net", "--uts", "--ipc", "--mount",
           "--cgroup", "--time", "--", binary, "30"]  # fmt: skip
    outer = subprocess.Popen(cmd)
    try:
        ev = live.exec_of(binary)
        ns = proc_ns(ev.key.pid)
        assert {n: getattr(ev.ns, n) for n in NAMESPACES} == {n: ns[n] for n in NAMESPACES}
        host = host_namespaces()
        for name in NAMESPACES:
            assert getattr(ev.ns, name) != host[name], name
        # --fork: the sleeper is pid 1 of the new pid namespace, one user ns down.
        assert ev.nspid == 1
        assert ev.creds.user_ns.level == 1
        assert ev.creds.user_ns.uid == 0  # created by root
        assert ev.creds.user_ns.inum == ns["user"]
    finally:
        outer.kill()
        outer.wait()


def test_unprivileged_user_namespace_owner(live, scratch):
    """A user namespace made by nobody is owned by nobody (65534)."""
    binary = unique_copy("/bin/sleep", scratch)
    outer = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "unshare", "--user", "--", binary, "30"])  # fmt: skip
    try:
        ev = live.exec_of(binary)
        assert ev.creds.user_ns.uid == 65534 and ev.creds.user_ns.gid == 65534
        assert ev.creds.user_ns.level == 1
        assert ev.creds.euid == 65534
        assert ev.ns.user == proc_ns(ev.key.pid)["user"]
    finally:
        outer.kill()
        outer.wait()
