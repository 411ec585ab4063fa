"""The container a cgroup belongs to, from its path or leaf name.

Tetragon's rule: take the cgroup's last path component, keep what follows
the last ':' and the last '-', drop a trailing ``.scope``, and accept it
when it has at least 64 characters (31 when the BPF side truncated the
name); Tetragon shows its first 31. Podman's ``libpod-<id>.scope/container``
leaf sends us to the parent. On top of that the runtime is told from the
prefix or the path's shape, runtime monitors (conmon, lxc.monitor, the
nspawn supervisor) are not containers, and LXC and systemd-nspawn
containers, whose ids are short names, are recognised by their cgroup names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from procscope.probes.wire import DOCKER_ID_LENGTH

ID_LENGTH = 64  # docker, containerd, CRI-O and podman ids: 64 hex digits
TRUNCATED_ID_LENGTH = 31  # Tetragon's shortest accepted (and shown) id
# bpf_probe_read_kernel_str filled the whole buffer: the name may be cut.
_TRUNCATED_NAME = DOCKER_ID_LENGTH - 1

# The prefix before the id, '-' and ':' both as '-' (cgroup v1 with the
# systemd driver writes "<slice>:cri-containerd:<id>"), by how it ends.
_PREFIX_RUNTIMES = (
    ("conmon", None),  # crio-conmon-, libpod-conmon-: the monitor, not the container
    ("cri-containerd", "containerd"),
    ("crio", "cri-o"),
    ("libpod", "podman"),
    ("docker", "docker"),
)
_PROC_LINE = re.compile(r"^\d+:[^:/]*:(?=/)")  # "4:memory:" of a /proc/PID/cgroup line
_NSPAWN = re.compile(r"^systemd-nspawn@(.+)\.service$")
_UNIT_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True, slots=True)
class Container:
    id: str  # full id as found (64 hex for docker/containerd/crio/podman; the name for LXC and nspawn)
    runtime: str  # "docker", "containerd", "cri-o", "podman", "lxc", "systemd-nspawn" or "unknown"

    @property
    def short_id(self) -> str:
        """First 12 characters, as `docker ps` shows."""
        return self.id[:12]

    @property
    def tetragon_id(self) -> str:
        """First 31 characters, as Tetragon's `docker` field."""
        return self.id[:TRUNCATED_ID_LENGTH]


_MONITOR = object()  # a runtime's helper cgroup: decides "no container"


def _classify(comp: str, parents: list[str], child: str | None, truncated: bool):
    """A Container, _MONITOR, or None when ``comp`` names no container.
    ``parents`` are the components above it, nearest last."""
    parent = parents[-1] if parents else None
    # LXC 4+ (and LXD/Incus): lxc.payload.<name>, the monitor in lxc.monitor.<name>;
    # older LXC: lxc.payload/<name>, lxc.monitor/<name>, or lxc/<name> on v1.
    if comp.startswith("lxc.monitor.") or parent == "lxc.monitor":
        return _MONITOR
    if comp.startswith("lxc.payload.") and len(comp) > len("lxc.payload."):
        return Container(comp[len("lxc.payload.") :], "lxc")
    if parent in ("lxc", "lxc.payload"):
        return Container(comp, "lxc")
    if m := _NSPAWN.match(comp):
        if child == "supervisor":  # systemd-nspawn itself, beside the container's "payload"
            return _MONITOR
        # The instance name is unit-escaped: '-' in a machine name is "\x2d".
        return Container(_UNIT_ESCAPE.sub(lambda e: chr(int(e[1], 16)), m[1]), "systemd-nspawn")

    # Tetragon's rule.
    base = comp.removesuffix(".scope")
    tail = base.rsplit(":", 1)[-1].rsplit("-", 1)[-1]
    prefix = base[: len(base) - len(tail)].replace(":", "-").rstrip("-")
    # A cut name may end in part of ".scope"; ids have no '.'.
    cid = tail.split(".", 1)[0] if truncated else tail
    if len(cid) < (TRUNCATED_ID_LENGTH if truncated else ID_LENGTH):
        return None
    if not prefix:
        # A bare id: the cgroupfs driver's layout, so the parents tell the runtime.
        if parent == "docker":
            return Container(cid, "docker")
        if any(p.startswith("kubepods") for p in parents):
            # A guess: containerd names bare ids like this, but so did
            # dockershim; CRI-O would have said "crio-".
            return Container(cid, "containerd")
        return Container(cid, "unknown")
    for suffix, runtime in _PREFIX_RUNTIMES:
        if prefix == suffix or prefix.endswith("-" + suffix):
            return _MONITOR if runtime is None else Container(cid, runtime)
    return Container(cid, "unknown")  # Tetragon accepts any long enough tail


def from_cgroup_path(path: str) -> Container | None:
    """Container of a cgroup path such as /proc/PID/cgroup shows (v1 or v2), or None for host cgroups."""
    parts = [p for p in _PROC_LINE.sub("", path.strip()).split("/") if p]
    # The innermost component that names a container wins: this covers
    # podman's "container" leaf and cgroups a container makes inside itself
    # (a systemd in LXC, docker in docker).
    for i in range(len(parts) - 1, -1, -1):
        found = _classify(parts[i], parts[:i], parts[i + 1] if i + 1 < len(parts) else None, False)
        if found is _MONITOR:
            return None
        if found is not None:
            return found
    return None


def from_cgroup_name(name: str) -> Container | None:
    """Same from only the leaf name (what the BPF side sends); cannot resolve podman's `container` leaf."""
    if not name:
        return None
    found = _classify(name, [], None, len(name) >= _TRUNCATED_NAME)
    return None if found is _MONITOR else found


def container_of(cgroup: str) -> Container | None:
    """Container of a cgroup path (absolute, from the hierarchy's root), or
    of a bare leaf name when that is all that is known (relative)."""
    return from_cgroup_path(cgroup) if cgroup.startswith("/") else from_cgroup_name(cgroup)
