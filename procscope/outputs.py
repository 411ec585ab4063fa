"""Where procscope writes: recordings and event streams (streamed, rotated
on request), and snapshots (atomic). procscope runs as root and other
users may write in the same directories, so every file is made, renamed
and removed through one helper, ``Directory``: relative to a descriptor of
its directory, never following a link (O_NOFOLLOW), never taking over a
name (O_EXCL; renames by link-then-unlink, which fails on a taken name),
and removing only files this process made (by name and inode). And:

- a directory, a missing parent directory, a block device, a link to a
  regular file, a link another user could have planted, a file owned by
  another user and anything under /proc or /sys is refused with one line;
- a directory other users can write without the sticky bit is refused
  (they could rename root's files out from under it);
- a character device (``/dev/null``, a terminal), a pipe reached through
  root's own links (``/dev/stdout``), and root's own FIFOs and sockets are
  written to as they are, never replaced or truncated;
- a regular file or a new path is written with mode 0600.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import os
import queue
import re
import secrets
import stat
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
PSEUDO_FS = ("/proc", "/sys")  # kernel interfaces: never an output, whatever stat says
_BACKUP = re.compile(r"(?P<stamp>\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3})(?:-(?P<n>\d+))?")  # NAME-<this>.EXT
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_EXISTING = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class OutputError(Exception):
    """A path procscope will not or cannot write; ``str()`` is one line: the problem and the fix."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _pseudo(path: str) -> bool:
    try:
        real = os.path.realpath(path)
    except OSError:  # a link that changed while it was read: what it is decides below
        real = os.path.abspath(path)
    return any(real == p or real.startswith(p + "/") for p in PSEUDO_FS)


def _writable_by_others(st: os.stat_result) -> bool:
    return bool(st.st_mode & 0o022)


class Directory:
    """A directory procscope writes in, held open (O_PATH) and checked once:
    every name below is resolved in it, so a directory swapped meanwhile
    is not followed."""

    def __init__(self, path: str):
        self.path = path
        if _pseudo(path):
            raise OutputError(f"{path} is a kernel interface (/proc, /sys); choose a directory on a disk")
        try:
            self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise OutputError(f"directory {path} does not exist; create it or choose another path") from None
        except OSError as exc:
            raise OutputError(f"cannot use directory {path}: {_why(exc)}; choose another") from None
        st = os.fstat(self.fd)
        if _writable_by_others(st) and not st.st_mode & stat.S_ISVTX:
            self.close()
            raise OutputError(f"{path} is writable by other users without the sticky bit; "
                              "choose a directory only root can write (or a sticky one such as /tmp)")  # fmt: skip
        self._made: list[tuple[str, int]] = []  # (name, inode) of the files made here, oldest first
        self._lock = threading.Lock()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def create(self, name: str) -> int:
        """A new file (mode 0600), never one that exists or a link's target."""
        fd = os.open(name, _NEW, MODE, dir_fd=self.fd)
        os.fchmod(fd, MODE)  # whatever the umask
        self._remember(name, os.fstat(fd).st_ino)
        return fd

    def create_temporary(self, stem: str, suffix: str) -> tuple[str, int]:
        """A new file under a name nobody can guess (.STEM.RANDOM.SUFFIX)."""
        while True:
            name = f".{stem}.{secrets.token_hex(8)}{suffix}"
            try:
                return name, self.create(name)
            except FileExistsError:
                continue

    def truncate_own(self, name: str) -> int | None:
        """An existing regular file of this user's, emptied; None when there
        is none; OutputError for anything else at that name."""
        try:
            fd = os.open(name, _EXISTING, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a link
                raise OutputError(f"{os.path.join(self.path, name)} is a symbolic link; name the file itself") from None
            raise
        st = os.fstat(fd)
        why = "" if stat.S_ISREG(st.st_mode) else "is not a regular file"
        if not why and st.st_uid != os.geteuid():
            why = f"belongs to uid {st.st_uid}"
        elif not why and st.st_nlink != 1:
            why = "has other hard links"
        if why:
            os.close(fd)
            raise OutputError(f"{os.path.join(self.path, name)} {why}; remove it or choose another path")
        os.set_blocking(fd, True)
        os.ftruncate(fd, 0)
        os.fchmod(fd, MODE)
        self._remember(name, st.st_ino)
        return fd

    def rename_new(self, old: str, new: str) -> None:
        """``old`` becomes ``new``; FileExistsError, rather than a replacement, when ``new`` is taken."""
        os.link(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)
        with self._lock:
            self._made = [(new if n == old else n, ino) for n, ino in self._made]
        os.unlink(old, dir_fd=self.fd)

    def replace(self, old: str, new: str) -> None:
        """``old`` takes ``new``'s name atomically (a link there is replaced, never followed)."""
        os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        with self._lock:
            self._made = [(new if n == old else n, ino) for n, ino in self._made if n != new]

    def remove_own(self, name: str) -> None:
        """Remove ``name`` only if it is still the file this process made there."""
        with self._lock:
            ino = next((i for n, i in self._made if n == name), None)
            self._made = [(n, i) for n, i in self._made if n != name]
        st = self.lstat(name)
        if ino is not None and st is not None and st.st_ino == ino and stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self.fd)

    def made(self) -> list[str]:
        with self._lock:
            return [n for n, _ in self._made]

    def _remember(self, name: str, ino: int) -> None:
        with self._lock:
            self._made = [(n, i) for n, i in self._made if n != name]
            self._made.append((name, ino))


