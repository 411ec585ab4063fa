"""Credentials changed in a process that then neither clones, execs nor
exits, where the kernel side looks (without --creds-exact): the resources
sampler, reading the process anyway, notes the owner of /proc/PID, which
is its euid and egid, or root's once a change of credentials has made it
undumpable (every rise does: setuid to 0, capabilities gained, a kernel
exploit's commit_creds). When the owner changes it reads /proc/PID/status
and ns/*, and the monitor applies what differs from the image it knows as
a change "seen in /proc", late by a pass or more (a process whose pid ends
in the pass's digit is read every SLICES passes), but not missed. A drop
from root keeps root's owner: it is seen at the process's next clone,
exec or exit, as before."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import msgspec

from .probes import procfs
from .probes.events import NAMESPACES, Capabilities, CapSets, Credentials, CredsEvent, Namespaces, ProcessKey

if TYPE_CHECKING:
    from .cache import ProcessCache

SEEN = "seen in /proc"  # a CredsEvent's syscall


class Found(msgspec.Struct, frozen=True, gc=False):
    """What /proc said of a process whose owner changed."""

    key: ProcessKey
    time: int  # boot-clock ns
    ids: tuple[int, int, int, int, int, int, int, int]  # uid, gid, suid, sgid, euid, egid, fsuid, fsgid
    caps: Capabilities
    sets: CapSets
    ns: Namespaces


def owner(proc_fd: int, pid: str) -> tuple[int, int] | None:
    try:
        st = os.stat(pid, dir_fd=proc_fd)
    except OSError:
        return None
    return st.st_uid, st.st_gid


def read(proc_fd: int, key: ProcessKey) -> Found | None:
    """The process's credentials and namespaces now (None: gone or unreadable)."""
    try:
        d = os.open(str(key.pid), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc_fd)
    except OSError:
        return None
    try:
        status = procfs.read_at(d, "status", b"")
        inums = [procfs.inum_at(d, link) for link in procfs.NS_LINKS]
    finally:
        os.close(d)
    lines = dict(line.split(b":", 1) for line in status.splitlines() if b":" in line)
    try:
        uid, euid, suid, fsuid = (int(x) for x in lines[b"Uid"].split())
        gid, egid, sgid, fsgid = (int(x) for x in lines[b"Gid"].split())
        cap = {name: int(lines[b"Cap" + name], 16) for name in (b"Inh", b"Prm", b"Eff", b"Bnd", b"Amb")}
    except (KeyError, ValueError):
        return None
    return Found(key, time.clock_gettime_ns(time.CLOCK_BOOTTIME), (uid, gid, suid, sgid, euid, egid, fsuid, fsgid),
                 Capabilities(cap[b"Prm"], cap[b"Eff"], cap[b"Inh"]), CapSets(cap[b"Bnd"], cap[b"Amb"]),
                 Namespaces(*inums))  # fmt: skip


def event(cache: ProcessCache, found: Found) -> CredsEvent | None:
    """The change as the cache applies it (None: the process is not known).
    What /proc does not show (securebits, the user namespace's owner) is the
    image's, unless its user namespace changed."""
    proc = cache.procs.get(found.key)
    if proc is None or proc.image is None:
        return None
    img = proc.image
    user_ns = img.creds.user_ns
    if found.ns.user and found.ns.user != user_ns.inum:
        user_ns = procfs.user_namespace(found.key.pid, found.ns.user)
    creds = Credentials(*found.ids, img.creds.securebits, found.caps, user_ns)
    ns = Namespaces(*(getattr(found.ns, n) or getattr(img.ns, n) for n in NAMESPACES))  # unreadable: as known
    return CredsEvent(found.time, found.key, found.key.pid, SEEN, creds, ns, found.sets)
