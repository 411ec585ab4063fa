"""What users read off a process: names for ids, badges, host or not.

Computed from a cached image on demand (cheap, and the cache stays small);
the UI and the exporters both use these so they always agree."""

from __future__ import annotations

from procscope.probes import names, wire
from procscope.probes.events import NAMESPACES, Namespaces, ProcessKey

from .accounts import user_name
from .cache import Process, ProcessCache
from .container_usage import ContainerUsage
from .containers import Container
from .process import EXITED, CredsChange
from .runtimes import ContainerInfo
from .sampler import Usage

# Badge names, in display order, with what they mean (for help screens and docs).
BADGES = {
    "root": "runs with euid 0",
    "setuid": "gained a user id by exec'ing a set-user-id file",
    "setgid": "gained a group id by exec'ing a set-group-id file",
    "filecaps": "gained capabilities from file capabilities at exec",
    "caps+": "has capabilities its parent did not have",
    "fileless": "runs a binary with no link on disk (deleted, or a memfd)",
    "ns": "lives in a namespace other than the host's",
    "notfound": "known only from a later event (its exec or clone was lost)",
    "creds+": "gained privileges after its exec (euid 0, capabilities, or a namespace joined): see the detail",
    "exec-in": "entered its container from outside (docker exec, kubectl exec, nsenter): not from its first process",
}


def non_host_namespaces(ns: Namespaces, host_ns: dict[str, int]) -> list[str]:
    """Names of the namespaces that differ from the host's. Where either
    inum is unknown (0: /proc/PID/ns unreadable) nothing is claimed."""
    return [name for name in NAMESPACES if host_ns.get(name) and getattr(ns, name) not in (0, host_ns[name])]


def gained_caps(proc: Process, parent: Process | None) -> int:
    """Permitted capabilities the parent did not have (0 if unknown)."""
    if proc.image is None or parent is None or parent.image is None:
        return 0
    return proc.image.creds.caps.permitted & ~parent.image.creds.caps.permitted


def badges(proc: Process, cache: ProcessCache) -> list[str]:
    img = proc.image
    if img is None:  # a placeholder, or a clone of one: nothing is known about it
        return ["notfound"] if proc.not_found else []
    out = []
    if img.creds.euid == 0:
        out.append("root")
    out += names.privilege_badges(img.privileges)
    if gained_caps(proc, cache.parent_of(proc)):
        out.append("caps+")
    if img.nlink == 0 and img.ino:
        out.append("fileless")
    if non_host_namespaces(img.ns, cache.host_ns):
        out.append("ns")
    if proc.not_found:
        out.append("notfound")
    if proc.changes and any(c.rose for c in proc.changes):
        out.append("creds+")
    if proc.container is not None and not img.flags & wire.FLAG_IN_INIT_TREE:
        out.append("exec-in")
    return out


def container_info(proc: Process, cache: ProcessCache) -> ContainerInfo | None:
    return cache.cgroup_index.info_of(proc.container)


def container_name(proc: Process, cache: ProcessCache) -> str:
    """What a process's container is called: its runtime's name, else its short id ("-": none)."""
    if proc.container is None:
        return "-"
    info = cache.cgroup_index.info_of(proc.container)
    return info.name if info is not None and info.name else proc.container.short_id


def container_text(c: Container, info: ContainerInfo | None) -> str:
    """One line about a container: name, image, pod, runtime, id."""
    parts = [info.name] if info is not None and info.name else []
    if info is not None and info.image:
        parts.append(f"image {info.image}")
    if info is not None and info.pod is not None:
        parts.append(f"pod {info.pod.namespace}/{info.pod.name}")
    parts += [c.runtime, c.short_id]
    return "  ".join(parts)


def user(proc: Process) -> str:
    return user_name(proc.image.uid) if proc.image else "?"


def age_ns(proc: Process, now: int) -> int:
    """How long it ran (exited) or has been running."""
    end = proc.exit_time if not proc.alive and proc.exit_time else now
    return max(0, end - proc.key.ktime)


def state_text(proc: Process) -> str:
    """ "running", "exec'd", "exit 3", "SIGKILL (core dumped)", or "exited (status lost)"."""
    if proc.state is not EXITED:
        return proc.lifecycle.shown
    ev = proc.exit
    if ev is None:
        return "exited (status lost)"
    text = ev.signal_name or f"exit {ev.status}"
    return text + " (core dumped)" if ev.core_dumped else text


def usage_key(proc: Process, cache: ProcessCache) -> ProcessKey | None:
    """The key a running process's usage was read under: its task's start
    (/proc/PID/stat's). An exec'd image is keyed by its exec, so its start
    comes from the images before it (a pid reused since has another)."""
    procs = cache.usage.procs
    if not proc.alive or not procs:
        return None
    if proc.key in procs:  # found at start, or cloned: keyed by its start
        return proc.key
    if proc.previous is None:
        return None
    return next((k for t in cache.start_times(proc) if (k := ProcessKey(proc.pid, t)) in procs), None)


def usage(proc: Process, cache: ProcessCache) -> Usage | None:
    """What a running process uses, as last read (None: exited, or not read yet)."""
    key = usage_key(proc, cache)
    return cache.usage.procs[key] if key is not None else None


def cpu_ns(proc: Process, cache: ProcessCache, u: Usage | None) -> int | None:
    """Its own CPU time: as last read while it runs (``u``), as counted at its exit once exited."""
    return u.cpu_ns if u is not None else proc.cpu_ns


