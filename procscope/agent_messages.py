"""Tetragon's JSON objects, as the exporter makes them, into Tetragon's gRPC
messages (procscope.api; agent_objects does the way back): what a gRPC
client gets is exactly what the JSON export writes. protojson's mapping
(agent_plan):
wrappers are plain values, 64-bit integers strings, enums names,
timestamps RFC 3339; procscope's own fields have no place in Tetragon's
messages and are left out, as tetra leaves them out of a file.

json_format.ParseDict does the same at 0.5-0.7 ms an exec event (a root
process's four lists of 41 capability names, each looked up in Python);
here the exporter's shared parts (capabilities, credentials, namespaces:
the same object for every process that has them) are converted once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor

from procscope.api import tetragon_pb2 as pb

from .agent_plan import CLASSES, MEMO, keep, plan
from .export import exec_id_bytes
from .templates import Templates

if TYPE_CHECKING:
    from procscope.probes.events import ProcessKey

    from .cache import Process
    from .export import Exporter
    from .stream import ProcessEvent


def _varint_of(n: int) -> bytes:
    """A non-negative integer, 7 bits a byte, the lowest first."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINTS = tuple(_varint_of(n) for n in range(1 << 14))  # two bytes at most: a key, a process's length
_LOW = tuple(bytes((n & 0x7F | 0x80, n >> 7 | 0x80)) for n in range(1 << 14))  # 14 bits, more to follow


def _varint(n: int) -> bytes:
    """The same, up to six bytes from the tables, 14 bits a lookup (a
    pid, nanoseconds, a second since 1970: a third of the time bytes()
    of each byte took); ValueError for a negative one."""
    if n < 0x4000:
        if n < 0:
            raise ValueError(f"a varint here is not negative: {n}")
        return _VARINTS[n]
    if n < 0x10000000:
        return _LOW[n & 0x3FFF] + _VARINTS[n >> 14]
    if n < 0x40000000000:
        return _LOW[n & 0x3FFF] + _LOW[n >> 14 & 0x3FFF] + _VARINTS[n >> 28]
    return _varint_of(n)


def _key(message: Any, name: str, length_delimited: bool = True) -> bytes:
    """The key of a field of ``message`` as encoded: its number, its wire type."""
    return _VARINTS[message.DESCRIPTOR.fields_by_name[name].number << 3 | (2 if length_delimited else 0)]


def _delimited(key: bytes, data: bytes) -> bytes:
    """A field (its key) holding a message serialized apart: its key, its length, its bytes."""
    return b"".join((key, _varint(len(data)), data))


# GetEventsResponse's fields that hold an exec and an exit, and theirs that hold the process and its
# parent (ProcessExit's numbers are ProcessExec's); the parts the exporter shares, by name.
_EXEC, _EXIT = _key(pb.GetEventsResponse, "process_exec"), _key(pb.GetEventsResponse, "process_exit")
_PROCESS_FIELD, _PARENT_FIELD = _key(pb.ProcessExec, "process"), _key(pb.ProcessExec, "parent")
assert (_key(pb.ProcessExit, "process"), _key(pb.ProcessExit, "parent")) == (_PROCESS_FIELD, _PARENT_FIELD)
_SHARED = tuple((f.name, _key(pb.Process, f.name)) for f in pb.Process.DESCRIPTOR.fields if f.message_type
                and f.message_type.full_name in CLASSES)  # fmt: skip


# What differs between the processes of one template (Exporter.own_object's fields), and an
# event's own fields, encoded here: a message made for each cost more than the rest of the event.
_EXEC_ID, _PID, _START_TIME, _PARENT_EXEC_ID, _TID, _POD = (
    _key(pb.Process, name) for name in ("exec_id", "pid", "start_time", "parent_exec_id", "tid", "pod")
)
_REFCNT = _key(pb.Process, "refcnt", False)
_POD_CONTAINER, _CONTAINER_PID = _key(pb.Pod, "container"), _key(pb.Container, "pid")
_SIGNAL, _STATUS, _EXIT_TIME = _key(pb.ProcessExit, "signal"), _key(pb.ProcessExit, "status", False), \
    _key(pb.ProcessExit, "time")  # fmt: skip
_TIME = _key(pb.GetEventsResponse, "time")


