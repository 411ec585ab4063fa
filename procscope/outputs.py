"""Where procscope writes: recordings and event streams (streamed, rotated
on request), and snapshots (atomic). procscope runs as root, so a path is
checked before anything starts, and nothing that is not a regular file is
ever replaced:

- a directory, a missing parent directory, a block device or a symbolic
  link to a regular file is refused with one line (a root tool must not
  follow links planted in shared directories onto files it would truncate);
- a character device, FIFO or socket (``/dev/null``, ``/dev/stdout``, a
  pipe) is written to as it is, never replaced or truncated;
- a regular file or a new path is written with mode 0600.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import queue
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO, TextIO

MODE = 0o600
BUFFER = 1 << 16
# A stream's: in a storm 40 MB/s of 8 KB lines, flushed several times a second; the kernel's
# page-cache write costs a third less per line in 1 MiB writes than in 64 KiB ones (measured here).
STREAM_BUFFER = 1 << 20
_BACKUP = re.compile(r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3})(?:-(?P<n>\d+))?")  # NAME-<this>.EXT


class OutputError(Exception):
    """A path procscope will not or cannot write; ``str()`` is one line: the problem and the fix."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_target(path: str) -> bool:
    """Refuse a path procscope must not write (OutputError); True when it
    is a special file (device, FIFO, socket) to be written as it is."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"{path}: directory {parent} does not exist; create it or choose another path") from None
        return False
    except OSError as exc:
        raise OutputError(f"{path}: {_why(exc)}; choose another path") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path} is a directory; name a file to write in it")
    if stat.S_ISBLK(st.st_mode):
        raise OutputError(f"{path} is a block device; procscope never writes to one, choose a file")
    if not stat.S_ISREG(st.st_mode):
        return True  # a character device, FIFO or socket: written to as such
    if os.path.islink(path):
        raise OutputError(f"{path} is a symbolic link to a regular file; name the file itself")
    return False


def _open_for_writing(path: str, special: bool, binary: bool = False) -> TextIO | BinaryIO:
    flags = os.O_WRONLY | os.O_CLOEXEC
    if not special:
        flags |= os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, MODE)
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {_why(exc)}; choose a writable path") from None
    if not special:
        os.fchmod(fd, MODE)  # an existing file keeps its mode otherwise
    if binary:
        return open(fd, "wb", buffering=STREAM_BUFFER)
    # backslashreplace: procscope's text is valid UTF-8, but nothing may stop a recording.
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", newline="\n", buffering=BUFFER)


@dataclass(frozen=True)
class Rotation:
    """Rotation as Tetragon's export file does it (lumberjack): past
    ``max_bytes`` or ``interval_s`` the file is renamed to
    NAME-<UTC time>.EXT (gzipped with ``compress``) and a new one started;
    the ``max_backups`` newest rotated files are kept."""

    max_bytes: int | None = None
    max_backups: int = 5
    interval_s: float | None = None
    compress: bool = False

    def __bool__(self) -> bool:
        return self.max_bytes is not None or self.interval_s is not None


class StreamFile:
    """A recording or event stream written as it goes: whatever has been
    flushed (at least once a second by the caller) survives a crash, a
    SIGKILL or a full disk, and an error never removes what was written."""

    def __init__(self, path: str, rotation: Rotation = Rotation()):
        self.path = path
        self.special = check_target(path)
        if rotation and self.special:
            raise OutputError(f"{path} is not a regular file, so it cannot be rotated; drop the rotation options")
        self.rotation = rotation
        self.lines = 0  # written in all, rotated files included
        self._worker: threading.Thread | None = None
        self._backlog: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._f = self._start()

    def _start(self) -> BinaryIO:
        self._size = 0
        self._opened = time.monotonic()
        return _open_for_writing(self.path, self.special, binary=True)

    def write(self, line: bytes) -> None:
        """One line of UTF-8 (without its newline). OutputError when it cannot be written."""
        try:
            self._f.write(line)
            self._f.write(b"\n")  # apart: a storm's lines are 8 KB, not copied to add one byte
        except OSError as exc:
            raise self._failed(exc) from None
        self.lines += 1
        if self.rotation:
            self._size += len(line) + 1
            self._maybe_rotate()

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            raise self._failed(exc) from None
        if self.rotation:
            self._maybe_rotate()

    def _failed(self, exc: OSError) -> OutputError:
        return OutputError(
            f"cannot write {self.path}: {_why(exc)}; what was flushed before is kept "
            "(free some space or choose another path)"
        )

    def _maybe_rotate(self) -> None:
        r = self.rotation
        if (r.max_bytes is not None and self._size >= r.max_bytes) or (
            r.interval_s is not None and time.monotonic() - self._opened >= r.interval_s
        ):
            self.rotate()

    def rotate(self) -> None:
        try:
            self._f.close()
            backup = self._backup_name()
            os.rename(self.path, backup)
        except OSError as exc:
            raise OutputError(f"cannot rotate {self.path}: {_why(exc)}; what was written is kept") from None
        if self.rotation.compress:
            # Compressed, then pruned, off the collecting thread; in order, one at a time.
            if self._worker is None:
                self._worker = threading.Thread(target=self._compress_and_prune, name="procscope-compress", daemon=True)
                self._worker.start()
            self._backlog.put(backup)
        else:
            self._prune()
        self._f = self._start()

    def _compress_and_prune(self) -> None:
        while (backup := self._backlog.get()) is not None:
            _gzip(backup)
            self._prune()

    def _backup_name(self) -> str:
        stem, ext = os.path.splitext(self.path)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        name, n = f"{stem}-{stamp}{ext}", 1
        while os.path.lexists(name) or os.path.lexists(name + ".gz"):
            n += 1
            name = f"{stem}-{stamp}-{n}{ext}"
        return name

    def backups(self) -> list[str]:
        """The rotated files, oldest first (compressed or not)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        stem, ext = os.path.splitext(os.path.basename(self.path))
        found = []
        for name in os.listdir(directory):
            core = name.removesuffix(".gz")
            if not (core.startswith(stem + "-") and core.endswith(ext)) or core == os.path.basename(self.path):
                continue
            m = _BACKUP.fullmatch(core[len(stem) + 1 : len(core) - len(ext)])
            if m:
                found.append(((m["stamp"], int(m["n"] or 1)), os.path.join(directory, name)))
        return [path for _, path in sorted(found)]

    def _prune(self) -> None:
        old = self.backups()
        for name in old[: max(0, len(old) - self.rotation.max_backups)]:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as exc:
            raise self._failed(exc) from None
        finally:
            if self._worker is not None:
                self._backlog.put(None)
                self._worker.join()


