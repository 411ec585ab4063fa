"""Events as one readable line each, after `tetra getevents -o compact`,
safe for a terminal (what a process named is shown escaped)."""

from __future__ import annotations

from procscope.probes.text import printable

from . import schema
from .kinds import CGROUP, CLONE, COUNTERS, CREDS, EXEC, EXIT, EXTRA, THROTTLE, USAGE
from .records import read


def compact(event: dict) -> str:
    """One readable line, after `tetra getevents -o compact`, safe for a
    terminal: control characters in names and arguments are escaped."""
    return printable(_compact(event))


def _compact(event: dict) -> str:
    # An exec's and an exit's two strings are read where they are: a stream writes one line per
    # event, and reading the whole object into schema.Process would more than double its cost.
    if EXEC in event:
        p = event[EXEC]["process"]
        return f"🚀 process {event['node_name']} {p['binary']} {p['arguments']}".rstrip()
    if EXIT in event:
        e = event[EXIT]
        p = e["process"]
        how = e["signal"] or str(e["status"])
        if e.get(EXTRA, {}).get("core_dumped"):
            how += " (core dumped)"
        words = [p.get("binary", "?"), p.get("arguments", ""), how]
        return f"💥 exit    {event['node_name']} " + " ".join(w for w in words if w)
    if CREDS in event:
        c = event[CREDS]
        old, new = read(c["old"], schema.CredsSide), read(c["new"], schema.CredsSide)
        was, now = old.process_credentials, new.process_credentials
        diff = [f"{k} {getattr(was, k)}→{getattr(now, k)}" for k in ("uid", "euid", "gid", "egid")
                if getattr(was, k) != getattr(now, k)]  # fmt: skip
        if was.caps != now.caps:
            diff.append("caps " + (",".join(now.caps.effective) or "none"))
        if old.cap_sets and new.cap_sets:
            for name in ("bounding", "ambient"):
                before, after = set(getattr(old.cap_sets, name)), set(getattr(new.cap_sets, name))
                diff += [f"{name} {sign}{','.join(sorted(caps))}" for sign, caps in (("+", after - before), ("-", before - after))
                         if caps]  # fmt: skip
        if old.ns != new.ns:
            diff.append("ns " + ",".join(n for n in new.ns if new.ns[n] != old.ns.get(n)))
        binary = read(c["process"], schema.Process).binary or "?"
        return f"🔑 creds   {event['node_name']} {binary} {c['syscall']}: {'; '.join(diff)}"
    if CLONE in event:
        c = event[CLONE]
        return f"🧬 clone   {event['node_name']} pid {c['pid']}"
    if THROTTLE in event:
        t = event[THROTTLE]
        own = t.get(EXTRA, {})
        words = [f"{op} {n}" for op, n in own.get("suppressed", {}).items()]
        tail = f" (suppressed {', '.join(words)})" if words else ""
        icon = "⏸️" if t["type"] == "THROTTLE_START" else "▶️"
        return f"{icon} throttle {event['node_name']} {t['type']} {own.get('path') or t['cgroup']}{tail}"
    if CGROUP in event:
        c = event[CGROUP]
        return f"📁 cgroup  {event['node_name']} {c['op']} {c['path']} (hierarchy {c['hierarchy_id']}, pid {c['pid']})"
    if COUNTERS in event:
        c = event[COUNTERS]
        lost = sum(sum(r.values()) for r in c["sent_failed"].values())
        return (
            f"📊 counters received {c['received']} kernel-dropped {lost} "
            f"userspace-dropped {c['userspace_dropped']} decode-errors {c['decode_errors']}"
            + (f" cache-misses {c['cache']['misses']}" if "cache" in c else "")
        )
    if USAGE in event:
        u = event[USAGE]
        cpus = (u.get("machine") or {}).get("cpus", [])
        busy = f" CPUs busy {', '.join(f'{100 * sum(c):.0f}%' for c in cpus)}" if cpus else ""
        return f"📈 usage   {event['node_name']} {len(u['processes'])} processes changed{busy}"
    kind = next(iter(event))
    return f"{kind} {event[kind]}"
