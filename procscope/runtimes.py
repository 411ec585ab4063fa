"""What the container runtimes know about a container (its name, image,
start, labels, and for Kubernetes its pod), read from their own state
files, which need no socket or API server and which root on the node can
always read:

- Docker: ``<data-root>/containers/<id>/config.v2.json`` (data roots: the
  default, /etc/docker/daemon.json's, and every running dockerd's
  ``--data-root``); Kubernetes labels there (dockershim, cri-dockerd) give
  the pod.
- containerd: task bundles ``<state>/io.containerd.runtime.v2.task/<ns>/<id>/config.json``,
  whose OCI annotations ``io.kubernetes.cri.*`` give the pod.
- CRI-O and Podman: ``…/overlay-containers/<id>/userdata/config.json``,
  annotations ``io.kubernetes.pod.*`` and ``io.kubernetes.cri-o.*``.

Everything read is text a container's owner chose: kept as text, never
trusted. A file that is absent, partial or corrupt gives what it can (at
worst nothing): the id is still shown."""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from procscope.probes.text import from_os

from .containers import Container

DOCKER_DEFAULT_ROOT = "/var/lib/docker"
CONTAINERD_STATES = ("/run/containerd", "/run/docker/containerd/daemon", "/var/run/docker/containerd/daemon")
STORAGE_ROOTS = ("/var/lib/containers/storage", "/run/containers/storage")
RETRY_S = 5.0  # a container nobody described yet is asked about again after this long
ROOTS_S = 30.0  # running dockerds' roots (read from every /proc/PID/cmdline) are looked up again after this long
MAX_FILE = 4 << 20  # bytes of a state file read at most
POD_LABELS = ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid", "io.kubernetes.container.name")


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    uid: str = ""
    container: str = ""  # the container's name in the pod spec
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    runtime: str
    name: str = ""
    image: str = ""  # as the user named it (busybox:1.36, docker.io/library/nginx:latest)
    image_id: str = ""  # sha256:…
    started: str = ""  # RFC 3339, as the runtime wrote it
    pid: int = 0  # the container's first process, host pid
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    pod: Pod | None = None

    @property
    def described(self) -> bool:
        """Whether it says more than the id (a bundle of docker's own says nothing)."""
        return bool(self.name or self.image or self.pod)

    def to_json(self) -> dict:
        out: dict = {"id": self.id, "runtime": self.runtime}
        for key in ("name", "image", "image_id", "started"):
            if value := getattr(self, key):
                out[key] = value
        if self.pid:
            out["pid"] = self.pid
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.pod is not None:
            out["pod"] = {"name": self.pod.name, "namespace": self.pod.namespace, "uid": self.pod.uid,
                          "container": self.pod.container, "labels": dict(self.pod.labels)}  # fmt: skip
        return out

    @classmethod
    def from_json(cls, doc) -> ContainerInfo | None:
        """A recorded one (input like any other: a wrong type gives an empty field)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            return None
        pod = doc.get("pod")
        return cls(
            doc["id"], _str(doc.get("runtime")), _str(doc.get("name")), _str(doc.get("image")),
            _str(doc.get("image_id")), _str(doc.get("started")), _int(doc.get("pid")), _labels(doc.get("labels")),
            Pod(_str(pod.get("name")), _str(pod.get("namespace")), _str(pod.get("uid")), _str(pod.get("container")),
                _labels(pod.get("labels"))) if isinstance(pod, dict) else None,
        )  # fmt: skip


def _str(v) -> str:
    return v if isinstance(v, str) else ""


def _int(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _labels(v) -> dict[str, str]:
    return {k: x for k, x in v.items() if isinstance(k, str) and isinstance(x, str)} if isinstance(v, dict) else {}


def _read_json(path: str) -> dict | None:
    """A state file's object; None when absent, unreadable, too big or not a JSON object."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError:
        return None
    if len(raw) > MAX_FILE:
        return None
    try:
        doc = json.loads(raw.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _pod_from_labels(labels: dict[str, str]) -> Pod | None:
    """Kubernetes pod labels as kubelet (dockershim, cri-dockerd) and CRI-O write them."""
    name, namespace, uid, container = (labels.get(k, "") for k in POD_LABELS)
    if not name or not namespace:
        return None
    pod_labels = {k: v for k, v in labels.items() if not k.startswith(("io.kubernetes.", "annotation.io.kubernetes."))}
    return Pod(name, namespace, uid, container, pod_labels)


# -- Docker -----------------------------------------------------------------------
def docker_roots() -> list[str]:
    """Docker data roots: the default, daemon.json's, and those of running dockerds."""
    roots = [DOCKER_DEFAULT_ROOT]
    for config in ("/etc/docker/daemon.json", *_dockerd_configs()):
        root = (_read_json(config) or {}).get("data-root")
        if isinstance(root, str):
            roots.append(root)
    roots += _dockerd_option("--data-root")
    return list(dict.fromkeys(os.path.normpath(r) for r in roots))


def _dockerd_cmdlines() -> Iterator[list[str]]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = [from_os(os.fsdecode(a)) for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if args and os.path.basename(args[0]) == "dockerd":
            yield args


def _dockerd_option(name: str) -> list[str]:
    found = []
    for args in _dockerd_cmdlines():
        for i, arg in enumerate(args):
            if arg == name and i + 1 < len(args):
                found.append(args[i + 1])
            elif arg.startswith(name + "="):
                found.append(arg.split("=", 1)[1])
    return found


def containerd_states() -> list[str]:
    """containerd state directories of running dockerds' own containerd (under --exec-root)."""
    return [os.path.join(root, "containerd", "daemon") for root in _dockerd_option("--exec-root")]


def _dockerd_configs() -> list[str]:
    return _dockerd_option("--config-file")


def read_docker(path: str, cid: str) -> ContainerInfo | None:
    """A config.v2.json."""
    doc = _read_json(path)
    if doc is None:
        return None
    config = doc.get("Config") if isinstance(doc.get("Config"), dict) else {}
    state = doc.get("State") if isinstance(doc.get("State"), dict) else {}
    labels = _labels(config.get("Labels"))
    return ContainerInfo(
        cid, "docker", _str(doc.get("Name")).lstrip("/"), _str(config.get("Image")), _str(doc.get("Image")),
        _str(state.get("StartedAt")), _int(state.get("Pid")), labels, _pod_from_labels(labels),
    )  # fmt: skip


# -- OCI bundles: containerd, CRI-O, Podman ---------------------------------------------
def read_containerd(path: str, cid: str) -> ContainerInfo | None:
    """A task bundle's config.json (an OCI runtime spec)."""
    doc = _read_json(path)
    if doc is None:
        return None
    a = _labels(doc.get("annotations"))
    pod = None
    if a.get("io.kubernetes.cri.sandbox-name"):
        pod = Pod(a["io.kubernetes.cri.sandbox-name"], a.get("io.kubernetes.cri.sandbox-namespace", ""),
                  a.get("io.kubernetes.cri.sandbox-uid", ""), a.get("io.kubernetes.cri.container-name", ""))  # fmt: skip
    name = a.get("io.kubernetes.cri.container-name", "") or a.get("nerdctl/name", "")
    return ContainerInfo(cid, "containerd", name, a.get("io.kubernetes.cri.image-name", ""), labels=a, pod=pod)


def read_crio(path: str, cid: str, runtime: str) -> ContainerInfo | None:
    """CRI-O's (or Podman's) userdata/config.json: the pod from its
    annotations, the pod's labels from the one holding them as JSON."""
    doc = _read_json(path)
    if doc is None:
        return None
    a = _labels(doc.get("annotations"))
    try:
        labels = _labels(json.loads(a.get("io.kubernetes.cri-o.Labels", "{}")))
    except (ValueError, RecursionError):
        labels = {}
    pod = _pod_from_labels({**labels, **a})
    if pod is not None:
        pod = Pod(pod.name, pod.namespace, pod.uid, pod.container,
                  {k: v for k, v in labels.items() if not k.startswith("io.kubernetes.")})  # fmt: skip
    name = a.get("io.kubernetes.container.name", "") or a.get("io.kubernetes.cri-o.Name", "")
    return ContainerInfo(
        cid, runtime, name, a.get("io.kubernetes.cri-o.ImageName", ""), a.get("io.kubernetes.cri-o.ImageRef", ""),
        a.get("io.kubernetes.cri-o.Created", ""), labels=labels, pod=pod,
    )  # fmt: skip


class Runtimes:
    """Describes containers from the runtimes' state files: each container
    once (cached), one not described yet asked again after RETRY_S."""

    def __init__(self, docker: list[str] | None = None, containerd: tuple[str, ...] = CONTAINERD_STATES,
                 storage: tuple[str, ...] = STORAGE_ROOTS):  # fmt: skip
        """``docker``: data roots (None: found, again whenever a container is not)."""
        self._docker = docker
        self._containerd = containerd
        self._storage = storage
        self._known: dict[str, ContainerInfo] = {}
        self._missed: dict[str, float] = {}
        self._found_roots: tuple[float, list[str], list[str]] = (-ROOTS_S, [], [])  # when, docker, containerd

    def describe(self, c: Container) -> ContainerInfo | None:
        found = self._known.get(c.id)
        if found is not None:
            return found
        if time.monotonic() - self._missed.get(c.id, -RETRY_S) < RETRY_S:
            return None
        found = self._read(c)
        if found is None:
            self._missed[c.id] = time.monotonic()
        else:
            self._known[c.id] = found
            self._missed.pop(c.id, None)
        return found

    def _roots(self) -> tuple[list[str], list[str]]:
        """Docker data roots and containerd states: given, or found (at most every ROOTS_S)."""
        if self._docker is not None:
            return self._docker, list(self._containerd)
        when, docker, containerd = self._found_roots
        if time.monotonic() - when >= ROOTS_S:
            docker, containerd = docker_roots(), [*self._containerd, *containerd_states()]
            self._found_roots = (time.monotonic(), docker, containerd)
        return docker, containerd

    def _read(self, c: Container) -> ContainerInfo | None:
        cid = c.id
        if len(cid) < 12 or not all(ch in "0123456789abcdef" for ch in cid):
            return None  # not a runtime's id (an LXC or nspawn name): nothing to read by it
        docker, containerd = self._roots()
        if c.runtime in ("docker", "unknown"):
            for root in docker:
                if (found := read_docker(os.path.join(root, "containers", cid, "config.v2.json"), cid)) is not None and found.described:
                    return found
        if c.runtime in ("containerd", "unknown"):
            for state in containerd:
                for path in glob.glob(os.path.join(glob.escape(state), "io.containerd.runtime.v2.task", "*", cid, "config.json")):
                    if (found := read_containerd(path, cid)) is not None and found.described:
                        return found
        if c.runtime in ("cri-o", "podman", "unknown"):
            for root in self._storage:
                path = os.path.join(root, "overlay-containers", cid, "userdata", "config.json")
                found = read_crio(path, cid, c.runtime if c.runtime != "unknown" else "cri-o")
                if found is not None and found.described:
                    return found
        return None