def check_target(path: str) -> bool:
    """Refuse a path procscope must not write (OutputError); True when it
    is a special file (device, FIFO, socket) to be written as it is."""
    if _pseudo(path):
        raise OutputError(f"{path} is a kernel interface (/proc, /sys); choose a file on a disk")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        Directory(os.path.dirname(os.path.abspath(path))).close()
        return False
    except OSError as exc:
        raise OutputError(f"{path}: {_why(exc)}; choose another path") from None
    if stat.S_ISLNK(st.st_mode):
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
        if parent.st_uid != 0 or _writable_by_others(parent):
            raise OutputError(f"{path} is a symbolic link in a directory other users can write; name the file itself")
        try:
            st = os.stat(path)
        except OSError as exc:
            raise OutputError(f"{path} is a symbolic link to nowhere ({_why(exc)}); name a file") from None
        if stat.S_ISREG(st.st_mode):
            raise OutputError(f"{path} is a symbolic link to a regular file; name the file itself")
        return _special(path, st, own_link=True)
    return _special(path, st, own_link=False)


def _special(path: str, st: os.stat_result, own_link: bool) -> bool:
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path} is a directory; name a file to write in it")
    if stat.S_ISBLK(st.st_mode):
        raise OutputError(f"{path} is a block device; procscope never writes to one, choose a file")
    if stat.S_ISCHR(st.st_mode):
        return True
    if not stat.S_ISREG(st.st_mode):  # a FIFO or socket: root's, or reached through root's own link
        if not own_link and st.st_uid not in (0, os.geteuid()):
            raise OutputError(f"{path} is a FIFO or socket of uid {st.st_uid}; procscope writes only to root's")
        return True
    Directory(os.path.dirname(os.path.abspath(path))).close()
    if st.st_uid != os.geteuid():
        raise OutputError(f"{path} belongs to uid {st.st_uid}; remove it or choose another path")
    return False


def _file(fd: int, binary: bool) -> TextIO | BinaryIO:
    if binary:
        return open(fd, "wb", buffering=STREAM_BUFFER)
    # backslashreplace: procscope's text is valid UTF-8, but nothing may stop a recording.
    return open(fd, "w", encoding="utf-8", errors="backslashreplace", newline="\n", buffering=BUFFER)


def _open_special(path: str, binary: bool = False) -> TextIO | BinaryIO:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {_why(exc)}; choose a writable path") from None
    return _file(fd, binary)


def _open_regular(directory: Directory, name: str, binary: bool = False) -> TextIO | BinaryIO:
    """``name`` in ``directory`` from its start: this user's file emptied, or a new one."""
    path = os.path.join(directory.path, name)
    try:
        fd = directory.truncate_own(name)
        if fd is None:
            fd = directory.create(name)
    except FileExistsError:
        raise OutputError(f"{path} appeared while it was opened; choose another path") from None
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {_why(exc)}; choose a writable path") from None
    return _file(fd, binary)


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
            return _open_special(self.path, binary=True)  # type: ignore[return-value]
        return _open_regular(self._dir, self._name, binary=True)  # type: ignore[return-value]

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
        assert self._dir is not None
        try:
            self._f.close()
            self._confirm()
            backup = self._rename_to_backup()
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
            _gzip(self._dir, backup)
            self._prune()

    def _rename_to_backup(self) -> str:
        """The file becomes NAME-<UTC time>.EXT (-2, -3… when taken, by anyone)."""
        assert self._dir is not None
        stem, ext = os.path.splitext(self._name)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        name, n = f"{stem}-{stamp}{ext}", 1
        while True:
            if self._dir.lstat(name + ".gz") is None:
                try:
                    self._dir.rename_new(self._name, name)
                    return name
                except FileExistsError:
                    pass
            n += 1
            name = f"{stem}-{stamp}-{n}{ext}"

    def _made_backups(self) -> list[str]:
        """Names of the rotated files this run made and kept, oldest first (compressed or not)."""
        if self._dir is None:
            return []
        stem, ext = os.path.splitext(self._name)
        found = []
        for name in self._dir.made():
            core = name.removesuffix(".gz")
            if core.startswith(stem + "-") and core.endswith(ext) and (m := _BACKUP.fullmatch(core[len(stem) + 1 : len(core) - len(ext)])):
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


@contextlib.contextmanager
def atomic_writer(path: str, replace: bool = True) -> Iterator[TextIO]:
    """Write ``path`` as a whole: into a temporary file beside it, renamed
    into place when the block ends without an error (readers never see half
    a file; an error leaves the old file as it was). ``replace=False`` never
    replaces an existing file (OutputError). A character device or FIFO is
    written to directly."""
    if check_target(path):
        with _open_special(path) as f:
            yield f  # type: ignore[misc]
        return
    directory = Directory(os.path.dirname(os.path.abspath(path)))
    name = os.path.basename(path)
    tmp = None
    try:
        tmp, fd = directory.create_temporary(name, ".tmp")
        with _file(fd, binary=False) as f:
            yield f  # type: ignore[misc]
            f.flush()
            os.fsync(f.fileno())
        if replace:
            directory.replace(tmp, name)
        else:
            try:
                directory.rename_new(tmp, name)
            except FileExistsError:
                raise OutputError(f"{path} exists already; choose another name") from None
        tmp = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_why(exc)}; choose another path") from None
    finally:
        if tmp is not None:
            directory.remove_own(tmp)
        directory.close()


def free_name(directory: str, stem: str, suffix: str) -> str:
    """``directory/stem+suffix``, or with -2, -3 … before the suffix when
    that name is taken (two snapshots in the same second). Only a
    suggestion: write it with ``atomic_writer(replace=False)``, which
    never takes a name somebody else took meanwhile."""
    path, n = os.path.join(directory, stem + suffix), 1
    while os.path.lexists(path):
        n += 1
        path = os.path.join(directory, f"{stem}-{n}{suffix}")
    return path
