"""The compile kept between starts (probes.bpf_cache): the first start
compiles and keeps it (0600, in a 0700 directory), the next loads it
without compiling and collects the same; a kept file that was changed,
is another user's or is a link is never loaded (compiled again instead);
other options are another file."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from procscope.probes import bpf_cache
from procscope.probes.collector import Collector
from procscope.probes.events import ExecEvent

from .conftest import Live, bpf_unavailable, unique_copy
from .test_attacks import as_user, attacker  # noqa: F401 - the fixture

pytestmark = pytest.mark.bpf


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # not there yet, as on a fresh machine
    return tmp_path / "cache" / "procscope"


def _start(scratch, **options) -> tuple[list[str], list[str]]:
    """A collector opened, an exec seen through it, closed: (what the set-up said, the compile log)."""
    said: list[str] = []
    collector = Collector(scan_proc=False, log=said.append, **options)
    collector.open()
    collector.start()
    live = Live(collector)
    try:
        binary = unique_copy("/bin/true", scratch)
        subprocess.run([binary], check=True)
        live.wait_for(lambda e: isinstance(e, ExecEvent) and e.binary == binary)
    finally:
        live.close()
        collector.stop()
    return said, collector.compile_log


def _kept(cache_home) -> list[str]:
    return sorted(n for n in os.listdir(cache_home) if n.endswith(".bpf"))


def test_the_second_start_loads_what_the_first_compiled(cache_home, scratch):
    said, _ = _start(scratch)
    assert not any("kept in" in s for s in said), said  # compiled
    [name] = _kept(cache_home)
    assert stat.S_IMODE(os.stat(cache_home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache_home / name).st_mode) == 0o600
    said, _ = _start(scratch)  # the exec seen through the programs loaded from the file
    assert all("compiled at an earlier start, kept in" in s for s in said), said
    assert _kept(cache_home) == [name]
    _start(scratch, creds_exact=True)  # other programs: another file beside it
    assert len(_kept(cache_home)) == 2


def test_a_changed_or_foreign_file_is_compiled_again_never_loaded(cache_home, scratch):
    _start(scratch)
    [name] = _kept(cache_home)
    path = cache_home / name
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of the instructions or maps: the digest no longer matches
    path.write_bytes(bytes(data))
    said, _ = _start(scratch)
    assert not any("kept in" in s for s in said), said  # compiled, not loaded
    assert bpf_cache.read(name) is not None  # and replaced by a good one

    os.chmod(path, 0o644)  # readable by others: not this user's alone
    assert bpf_cache.read(name) is None
    os.chmod(path, 0o600)
    good = cache_home / "good"
    path.rename(good)
    path.symlink_to(good)  # a link, even to a good file
    assert bpf_cache.read(name) is None
    said, _ = _start(scratch)
    assert not any("kept in" in s for s in said), said
    assert not path.is_symlink()  # replaced, not written through


def test_a_cache_directory_another_user_owns_is_never_used(cache_home, monkeypatch, scratch, attacker):  # noqa: F811
    """XDG_CACHE_HOME pointing where an unprivileged user writes, who
    planted a kept compile under the very name root would look for, whole
    and with its digest right: not loaded into the kernel (compiled
    instead), and root writes nothing there."""
    _start(scratch)
    [name] = _kept(cache_home)
    planted = os.path.join(attacker.pw_dir, "planted-cache")
    as_user(f"rm -rf {planted}; mkdir -p -m 700 {planted}/procscope")
    public = os.path.join(scratch, name)  # a copy the attacker can read (as anyone can a released build's)
    shutil.copy(cache_home / name, public)
    os.chmod(public, 0o644)
    as_user(f"cp {public} {planted}/procscope/{name}")
    monkeypatch.setenv("XDG_CACHE_HOME", planted)
    said, _ = _start(scratch)
    assert not any("kept in" in s for s in said), said
    assert as_user(f"ls -A {planted}/procscope").stdout.split() == [name]  # nothing of root's written there
