"""Exec events carry the identity the kernel reports in /proc."""

import os
import subprocess

import pytest

from procscope.live_cache import live_cache
from procscope.probes import wire
from procscope.probes.events import NAMESPACES, ExecEvent
from procscope.probes.procfs import host_namespaces

from .conftest import proc_ns, proc_status, unique_copy

pytestmark = pytest.mark.bpf  # root and BPF: every test here


def test_exec_identity_matches_proc(live, scratch):
    binary = unique_copy("/bin/sleep", scratch)
    workdir = os.path.join(scratch, "work dir")
    os.mkdir(workdir)
    child = subprocess.Popen([binary, "30", "0.5"], cwd=workdir)
    try:
        ev = live.exec_of(binary)
        status, ns = proc_status(child.pid), proc_ns(child.pid)
        assert ev.key.pid == child.pid and ev.tid == child.pid
        assert ev.args == ("30", "0.5")
        assert ev.cwd == workdir
        assert ev.parent.pid == os.getpid()
        assert ev.flags & wire.FLAG_EXECVE
        st = os.stat(binary)
        assert (ev.ino, ev.nlink) == (st.st_ino, st.st_nlink)
        c = ev.creds
        assert [c.uid, c.euid, c.suid, c.fsuid] == [int(x) for x in status["Uid"]]
        assert [c.gid, c.egid, c.sgid, c.fsgid] == [int(x) for x in status["Gid"]]
        assert c.caps.permitted == int(status["CapPrm"][0], 16)
        assert c.caps.effective == int(status["CapEff"][0], 16)
        assert c.caps.inheritable == int(status["CapInh"][0], 16)
        assert {n: getattr(ev.ns, n) for n in NAMESPACES} == {n: ns[n] for n in NAMESPACES}
        assert ev.nspid == int(status["NSpid"][-1])
        with open(f"/proc/{child.pid}/loginuid") as f:
            assert ev.auid == int(f.read())
        # The key's ktime is the exec time on the boot clock, after the start.
        assert ev.key.ktime == ev.time
    finally:
        child.kill()
        child.wait()


def test_host_processes_have_init_namespaces(live, scratch):
    binary = unique_copy("/bin/true", scratch)
    subprocess.run([binary], check=True)
    ev = live.exec_of(binary)
    init = host_namespaces()
    assert init == proc_ns(os.getpid())  # the test itself runs on the host
    assert {n: getattr(ev.ns, n) for n in NAMESPACES} == {n: init[n] for n in NAMESPACES}
    assert ev.creds.user_ns.level == 0


def test_cgroup_matches_proc(live, scratch):
    binary = unique_copy("/bin/sleep", scratch)
    child = subprocess.Popen([binary, "30"])
    try:
        ev = live.exec_of(binary)
        hierarchy = live.collector.hierarchy
        path = hierarchy.path_of(child.pid)
        assert ev.cgroup_id == hierarchy.id_of(path)
        if path != "/":
            assert ev.cgroup_name == path.rsplit("/", 1)[-1]
    finally:
        child.kill()
        child.wait()


def test_long_arguments_are_flagged_truncated(live, scratch):
    binary = unique_copy("/bin/true", scratch)
    args = [f"arg{i:03d}-" + "x" * 40 for i in range(40)]  # ~1.9 KB
    subprocess.run([binary, *args], check=True)
    ev = live.exec_of(binary)
    assert ev.flags & wire.FLAG_TRUNC_ARGS
    joined = "\0".join(ev.args)
    assert len(joined.encode()) <= wire.MSG_SIZEOF_ARGS
    assert "\0".join(args).startswith(joined)


def test_short_arguments_are_whole(live, scratch):
    binary = unique_copy("/bin/true", scratch)
    args = ["a b", "", "ünïcode", "--flag=1"]
    subprocess.run([binary, *args], check=True)
    ev = live.exec_of(binary)
    assert not ev.flags & wire.FLAG_TRUNC_ARGS
    assert ev.args[0] == "a b" and ev.args[2:] == ("ünïcode", "--flag=1")


