"""The containers this machine has now, for a container named on the
command line: a name nobody knows is refused at start (as htop's -u
refuses an unknown user) instead of opening over an empty list. Read once,
and only when a container is named."""

from __future__ import annotations

from procscope.probes import cgroups

from .containers import from_cgroup_path
from .runtimes import Runtimes


def known() -> list[tuple[str, str]]:
    """(id, name) of each running container (its cgroup is there) and of
    each container Docker has created or stopped (it may start later)."""
    runtimes = Runtimes()
    found: dict[str, str] = {}
    for path in cgroups.PathIndex(cgroups.detect()).all_paths():
        c = from_cgroup_path(path)
        if c is not None and c.id not in found:
            info = runtimes.describe(c)
            found[c.id] = info.name if info is not None else ""
    for info in runtimes.docker_containers(found.keys()):
        found[info.id] = info.name
    return list(found.items())
