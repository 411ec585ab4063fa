"""Start-up: clear one-line errors, BTF offsets, headers fallback, and
nothing left attached after stopping."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procscope.probes import kernel_tree
from procscope.probes.btf import BTF, BTFError

from .conftest import bpf_unavailable, open_collector

pytestmark = pytest.mark.bpf  # root and BPF: every test here

REPO = Path(__file__).resolve().parent.parent
EVENTS = [sys.executable, "-m", "procscope.cli", "events", "--duration", "1"]


def _one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, lines
    return lines[0]


def test_not_root_is_one_clear_line():
    proc = subprocess.run(EVENTS, cwd=REPO, capture_output=True, text=True, user=65534, group=65534, extra_groups=[])
    line = _one_line_error(proc)
    assert line.startswith("procscope: not allowed to load BPF programs") and "root" in line


def test_no_bpf_capabilities_is_one_clear_line():
    """Root without CAP_BPF/CAP_SYS_ADMIN (a locked-down container)."""
    cmd = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--", *EVENTS]
    line = _one_line_error(subprocess.run(cmd, cwd=REPO, capture_output=True, text=True))
    assert "CAP_BPF" in line and "root" in line


def test_missing_btf_is_a_clear_error(tmp_path):
    with pytest.raises(BTFError, match="CONFIG_DEBUG_INFO_BTF"):
        BTF.load(tmp_path / "vmlinux")
    (tmp_path / "bad").write_bytes(b"\0" * 64)
    with pytest.raises(BTFError, match="magic"):
        BTF.load(tmp_path / "bad")


def _bpftool_members(struct_name: str) -> dict[str, int]:
    out = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    block = re.search(rf"^\[\d+\] STRUCT '{struct_name}' size=\d+ vlen=\d+\n((?:\t.*\n)+)", out, re.M).group(1)
    return {m[0]: int(m[1]) for m in re.findall(r"'(\w+)' type_id=\d+ bits_offset=(\d+)", block)}


def test_btf_offsets_match_bpftool():
    btf = BTF.load()
    for struct_name, fields in {"task_struct": ["pid", "tgid", "cred", "real_parent", "start_boottime"],
                                "cred": ["uid", "euid", "cap_permitted", "user_ns"],
                                "linux_binprm": ["file", "per_clear", "secureexec"]}.items():  # fmt: skip
        expected = _bpftool_members(struct_name)
        for f in fields:
            m = btf.member(struct_name, f)
            assert m.offset * 8 + m.bit_offset == expected[f], (struct_name, f)
    assert btf.member("linux_binprm", "secureexec").bit_size == 1
    assert btf.tracepoint_arity("sched_process_exec") == 3


def test_headers_fallback_is_announced_once(monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    messages = []
    with kernel_tree.compile_tree(messages.append, release="0.0.0-no-such-kernel"):
        tree = Path(os.environ["BCC_KERNEL_SOURCE"])
        assert (tree / "include" / "generated" / "autoconf.h").exists()
        assert (tree / "include" / "linux" / "kconfig.h").exists()
    assert "BCC_KERNEL_SOURCE" not in os.environ and not tree.exists()
    assert len(messages) == 1 and "0.0.0-no-such-kernel" in messages[0] and "BTF" in messages[0]


def _prog_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True, check=True).stdout
    return {p["id"] for p in json.loads(out)}


def _gone_soon(ids: set[int]) -> bool:
    """Detached raw-tracepoint programs are freed after an RCU grace period."""
    deadline = time.monotonic() + 5
    while _prog_ids() & ids:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_stop_detaches_everything():
    before = _prog_ids()
    collector = open_collector(scan_proc=False)
    loaded = _prog_ids() - before
    assert len(loaded) >= 4  # exec's two, clone, exit, the cgroups'
    collector.stop()
    assert _gone_soon(loaded)


def test_events_command_leaves_nothing_behind():
    before = _prog_ids()
    proc = subprocess.run([*EVENTS[:-1], "0.5"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "procscope: lost: 0\n" in proc.stderr
    assert _gone_soon(_prog_ids() - before)


def test_mounts_tracefs_when_missing():
    """A fresh machine may lack tracefs: procscope mounts it (here in a
    private mount namespace, so the host's stays as it is)."""
    script = (
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; "
        'test ! -e /sys/kernel/tracing/events || exit 99; exec "$@"'
    )
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *EVENTS[:-1], "0.5"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode == 2:
        bpf_unavailable(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    assert "collecting" in proc.stderr
