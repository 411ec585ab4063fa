"""Where the cache's events come from: the live BPF collector (with the
/proc scan first), the /proc scan alone (no root or no BPF), or a
recording. Live caches also ask the kernel what events do not say: a
cgroup's path from its id, and an orphan's new parent."""

from __future__ import annotations

from procscope.probes import cgroups, procfs
from procscope.probes.procfs import host_namespaces

from .cache import DEFAULT_GRACE_NS, Process, ProcessCache


def proc_parent(pid: int) -> int | None:
    """The current parent pid of a live process, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return int(raw[raw.rindex(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def still_running(cache: ProcessCache, proc: Process) -> bool:
    """Whether the process's pid still holds it (same start time)."""
    try:
        started = procfs.start_key(proc.pid).ktime
    except (OSError, ValueError, IndexError):
        return False
    times = cache.start_times(proc)
    return not times or started in times  # an unknown start: assume it does


def live_cache(hierarchy: cgroups.Hierarchy | None = None, grace_ns: int = DEFAULT_GRACE_NS) -> ProcessCache:
    hierarchy = hierarchy or cgroups.detect()
    index = cgroups.PathIndex(hierarchy)
    return ProcessCache(
        grace_ns=grace_ns, host_ns=host_namespaces(), cgroup_path=index.path, current_parent=proc_parent,
        cgroup_hierarchy=hierarchy.hierarchy_id, still_running=still_running,
    )  # fmt: skip
