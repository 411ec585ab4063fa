"""Names of user and group ids, as ps shows them (the number when there is none)."""

from __future__ import annotations

import functools
import grp
import pwd


@functools.lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@functools.lru_cache(maxsize=4096)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@functools.lru_cache(maxsize=4096)
def uid_of(name: str) -> int | None:
    """The uid of a user name of this machine's, or None."""
    try:
        return pwd.getpwnam(name).pw_uid
    except (KeyError, ValueError):  # ValueError: a NUL in what was typed, no user's name
        return None
