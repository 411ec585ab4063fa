"""Exec privilege flags computed as Tetragon does, from real setuid,
setgid and file-capability binaries."""

import os
import subprocess

import pytest

from procscope.probes import wire
from procscope.probes.names import cap_names

from .conftest import unique_copy

pytestmark = pytest.mark.bpf  # root and BPF: every test here

# A plain setresuid to nobody: the kernel clears the permitted set (setpriv
# --reuid would keep it, and then no capability is "gained" by the exec).
NOBODY = {"user": 65534, "group": 65534, "extra_groups": []}
PRIV_BITS = (
    wire.EXECVE_SETUID | wire.EXECVE_SETGID | wire.EXECVE_FILECAPS | wire.EXECVE_SETUID_ROOT | wire.EXECVE_SETGID_ROOT
)


def _setid_copy(scratch, mode):
    binary = unique_copy("/usr/bin/id", scratch)
    os.chown(binary, 0, 0)
    os.chmod(binary, mode)
    return binary


def test_setuid_root_run_by_nobody(live, scratch):
    binary = _setid_copy(scratch, 0o4755)
    out = subprocess.run([binary, "-u"], **NOBODY, check=True, capture_output=True, text=True).stdout
    assert out.strip() == "0"  # the kernel did run it with euid 0
    ev = live.exec_of(binary)
    assert ev.privileges & PRIV_BITS == wire.EXECVE_SETUID | wire.EXECVE_SETUID_ROOT
    assert ev.privileges & wire.EXECVE_AT_SECURE
    assert (ev.creds.uid, ev.creds.euid) == (65534, 0)


def test_setuid_root_run_by_root_has_no_flags(live, scratch):
    binary = _setid_copy(scratch, 0o4755)
    subprocess.run([binary], check=True, capture_output=True)
    assert live.exec_of(binary).privileges & PRIV_BITS == 0


def test_setgid_root_run_by_nobody(live, scratch):
    binary = _setid_copy(scratch, 0o2755)
    out = subprocess.run([binary, "-g"], **NOBODY, check=True, capture_output=True, text=True).stdout
    assert out.strip() == "0"
    ev = live.exec_of(binary)
    assert ev.privileges & PRIV_BITS == wire.EXECVE_SETGID | wire.EXECVE_SETGID_ROOT
    assert (ev.creds.gid, ev.creds.egid) == (65534, 0)


def test_file_caps_run_by_nobody(live, scratch):
    binary = unique_copy("/bin/sleep", scratch)
    subprocess.run(["setcap", "cap_net_raw,cap_net_bind_service+ep", binary], check=True)
    child = subprocess.Popen([binary, "30"], **NOBODY)
    try:
        ev = live.exec_of(binary)
        assert ev.privileges & PRIV_BITS == wire.EXECVE_FILECAPS
        assert cap_names(ev.creds.caps.permitted) == ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
        # getpcaps reads the live process: "PID: cap_net_bind_service,cap_net_raw=ep"
        pcaps = subprocess.run(["getpcaps", str(ev.key.pid)], check=True, capture_output=True, text=True)
        text = (pcaps.stdout + pcaps.stderr).strip().split(":", 1)[1].strip()
        caps, _, sets = text.partition("=")
        assert sorted(c.upper() for c in caps.split(",")) == cap_names(ev.creds.caps.permitted)
        assert sets == "ep"
        assert ev.creds.caps.effective == ev.creds.caps.permitted
    finally:
        child.kill()
        child.wait()


def test_file_caps_run_by_root_has_no_flags(live, scratch):
    binary = unique_copy("/bin/true", scratch)
    subprocess.run(["setcap", "cap_net_raw+ep", binary], check=True)
    subprocess.run([binary], check=True)
    assert live.exec_of(binary).privileges & PRIV_BITS == 0