def _refcnt(n: int) -> bytes:
    """The refcnt field, left out when 0 (as protobuf writes it)."""
    return _REFCNT + _varint(n) if n > 0 else b""


_REFCNTS = tuple(_refcnt(n) for n in range(1024))


def _string(key: bytes, text: str) -> bytes:
    return _delimited(key, text.encode())


def _wrapped_value(value: int) -> bytes:
    """A UInt32Value field's bytes after its key: present, its value left out when 0 (as protobuf writes it)."""
    if not value:
        return b"\0"
    inner = _varint(value)
    return _VARINTS[len(inner) + 1] + b"\x08" + inner


# A second, encoded (events come in bursts within one): its field, and the stamp's start when the
# nanoseconds take five bytes (three of four times): its length, that field, the nanos' key.
_seconds_field: dict[int, tuple[bytes, bytes]] = {}
_last_stamp: tuple[int, bytes] = (-1, b"")  # the last time and its stamp: an exec's time is its process's start


def _stamp(wall_ns: int) -> bytes:
    """A Timestamp's message body, as protobuf serializes it (a zero left out), with its length first."""
    global _last_stamp
    last_ns, stamp = _last_stamp
    if wall_ns == last_ns:
        return stamp
    seconds, nanos = divmod(wall_ns, 1_000_000_000)
    found = _seconds_field.get(seconds)
    if found is None:
        if len(_seconds_field) >= 4096:
            _seconds_field.clear()
        field = b"\x08" + _varint(seconds) if seconds else b""
        found = _seconds_field[seconds] = field, _VARINTS[len(field) + 6] + field + b"\x10"
    if nanos >= 0x10000000:  # one join, not five steps
        stamp = b"".join((found[1], _LOW[nanos & 0x3FFF], _LOW[nanos >> 14 & 0x3FFF], _VARINTS[nanos >> 28]))
    else:
        body = found[0] + b"\x10" + _varint(nanos) if nanos else found[0]
        stamp = _VARINTS[len(body)] + body
    _last_stamp = wall_ns, stamp
    return stamp


def _clear(message: Any, fields: dict) -> None:
    """Clear ``fields`` (an object's, by name; a dict: some of a message's fields) from ``message``."""
    for name, value in fields.items():
        if isinstance(value, dict):
            if message.HasField(name):
                _clear(getattr(message, name), value)
        else:
            message.ClearField(name)


_seconds: dict[str, int] = {}  # "2026-12-06T14:12:49" → its Unix time: events share their second


def _time(text: str) -> timestamp_pb2.Timestamp:
    """RFC 3339 as the exporter writes it (UTC, Z, up to nine digits); Timestamp's own
    parser, through strptime, for anything else."""
    day_second, dot, rest = text.partition(".")
    if len(day_second) == 19 and dot and 2 <= len(rest) <= 10 and rest.endswith("Z") and rest[:-1].isdigit():
        seconds = _seconds.get(day_second)
        if seconds is None:
            if len(_seconds) > 4096:
                _seconds.clear()
            t = timestamp_pb2.Timestamp()
            t.FromJsonString(day_second + "Z")
            seconds = _seconds[day_second] = t.seconds
        return timestamp_pb2.Timestamp(seconds=seconds, nanos=int(rest[:-1].ljust(9, "0")))
    t = timestamp_pb2.Timestamp()
    t.FromJsonString(text)
    return t


