"""Files procscope writes: recordings stream and survive a SIGKILL or a full
disk, devices and FIFOs stay what they are, bad paths are refused before
anything starts, rotation as Tetragon's, snapshots atomic and private."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from procscope.safe_write import OutputError, atomic_writer, check_target, free_name
from procscope.stream_files import Rotation, StreamFile

from .conftest import bpf_unavailable, unique_copy

REPO = Path(__file__).resolve().parent.parent


def _start_events(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "procscope.cli", "events", *args], cwd=REPO, stderr=subprocess.PIPE)
    line = b""
    while b"collecting" not in line:
        line = proc.stderr.readline()
        if not line:
            if proc.wait() == 2:
                bpf_unavailable("procscope events could not start")
            raise AssertionError(f"procscope events exited early: {proc.stderr.read()!r}")
    return proc


def _storm(binary: str, seconds: float) -> int:
    """Exec ``binary`` as fast as a shell loop can for ``seconds``."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        subprocess.run([binary, "x" * 2000], check=True)
        n += 1
    return n


def _lines(path) -> list[dict]:
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    if lines[-1]:  # a line cut by the end of the file (a kill, a full disk): only the last may be
        lines = lines[:-1]
    return [json.loads(x) for x in lines if x]


@pytest.mark.bpf
def test_sigkill_keeps_what_was_flushed(scratch):
    marker = unique_copy("/bin/true", scratch)
    rec = os.path.join(scratch, "rec.json")
    proc = _start_events("--record", rec)
    subprocess.run([marker], check=True)
    time.sleep(2.0)  # flushed at least once a second
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = _lines(rec)
    assert any(x.get("process_exec", {}).get("process", {}).get("binary") == marker for x in lines)
    assert any("procFS" in x["process_exec"]["process"]["flags"] for x in lines if "process_exec" in x)
    assert stat.S_IMODE(os.stat(rec).st_mode) == 0o600
    assert [f for f in os.listdir(scratch) if f.startswith(".")] == []  # no hidden temporary left


@pytest.mark.bpf
def test_full_disk_ends_with_one_line_and_keeps_what_fit(scratch):
    mnt = os.path.join(scratch, "tiny")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", mnt], check=True)
    try:
        rec = os.path.join(mnt, "rec.json")
        proc = _start_events("--record", rec)
        binary = unique_copy("/bin/true", scratch)
        t = threading.Thread(target=_storm, args=(binary, 6.0))
        t.start()
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            t.join()
        err_lines = [x for x in err.decode().splitlines() if "No space left" in x]
        assert proc.returncode == 1, err
        assert len(err_lines) == 1 and rec in err_lines[0] and "kept" in err_lines[0]
        assert os.path.getsize(rec) > 150_000
        kept = _lines(rec)  # every line that fit is whole (only a last, cut one is not)
        recorded = int(re.search(r"events: (\d+) recorded", err.decode())[1])
        assert recorded == len(kept), (recorded, len(kept))  # the summary counts the whole lines on disk
        assert len(kept) > 10 and any(
            "procFS" in x["process_exec"]["process"]["flags"] for x in kept if "process_exec" in x
        )
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


@pytest.mark.bpf
def test_character_device_stays_a_device(scratch):
    dev = os.path.join(scratch, "null")
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # our own /dev/null node
    proc = _start_events("-o", dev, "--record", dev, "--duration", "1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert stat.S_ISCHR(os.stat(dev).st_mode)
    snap = subprocess.run([sys.executable, "-m", "procscope.cli", "snapshot", "-o", dev], cwd=REPO, capture_output=True)
    assert snap.returncode == 0, snap.stderr
    assert stat.S_ISCHR(os.stat(dev).st_mode) and os.stat(dev).st_rdev == os.makedev(1, 3)


def test_fifo_is_written_as_a_fifo(scratch):
    fifo = os.path.join(scratch, "pipe")
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(Path(fifo).read_bytes()))
    reader.start()
    out = subprocess.run([sys.executable, "-m", "procscope.cli", "snapshot", "--format", "jsonl", "-o", fifo], cwd=REPO,
                         capture_output=True, timeout=60)  # fmt: skip
    reader.join(timeout=30)
    assert out.returncode == 0, out.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [json.loads(x)["process_exec"]["process"]["pid"] for x in got[0].splitlines()][0] >= 1


@pytest.mark.parametrize("command", [["events", "--record"], ["events", "-o"], ["snapshot", "--duration", "30", "-o"]])
def test_bad_paths_are_refused_before_anything_starts(scratch, command):
    link = os.path.join(scratch, "link")
    Path(scratch, "target").write_text("keep me\n")
    os.symlink(os.path.join(scratch, "target"), link)
    cases = {
        scratch: "is a directory",
        os.path.join(scratch, "no", "such", "dir", "f.json"): "does not exist",
        link: "symbolic link to a regular file",
    }
    for path, why in cases.items():
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "procscope.cli", *command, path], cwd=REPO, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        assert out.returncode == 2 and why in out.stderr and time.monotonic() - t0 < 10, out.stderr
        assert [x for x in out.stderr.splitlines() if why in x] == [x for x in out.stderr.splitlines() if x.strip()]
    assert Path(scratch, "target").read_text() == "keep me\n"


