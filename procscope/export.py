"""Events in Tetragon's export format (one JSON object per line, protojson
field names) and as compact one-line text."""

from __future__ import annotations

import binascii
import functools
import os
from collections.abc import Callable
from operator import attrgetter
from typing import TypeVar

import msgspec
from msgspec import UnsetType

from procscope.probes import names, wire
from procscope.probes.counters import Counters
from procscope.probes.events import (
    CapSets,
    CgroupEvent,
    CloneEvent,
    Credentials,
    ExecEvent,
    ExitEvent,
    Namespaces,
    ProcessKey,
    ThrottleEvent,
)
from procscope.probes.text import json_escaped_bytes

from . import schema
from .accounts import user_name
from .cache import Process, ProcessCache
from .clock import boot_to_wall_offset_ns, rfc3339
from .export_parts import binary_properties, pod_object
from .kinds import CGROUP, CLONE, COUNTERS, CREDS, EXEC, EXIT, EXTRA, THROTTLE
from .process import CredsChange
from .templates import Templates

T = TypeVar("T")

_CORE_DUMPED = b',"%s":{"core_dumped":true}' % EXTRA.encode()  # an exit's own, as exit_event has it
MEMO_LIMIT = 2048  # objects kept: each holds a process (evicted ones too, until cleared)
_json = msgspec.json.Encoder()
# A template's per-process values (Exporter._own's) are marked by NUL, the slot's number, NUL:
# encoded JSON never holds a raw NUL (msgspec writes \u0000).
_SLOTS = tuple(msgspec.Raw(b"\x00%d\x00" % i) for i in range(7))
_REFCNT = tuple(b',"refcnt":%d}' % n for n in range(64))  # the closing part of each object a line holds
# A process's and its parent's reference counts (refcnt) as its event left them, None: as they are
# now. A stream applies its batch before it writes the batch's lines (EventStream.feed).
Refs = tuple[int | None, int | None]
NOW: Refs = (None, None)
PARTS = ("cap", "process_credentials", "ns")  # what Tetragon writes only when asked (Exporter.left_out)
# An image's fields that its process object shows alike for every process (the rest: _own).
_shared_fields = attrgetter(
    *(f for f in ExecEvent.__struct_fields__ if f not in {"time", "key", "tid", "nspid", "parent", "cleanup"})
)


