"""What BCC compiled, kept between runs: under $XDG_CACHE_HOME/procscope
(~/.cache/procscope), one file per (source, compile flags, kernel, BCC),
mode 0600 in a directory of mode 0700. A file is loaded only if this user
owns it and its directory, nobody else can write either, it is no link,
and its content matches the digest it carries; anything else is compiled
again and the file replaced (a program that would be loaded into the kernel
is never taken from a file someone else could have written)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat

import msgspec

from .programs import Compiled

MAGIC = b"procscope-bpf 1\n"
KEEP = 8  # files kept (one per set of options used lately); older ones are removed
_encode, _decode = msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder(Compiled).decode


def directory() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "procscope")


def key(*parts: bytes | str) -> str:
    """The file name for what the compile depends on."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:40] + ".bpf"


def _own(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _open_dir(path: str, create: bool) -> int | None:
    """The cache directory, if it and its parent are this user's alone (made 0700 when
    ``create``: never in a parent another user could write)."""
    try:
        if create:  # ~/.cache too on a fresh machine
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if not _own(os.stat(os.path.dirname(path))):
            return None
        if create:
            os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    if not _own(os.fstat(fd)):
        os.close(fd)
        return None
    return fd


def read(name: str) -> Compiled | None:
    """The kept compile, or None (absent, not trusted, or not what it says it is)."""
    dfd = _open_dir(directory(), create=False)
    if dfd is None:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        os.close(dfd)
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _own(st) or st.st_mode & 0o077:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read()
        head, digest, payload = data[: len(MAGIC)], data[len(MAGIC) : len(MAGIC) + 65], data[len(MAGIC) + 65 :]
        if head != MAGIC or digest != hashlib.sha256(payload).hexdigest().encode() + b"\n":
            return None
        return _decode(payload)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(dfd)


def write(name: str, compiled: Compiled) -> bool:
    """Keep ``compiled`` (atomically, 0600); whether it was kept."""
    dfd = _open_dir(directory(), create=True)
    if dfd is None:
        return False
    payload = _encode(compiled)
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        _prune(dfd)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        return False
    finally:
        os.close(dfd)


def _prune(dfd: int) -> None:
    kept = []
    for entry in os.scandir(dfd):
        if entry.name.endswith(".bpf") and entry.is_file(follow_symlinks=False):
            kept.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
    for _, name in sorted(kept, reverse=True)[KEEP:]:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dfd)
