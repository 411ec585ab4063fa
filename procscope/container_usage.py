"""What each container uses, read from its cgroup's files as `docker stats`
reads them: CPU time (cpuacct.usage on v1, cpu.stat's usage_usec on v2),
memory used (usage less the inactive file cache) against its limit, and
pids against pids.max. On v1 each controller has its own mount, where
runtimes make the same path; on hybrid machines (this one) v1 is tried
first, as the runtimes use it, then v2."""

from __future__ import annotations

import os

import msgspec

from .probes.cgroups import controller_mounts
from .safe_read import read_file

LIMIT = 64 << 10  # cgroup files read here are a few lines
NO_LIMIT_V1 = 1 << 62  # memory.limit_in_bytes is 2^63 rounded down to a page when unset


class ContainerUsage(msgspec.Struct, frozen=True, gc=False):
    cpu_ns: int | None = None  # CPU time of every process that ran in it
    cpu_pct: float | None = None  # of one CPU, since the previous reading
    mem_used: int | None = None  # bytes, less the inactive file cache (docker stats' MEM USAGE)
    mem_limit: int | None = None  # None: none set
    pids: int | None = None
    pids_limit: int | None = None


def _read(mount: str | None, path: str, name: str) -> bytes | None:
    if not mount:
        return None
    try:
        return read_file(os.path.join(mount, path.lstrip("/"), name), LIMIT)
    except (OSError, ValueError):
        return None


def _int(raw: bytes | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None  # "max": no limit


def _stat(raw: bytes | None, key: bytes) -> int | None:
    for line in (raw or b"").splitlines():
        name, _, value = line.partition(b" ")
        if name == key:
            return _int(value)
    return None


class ContainerReader:
    def __init__(self) -> None:
        self.mounts = controller_mounts()
        self._before: dict[str, tuple[int, int]] = {}  # path → (monotonic ns, cpu ns) of the last reading

    def read(self, path: str, now_ns: int) -> ContainerUsage:
        """The figures of the cgroup at ``path`` (as the tracked hierarchy names it)."""
        m, v2 = self.mounts, self.mounts.get("")
        cpu = _int(_read(m.get("cpuacct"), path, "cpuacct.usage"))
        if cpu is None and (usec := _stat(_read(v2, path, "cpu.stat"), b"usage_usec")) is not None:
            cpu = usec * 1000
        usage = _int(_read(m.get("memory"), path, "memory.usage_in_bytes"))
        if usage is not None:
            limit = _int(_read(m.get("memory"), path, "memory.limit_in_bytes"))
            inactive = _stat(_read(m.get("memory"), path, "memory.stat"), b"total_inactive_file")
            limit = None if limit is not None and limit >= NO_LIMIT_V1 else limit
        else:
            usage = _int(_read(v2, path, "memory.current"))
            limit = _int(_read(v2, path, "memory.max"))
            inactive = _stat(_read(v2, path, "memory.stat"), b"inactive_file")
        used = usage - inactive if usage is not None and inactive is not None and inactive < usage else usage
        pids_mount = m.get("pids") or v2
        pids, pids_limit = _int(_read(pids_mount, path, "pids.current")), _int(_read(pids_mount, path, "pids.max"))
        pct = None
        last = self._before.get(path)
        if cpu is not None:
            if last is not None and now_ns > last[0]:
                pct = max(cpu - last[1], 0) * 100 / (now_ns - last[0])
            self._before[path] = (now_ns, cpu)
        return ContainerUsage(cpu, pct, used, limit, pids, pids_limit)

    def forget(self, keep: set[str]) -> None:
        """Drop the readings of cgroups no longer asked for."""
        self._before = {p: v for p, v in self._before.items() if p in keep}
