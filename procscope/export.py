"""Events in Tetragon's export format (one JSON object per line, protojson
field names) and as compact one-line text."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime

from procscope.probes import wire, words
from procscope.probes.counters import Counters
from procscope.probes.events import CgroupEvent, CloneEvent, ExecEvent, ExitEvent, ProcessKey, ThrottleEvent
from procscope.probes.text import json_escaped, printable

from .accounts import user_name
from .cache import Process, ProcessCache

EXTRA = "procscope"  # procscope's own fields of a process object, under one key (tetra ignores it)


def boot_to_wall_offset_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def rfc3339(wall_ns: int) -> str:
    dt = datetime.fromtimestamp(wall_ns // 1_000_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{wall_ns % 1_000_000_000:09d}Z"


class Exporter:
    """Turns cached processes and events into Tetragon's JSON. With
    ``tetragon_only`` the process objects carry Tetragon's fields only (for
    files `tetra getevents` reads); otherwise also procscope's ``cgroup``."""

    def __init__(
        self, cache: ProcessCache, node: str | None = None, tetragon_only: bool = False, wall_offset: int | None = None
    ):
        """``wall_offset``: wall clock − boot clock in ns; a replay passes
        the recording's, so that times come out as they went in."""
        self.cache = cache
        self.node = node or os.uname().nodename
        self.tetragon_only = tetragon_only
        self.wall_offset = boot_to_wall_offset_ns() if wall_offset is None else wall_offset

    def exec_id(self, key: ProcessKey) -> str:
        return exec_id(self.node, key)

    def time(self, ktime: int) -> str:
        return rfc3339(ktime + self.wall_offset)

    def process(self, proc: Process) -> dict:
        p = proc.image
        if p is None:  # a placeholder: only its identity is known
            return {
                "exec_id": self.exec_id(proc.key), "pid": proc.pid, "flags": "miss",
                "start_time": self.time(proc.key.ktime), "parent_exec_id": self.exec_id(proc.parent),
                "refcnt": max(proc.refs, 0),
            }  # fmt: skip
        c = p.creds
        host_ns = self.cache.host_ns
        flags = p.flag_words
        if proc.not_found:
            flags.append("miss")
        caps = {
            "permitted": words.tetragon_cap_names(c.caps.permitted),
            "effective": words.tetragon_cap_names(c.caps.effective),
            "inheritable": words.tetragon_cap_names(c.caps.inheritable),
        }
        user_ns: dict = {"level": c.user_ns.level}
        for field, value in (("uid", c.user_ns.uid), ("gid", c.user_ns.gid)):
            if value != wire.UNKNOWN_ID:  # the /proc scan cannot learn a nested namespace's owner gid
                user_ns[field] = value
        user_ns["ns"] = {"inum": c.user_ns.inum, "is_host": c.user_ns.inum == host_ns.get("user")}
        out = {
            "exec_id": self.exec_id(proc.key),
            "pid": proc.pid,
            "uid": p.uid,
            "cwd": p.cwd,
            "binary": p.binary,
            "arguments": " ".join(p.args),
            "flags": " ".join(flags),
            "start_time": self.time(proc.key.ktime),
            "auid": p.auid,
            "parent_exec_id": self.exec_id(proc.parent),
            "refcnt": max(proc.refs, 0),
            "tid": p.tid,
            "cap": caps,
            "ns": {name: {"inum": inum, "is_host": inum == host_ns.get(name)} for name, inum in p.ns.items()},
            "process_credentials": {
                "uid": c.uid, "gid": c.gid, "euid": c.euid, "egid": c.egid,
                "suid": c.suid, "sgid": c.sgid, "fsuid": c.fsuid, "fsgid": c.fsgid,
                "securebits": words.securebit_names(c.securebits), "caps": caps, "user_ns": user_ns,
            },
            "user": {"name": user_name(p.uid)},
            "in_init_tree": bool(p.flags & wire.FLAG_IN_INIT_TREE),
        }  # fmt: skip
        binprops = binary_properties(p)
        if binprops:
            out["binary_properties"] = binprops
        if proc.container is not None:
            out["docker"] = proc.container.tetragon_id
        if not self.tetragon_only:
            own: dict = {
                "nspid": p.nspid,
                "cgroup": {"id": str(proc.cgroup_id), "name": proc.cgroup_name, "path": proc.cgroup},
            }
            if proc.previous is not None:
                own["previous_exec_id"] = self.exec_id(proc.previous)
            out[EXTRA] = own
        return out

    def _wrap(self, kind: str, body: dict, ktime: int) -> dict:
        return {kind: body, "node_name": self.node, "time": self.time(ktime)}

    def _with_parent(self, body: dict, proc: Process) -> dict:
        parent = self.cache.parent_of(proc)
        if parent is not None:
            body["parent"] = self.process(parent)
        return body

    def exec_event(self, proc: Process) -> dict:
        when = proc.image.time if proc.image else proc.key.ktime
        return self._wrap("process_exec", self._with_parent({"process": self.process(proc)}, proc), when)

    def exit_event(self, ev: ExitEvent, proc: Process) -> dict:
        body = {"process": self.process(proc), "signal": ev.signal_name, "status": ev.status, "time": self.time(ev.time)}
        if ev.core_dumped:
            body[EXTRA] = {"core_dumped": True}
        return self._wrap("process_exit", self._with_parent(body, proc), ev.time)

    def clone_event(self, ev: CloneEvent) -> dict:
        body = {
            "exec_id": self.exec_id(ev.key), "parent_exec_id": self.exec_id(ev.parent),
            "pid": ev.key.pid, "tid": ev.tid, "nspid": ev.nspid, "start_time": self.time(ev.key.ktime),
            "flags": " ".join(words.flag_words(ev.flags)),
        }  # fmt: skip
        return self._wrap("procscope_clone", body, ev.time)

    def throttle_event(self, ev: ThrottleEvent) -> dict:
        """Tetragon's process_throttle; procscope adds the cgroup's id and
        path and, at STOP, the events suppressed per op."""
        body: dict = {"type": ev.type_name, "cgroup": ev.name}
        if not self.tetragon_only:
            t = self.cache.throttles.get(ev.cgroup_id)
            own: dict = {"cgroup_id": str(ev.cgroup_id), "path": t.path if t is not None else ev.path}
            if ev.type == wire.THROTTLE_STOP:
                own["suppressed"] = dict(zip(wire.RATE_OPS, ev.suppressed, strict=False))
            body[EXTRA] = own
        return self._wrap("process_throttle", body, ev.time)

    def cgroup_event(self, ev: CgroupEvent) -> dict:
        body = {
            "op": ev.op_name, "pid": ev.pid, "nspid": ev.nspid, "flags": ev.flags, "cgroup_id": str(ev.cgroup_id),
            "tracker_id": str(ev.tracker_id), "level": ev.level, "hierarchy_id": ev.hierarchy_id,
            "name": ev.name, "path": ev.path,
        }  # fmt: skip
        return self._wrap("procscope_cgroup", body, ev.time)

    def counters_event(self, c: Counters, ktime: int) -> dict:
        c.cache = self.cache.counters.as_dict()
        return self._wrap("procscope_counters", c.to_json(), ktime)


