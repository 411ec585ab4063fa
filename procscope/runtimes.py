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
worst nothing): the id is still shown.

Where the files are is itself trusted only from root: a dockerd counts
when it runs as root from a root-owned executable named dockerd, and a
state file is read only when it and every directory above it are owned
by root and writable by nobody else (``safe_read``); anything else is
ignored and counted (``enrichment_failures``), since any user can start a
process named dockerd pointing at files of their own (or at a FIFO). The
lookups run on a worker with a deadline: nothing here can stall the
collection."""

from __future__ import annotations

import glob
import json
import os
import stat
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from procscope.probes.text import from_os

from .containers import Container
from .process import CacheCounters
from .safe_read import Deadline, Untrusted, check_owner, read_file

DOCKER_DEFAULT_ROOT = "/var/lib/docker"
CONTAINERD_STATES = ("/run/containerd", "/run/docker/containerd/daemon", "/var/run/docker/containerd/daemon")
STORAGE_ROOTS = ("/var/lib/containers/storage", "/run/containers/storage")
RETRY_S = 5.0  # a container nobody described yet is asked about again after this long
ROOTS_S = 30.0  # running dockerds' roots (read from every /proc/PID/cmdline) are looked up again after this long
MAX_FILE = 4 << 20  # bytes of a state file read at most
LOOKUP_S = 0.25  # the collection waits this long at most for a container's description
_SEEN_LIMIT = 4096  # failures remembered (each counted once) before the memory starts again
POD_LABELS = (
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.pod.uid",
    "io.kubernetes.container.name",
)


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
    """A root-owned state file's object; None when absent, unreadable, too
    big or not a JSON object; Untrusted when it may not be believed."""
    try:
        raw = read_file(path, MAX_FILE, trusted=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise Untrusted(f"{path}: {exc.strerror or exc}") from None
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
def dockerds(untrusted: Callable[[str, str], None]) -> list[list[str]]:
    """Command lines of the running dockerds that root runs from a root-owned
    executable named dockerd; ``untrusted(key, why)`` hears of the others."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                raw = f.read(MAX_FILE)
        except OSError:
            continue
        args = [os.fsdecode(a) for a in raw.split(b"\0") if a]
        if not args or os.path.basename(args[0]) != "dockerd":
            continue
        try:
            _check_daemon(entry)
        except Untrusted as exc:
            untrusted(f"pid {entry}", f"a dockerd ignored: {exc}")
            continue
        except (OSError, StopIteration, IndexError):
            continue  # gone meanwhile
        found.append(args)
    return found


def _check_daemon(pid: str) -> None:
    with open(f"/proc/{pid}/status", "rb") as f:
        uids = next(line for line in f if line.startswith(b"Uid:")).split()[1:]
    if any(u != b"0" for u in uids):
        raise Untrusted(f"pid {pid} does not run as root")
    exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    if os.path.basename(exe) != "dockerd":
        raise Untrusted(f"pid {pid} runs {from_os(exe)}, not dockerd")
    st = os.stat(f"/proc/{pid}/exe")  # the very file it runs, even if replaced since
    if not stat.S_ISREG(st.st_mode):
        raise Untrusted(f"pid {pid}'s executable is not a regular file")
    check_owner(st, from_os(exe))


def _option(daemons: list[list[str]], name: str) -> list[str]:
    found = []
    for args in daemons:
        for i, arg in enumerate(args):
            if arg == name and i + 1 < len(args):
                found.append(args[i + 1])
            elif arg.startswith(name + "="):
                found.append(arg.split("=", 1)[1])
    return found


def docker_roots(daemons: list[list[str]]) -> list[str]:
    """Docker data roots: the default, daemon.json's, and those of the given dockerds."""
    roots = [DOCKER_DEFAULT_ROOT]
    for config in ("/etc/docker/daemon.json", *_option(daemons, "--config-file")):
        root = (_read_json(config) or {}).get("data-root")
        if isinstance(root, str):
            roots.append(root)
    roots += _option(daemons, "--data-root")
    # Relative to the daemon's own directory, which is not ours: not looked up.
    return list(dict.fromkeys(os.path.normpath(r) for r in roots if os.path.isabs(r)))


def containerd_states(daemons: list[list[str]]) -> list[str]:
    """containerd state directories of the dockerds' own containerd (under --exec-root)."""
    return [
        os.path.join(root, "containerd", "daemon") for root in _option(daemons, "--exec-root") if os.path.isabs(root)
    ]


def read_docker(doc: dict | None, cid: str) -> ContainerInfo | None:
    """A config.v2.json's object."""
    if doc is None:
        return None
    config = doc["Config"] if isinstance(doc.get("Config"), dict) else {}
    state = doc["State"] if isinstance(doc.get("State"), dict) else {}
    labels = _labels(config.get("Labels"))
    return ContainerInfo(
        cid, "docker", _str(doc.get("Name")).lstrip("/"), _str(config.get("Image")), _str(doc.get("Image")),
        _str(state.get("StartedAt")), _int(state.get("Pid")), labels, _pod_from_labels(labels),
    )  # fmt: skip