def node_name() -> str:
    """This node's name in events, as Tetragon finds it: HUBBLE_NODE_NAME, else NODE_NAME (a
    DaemonSet sets it from the pod's spec.nodeName), else the host name."""
    return os.environ.get("HUBBLE_NODE_NAME") or os.environ.get("NODE_NAME") or os.uname().nodename


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
        self.node = node or node_name()
        self.tetragon_only = tetragon_only
        self.left_out: frozenset[str] = frozenset()  # of PARTS: not written (Options.left_out), set before the first
        self.wall_offset = boot_to_wall_offset_ns() if wall_offset is None else wall_offset
        self._node_json = json_escaped_bytes(_json.encode(self.node))
        # Process objects by process, made again only when what they show changed (an exec's
        # parent is exported with each of its children: in a storm, a few parents, many times).
        self._objects: dict[Process, list] = {}
        self._exec_ids: dict[ProcessKey, str] = {}
        self._creds: dict[Credentials, tuple[schema.Capabilities, schema.ProcessCredentials]] = {}
        self._ns: dict[Namespaces, dict[str, schema.Namespace]] = {}
        self._parts: dict[tuple[Credentials, Namespaces], tuple] = {}  # by _parts_of: cap, credentials, ns
        self._plain: dict[tuple[Credentials, Namespaces], tuple] = {}
        self._templates: Templates[Template] = Templates(MEMO_LIMIT)

    def set_node(self, node: str) -> None:
        """Another node's name (another machine's events, known once it answers): what was made
        with the old one is forgotten."""
        if node != self.node:
            self.node, self._node_json = node, json_escaped_bytes(_json.encode(node))
            self._exec_ids.clear()  # the process objects' memo holds the node among what they show
            self._templates.clear()

    def exec_id(self, key: ProcessKey) -> str:
        found = self._exec_ids.get(key)
        if found is None:
            if len(self._exec_ids) >= MEMO_LIMIT:
                self._exec_ids.clear()
            found = self._exec_ids[key] = exec_id(self.node, key)
        return found

    def time(self, ktime: int) -> str:
        return rfc3339(ktime + self.wall_offset)

    def clock(self, ktime: int, digits: int = 3) -> str:
        """HH:MM:SS.fff (UTC) of a boot-clock time, for columns of one width."""
        wall = ktime + self.wall_offset
        hms = rfc3339(wall - wall % 1_000_000_000)[11:19]
        return f"{hms}.{wall % 1_000_000_000:09d}"[: 9 + digits]

    def process(self, proc: Process, refs: int | None = None) -> dict:
        """The process object as plain dicts and lists (what an event's dict holds)."""
        out = dict(self.process_plain(proc))  # shallow: what it holds is never changed once made
        out["refcnt"] = max(proc.refs if refs is None else refs, 0)
        return out

    def process_plain(self, proc: Process) -> dict:
        """The same, its refcnt as when it was made: one object while the process shows the
        same (a memo's key for what is made of it), never to be changed."""
        entry = self._object(proc)
        if entry[1] is None:
            entry[1] = plain = schema.written(self._process(proc, self._own(proc)))
            if proc.image is not None:  # what many processes share, converted once for all
                parts = zip(PARTS, self._plain_parts(proc.image), strict=True)
                plain.update((n, x) for n, x in parts if x is not msgspec.UNSET)
        return entry[1]

    def process_object(self, proc: Process) -> schema.Process:
        """The same as a Struct to encode, with cap, ns and process_credentials
        as encoded JSON (msgspec.Raw), made once for every process that shares
        them (a snapshot of 500,000 processes)."""
        return self._process(proc, self._own(proc), encoded=True)

    def process_json(self, proc: Process, refs: int | None = None) -> tuple[bytes, bytes]:
        """The same object encoded, as json_bytes writes it, in two parts to
        be joined: a stream writes the same objects again and again (a
        storm's parent with each child, an exit's process after its exec),
        so each is made once, and only its refcnt each time."""
        entry = self._object(proc)
        if entry[2] is None:
            entry[2] = self._template(proc).fill([_json.encode(value) for value in self._own(proc)])
        n = proc.refs if refs is None else refs
        return entry[2], _REFCNT[n] if 0 <= n < len(_REFCNT) else b',"refcnt":%d}' % max(n, 0)

    def template_key(self, proc: Process) -> tuple:
        """What the processes of one template show alike: all but what _own gives (a storm's children: one)."""
        p = proc.image
        info = self.cache.cgroup_index.info_of(proc.container)
        return (_shared_fields(p) if p is not None else None, proc.not_found, proc.container, info, proc.cgroup,
                proc.cgroup_id, proc.cgroup_name, proc.previous is not None, self.tetragon_only, self.left_out)  # fmt: skip

    def own_object(self, proc: Process) -> dict:
        """The fields of a process's object (one with an image) that _own
        fills: those that differ between the processes of one template, as
        process() shows them (procscope's own fields aside)."""
        exec_id, pid, start_time, parent_exec_id, tid, nspid, _ = self._own(proc)
        out = {"exec_id": exec_id, "pid": pid, "start_time": start_time, "parent_exec_id": parent_exec_id, "tid": tid}
        info = self.cache.cgroup_index.info_of(proc.container) if proc.container is not None else None
        if info is not None and info.pod is not None:
            out["pod"] = {"container": {"pid": nspid}}  # pod_object's
        return out

    def kept(self, proc: Process, make: Callable[[Process], T]) -> T:
        """make(proc), made again only when the process shows something else
        (what a sink makes of a process: the agent's message)."""
        entry = self._object(proc)
        if entry[3] is None:
            entry[3] = make(proc)
        return entry[3]

    def _template(self, proc: Process) -> Template:
        """The object of every process that shows the same but what _own
        gives (a storm's children: one), encoded once."""

        def make() -> Template:
            # cap, ns and credentials as encoded for the first (most of a root process's object);
            # refcnt changes: written apart, last.
            body = msgspec.structs.replace(self._process(proc, _SLOTS, encoded=True), refcnt=msgspec.UNSET)
            return Template(json_escaped_bytes(_json.encode(body))[:-1])

        return self._templates.get(self.template_key(proc), make)

    def _own(self, proc: Process) -> tuple:
        """What a process object shows that differs between processes of one template, in _SLOTS' order."""
        p = proc.image
        return (
            self.exec_id(proc.key), proc.pid, self.time(proc.key.ktime), self.exec_id(proc.parent),
            p.tid if p is not None else 0, p.nspid if p is not None else 0,
            self.exec_id(proc.previous) if proc.previous is not None else None,
        )  # fmt: skip

    def _encoded_parts(self, p: ExecEvent) -> tuple:
        """cap, process_credentials and ns of an image, each encoded once for all the images that
        have them (nothing a process names: no escaping); UNSET: what its source did not say, or left_out."""
        return self._parts_of(p, self._parts, lambda x: msgspec.Raw(_json.encode(x)))

    def _plain_parts(self, p: ExecEvent) -> tuple:
        """The same as plain dicts."""
        return self._parts_of(p, self._plain, schema.written)

    def _parts_of(self, p: ExecEvent, memo: dict, convert: Callable) -> tuple:
        found = memo.get((p.creds, p.ns))
        if found is None:
            caps, credentials = self._credentials(p.creds) if p.creds.known else (msgspec.UNSET, msgspec.UNSET)
            ns = self._namespaces(p.ns) if any(msgspec.structs.astuple(p.ns)) else msgspec.UNSET  # none: not said
            found = tuple(msgspec.UNSET if x is msgspec.UNSET or n in self.left_out else convert(x)
                          for n, x in zip(PARTS, (caps, credentials, ns), strict=True))  # fmt: skip
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[p.creds, p.ns] = found
        return found

    def _object(self, proc: Process) -> list:
        """[what it shows, its object, that encoded without refcnt, a sink's (each None until asked)]."""
        # Everything the object shows but refcnt, compared by identity first.
        shows = (proc.image, proc.parent, proc.not_found, proc.container, proc.cgroup, proc.cgroup_id, proc.cgroup_name,
                 proc.previous, self.tetragon_only, self.left_out, self.wall_offset, self.node,
                 self.cache.cgroup_index.info_of(proc.container))  # fmt: skip
        hit = self._objects.get(proc)
        if hit is None or hit[0] != shows:
            if len(self._objects) >= MEMO_LIMIT:
                self._objects.clear()
            hit = self._objects[proc] = [shows, None, None, None]
        return hit

    def _process(self, proc: Process, own: tuple, encoded: bool = False) -> schema.Process:
        """The object; ``own``: what _own gives, or _SLOTS for a template; cap, ns and
        process_credentials encoded (``encoded``: _encoded_parts), else left for the caller."""
        exec_id, pid, start_time, parent_exec_id, tid, nspid, previous_exec_id = own
        p = proc.image
        if p is None:  # a placeholder: only its identity is known
            return schema.Process(exec_id=exec_id, pid=pid, flags="miss", start_time=start_time,
                                  parent_exec_id=parent_exec_id, refcnt=max(proc.refs, 0))  # fmt: skip
        parts: tuple = self._encoded_parts(p) if encoded else (msgspec.UNSET,) * 3
        info = self.cache.cgroup_index.info_of(proc.container) if proc.container is not None else None
        extra: schema.Own | UnsetType = msgspec.UNSET
        if not self.tetragon_only:
            extra = schema.Own(
                nspid=nspid,
                cgroup=schema.Cgroup(id=str(proc.cgroup_id), name=proc.cgroup_name, path=proc.cgroup),
                container=info.to_json() if info is not None else msgspec.UNSET,  # what a replay shows again
                previous_exec_id=previous_exec_id if proc.previous is not None else msgspec.UNSET,
                # argv[0] naming another program than the binary (Tetragon's arguments skip it)
                argv0=proc.argv0 or msgspec.UNSET,
            )
        return schema.Process(
            exec_id=exec_id,
            pid=pid,
            uid=p.uid,
            cwd=p.cwd,
            binary=p.binary,
            arguments=" ".join(p.args),
            flags=names.flag_text(p.flags | wire.FLAG_MISS if proc.not_found else p.flags),
            start_time=start_time,
            auid=p.auid,
            parent_exec_id=parent_exec_id,
            refcnt=max(proc.refs, 0),
            tid=tid,
            cap=parts[0],
            process_credentials=parts[1],
            ns=parts[2],
            user=schema.User(name=user_name(p.uid)),
            in_init_tree=bool(p.flags & wire.FLAG_IN_INIT_TREE),
            binary_properties=binary_properties(p),
            docker=proc.container.tetragon_id if proc.container is not None else msgspec.UNSET,
            pod=pod_object(info, nspid) if info is not None and info.pod is not None else msgspec.UNSET,
            own=extra,
        )

    def _credentials(self, c: Credentials) -> tuple[schema.Capabilities, schema.ProcessCredentials]:
        """(cap, process_credentials) of a process object: most processes share their credentials."""
        found = self._creds.get(c)
        if found is not None:
            return found
        caps = schema.Capabilities(
            permitted=names.tetragon_cap_names(c.caps.permitted),
            effective=names.tetragon_cap_names(c.caps.effective),
            inheritable=names.tetragon_cap_names(c.caps.inheritable),
        )
        known = lambda n: n if n != wire.UNKNOWN_ID else msgspec.UNSET  # noqa: E731 - the /proc scan cannot learn a nested namespace's owner gid
        user_ns = schema.UserNamespace(
            level=c.user_ns.level, uid=known(c.user_ns.uid), gid=known(c.user_ns.gid),
            ns=schema.Namespace(inum=c.user_ns.inum, is_host=c.user_ns.inum == self.cache.host_ns.get("user")),
        )  # fmt: skip
        credentials = schema.ProcessCredentials(
            uid=c.uid, gid=c.gid, euid=c.euid, egid=c.egid, suid=c.suid, sgid=c.sgid, fsuid=c.fsuid, fsgid=c.fsgid,
            securebits=names.securebit_names(c.securebits), caps=caps, user_ns=user_ns,
        )  # fmt: skip
        if len(self._creds) >= MEMO_LIMIT:
            self._creds.clear()
        found = self._creds[c] = caps, credentials
        return found

    def _namespaces(self, ns: Namespaces) -> dict[str, schema.Namespace]:
        found = self._ns.get(ns)
        if found is None:
            host = self.cache.host_ns
            if len(self._ns) >= MEMO_LIMIT:
                self._ns.clear()
            found = self._ns[ns] = {
                name: schema.Namespace(inum=inum, is_host=inum == host.get(name)) for name, inum in ns.items()
            }
        return found

    def record(self, kind: str, body: dict, ktime: int) -> dict:
        """A line of ``kind`` with ``body`` (one of procscope's own kinds, made elsewhere)."""
        return self._wrap(kind, body, ktime)

    def _wrap(self, kind: str, body: dict, ktime: int) -> dict:
        return {kind: body, "node_name": self.node, "time": self.time(ktime)}

    def _with_parent(self, body: dict, proc: Process, refs: int | None) -> dict:
        parent = self.cache.parent_of(proc)
        if parent is not None:
            body["parent"] = self.process(parent, refs)
        return body

    def exec_event(self, proc: Process, refs: Refs = NOW) -> dict:
        when = proc.image.time if proc.image else proc.key.ktime
        return self._wrap(EXEC, self._with_parent({"process": self.process(proc, refs[0])}, proc, refs[1]), when)

    def exit_event(self, ev: ExitEvent, proc: Process, refs: Refs = NOW) -> dict:
        body = {
            "process": self.process(proc, refs[0]),
            "signal": ev.signal_name,
            "status": ev.status,
            "time": self.time(ev.time),
        }
        if ev.core_dumped:
            body[EXTRA] = {"core_dumped": True}
        return self._wrap(EXIT, self._with_parent(body, proc, refs[1]), ev.time)

    # The same two as lines of JSON (json_bytes of the above), joined from the process objects
    # as process_json made them once: in a storm the two lines of every exec are ~8 KB each.
    def exec_line(self, proc: Process, refs: Refs = NOW) -> bytes:
        when = proc.image.time if proc.image else proc.key.ktime
        return b"".join((b'{"%s":{"process":' % EXEC.encode(), *self.process_json(proc, refs[0]), *self._parent_json(proc, refs[1]),
                         b'},"node_name":%s,"time":"%s"}' % (self._node_json, self.time(when).encode())))  # fmt: skip

    def exit_line(self, ev: ExitEvent, proc: Process, refs: Refs = NOW) -> bytes:
        when = self.time(ev.time).encode()
        return b"".join((
            b'{"%s":{"process":' % EXIT.encode(), *self.process_json(proc, refs[0]),
            b',"signal":%s,"status":%d,"time":"%s"%s' % (_signal_json(ev.signal), ev.status, when, _CORE_DUMPED if ev.core_dumped else b""),
            *self._parent_json(proc, refs[1]), b'},"node_name":%s,"time":"%s"}' % (self._node_json, when),
        ))  # fmt: skip

    def _parent_json(self, proc: Process, refs: int | None) -> tuple[bytes, ...]:
        parent = self.cache.parent_of(proc)
        return (b',"parent":', *self.process_json(parent, refs)) if parent is not None else ()

    def clone_event(self, ev: CloneEvent) -> dict:
        body = {
            "exec_id": self.exec_id(ev.key), "parent_exec_id": self.exec_id(ev.parent),
            "pid": ev.key.pid, "tid": ev.tid, "nspid": ev.nspid, "start_time": self.time(ev.key.ktime),
            "flags": names.flag_text(ev.flags),
        }  # fmt: skip
        return self._wrap(CLONE, body, ev.time)

    def creds_event(self, proc: Process, change: CredsChange) -> dict:
        """procscope_creds: the process (as it is now) and its credentials and namespaces before and after."""
        body = {
            "process": self.process(proc), "syscall": change.syscall,
            "old": self.creds_and_namespaces(change.old_creds, change.old_ns, change.old_sets),
            "new": self.creds_and_namespaces(change.creds, change.ns, change.sets),
        }  # fmt: skip
        return self._wrap(CREDS, body, change.time)

    def creds_and_namespaces(self, c: Credentials, ns: Namespaces, sets: CapSets | None = None) -> dict:
        return schema.written(schema.CredsSide(
            process_credentials=self._credentials(c)[1], ns=self._namespaces(ns),
            cap_sets=schema.CapSets(bounding=names.tetragon_cap_names(sets.bounding),
                                    ambient=names.tetragon_cap_names(sets.ambient)) if sets is not None else msgspec.UNSET,
        ))  # fmt: skip

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
        return self._wrap(THROTTLE, body, ev.time)

    def cgroup_event(self, ev: CgroupEvent) -> dict:
        body = {
            "op": ev.op_name, "pid": ev.pid, "nspid": ev.nspid, "flags": ev.flags, "cgroup_id": str(ev.cgroup_id),
            "tracker_id": str(ev.tracker_id), "level": ev.level, "hierarchy_id": ev.hierarchy_id,
            "name": ev.name, "path": ev.path,
        }  # fmt: skip
        return self._wrap(CGROUP, body, ev.time)

    def counters_event(self, c: Counters, ktime: int) -> dict:
        c.cache = self.cache.counters.as_dict()
        return self._wrap(COUNTERS, c.to_json(), ktime)


