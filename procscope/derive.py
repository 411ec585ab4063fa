"""What users read off a process: names for ids, badges, host or not.

Computed from a cached image on demand (cheap, and the cache stays small);
the UI and the exporters both use these so they always agree."""

from __future__ import annotations

from procscope.probes import words
from procscope.probes.events import NAMESPACES, Namespaces

from .accounts import user_name
from .cache import Process, ProcessCache

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
    out += words.privilege_badges(img.privileges)
    if gained_caps(proc, cache.parent_of(proc)):
        out.append("caps+")
    if img.nlink == 0 and img.ino:
        out.append("fileless")
    if non_host_namespaces(img.ns, cache.host_ns):
        out.append("ns")
    if proc.not_found:
        out.append("notfound")
    return out


def user(proc: Process) -> str:
    return user_name(proc.image.uid) if proc.image else "?"


def age_ns(proc: Process, now: int) -> int:
    """How long it ran (exited) or has been running."""
    end = proc.exit_time if not proc.alive and proc.exit_time else now
    return max(0, end - proc.key.ktime)


def state_text(proc: Process) -> str:
    """"running", "exit 3", "SIGKILL (core dumped)", or "exited (status lost)"."""
    if proc.alive:
        return "running"
    if proc.replaced:
        return "exec'd"
    ev = proc.exit
    if ev is None:
        return "exited (status lost)"
    text = ev.signal_name or f"exit {ev.status}"
    return text + " (core dumped)" if ev.core_dumped else text


def age_text(ns: int) -> str:
    s = ns // 1_000_000_000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
