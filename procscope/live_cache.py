"""A process cache for the live system: it asks the kernel what events do
not say (a cgroup's path from its id, an orphan's new parent, whether a
process still runs)."""

from __future__ import annotations

from procscope.probes import cgroups, procfs
from procscope.probes.procfs import host_namespaces

from .cache import DEFAULT_GRACE_NS, Process, ProcessCache
from .runtimes import Runtimes


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
    cache = ProcessCache(
        grace_ns=grace_ns, host_ns=host_namespaces(), cgroup_path=index.path, current_parent=procfs.parent_pid,
        cgroup_hierarchy=hierarchy.hierarchy_id, still_running=still_running,
    )  # fmt: skip
    cache.cgroup_index.describe = Runtimes(
        counters=cache.counters
    ).describe  # names, images and pods from the runtimes' state files
    return cache
