"""Which cgroup hierarchy identifies a process's container.

On a pure cgroup v2 machine it is the unified hierarchy. On v1 or hybrid
machines container runtimes place processes in v1 controller hierarchies,
so (as Tetragon does) one v1 controller is tracked instead.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .offsets import V1_CONTROLLERS
from .text import from_bytes, to_bytes


@dataclass(frozen=True, slots=True)
class Hierarchy:
    controller: str | None  # None: the cgroup v2 unified hierarchy
    mountpoint: str | None  # where it is mounted, for ids of /proc-scanned processes
    # The kernel's hierarchy id, as cgroup events carry it: a v1
    # controller's from /proc/cgroups; the v2 hierarchy's is always 0.
    hierarchy_id: int = 0

    def path_of(self, pid: int | str) -> str | None:
        """This hierarchy's cgroup path of a process, from /proc/PID/cgroup
        (read as bytes: cgroup names are chosen by whoever makes them)."""
        try:
            with open(f"/proc/{pid}/cgroup", "rb") as f:
                return self.path_in(f.read())
        except OSError:
            return None

    def path_in(self, raw: bytes) -> str | None:
        """This hierarchy's path in the text of a /proc/PID/cgroup file."""
        for line in raw.splitlines():
            hid, _, rest = line.partition(b":")
            controllers, _, path = rest.partition(b":")
            if self.controller is None and controllers == b"" and hid == b"0":
                return from_bytes(path)
            if self.controller is not None and self.controller.encode() in controllers.split(b","):
                return from_bytes(path)
        return None

    def id_of(self, path: str) -> int:
        """A cgroup's id is its kernfs node id: the directory's inode."""
        if not self.mountpoint:
            return 0
        try:
            return os.stat(os.path.join(os.fsencode(self.mountpoint), to_bytes(path).lstrip(b"/"))).st_ino
        except OSError:
            return 0


def _mounts() -> list[tuple[str, str, set[str]]]:
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, mnt, fstype, opts, *_ = line.split()
            if fstype in ("cgroup", "cgroup2"):
                out.append((fstype, mnt.replace("\\040", " "), set(opts.split(","))))
    return out


def controller_mounts() -> dict[str, str]:
    """Where each v1 controller is mounted, and the v2 hierarchy under "" (hybrid machines have both)."""
    out: dict[str, str] = {}
    known = v1_hierarchy_ids()
    for fstype, mnt, opts in _mounts():
        if fstype == "cgroup2":
            out.setdefault("", mnt)
        else:
            for ctrl in opts & known.keys():  # the others are mount options
                out.setdefault(ctrl, mnt)
    return out


def v1_hierarchy_ids() -> dict[str, int]:
    """Controller → hierarchy id, from /proc/cgroups (0: not mounted on v1)."""
    out = {}
    try:
        with open("/proc/cgroups") as f:
            for line in f:
                if line.startswith("#"):
                    continue
                fields = line.split()
                if len(fields) >= 2:
                    out[fields[0]] = int(fields[1])
    except (OSError, ValueError):
        pass
    return out


def detect() -> Hierarchy:
    mounts = _mounts()
    v1 = {ctrl: mnt for fstype, mnt, opts in mounts if fstype == "cgroup" for ctrl in opts}
    for ctrl in V1_CONTROLLERS:
        if ctrl in v1:
            return Hierarchy(ctrl, v1[ctrl], v1_hierarchy_ids().get(ctrl, 0))
    v2 = next((mnt for fstype, mnt, _ in mounts if fstype == "cgroup2"), None)
    return Hierarchy(None, v2)


class PathIndex:
    """Cgroup id → path in one hierarchy, for BPF events, which carry only
    the id and the leaf name. Built by walking the mount (a cgroup's id is
    its directory's inode); a miss walks again, at most every
    ``min_rescan_s``, since new cgroups appear all the time."""

    def __init__(self, hierarchy: Hierarchy, min_rescan_s: float = 0.2):
        self.hierarchy = hierarchy
        self.min_rescan_s = min_rescan_s
        self._paths: dict[int, str] = {}
        self._last_walk = float("-inf")

    def _walk(self) -> None:
        root = self.hierarchy.mountpoint
        self._last_walk = time.monotonic()
        if not root:
            return
        paths: dict[int, str] = {}
        try:
            paths[os.stat(root).st_ino] = "/"
        except OSError:
            return
        stack = [(os.fsencode(root), "")]  # bytes: a cgroup's name may be any bytes
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError:  # removed while we walked
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    sub = f"{rel}/{from_bytes(entry.name)}"
                    paths[entry.inode()] = sub
                    stack.append((entry.path, sub))
        self._paths = paths

    def all_paths(self) -> list[str]:
        """Every cgroup's path, walked now."""
        self._walk()
        return list(self._paths.values())

    def path(self, cgroup_id: int) -> str | None:
        found = self._paths.get(cgroup_id)
        if found is None and cgroup_id and time.monotonic() - self._last_walk >= self.min_rescan_s:
            self._walk()
            found = self._paths.get(cgroup_id)
        return found
