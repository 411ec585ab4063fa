"""What processes use, in recordings: each second of `events --record` a
`procscope_usage` record with the machine's figures, each container's, and
those of each process that changed since the record before (a process at
most once a second); a replay turns them back into the cache's usage as of
that moment (the sampler's UsageEvent), so a replay and time travel show
CPU%, RES and the containers' use as they were. Written and read here."""

from __future__ import annotations

from .container_usage import ContainerUsage
from .export import exec_id
from .probes.events import ProcessKey
from .probes.usage import CpuShare, Machine, Usage
from .records import BadRecord, number, parse_exec_id, text
from .sampler import UsageEvent, UsageTable

_USAGE_FIELDS = ("cpu_ns", "children_cpu_ns", "rss_bytes", "virt_bytes", "threads")
_MACHINE_FIELDS = ("mem_used", "mem_total", "swap_used", "swap_total", "processes", "threads", "running", "kthreads")
_MACHINE_ADDED = frozenset({"kthreads"})  # fields that older recordings lack: read as Machine's default
_CONTAINER_FIELDS = ("cpu_ns", "mem_used", "mem_limit", "pids", "pids_limit")


def record_body(table: UsageTable, before: dict[ProcessKey, Usage], node: str) -> dict:
    """A record of ``table``: the processes whose figures are not those of ``before``."""
    procs = [
        {"exec_id": exec_id(node, key), "state": u.state, "cpu_percent": round(u.cpu_pct, 2), "cpu_ns": u.cpu_ns,
         "children_cpu_ns": u.children_cpu_ns, "rss_bytes": u.rss, "virt_bytes": u.virt, "threads": u.threads}
        for key, u in table.procs.items() if before.get(key) is not u  # equal figures keep their object
    ]  # fmt: skip
    body: dict = {"processes": procs}
    m = table.machine
    if m is not None:
        body["machine"] = {name: getattr(m, name) for name in _MACHINE_FIELDS} | {
            "cpus": [[c.user, c.system, c.iowait, c.steal] for c in m.cpus], "load": list(m.load),
            "uptime_s": m.uptime_s}  # fmt: skip
    body["containers"] = {
        cid: {"cpu_percent": c.cpu_pct} | {name: getattr(c, name) for name in _CONTAINER_FIELDS}
        for cid, c in table.containers.items()
    }
    return body


def _share(value) -> float:
    if not isinstance(value, int | float) or not 0 <= value <= 1.0001:
        raise BadRecord(f"a CPU share of {value!r}")
    return float(value)


def _optional(value, bits: int = 64) -> int | None:
    return None if value is None else number(value, bits)


def usage_event(body: dict, when: int) -> UsageEvent:
    """A record read back (BadRecord when it cannot be)."""
    procs = {}
    for p in body.get("processes", ()):
        _, key = parse_exec_id(p["exec_id"])
        pct = p.get("cpu_percent", 0.0)
        if not isinstance(pct, int | float) or not 0 <= pct < 1e6:
            raise BadRecord(f"a CPU% of {pct!r}")
        procs[key] = Usage(text(p.get("state", "?"))[:1], number(p["cpu_ns"], 64), number(p.get("children_cpu_ns", 0), 64),
                           float(pct), number(p["rss_bytes"], 64), number(p.get("virt_bytes", 0), 64),
                           number(p.get("threads", 1)))  # fmt: skip
    machine = None
    if (m := body.get("machine")) is not None:
        cpus = tuple(CpuShare(*(_share(v) for v in c)) for c in m["cpus"])
        load = m["load"]
        if len(load) != 3 or not all(isinstance(v, int | float) for v in load):
            raise BadRecord(f"a load average of {load!r}")
        figures = {name: number(m[name], 64) for name in _MACHINE_FIELDS if name in m or name not in _MACHINE_ADDED}
        machine = Machine(cpus=cpus, load=(load[0], load[1], load[2]), uptime_s=float(m["uptime_s"]), **figures)
    containers = {}
    for cid, c in (body.get("containers") or {}).items():
        pct = c.get("cpu_percent")
        containers[text(cid)] = ContainerUsage(_optional(c.get("cpu_ns")), float(pct) if isinstance(pct, int | float) else None,
                                               *(_optional(c.get(name)) for name in _CONTAINER_FIELDS[1:]))  # fmt: skip
    return UsageEvent(when, procs, machine, containers)
