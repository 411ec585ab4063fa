"""Events as one readable line each, after `tetra getevents -o compact`,
safe for a terminal (what a process named is shown escaped)."""

from __future__ import annotations

from procscope.probes.text import printable

from .kinds import CGROUP, CLONE, COUNTERS, CREDS, EXEC, EXIT, EXTRA, THROTTLE, USAGE


def compact(event: dict) -> str:
    """One readable line, after `tetra getevents -o compact`, safe for a
    terminal: control characters in names and arguments are escaped."""
    return printable(_compact(event))


def _compact(event: dict) -> str:
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
        old, new = c["old"]["process_credentials"], c["new"]["process_credentials"]
        diff = [f"{k} {old.get(k)}→{new.get(k)}" for k in ("uid", "euid", "gid", "egid") if old.get(k) != new.get(k)]
        if old["caps"] != new["caps"]:
            diff.append("caps " + ",".join(new["caps"].get("effective", [])) or "none")
        for name in ("bounding", "ambient") if "cap_sets" in c["old"] and "cap_sets" in c["new"] else ():
            before, after = (set(c[side]["cap_sets"].get(name, [])) for side in ("old", "new"))
            diff += [f"{name} {sign}{','.join(sorted(caps))}" for sign, caps in (("+", after - before), ("-", before - after))
                     if caps]  # fmt: skip
        if c["old"]["ns"] != c["new"]["ns"]:
            diff.append("ns " + ",".join(n for n in c["new"]["ns"] if c["new"]["ns"][n] != c["old"]["ns"].get(n)))
        return f"🔑 creds   {event['node_name']} {c['process'].get('binary', '?')} {c['syscall']}: {'; '.join(diff)}"
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
