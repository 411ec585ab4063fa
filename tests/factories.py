"""Synthetic events for tests of the pure-Python layers (cache, query,
export, replay): the same dataclasses the decoder produces."""

from __future__ import annotations

import json
from pathlib import Path

from procscope.cache import ROOT, ProcessCache
from procscope.probes import wire
from procscope.probes.events import (
    Capabilities,
    CloneEvent,
    Credentials,
    ExecEvent,
    ExitEvent,
    Namespaces,
    ProcessKey,
    UserNamespace,
)
from procscope.stream import RECORDED, EventStream, Output
from procscope.stream_files import StreamFile

S = 1_000_000_000
K = ProcessKey
HOST_NS = {name: 4026531830 + i for i, name in enumerate(Namespaces.__slots__)}
ALL_CAPS = (1 << 41) - 1


def creds(uid: int = 0, caps: int = ALL_CAPS) -> Credentials:
    return Credentials(
        uid, uid, uid, uid, uid, uid, uid, uid, 0, Capabilities(caps, caps, 0), UserNamespace(0, 0, 0, HOST_NS["user"])
    )


def namespaces(**override: int) -> Namespaces:
    return Namespaces(**{**HOST_NS, **override})


def exec_event(
    pid: int, ktime: int, parent: ProcessKey, binary: str = "/bin/true", args: tuple[str, ...] = (),
    cleanup: ProcessKey | None = None, uid: int = 0, caps: int = ALL_CAPS, ns: Namespaces | None = None,
    cgroup: str = "/", nspid: int | None = None, privileges: int = 0, nlink: int = 1, flags: int = wire.FLAG_EXECVE,
    time: int | None = None, argv0: str = "",
) -> ExecEvent:  # fmt: skip
    key = ProcessKey(pid, ktime)
    return ExecEvent(
        time=ktime if time is None else time, key=key, tid=pid, nspid=pid if nspid is None else nspid, uid=uid,
        auid=wire_unknown(), flags=flags, privileges=privileges, nlink=nlink, ino=1000 + pid, binary=binary,
        args=args, cwd="/", parent=parent, cleanup=cleanup if cleanup is not None else key, creds=creds(uid, caps),
        ns=ns or namespaces(), cgroup_id=1, cgroup_tracker_id=1, cgroup_name=cgroup.rsplit("/", 1)[-1], cgroup_path=cgroup,
        argv0=argv0,
    )  # fmt: skip


def wire_unknown() -> int:
    return 0xFFFFFFFF


def clone_event(pid: int, ktime: int, parent: ProcessKey, time: int | None = None) -> CloneEvent:
    return CloneEvent(ktime if time is None else time, ProcessKey(pid, ktime), pid, pid, parent, wire.FLAG_CLONE)


def exit_event(key: ProcessKey, time: int, code: int = 0, cpu_ns: int = 0) -> ExitEvent:
    return ExitEvent(time, key, key.pid, code, cpu_ns)


DOCKER = "/system.slice/docker-" + "3f2a" * 16 + ".scope"


def session():
    """A small machine's history: init, a shell that runs `sleep & sleep`,
    an `exec` chain, a container, an orphan, a crash, and a process whose
    exec was lost."""
    init = K(1, 10)
    sh, sh_img = K(100, 20), K(100, 30)
    return [
        exec_event(1, 10, ROOT, "/sbin/init", flags=wire.FLAG_PROCFS),
        clone_event(100, 20, init),
        exec_event(100, 30, init, "/bin/sh", ("-c", "sleep 5 & sleep 6"), cleanup=sh),
        clone_event(101, 40, sh_img),
        exec_event(101, 50, sh_img, "/bin/sleep", ("5",), cleanup=K(101, 40)),
        clone_event(102, 60, sh_img),
        exec_event(102, 70, sh_img, "/bin/sleep", ("6",), cleanup=K(102, 60)),
        clone_event(200, 80, init),
        exec_event(
            200,
            90,
            init,
            "/usr/bin/runc-init",
            cleanup=K(200, 80),
            cgroup=DOCKER,
            ns=namespaces(pid=99, net=98, mnt=97),
            nspid=1,
        ),  # fmt: skip
        clone_event(201, 100, K(200, 90)),
        exec_event(
            201,
            110,
            K(200, 90),
            "/bin/busybox",
            ("httpd", "-f"),
            cleanup=K(201, 100),
            cgroup=DOCKER,
            ns=namespaces(pid=99, net=98, mnt=97),
            nspid=2,
            uid=65534,
            caps=0,
        ),  # fmt: skip
        clone_event(300, 120, sh_img),
        exit_event(K(100, 30), 1 * S),  # the shell exits: its sleeps are orphans
        exec_event(300, 130, init, "/bin/crash", cleanup=K(300, 120)),  # re-parented to init already
        exit_event(K(300, 130), 2 * S, code=0x80 | 11),  # SIGSEGV, core dumped
        exit_event(K(400, 140), 2 * S + 1),  # never seen: a placeholder
    ]


def record(events, path, node="node-a") -> ProcessCache:
    """What `procscope events --record FILE` does, on these events."""
    cache = ProcessCache(host_ns=HOST_NS)
    out = StreamFile(str(path))
    stream = EventStream(cache, [Output(out, RECORDED)])  # as `procscope events --record FILE` does
    stream.exporter.node = node
    stream.feed(events)
    out.close()
    return cache


def with_losses(src: str, dst, *, eagain: int = 12, dropped: int = 3) -> None:
    """A copy of the recording ``src`` whose last counters record says the
    kernel failed ``eagain`` EXECVE sends with EAGAIN and user space dropped
    ``dropped`` events, as a recording of a machine that lost events does."""
    lines = Path(src).read_bytes().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith(b'{"procscope_counters"'))
    rec = json.loads(lines[last])
    rec["procscope_counters"]["sent_failed"]["EXECVE"]["EAGAIN"] = eagain
    rec["procscope_counters"]["userspace_dropped"] = dropped
    lines[last] = json.dumps(rec).encode()
    Path(dst).write_bytes(b"\n".join(lines) + b"\n")