def test_deep_cwd_is_resolved_or_flagged(live, scratch):
    binary = unique_copy("/bin/true", scratch)
    resolvable = os.path.join(scratch, *["d"] * 30)
    os.makedirs(resolvable)
    subprocess.run([binary], cwd=resolvable, check=True)
    ev = live.exec_of(binary)
    assert ev.cwd == resolvable
    assert not ev.flags & wire.FLAG_ERROR_PATH_RESOLUTION_CWD

    binary2 = unique_copy("/bin/true", scratch)
    too_deep = os.path.join(scratch, *["e"] * 80)  # past the 64-step walk bound
    os.makedirs(too_deep)
    subprocess.run([binary2], cwd=too_deep, check=True)
    ev = live.exec_of(binary2)
    assert ev.flags & wire.FLAG_ERROR_PATH_RESOLUTION_CWD
    assert too_deep.endswith(ev.cwd) and ev.cwd.count("/") >= 32  # the leaf part that was resolved


def test_root_cwd_flag(live, scratch):
    binary = unique_copy("/bin/true", scratch)
    subprocess.run([binary], cwd="/", check=True)
    ev = live.exec_of(binary)
    assert ev.cwd == "/" and ev.flags & wire.FLAG_ROOT_CWD


def test_cwd_across_a_mount_point(live, scratch):
    """/dev/shm is a separate tmpfs: the walk must cross into /dev."""
    binary = unique_copy("/bin/true", scratch)
    subprocess.run([binary], cwd="/dev/shm", check=True)
    assert live.exec_of(binary).cwd == "/dev/shm"


def test_deleted_binary_has_no_links(live, scratch):
    binary = unique_copy("/bin/true", scratch)
    fd = os.open(binary, os.O_RDONLY)
    try:
        os.unlink(binary)
        subprocess.run([f"/proc/self/fd/{fd}"], pass_fds=[fd], check=True)
        ev = live.exec_of(binary)
        assert ev.nlink == 0
    finally:
        os.close(fd)


def test_memfd_exec_has_no_links(live):
    fd = os.memfd_create("procscope-fileless", 0)
    try:
        with open("/bin/true", "rb") as f:
            os.write(fd, f.read())
        subprocess.run([f"/proc/self/fd/{fd}", "fileless"], pass_fds=[fd], check=True)
        ev = live.wait_for(lambda e: isinstance(e, ExecEvent) and e.args == ("fileless",))
        assert ev.nlink == 0
        assert "memfd:procscope-fileless" in ev.binary
    finally:
        os.close(fd)


def test_reexec_links_to_previous_image(live, scratch):
    """sh -c 'exec binary': the new image's cleanup key is the shell's."""
    binary = unique_copy("/bin/true", scratch)
    shell = unique_copy("/bin/sh", scratch)
    subprocess.run([shell, "-c", f"exec {binary}"], check=True)
    sh_ev = live.exec_of(shell)
    ev = live.exec_of(binary)
    assert ev.key.pid == sh_ev.key.pid
    assert ev.cleanup == sh_ev.key
    assert ev.key.ktime > sh_ev.key.ktime


def test_argv0_as_the_process_set_it_is_kept_beside_the_binary(live, scratch):
    """busybox's `sleep`, a login shell's `-bash`, a disguise: argv[0] as
    /proc/PID/cmdline has it, shown after the binary (never instead)."""
    sleeper = unique_copy("/bin/sleep", scratch)
    child = subprocess.Popen(["sleep", "30"], executable=sleeper)
    try:
        ev = live.exec_of(sleeper)
        with open(f"/proc/{child.pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0].decode() == ev.argv0 == "sleep"
        live.sync(scratch)
        cache = live_cache()
        cache.apply_all(live.matching(lambda e: True))
        proc = cache.procs[ev.key]
        assert proc.argv0 == "sleep" and proc.command() == f"{sleeper}│sleep 30"
        plain = unique_copy("/bin/true", scratch)
        subprocess.run([plain], check=True)  # argv[0] is the binary: nothing beside it
        assert live.exec_of(plain).argv0 == plain
    finally:
        child.kill()
        child.wait()