def _gzip(path: str) -> None:
    """Compress a rotated file beside itself; the plain one goes once the
    compressed one is complete (a failure keeps the plain one)."""
    try:
        with open(path, "rb") as src, gzip.open(path + ".gz.part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(path + ".gz.part", MODE)
        os.rename(path + ".gz.part", path + ".gz")
        os.unlink(path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path + ".gz.part")


@contextlib.contextmanager
def atomic_writer(path: str, replace: bool = True) -> Iterator[TextIO]:
    """Write ``path`` as a whole: into a temporary file beside it, renamed
    into place when the block ends without an error (readers never see half
    a file; an error leaves the old file as it was). ``replace=False`` never
    replaces an existing file (OutputError). A character device or FIFO is
    written to directly."""
    if check_target(path):
        with _open_for_writing(path, special=True) as f:
            yield f
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write in {directory}: {_why(exc)}; choose a writable directory") from None
    try:
        os.fchmod(fd, MODE)
        with open(fd, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails, rather than replaces, if the name was taken meanwhile
            except FileExistsError:
                raise OutputError(f"{path} exists already; choose another name") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_why(exc)}; choose another path") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def free_name(directory: str, stem: str, suffix: str) -> str:
    """``directory/stem+suffix``, or with -2, -3 … before the suffix when
    that name is taken (two snapshots in the same second)."""
    path, n = os.path.join(directory, stem + suffix), 1
    while os.path.lexists(path):
        n += 1
        path = os.path.join(directory, f"{stem}-{n}{suffix}")
    return path