def test_rotation_keeps_the_newest_backups_compressed(scratch):
    path = os.path.join(scratch, "stream.json")
    f = StreamFile(path, Rotation(max_bytes=10_000, max_backups=2, compress=True))
    for i in range(2000):
        f.write(json.dumps({"n": i, "pad": "x" * 40}).encode())
    f.close()
    backups = f.backups()
    assert len(backups) == 2 and all(b.endswith(".gz") for b in backups)
    numbers = [json.loads(x)["n"] for b in backups for x in gzip.decompress(Path(b).read_bytes()).splitlines()]
    numbers += [json.loads(x)["n"] for x in Path(path).read_text().splitlines()]
    assert numbers == list(range(numbers[0], 2000))  # the newest, in order, nothing missing between
    assert all(stat.S_IMODE(os.stat(b).st_mode) == 0o600 for b in [*backups, path])


@pytest.mark.bpf
def test_rotation_by_interval_from_the_command_line(scratch):
    path = os.path.join(scratch, "rec.json")
    proc = _start_events("--record", path, "--rotate-interval", "1s", "--duration", "3.5")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    rotated = [f for f in os.listdir(scratch) if f.startswith("rec-") and f.endswith(".json")]
    assert 2 <= len(rotated) <= 4, rotated
    assert _lines(path) is not None and all(_lines(os.path.join(scratch, f)) is not None for f in rotated)


def test_rotation_of_a_device_is_refused(scratch):
    with pytest.raises(OutputError, match="cannot be rotated"):
        StreamFile("/dev/null", Rotation(max_bytes=1000))


def test_atomic_writer_replaces_regular_files_only_and_never_half(scratch):
    path = os.path.join(scratch, "snap.json")
    Path(path).write_text("old\n")
    os.chmod(path, 0o644)
    with pytest.raises(RuntimeError), atomic_writer(path) as f:
        f.write("half")
        raise RuntimeError("cut short")
    assert Path(path).read_text() == "old\n"  # an error leaves the old file as it was
    with atomic_writer(path) as f:
        f.write("new\n")
    assert Path(path).read_text() == "new\n" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(OutputError, match="exists already"), atomic_writer(path, replace=False) as f:
        f.write("other\n")
    assert Path(path).read_text() == "new\n"
    assert [f for f in os.listdir(scratch) if f.startswith(".")] == []
    assert check_target("/dev/null") is True


def test_free_name_never_reuses_a_name(scratch):
    a = free_name(scratch, "procscope-snapshot-x", ".json")
    Path(a).write_text("{}")
    b = free_name(scratch, "procscope-snapshot-x", ".json")
    Path(b).write_text("{}")
    assert a != b and b.endswith("-2.json") and free_name(scratch, "procscope-snapshot-x", ".json").endswith("-3.json")


def test_rotations_within_one_millisecond_each_get_their_own_backup(scratch, monkeypatch):
    """Backups are named by the millisecond: a second rotation in the same one
    takes -2, even when the first one's compression ends between its look for
    a free name and its rename (a race seen in CI: it took the first one's
    name, its compression met the first one's .gz and left it plain)."""
    from datetime import UTC, datetime

    from procscope import stream_files

    class Frozen(datetime):  # every rotation in the same millisecond
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 12, 7, 5, 0, 0, 123000, tzinfo=UTC)

    monkeypatch.setattr(stream_files, "datetime", Frozen)
    f = StreamFile(os.path.join(scratch, "rec.json"), Rotation(max_bytes=1, max_backups=0, compress=True))
    # Each backup's compression waits for the next rotation's look for a free name, and ends before it renames.
    look, compressed = threading.Event(), threading.Event()
    gzip_backup, free = stream_files._gzip, f._dir.lstat

    def compress_when_looked(directory, name):
        look.wait(2)
        look.clear()
        gzip_backup(directory, name)
        compressed.set()

    def looking(name):
        found = free(name)
        if name.endswith(".gz"):
            look.set()
            compressed.wait(0.5)  # none the first time
            look.clear()
            compressed.clear()
        return found

    monkeypatch.setattr(stream_files, "_gzip", compress_when_looked)
    monkeypatch.setattr(f._dir, "lstat", looking)
    for i in range(4):
        f.write(json.dumps({"n": i}).encode())
    f.close()
    backups = f.backups()
    assert [os.path.basename(b) for b in backups] == [
        "rec-2026-12-07T05-00-00.123.json.gz",
        *(f"rec-2026-12-07T05-00-00.123-{n}.json.gz" for n in (2, 3, 4)),
    ]
    numbers = [json.loads(x)["n"] for b in backups for x in gzip.decompress(Path(b).read_bytes()).splitlines()]
    assert numbers == list(range(4))