def children_cpu_ns(proc: Process, cache: ProcessCache, u: Usage | None) -> int | None:
    """What its exited descendants used: while the probes send each one's CPU
    at its exit (procscope.exited_cpu), all of them, waited for or not,
    grandchildren included (for a process found at start, on from the
    kernel's figure for its children waited for before); else the kernel's
    figure (cutime and cstime, as htop's CTIME+)."""
    if cache.exit_cpu:
        chain = cache.exec_chain(proc)  # once: a row's cells and its sort key ask this
        first, seen = chain[0], sum(p.exited_cpu_ns for p in chain)
        if _born_watched(first):
            return seen
        if first.exited_cpu_base is not None:
            return first.exited_cpu_base + seen
    return u.children_cpu_ns if u is not None else None


def all_exits_seen(proc: Process, cache: ProcessCache) -> bool:
    """Whether its CTIME+ counts every exited descendant (see children_cpu_ns)."""
    if not cache.exit_cpu:
        return False
    first = cache.exec_chain(proc)[0]
    return _born_watched(first) or first.exited_cpu_base is not None


def _born_watched(first: Process) -> bool:
    """The first image of a pid was not found by the /proc scan: it started while the probes ran
    (a clone of a process they did not know is a placeholder, and was born watched too)."""
    return first.image is None or not first.image.flags & wire.FLAG_PROCFS


def total_cpu_ns(proc: Process, cache: ProcessCache, u: Usage | None) -> int | None:
    """Its own CPU time and its exited descendants'."""
    own, children = cpu_ns(proc, cache, u), children_cpu_ns(proc, cache, u)
    return None if own is None and children is None else (own or 0) + (children or 0)


# /proc/PID/stat's state letters, as htop shows them.
STATES = {"R": "running", "S": "sleeping", "D": "waiting, uninterruptible (disk)", "Z": "zombie", "T": "stopped",
          "t": "stopped by a tracer", "I": "idle", "X": "dead", "P": "parked", "W": "paging"}  # fmt: skip


def memory_text(n: int, unit: bool = False) -> str:
    """Bytes in at most 5 cells, htop's way: KiB as a plain number (``unit``: with a K), then M, G, T."""
    kib = n >> 10
    if kib < 100_000:
        return f"{kib}K" if unit else str(kib)
    for letter, size in (("M", 1 << 10), ("G", 1 << 20), ("T", 1 << 30)):
        v = kib / size
        if v < 10 and letter != "M":
            return f"{v:.1f}{letter}"
        if v < 1000:
            return f"{v:.0f}{letter}"
    return f"{kib / (1 << 40):.0f}P"


def rate_text(per_s: float) -> str:
    """Bytes per second in at most 5 cells: 512, 12.3K, 4.5M."""
    v = per_s
    for unit in ("", "K", "M", "G"):
        if v < 1000:
            return f"{v:.1f}{unit}" if unit and v < 10 else f"{v:.0f}{unit}"
        v /= 1024
    return f"{v:.0f}T"


def cpu_time_text(ns: int) -> str:
    """htop's TIME+: 1:02.34 (minutes, seconds, hundredths), from an hour 3h07:12, from 100 hours 123h."""
    cs = ns // 10_000_000
    s = cs // 100
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}.{cs % 100:02d}"
    if s < 360_000:
        return f"{s // 3600}h{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 3600}h"


def percent_text(v: float) -> str:
    return f"{v:.1f}" if v < 99.95 else f"{v:.0f}"


def container_usage_text(u: ContainerUsage | None) -> str:
    """`CPU 12.3%  mem 45M/512M  pids 3/100`, as `docker stats` counts (a limit only when one is set)."""
    if u is None:
        return ""
    parts = []
    if u.cpu_pct is not None:
        parts.append(f"CPU {percent_text(u.cpu_pct)}%")
    if u.mem_used is not None:
        limit = f"/{memory_text(u.mem_limit, unit=True)}" if u.mem_limit else ""
        parts.append(f"mem {memory_text(u.mem_used, unit=True)}{limit}")
    if u.pids is not None:
        parts.append(f"pids {u.pids}" + (f"/{u.pids_limit}" if u.pids_limit else ""))
    return "  ".join(parts)


def lifetime_text(ns: int) -> str:
    """How long an exited process ran: to the hundredth below 10 s (0.30s), else as ages are."""
    return f"{ns / 1e9:.2f}s" if ns < 10_000_000_000 else age_text(ns)


def age_text(ns: int) -> str:
    s = ns // 1_000_000_000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def change_text(change: CredsChange, host_ns: dict[str, int]) -> str:
    """What a credential change did: "setresuid: euid 1000→0, caps +SYS_ADMIN, ns net joined"."""
    old, new = change.old_creds, change.creds
    parts = [f"{name} {a}→{b}" for name, a, b in (("uid", old.uid, new.uid), ("euid", old.euid, new.euid),
             ("gid", old.gid, new.gid), ("egid", old.egid, new.egid)) if a != b]  # fmt: skip
    changed = [("caps", old.caps.effective, new.caps.effective)]
    if change.old_sets is not None and change.sets is not None:
        changed += [("ambient", change.old_sets.ambient, change.sets.ambient),
                    ("bounding", change.old_sets.bounding, change.sets.bounding)]  # fmt: skip
    for name, before, after in changed:
        for sign, bits in (("+", after & ~before), ("-", before & ~after)):
            if bits:
                parts.append(f"{name} {sign}" + ",".join(n.removeprefix("CAP_") for n in names.cap_names(bits)))
    moved = [name for name in NAMESPACES if getattr(change.ns, name) != getattr(change.old_ns, name)]
    if moved:
        parts.append("ns " + ",".join(moved) + (" (host's)" if not non_host_namespaces(change.ns, host_ns) else ""))
    return f"{change.syscall}: " + (", ".join(parts) or "other credentials (groups, securebits)")