# -- OCI bundles: containerd, CRI-O, Podman ---------------------------------------------
def read_containerd(doc: dict | None, cid: str) -> ContainerInfo | None:
    """A task bundle's config.json (an OCI runtime spec) object."""
    if doc is None:
        return None
    a = _labels(doc.get("annotations"))
    pod = None
    if a.get("io.kubernetes.cri.sandbox-name"):
        pod = Pod(a["io.kubernetes.cri.sandbox-name"], a.get("io.kubernetes.cri.sandbox-namespace", ""),
                  a.get("io.kubernetes.cri.sandbox-uid", ""), a.get("io.kubernetes.cri.container-name", ""))  # fmt: skip
    name = a.get("io.kubernetes.cri.container-name", "") or a.get("nerdctl/name", "")
    return ContainerInfo(cid, "containerd", name, a.get("io.kubernetes.cri.image-name", ""), labels=a, pod=pod)


def read_crio(doc: dict | None, cid: str, runtime: str) -> ContainerInfo | None:
    """CRI-O's (or Podman's) userdata/config.json object: the pod from its
    annotations, the pod's labels from the one holding them as JSON."""
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
    once (cached), one not described yet asked again after RETRY_S. Every
    lookup runs on a worker and is waited for at most LOOKUP_S; a timeout,
    a dockerd or a file that may not be believed is counted in
    ``counters.enrichment_failures`` (each dockerd and file once) and ignored."""

    def __init__(self, docker: list[str] | None = None, containerd: tuple[str, ...] = CONTAINERD_STATES,
                 storage: tuple[str, ...] = STORAGE_ROOTS, counters: CacheCounters | None = None,
                 timeout: float = LOOKUP_S):  # fmt: skip
        """``docker``: data roots (None: found, again whenever a container is not)."""
        self._docker = docker
        self._containerd = containerd
        self._storage = storage
        self.counters = counters or CacheCounters()
        self.last_failure = ""
        self._deadline = Deadline(timeout)
        self._seen: set[str] = set()
        self._known: dict[str, ContainerInfo] = {}
        self._missed: dict[str, float] = {}
        self._found_roots: tuple[float, list[str], list[str]] = (-ROOTS_S, [], [])  # when, docker, containerd

    def describe(self, c: Container) -> ContainerInfo | None:
        found = self._known.get(c.id)
        if found is not None:
            return found
        if time.monotonic() - self._missed.get(c.id, -RETRY_S) < RETRY_S:
            return None
        try:
            found = self._deadline.call(lambda: self._read(c))
        except TimeoutError as exc:
            self._failed("", f"container {c.short_id}: the runtimes' files gave no answer ({exc})")
            found = None
        if found is None:
            self._missed[c.id] = time.monotonic()
        else:
            self._known[c.id] = found
            self._missed.pop(c.id, None)
        return found

    def docker_containers(self, known: Collection[str] = frozenset(), limit: int = 10_000) -> list[ContainerInfo]:
        """Every container in Docker's data roots, running or not, but those ``known`` (ids)."""
        found = []
        for root in self._roots()[0]:
            try:
                ids = sorted(os.listdir(os.path.join(root, "containers")))[:limit]
            except OSError:
                continue
            for cid in (i for i in ids if i not in known):
                doc = self._json(os.path.join(root, "containers", cid, "config.v2.json"))
                if (info := read_docker(doc, cid)) is not None and info.name:
                    found.append(info)
        return found

    def _failed(self, key: str, why: str) -> None:
        """Counted once per ``key`` (every time when it is empty)."""
        if key:
            if key in self._seen:
                return
            if len(self._seen) >= _SEEN_LIMIT:
                self._seen.clear()
            self._seen.add(key)
        self.counters.enrichment_failures += 1
        self.last_failure = why

    def _json(self, path: str) -> dict | None:
        try:
            return _read_json(path)
        except Untrusted as exc:
            self._failed(path, f"ignored: {exc}")
            return None

    def _roots(self) -> tuple[list[str], list[str]]:
        """Docker data roots and containerd states: given, or found (at most every ROOTS_S)."""
        if self._docker is not None:
            return self._docker, list(self._containerd)
        when, docker, containerd = self._found_roots
        if time.monotonic() - when >= ROOTS_S:
            daemons = dockerds(self._failed)
            try:
                docker = docker_roots(daemons)
            except Untrusted as exc:
                self._failed(str(exc), f"ignored: {exc}")
                docker = [DOCKER_DEFAULT_ROOT, *_option(daemons, "--data-root")]
            docker, containerd = docker, [*self._containerd, *containerd_states(daemons)]
            self._found_roots = (time.monotonic(), docker, containerd)
        return docker, containerd

    def _read(self, c: Container) -> ContainerInfo | None:
        cid = c.id
        if len(cid) < 12 or not all(ch in "0123456789abcdef" for ch in cid):
            return None  # not a runtime's id (an LXC or nspawn name): nothing to read by it
        docker, containerd = self._roots()
        if c.runtime in ("docker", "unknown"):
            for root in docker:
                path = os.path.join(root, "containers", cid, "config.v2.json")
                if (found := read_docker(self._json(path), cid)) is not None and found.described:
                    return found
        if c.runtime in ("containerd", "unknown"):
            for state in containerd:
                for path in glob.glob(
                    os.path.join(glob.escape(state), "io.containerd.runtime.v2.task", "*", cid, "config.json")
                ):
                    if (found := read_containerd(self._json(path), cid)) is not None and found.described:
                        return found
        if c.runtime in ("cri-o", "podman", "unknown"):
            for root in self._storage:
                path = os.path.join(root, "overlay-containers", cid, "userdata", "config.json")
                found = read_crio(self._json(path), cid, c.runtime if c.runtime != "unknown" else "cri-o")
                if found is not None and found.described:
                    return found
        return None
