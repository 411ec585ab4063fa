"""Writing files as root in directories other users may write: every
file is made, renamed and removed through one helper, ``Directory``:
relative to a descriptor of its directory, never following a link
(O_NOFOLLOW), never taking over a name (O_EXCL; renames by
link-then-unlink, which fails on a taken name), and removing only files
this process made (by name and inode). And:

- a directory, a missing parent directory, a block device, a link to a
  regular file, a link another user could have planted, a file owned by
  another user and anything under /proc or /sys is refused with one line;
- a directory other users can write without the sticky bit is refused
  (they could rename root's files out from under it);
- a character device (``/dev/null``, a terminal), a pipe reached through
  root's own links (``/dev/stdout``), and root's own FIFOs and sockets are
  written to as they are, never replaced or truncated;
- a regular file or a new path is written with mode 0600; a whole file
  (``atomic_writer``) is renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from typing import BinaryIO, TextIO

MODE = 0o600
BUFFER = 1 << 16
# A stream's: in a storm 40 MB/s of 8 KB lines, flushed several times a second; the kernel's
# page-cache write costs a third less per line in 1 MiB writes than in 64 KiB ones (measured here).
STREAM_BUFFER = 1 << 20
PSEUDO_FS = ("/proc", "/sys")  # kernel interfaces: never an output, whatever stat says
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_EXISTING = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class OutputError(Exception):
    """A path procscope will not or cannot write; ``str()`` is one line: the problem and the fix."""


def os_error_text(exc: OSError) -> str:
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
            raise OutputError(f"cannot use directory {path}: {os_error_text(exc)}; choose another") from None
        st = os.fstat(self.fd)
        if _writable_by_others(st) and not st.st_mode & stat.S_ISVTX:
            self.close()
            raise OutputError(f"{path} is writable by other users without the sticky bit; "
                              "choose a directory only root can write (or a sticky one such as /tmp)")  # fmt: skip
        self._made: list[tuple[str, int]] = []  # (name, inode) of the files made here, oldest first
        self._lock = threading.Lock()

    def close(self) -> None:
        """Idempotent: a descriptor's number is reused once closed, so it is closed once."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

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
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
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
        raise OutputError(f"{path}: {os_error_text(exc)}; choose another path") from None
    if stat.S_ISLNK(st.st_mode):
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
        if parent.st_uid != 0 or _writable_by_others(parent):
            raise OutputError(f"{path} is a symbolic link in a directory other users can write; name the file itself")
        try:
            st = os.stat(path)
        except OSError as exc:
            raise OutputError(f"{path} is a symbolic link to nowhere ({os_error_text(exc)}); name a file") from None
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


def open_special(path: str, binary: bool = False) -> TextIO | BinaryIO:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {os_error_text(exc)}; choose a writable path") from None
    return _file(fd, binary)


def open_regular(directory: Directory, name: str, binary: bool = False) -> TextIO | BinaryIO:
    """``name`` in ``directory`` from its start: this user's file emptied, or a new one."""
    path = os.path.join(directory.path, name)
    try:
        fd = directory.truncate_own(name)
        if fd is None:
            fd = directory.create(name)
    except FileExistsError:
        raise OutputError(f"{path} appeared while it was opened; choose another path") from None
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {os_error_text(exc)}; choose a writable path") from None
    return _file(fd, binary)


@contextlib.contextmanager
def atomic_writer(path: str, replace: bool = True) -> Iterator[TextIO]:
    """Write ``path`` as a whole: into a temporary file beside it, renamed
    into place when the block ends without an error (readers never see half
    a file; an error leaves the old file as it was). ``replace=False`` never
    replaces an existing file (OutputError). A character device or FIFO is
    written to directly."""
    if check_target(path):
        with open_special(path) as f:
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
        raise OutputError(f"cannot write {path}: {os_error_text(exc)}; choose another path") from None
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
