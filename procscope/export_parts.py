"""The parts of a process's object that Tetragon makes from more than the
image's plain fields: BinaryProperties (what a setuid exec gave, a
binary without a link) and a Kubernetes container's Pod."""

from __future__ import annotations

import re

import msgspec
from msgspec import UnsetType

from procscope.probes import names, wire
from procscope.probes.events import ExecEvent

from . import schema
from .clock import parse_rfc3339, rfc3339
from .runtimes import ContainerInfo


def binary_properties(p: ExecEvent) -> schema.BinaryProperties | UnsetType:
    """Tetragon's BinaryProperties: the ids a setuid/setgid exec gave, the
    privileges it raised (Tetragon names the setuid and setgid ones only for
    root), and the binary's inode when it has no link (deleted, or a memfd)."""
    if not p.privileges and (p.nlink or not p.ino):
        return msgspec.UNSET  # most execs: nothing to tell
    unset = msgspec.UNSET
    return schema.BinaryProperties(
        setuid=p.creds.euid if p.privileges & wire.EXECVE_SETUID else unset,
        setgid=p.creds.egid if p.privileges & wire.EXECVE_SETGID else unset,
        privileges_changed=names.raised_words(p.privileges) or unset,
        file=schema.FileProperties(inode=schema.InodeProperties(number=str(p.ino), links=p.nlink))
        if p.nlink == 0 and p.ino else unset,
    )  # fmt: skip


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def pod_object(info: ContainerInfo, nspid: int) -> dict:
    """Tetragon's Pod of a Kubernetes container (pid: in the container's pid namespace, as Tetragon's)."""
    pod = info.pod
    assert pod is not None  # called for Kubernetes containers only
    container: dict = {"id": f"{info.runtime}://{info.id}", "name": pod.container or info.name}
    image = {k: v for k, v in (("id", info.image_id), ("name", info.image)) if v}
    if image:
        container["image"] = image
    if _RFC3339.fullmatch(info.started) and info.started.endswith("Z"):  # Go trims zeros: as protojson writes it
        container["start_time"] = rfc3339(parse_rfc3339(info.started))
    container["pid"] = nspid
    out: dict = {"namespace": pod.namespace, "name": pod.name, "container": container}
    if pod.labels:
        out["pod_labels"] = dict(pod.labels)
    return out