def binary_properties(p: ExecEvent) -> dict:
    """Tetragon's BinaryProperties: the ids a setuid/setgid exec gave, the
    privileges it raised (Tetragon names the setuid and setgid ones only for
    root), and the binary's inode when it has no link (deleted, or a memfd)."""
    out: dict = {}
    if p.privileges & wire.EXECVE_SETUID:
        out["setuid"] = p.creds.euid
    if p.privileges & wire.EXECVE_SETGID:
        out["setgid"] = p.creds.egid
    raised = words.raised_words(p.privileges)
    if raised:
        out["privileges_changed"] = raised
    if p.nlink == 0 and p.ino:
        out["file"] = {"inode": {"number": str(p.ino), "links": p.nlink}}
    return out


def exec_id(node: str, key: ProcessKey) -> str:
    return base64.b64encode(f"{node}:{key.ktime}:{key.pid}".encode()).decode()


def json_line(event: dict) -> str:
    """One event as one line of JSON: valid UTF-8, no raw control character."""
    return json_escaped(json.dumps(event, ensure_ascii=False))


def compact(event: dict) -> str:
    """One readable line, after `tetra getevents -o compact`, safe for a
    terminal: control characters in names and arguments are escaped."""
    return printable(_compact(event))


def _compact(event: dict) -> str:
    if "process_exec" in event:
        p = event["process_exec"]["process"]
        return f"🚀 process {event['node_name']} {p['binary']} {p['arguments']}".rstrip()
    if "process_exit" in event:
        e = event["process_exit"]
        p = e["process"]
        how = e["signal"] or str(e["status"])
        if e.get(EXTRA, {}).get("core_dumped"):
            how += " (core dumped)"
        words = [p.get("binary", "?"), p.get("arguments", ""), how]
        return f"💥 exit    {event['node_name']} " + " ".join(w for w in words if w)
    if "procscope_clone" in event:
        c = event["procscope_clone"]
        return f"🧬 clone   {event['node_name']} pid {c['pid']}"
    if "process_throttle" in event:
        t = event["process_throttle"]
        own = t.get(EXTRA, {})
        words = [f"{op} {n}" for op, n in own.get("suppressed", {}).items()]
        tail = f" (suppressed {', '.join(words)})" if words else ""
        icon = "⏸️" if t["type"] == "THROTTLE_START" else "▶️"
        return f"{icon} throttle {event['node_name']} {t['type']} {own.get('path') or t['cgroup']}{tail}"
    if "procscope_cgroup" in event:
        c = event["procscope_cgroup"]
        return f"📁 cgroup  {event['node_name']} {c['op']} {c['path']} (hierarchy {c['hierarchy_id']}, pid {c['pid']})"
    if "procscope_counters" in event:
        c = event["procscope_counters"]
        lost = sum(sum(r.values()) for r in c["sent_failed"].values())
        return (
            f"📊 counters received {c['received']} kernel-dropped {lost} "
            f"userspace-dropped {c['userspace_dropped']} decode-errors {c['decode_errors']}"
            + (f" cache-misses {c['cache']['misses']}" if "cache" in c else "")
        )
    kind = next(iter(event))
    return f"{kind} {event[kind]}"
