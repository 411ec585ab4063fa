"""Reading files that other users may control, as root, without being
stalled, misled or sent elsewhere by them.

Every read here is a regular file opened with O_NONBLOCK|O_NOFOLLOW (a
FIFO, a device or a planted link is refused at once, never waited on),
read up to a size cap. A *trusted* read is for a file whose content is
believed (a runtime's state): the file and every directory on its real
path must be owned by root and writable by nobody else (a sticky
directory such as /tmp may be, since its entries still cannot be replaced
by others), and the walk opens each component beneath the one before, so
a component swapped for a link meanwhile is refused, not followed.

Reads that can still stall (a hung mount, /proc of a process stuck in the
kernel) run on a ``Deadline`` worker: the caller waits a bounded time."""

from __future__ import annotations

import errno
import os
import queue
import stat
import threading
from collections.abc import Callable
from typing import TypeVar

READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

T = TypeVar("T")


class Untrusted(Exception):
    """A file procscope will not read or believe; ``str()`` says why, in one line."""


def check_owner(st: os.stat_result, path: str) -> None:
    """Owned by root and writable by nobody else (a sticky directory may be)."""
    if st.st_uid != 0:
        raise Untrusted(f"{path} is owned by uid {st.st_uid}, not root")
    if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        raise Untrusted(f"{path} is writable by users other than root")


def open_trusted_dir(path: str) -> int:
    """An O_PATH descriptor of ``path``'s real directory, every component
    of which was checked (``check_owner``); the caller closes it."""
    real = os.path.realpath(path)
    fd = os.open("/", _DIR_FLAGS)
    try:
        check_owner(os.fstat(fd), "/")
        walked = ""
        for comp in real.split("/"):
            if not comp:
                continue
            walked += "/" + comp
            nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
            check_owner(os.fstat(fd), walked)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_file(path: str, limit: int, trusted: bool = False, follow: bool = False) -> bytes:
    """A regular file's bytes (at most ``limit``). OSError when it cannot be
    opened (FileNotFoundError when absent); Untrusted when it is not a
    regular file, is over ``limit``, or (``trusted``) fails the ownership
    checks. ``follow``: a link named by the user may be followed (their own config)."""
    dir_fd = None
    if trusted:
        dir_fd = open_trusted_dir(os.path.dirname(os.path.abspath(path)) or "/")
    try:
        name = os.path.basename(path) if trusted else path
        try:
            fd = os.open(name, READ_FLAGS & ~os.O_NOFOLLOW if follow and not trusted else READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
                raise Untrusted(f"{path} is a symbolic link") from None
            raise
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted(f"{path} is not a regular file")
        if trusted:
            check_owner(st, path)
        if st.st_size > limit:
            raise Untrusted(f"{path} is larger than {limit} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Untrusted(f"{path} is larger than {limit} bytes")
    return data


class Deadline:
    """Runs one call at a time on a daemon thread and waits for it at most
    ``timeout`` seconds. A call still running (a stalled read) makes the
    next ones fail at once instead of queueing behind it."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = threading.Event()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``'s result or exception; TimeoutError past the deadline or while a stalled call runs."""
        if self._busy.is_set():
            raise TimeoutError("a previous read is still stalled")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="procscope-enrich", daemon=True)
            self._thread.start()
        done = threading.Event()
        box: list = []
        self._busy.set()
        self._jobs.put((fn, box, done))
        if not done.wait(self.timeout):
            raise TimeoutError(f"no answer within {self.timeout:g} s")
        ok, value = box[0]
        if ok:
            return value
        raise value

    def _work(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box.append((True, fn()))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box.append((False, exc))
            self._busy.clear()
            done.set()
