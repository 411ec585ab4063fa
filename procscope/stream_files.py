"""Where procscope streams: recordings and event streams, written as they
go (what was flushed survives a crash) and rotated on request as
Tetragon's export file is. Files are made, renamed and removed through
``safe_write.Directory`` (procscope runs as root in directories others
may write)."""

from __future__ import annotations

import bisect
import contextlib
import gzip
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from .safe_write import Directory, OutputError, check_target, open_regular, open_special, os_error_text

_BACKUP = re.compile(r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3})(?:-(?P<n>\d+))?")  # NAME-<this>.EXT


@dataclass(frozen=True)
class Rotation:
    """Rotation as Tetragon's export file does it (lumberjack): past
    ``max_bytes`` or ``interval_s`` the file is renamed to
    NAME-<UTC time>.EXT (gzipped with ``compress``) and a new one started;
    the ``max_backups`` newest rotated files are kept (0 keeps all)."""

    max_bytes: int | None = None
    max_backups: int = 5
    interval_s: float | None = None
    compress: bool = False

    def __bool__(self) -> bool:
        return self.max_bytes is not None or self.interval_s is not None


class StreamFile:
    """A recording or event stream written as it goes: whatever has been
    flushed (at least once a second by the caller) survives a crash, a
    SIGKILL or a full disk, and an error never removes what was written.
    Rotated files are this run's own: pruning never touches another's."""

    def __init__(self, path: str, rotation: Rotation = Rotation()):
        self.path = path
        self.special = check_target(path)
        if rotation and self.special:
            raise OutputError(f"{path} is not a regular file, so it cannot be rotated; drop the rotation options")
        self.rotation = rotation
        self._dir = None if self.special else Directory(os.path.dirname(os.path.abspath(path)))
        self._name = os.path.basename(path)
        self._worker: threading.Thread | None = None
        self._backlog: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._last_backup = ("", 0)  # (stamp, n) of the last rotated file's name
        # Lines known whole on disk, and the end offsets of those written since (in the current file):
        # after a failure, what the summary counts is what a reader finds.
        self.lines_kept = 0
        self._ends: list[int] = []
        self._f = self._start()

    def _start(self) -> BinaryIO:
        self._size = 0
        self._bytes = 0
        self._opened = time.monotonic()
        if self._dir is None:
            return open_special(self.path, binary=True)  # type: ignore[return-value]
        return open_regular(self._dir, self._name, binary=True)  # type: ignore[return-value]

    def write(self, line: bytes) -> None:
        """One line of UTF-8 (without its newline). OutputError when it cannot be written."""
        try:
            self._f.write(line)
            self._f.write(b"\n")  # apart: a storm's lines are 8 KB, not copied to add one byte
        except OSError as exc:
            raise self._failed(exc) from None
        self._bytes += len(line) + 1
        self._ends.append(self._bytes)
        if self.rotation:
            self._size += len(line) + 1
            self._maybe_rotate()

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            raise self._failed(exc) from None
        self._confirm()
        if self.rotation:
            self._maybe_rotate()

    def _confirm(self) -> None:
        self.lines_kept += len(self._ends)
        self._ends.clear()

    def _failed(self, exc: OSError) -> OutputError:
        with contextlib.suppress(OSError, ValueError):
            on_disk = os.fstat(self._f.fileno()).st_size if self._dir is not None else 0
            self.lines_kept += bisect.bisect_right(self._ends, on_disk)
            self._ends.clear()
        return OutputError(
            f"cannot write {self.path}: {os_error_text(exc)}; what was flushed before is kept "
            "(free some space or choose another path)"
        )

    def _maybe_rotate(self) -> None:
        r = self.rotation
        if (r.max_bytes is not None and self._size >= r.max_bytes) or (
            r.interval_s is not None and time.monotonic() - self._opened >= r.interval_s
        ):
            self.rotate()

    def rotate(self) -> None:
        assert self._dir is not None
        try:
            self._f.close()
            self._confirm()
            backup = self._rename_to_backup()
        except OSError as exc:
            raise OutputError(f"cannot rotate {self.path}: {os_error_text(exc)}; what was written is kept") from None
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
        assert self._dir is not None  # only a regular file is rotated
        while (backup := self._backlog.get()) is not None:
            _gzip(self._dir, backup)
            self._prune()

    def _rename_to_backup(self) -> str:
        """The file becomes NAME-<UTC time>.EXT (-2, -3… when taken, by anyone)."""
        assert self._dir is not None
        stem, ext = os.path.splitext(self._name)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        # After this run's last one of the same millisecond: its compression may end between the look
        # below and the rename (its plain file gone, its .gz not yet seen), and that name is not free.
        n = self._last_backup[1] + 1 if self._last_backup[0] == stamp else 1
        while True:
            name = f"{stem}-{stamp}{ext}" if n == 1 else f"{stem}-{stamp}-{n}{ext}"
            if self._dir.lstat(name + ".gz") is None:
                try:
                    self._dir.rename_new(self._name, name)
                    self._last_backup = stamp, n
                    return name
                except FileExistsError:
                    pass
            n += 1

    def _made_backups(self) -> list[str]:
        """Names of the rotated files this run made and kept, oldest first (compressed or not)."""
        if self._dir is None:
            return []
        stem, ext = os.path.splitext(self._name)
        found = []
        for name in self._dir.made():
            core = name.removesuffix(".gz")
            if (
                core.startswith(stem + "-")
                and core.endswith(ext)
                and (m := _BACKUP.fullmatch(core[len(stem) + 1 : len(core) - len(ext)]))
            ):
                found.append(((m["stamp"], int(m["n"] or 1)), name))
        return [name for _, name in sorted(found)]

    def backups(self) -> list[str]:
        """The rotated files this run made and kept, oldest first (compressed or not)."""
        return [os.path.join(self._dir.path, n) for n in self._made_backups()] if self._dir else []

    def _prune(self) -> None:
        keep = self.rotation.max_backups
        if keep <= 0 or self._dir is None:
            return  # 0 keeps all
        old = self._made_backups()
        for name in old[: max(0, len(old) - keep)]:
            self._dir.remove_own(name)

    def close(self) -> None:
        try:
            self._f.close()
            self._confirm()
        except OSError as exc:
            raise self._failed(exc) from None
        finally:
            if self._worker is not None:
                self._backlog.put(None)
                self._worker.join()
                self._worker = None
            if self._dir is not None:
                self._dir.close()


def _gzip(directory: Directory, name: str) -> None:
    """Compress a rotated file beside itself, through a temporary file of
    an unguessable name; the plain one goes once the compressed one is
    complete (a failure keeps the plain one)."""
    tmp = None
    try:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory.fd)
        tmp, fd = directory.create_temporary(name, ".gz.part")
        with open(src, "rb") as plain, open(fd, "wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out) as dst:
            while chunk := plain.read(1 << 20):
                dst.write(chunk)
        directory.rename_new(tmp, name + ".gz")
        tmp = None
        directory.remove_own(name)
    except OSError:
        if tmp is not None:
            directory.remove_own(tmp)
