"""Events in Tetragon's export format (one JSON object per line, protojson
field names) and as compact one-line text."""

from __future__ import annotations

import base64
import os
import time
from datetime import datetime, timezone

from probes import wire
from probes.collector import Counters
from probes.events import CloneEvent, ExecEvent, ExitEvent, ProcessKey
from probes.procfs import host_namespaces

from .containers import from_cgroup_name
from .names import cap_names, securebit_names, user_name


def boot_to_wall_offset_ns() -> int:
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def rfc3339(wall_ns: int) -> str:
    dt = datetime.fromtimestamp(wall_ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{wall_ns % 1_000_000_000:09d}Z"


class Exporter:
    def __init__(self, node: str | None = None, host_ns: dict[str, int] | None = None):
        self.node = node or os.uname().nodename
        self.host_ns = host_ns if host_ns is not None else host_namespaces()
        self.wall_offset = boot_to_wall_offset_ns()

    def exec_id(self, key: ProcessKey) -> str:
        return base64.b64encode(f"{self.node}:{key.ktime}:{key.pid}".encode()).decode()

    def time(self, ktime: int) -> str:
        return rfc3339(ktime + self.wall_offset)

    def process(self, p: ExecEvent, refcnt: int | None = None) -> dict:
        c = p.creds
        privs = []
        if p.privileges & wire.EXECVE_FILECAPS:
            privs.append("PRIVILEGES_RAISED_EXEC_FILE_CAP")
        if p.privileges & wire.EXECVE_SETUID:
            privs.append("PRIVILEGES_RAISED_EXEC_FILE_SETUID")
        if p.privileges & wire.EXECVE_SETGID:
            privs.append("PRIVILEGES_RAISED_EXEC_FILE_SETGID")
        binprops: dict = {"file": {"inode": {"number": str(p.ino), "links": p.nlink}}}
        if p.privileges & wire.EXECVE_SETUID:
            binprops["setuid"] = c.euid
        if p.privileges & wire.EXECVE_SETGID:
            binprops["setgid"] = c.egid
        if privs:
            binprops["privileges_changed"] = privs
        ns = {name: {"inum": inum, "is_host": inum == self.host_ns.get(name)} for name, inum in p.ns.items()}
        out = {
            "exec_id": self.exec_id(p.key),
            "pid": p.key.pid,
            "uid": p.uid,
            "cwd": p.cwd,
            "binary": p.binary,
            "arguments": " ".join(p.args),
            "flags": " ".join(p.flag_words),
            "start_time": self.time(p.key.ktime),
            "auid": p.auid,
            "parent_exec_id": self.exec_id(p.parent),
            "tid": p.tid,
            "nspid": p.nspid,
            "cap": {
                "permitted": cap_names(c.caps.permitted),
                "effective": cap_names(c.caps.effective),
                "inheritable": cap_names(c.caps.inheritable),
            },
            "ns": ns,
            "process_credentials": {
                "uid": c.uid, "gid": c.gid, "euid": c.euid, "egid": c.egid,
                "suid": c.suid, "sgid": c.sgid, "fsuid": c.fsuid, "fsgid": c.fsgid,
                "securebits": securebit_names(c.securebits),
                "user_ns": {
                    "level": c.user_ns.level, "uid": c.user_ns.uid, "gid": c.user_ns.gid,
                    "ns": {"inum": c.user_ns.inum, "is_host": c.user_ns.inum == self.host_ns.get("user")},
                },
            },
            "binary_properties": binprops,
            "user": {"name": user_name(p.uid)},
            "cgroup": {"id": str(p.cgroup_id), "tracker_id": str(p.cgroup_tracker_id), "name": p.cgroup_name},
        }  # fmt: skip
        container = from_cgroup_name(p.cgroup_name)
        if container is not None:
            out["docker"] = container.tetragon_id
        if refcnt is not None:
            out["refcnt"] = refcnt
        return out

    def _wrap(self, kind: str, body: dict, ktime: int) -> dict:
        return {kind: body, "node_name": self.node, "time": self.time(ktime)}

    def exec_event(self, p: ExecEvent, parent: ExecEvent | None) -> dict:
        body = {"process": self.process(p)}
        if parent is not None:
            body["parent"] = self.process(parent)
        return self._wrap("process_exec", body, p.time)

    def exit_event(self, ev: ExitEvent, p: ExecEvent | None, parent: ExecEvent | None) -> dict:
        proc = self.process(p) if p else {"exec_id": self.exec_id(ev.key), "pid": ev.key.pid, "flags": "miss"}
        body = {"process": proc, "signal": ev.signal_name, "status": ev.status, "time": self.time(ev.time)}
        if ev.core_dumped:
            body["core_dumped"] = True
        if parent is not None:
            body["parent"] = self.process(parent)
        return self._wrap("process_exit", body, ev.time)

    def clone_event(self, ev: CloneEvent) -> dict:
        body = {
            "exec_id": self.exec_id(ev.key), "parent_exec_id": self.exec_id(ev.parent),
            "pid": ev.key.pid, "tid": ev.tid, "nspid": ev.nspid, "start_time": self.time(ev.key.ktime),
        }  # fmt: skip
        return self._wrap("procscope_clone", body, ev.time)

    def counters_event(self, c: Counters, ktime: int) -> dict:
        body = {
            "sent_failed": c.sent_failed,
            "decode_errors": c.decode_errors,
            "userspace_dropped": c.userspace_dropped,
            "exec_map_full": c.exec_map_full,
            "received": c.received,
        }
        return self._wrap("procscope_counters", body, ktime)


def compact(event: dict) -> str:
    """One readable line, after `tetra getevents -o compact`."""
    if "process_exec" in event:
        p = event["process_exec"]["process"]
        return f"🚀 process {event['node_name']} {p['binary']} {p['arguments']}".rstrip()
    if "process_exit" in event:
        e = event["process_exit"]
        p = e["process"]
        how = e["signal"] or str(e["status"])
        if e.get("core_dumped"):
            how += " (core dumped)"
        words = [p.get("binary", "?"), p.get("arguments", ""), how]
        return f"💥 exit    {event['node_name']} " + " ".join(w for w in words if w)
    if "procscope_clone" in event:
        c = event["procscope_clone"]
        return f"🧬 clone   {event['node_name']} pid {c['pid']}"
    if "procscope_counters" in event:
        c = event["procscope_counters"]
        lost = sum(sum(r.values()) for r in c["sent_failed"].values())
        return (
            f"📊 counters received {c['received']} kernel-dropped {lost} "
            f"userspace-dropped {c['userspace_dropped']} decode-errors {c['decode_errors']}"
        )
    kind = next(iter(event))
    return f"{kind} {event[kind]}"
