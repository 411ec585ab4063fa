"""A snapshot of the cache: one JSON document with a schema version, or
Tetragon `process_exec` lines for every live process, parents first."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

import msgspec

from procscope.probes.counters import Counters

from . import describe, schema
from .cache import Process, ProcessCache
from .container_usage import ContainerUsage
from .export import Exporter, json_line
from .process import EXITED
from .safe_write import atomic_writer
from .snapshot_doc import SNAPSHOT_SCHEMA, SNAPSHOT_VERSION


def parents_first(cache: ProcessCache, procs: Iterable[Process]) -> list[Process]:
    """``procs`` ordered so that each comes after its exec parent and its
    current parent (when those are among them)."""
    wanted = {p.key: p for p in procs}
    done: set = set()
    out: list[Process] = []
    for start in sorted(wanted.values(), key=lambda p: (p.key.ktime, p.key.pid)):
        stack = [(start, False)]
        while stack:
            proc, ready = stack.pop()
            if proc.key in done:
                continue
            if ready:
                done.add(proc.key)
                out.append(proc)
                continue
            stack.append((proc, True))
            for dep in (proc.tree_parent, proc.parent, proc.previous):
                # A cycle (only from nonsense input) must not loop: the
                # pending entry below is emitted when reached again.
                if dep in wanted and dep not in done and dep != proc.key and not any(s[0].key == dep for s in stack):
                    stack.append((wanted[dep], False))
    return out


class Entries(Sequence):
    """A document's process objects, made as they are written: a snapshot of
    500,000 processes is never a list of 500,000 dicts in memory."""

    def __init__(self, procs: list[Process], make: Callable[[Process], schema.Process]):
        self._procs, self._make = procs, make

    def __len__(self) -> int:
        return len(self._procs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._make(p) for p in self._procs[i]]
        return self._make(self._procs[i])

    def __iter__(self) -> Iterator[schema.Process]:
        return map(self._make, self._procs)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


def document(
    cache: ProcessCache,
    exporter: Exporter,
    counters: Counters,
    recent: list[dict],
    source: str,
    keep: Callable[[Process], bool] | None = None,
) -> dict:
    """Every cached image (live, exited in its grace period, and the exited
    ancestors live ones still name) with its identity and both parent links."""
    now = cache.now or time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    procs = [p for p in cache.procs.values() if keep is None or keep(p)]

    def entry(proc: Process) -> schema.Process:
        out = exporter.process_object(proc)
        ext: dict = {"state": proc.lifecycle.value, "badges": describe.badges(proc, cache)}
        if proc.visible:  # where it shows in the tree; replaced images have no place there
            ext["ppid_exec_id"] = exporter.exec_id(proc.tree_parent)
        if proc.container is not None:
            info = cache.cgroup_index.info_of(proc.container)
            ext["container"] = info.to_json() if info else {"id": proc.container.id, "runtime": proc.container.runtime}
        if (u := describe.usage(proc, cache)) is not None:
            ext["usage"] = {"cpu_ns": u.cpu_ns, "children_cpu_ns": describe.children_cpu_ns(proc, cache, u), "rss_bytes": u.rss,
                            "threads": u.threads, "state": u.state}  # fmt: skip
        if proc.state is EXITED:
            ext["exit_time"] = proc.exit_time
            ext["exit_code"] = proc.exit.code if proc.exit is not None else None
        return msgspec.structs.replace(out, own=msgspec.structs.replace(out.own or schema.NO_OWN, **ext))

    entries = Entries(parents_first(cache, procs), entry)
    kept = {p.key for p in procs}
    per_container = Counter(p.container.id for p in procs if p.alive and p.container is not None)
    return {
        "schema": SNAPSHOT_SCHEMA,
        "version": SNAPSHOT_VERSION,
        "node_name": exporter.node,
        "source": source,
        "clock": {"boot_ns": now, "wall": exporter.time(now)},
        "host_ns": cache.host_ns,
        "processes": entries,
        "containers": [
            {
                **(info.to_json() if (info := cache.cgroup_index.info_of(e.container)) else {}),
                "id": e.container.id,
                "short_id": e.container.short_id,
                "runtime": e.container.runtime,
                "processes": per_container[e.container.id],
                "first_seen": exporter.time(e.first_seen),
                **container_usage(cache.usage.containers.get(e.container.id)),
            }
            for e in sorted(cache.containers.values(), key=lambda e: e.first_seen)
        ],  # fmt: skip
        "cgroups": {
            path: [exporter.exec_id(k) for k in sorted(members, key=lambda k: (k.pid, k.ktime)) if k in kept]
            for path, members in sorted(cache.cgroups.items())
        },
        "counters": counters.to_json(),
        "events": recent,
    }


def container_usage(u: ContainerUsage | None) -> dict:
    """A container's figures as its cgroup has them (none when they were not read)."""
    if u is None:
        return {}
    return {"usage": {"cpu_ns": u.cpu_ns, "memory_bytes": u.mem_used, "memory_limit_bytes": u.mem_limit,
                      "pids": u.pids, "pids_limit": u.pids_limit}}  # fmt: skip


def tetragon_lines(
    cache: ProcessCache, exporter: Exporter, keep: Callable[[Process], bool] | None = None
) -> list[dict]:
    live = [p for p in cache.live() if keep is None or keep(p)]
    return [exporter.exec_event(p) for p in parents_first(cache, live)]


def _write_document(f, doc: dict) -> None:
    """A document with each field on its line, the processes one a line, as
    they are made (msgspec encodes them; nothing holds the whole text)."""
    f.write("{")
    for i, (key, value) in enumerate(doc.items()):
        f.write(("\n " if i == 0 else ",\n ") + json_line(key) + ": ")
        if key == "processes":
            f.write("[")
            for n, entry in enumerate(value):
                f.write(("\n  " if n == 0 else ",\n  ") + json_line(entry))
            f.write("\n ]")
        else:
            f.write(json_line(value))
    f.write("\n}\n")


def write(path: str | None, content: dict | list[dict], out=None, replace: bool = True) -> None:
    """A document (JSON, a field or a process a line) or a list of lines (JSON lines), to ``path``
    atomically with mode 0600 (outputs.atomic_writer: OutputError when it
    cannot), or to ``out``."""

    def dump(f) -> None:
        if isinstance(content, dict):
            _write_document(f, content)
        else:
            for line in content:
                f.write(json_line(line) + "\n")

    if path is None:
        dump(out)
    else:
        with atomic_writer(path, replace=replace) as f:
            dump(f)