class Converter:
    def __init__(self) -> None:
        self._memo: dict[int, tuple[dict, Any]] = {}
        self._templates: Templates[bytes] = Templates(MEMO)  # its processes' message but their own fields
        self._nodes: dict[str, bytes] = {}  # the node_name field, serialized
        self._parts: dict[int, tuple[Any, bytes]] = {}  # the shared parts' messages, serialized
        self._parent_ids: dict[tuple[str, ProcessKey], bytes] = {}  # parent_exec_id, serialized, by node and key
        self._makers: dict[Exporter, Callable[[Process], bytes]] = {}  # _process_bytes for each exporter

    def frames(self, events: Sequence[ProcessEvent], framed: bool = True) -> list[bytes]:
        """Each event's GetEventsResponse, serialized (``framed``: as one
        gRPC message on the wire, its length first): _messages' one by one."""
        parts: list[bytes] = []
        ends: list[int] = []
        self._messages(events, framed, parts, ends)
        out, start = [], 0
        for end in ends:
            out.append(b"".join(parts[start:end]))
            start = end
        return out

    def joined(self, events: Sequence[ProcessEvent]) -> bytes:
        """The events' gRPC messages on the wire, one after the other in one
        bytes: what a client that takes every event is sent of a batch (each
        message apart cost a join here, and a step each on the connection's
        thread)."""
        parts: list[bytes] = []
        self._messages(events, True, parts, None)
        return b"".join(parts)

    def _messages(self, events: Sequence[ProcessEvent], framed: bool, out: list[bytes], ends: list[int] | None) -> None:
        """Each event's GetEventsResponse, serialized, as parts added to ``out`` (where
        each one's end: ``ends``), that response() makes
        of exporter.exec_event(proc, refs) (exit None) or exit_event(exit,
        proc, refs); a batch's at once: what its processes show but refcnt
        does not change within it (EventStream.feed writes a batch's events
        before anything could change them), so each process's message is
        found once (a storm's parent: once, not with each child's exec and
        exit). Each is joined from its processes' messages, serialized once
        while the exporter keeps its object (an exit's process after its
        exec). Protobuf's encoding is made to be joined so (a message: its
        fields in any order; a field of a message: its key, its length, its
        bytes). Written out in one loop: in a storm, among the cache's work,
        each call and step here costs about three times what it does in a
        loop of its own."""
        bodies: dict[Process, bytes] = {}
        exporter: Exporter | None = None
        for e in events:
            if e.exporter is not exporter:
                exporter = e.exporter
                kept, make, node = exporter.kept, self._maker(exporter), self._node(exporter.node)
            proc, exit, offset = e.proc, e.exit, e.exporter.wall_offset
            body = bodies.get(proc)
            if body is None:
                body = bodies[proc] = kept(proc, make)
            own, parents = e.refs
            n = proc.refs if own is None else own
            refcnt = _REFCNTS[n] if 0 <= n < len(_REFCNTS) else _refcnt(n)  # a storm's parent's: thousands
            length = len(body) + len(refcnt)
            head = _VARINTS[length] if length < 0x4000 else _varint(length)
            first = len(out)  # the event's field, filled last
            out += (b"", _PROCESS_FIELD, head, body, refcnt)
            size = len(_PROCESS_FIELD) + len(head) + length
            parent = e.parent
            if parent is not None:
                body = bodies.get(parent)
                if body is None:
                    body = bodies[parent] = kept(parent, make)
                n = parent.refs if parents is None else parents
                refcnt = _REFCNTS[n] if 0 <= n < len(_REFCNTS) else _refcnt(n)
                length = len(body) + len(refcnt)
                head = _VARINTS[length] if length < 0x4000 else _varint(length)
                out += (_PARENT_FIELD, head, body, refcnt)
                size += len(_PARENT_FIELD) + len(head) + length
            if exit is None:
                stamp = _stamp((proc.image.time if proc.image else proc.key.ktime) + offset)
            else:  # the event's time, and the exit's own
                stamp = _stamp(exit.time + offset)
                if exit.signal and (signal := exit.signal_name):
                    text = _string(_SIGNAL, signal)
                    out.append(text)
                    size += len(text)
                if exit.status:
                    status = _varint(exit.status)
                    out += (_STATUS, status)
                    size += len(_STATUS) + len(status)
                out += (_EXIT_TIME, stamp)
                size += len(_EXIT_TIME) + len(stamp)
            out += (node, _TIME, stamp)
            head = (_EXEC if exit is None else _EXIT) + _varint(size)
            if framed:  # as gRPC sends it: not compressed, its length, itself (agent_server.frame)
                head = b"\0" + (len(head) + size + len(node) + len(_TIME) + len(stamp)).to_bytes(4, "big") + head
            out[first] = head
            if ends is not None:
                ends.append(len(out))

    def _maker(self, exporter: Exporter) -> Callable[[Process], bytes]:
        """_process_bytes for the exporter (what it keeps for each process)."""
        make = self._makers.get(exporter)
        if make is None:
            make = self._makers[exporter] = functools.partial(self._process_bytes, exporter)
        return make

    def _node(self, name: str) -> bytes:
        """The node_name field, serialized."""
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = pb.GetEventsResponse(node_name=name).SerializeToString()
        return node

    def _process_bytes(self, exporter: Exporter, proc: Process) -> bytes:
        """The process's message without refcnt, serialized: the template of
        the processes that show the same (a storm's children), then what is
        its own (the template has none of it: a field joined later would be
        merged into the template's, not put in its place)."""
        if proc.image is None:  # a placeholder: few fields, converted as they are
            return self._without_refcnt(exporter.process_plain(proc))
        key = exporter.template_key(proc)
        template = self._templates.get(key, lambda: self._without_refcnt(exporter.process_plain(proc),
                                                                         exporter.own_object(proc)))  # fmt: skip
        p = proc.image
        exec_id = exec_id_bytes(exporter.node, proc.key)  # once a process: the exporter's memo is for the JSON
        parent = exporter.node, proc.parent
        parent_id = self._parent_ids.get(parent)  # a storm's children share their parent's
        if parent_id is None:
            parent_id = keep(self._parent_ids, parent, _string(_PARENT_EXEC_ID, exporter.exec_id(proc.parent)))
        pid = _wrapped_value(proc.pid)
        own = [template, _EXEC_ID, _VARINTS[len(exec_id)], exec_id, _PID, pid, _START_TIME,
               _stamp(proc.key.ktime + exporter.wall_offset), parent_id,
               _TID, pid if p.tid == proc.pid else _wrapped_value(p.tid)]  # fmt: skip
        if proc.container is not None:
            info = exporter.cache.cgroup_index.info_of(proc.container)
            if info is not None and info.pod is not None:  # the pod's container pid (pod_object's): the nspid
                container_pid = _CONTAINER_PID + _wrapped_value(p.nspid)
                container = _POD_CONTAINER + _VARINTS[len(container_pid)] + container_pid
                own += (_POD, _VARINTS[len(container)], container)
        return b"".join(own)

    def _without_refcnt(self, plain: dict, own: dict | None = None) -> bytes:
        """A process object's message without refcnt (and without the fields of ``own``), serialized."""
        fields = self._fields(pb.Process.DESCRIPTOR, plain)
        fields.pop("refcnt", None)  # as when the object was made: the current one follows it
        # The shared parts joined as serialized once (copying their messages in was half the time).
        shared = [_delimited(key, self._serialized(fields.pop(name))) for name, key in _SHARED if name in fields]
        message = pb.Process(**fields)
        if own is not None:
            _clear(message, own)
        return message.SerializeToString() + b"".join(shared)

    def _serialized(self, message: Any) -> bytes:
        """A shared part's message (kept in the memo while its object lives), serialized once."""
        kept = self._parts.get(id(message))
        if kept is None or kept[0] is not message:
            kept = keep(self._parts, id(message), (message, message.SerializeToString()))
        return kept[1]

    def response(self, obj: dict) -> pb.GetEventsResponse:
        """A GetEventsResponse from one line's object (ValueError: a value
        that does not fit its field, which the exporter never makes)."""
        return pb.GetEventsResponse(**self._fields(pb.GetEventsResponse.DESCRIPTOR, obj))

    def _fields(self, desc: Descriptor, obj: dict) -> Any:
        """The message's constructor arguments (a dict), or for a shared part the message."""
        shared = desc.full_name in CLASSES
        if shared:
            kept = self._memo.get(id(obj))
            if kept is not None and kept[0] is obj:
                return kept[1]
        fields = plan(desc)
        out: dict[str, Any] = {}
        for name, value in obj.items():
            how = fields.get(name)
            if how is None:
                continue  # procscope's own ("procscope", nspid...): not Tetragon's
            kind, detail, repeated = how
            if kind == "plain":
                out[name] = value
            elif kind == "message":
                out[name] = [self._fields(detail, v) for v in value] if repeated else self._fields(detail, value)
            elif kind == "wrapper":
                out[name] = {"value": value}
            elif kind == "enum":  # a name Tetragon's enum lacks is left out, as protojson's reader would refuse it
                out[name] = [detail[v] for v in value if v in detail] if repeated else detail.get(value, 0)
            elif kind == "wide":
                out[name] = [int(v) for v in value] if repeated else int(value)
            else:
                out[name] = _time(value)
        if shared:  # made into its message once: a process's message copies it (in C)
            return keep(self._memo, id(obj), (obj, CLASSES[desc.full_name](**out)))[1]
        return out