class Template:
    """A process object encoded once with a slot for each value that
    differs between processes of one template (Exporter._own's); filled,
    it is the object encoded, without its refcnt and closing brace."""

    def __init__(self, encoded: bytes):
        chunks = encoded.split(b"\x00")  # text, slot number, text, …
        self._format = b"%s".join(c.replace(b"%", b"%%") for c in chunks[::2])
        slots = [int(n) for n in chunks[1::2]]
        self._pick = lambda values: tuple(values[i] for i in slots)

    def fill(self, values: list[bytes]) -> bytes:
        return self._format % self._pick(values)


@functools.cache
def _signal_json(signal: int) -> bytes:
    return _json.encode(names.signal_name(signal))


def exec_id(node: str, key: ProcessKey) -> str:
    return exec_id_bytes(node, key).decode()


def exec_id_bytes(node: str, key: ProcessKey) -> bytes:
    """Tetragon's exec_id (base64 of node:ktime:pid), ASCII."""
    return binascii.b2a_base64(f"{node}:{key.ktime}:{key.pid}".encode(), newline=False)


def json_bytes(event: object) -> bytes:
    """One event as one line of JSON: valid UTF-8, no raw control character.
    msgspec's encoder: several times faster than json.dumps, and compact
    (no spaces), as Tetragon's own export."""
    return json_escaped_bytes(_json.encode(event))


def json_line(event: object) -> str:
    return json_bytes(event).decode()
