"""Tetragon's JSON objects, as the exporter makes them, into Tetragon's gRPC
messages (procscope.api), and back (json_object, for the monitor reading
another machine): what a gRPC client gets is exactly what the JSON
export writes. protojson's mapping, read from the messages' descriptors:
wrappers are plain values, 64-bit integers strings, enums names,
timestamps RFC 3339; procscope's own fields have no place in Tetragon's
messages and are left out, as tetra leaves them out of a file.

json_format.ParseDict does the same at 0.5-0.7 ms an exec event (a root
process's four lists of 41 capability names, each looked up in Python);
here the exporter's shared parts (capabilities, credentials, namespaces:
the same object for every process that has them) are converted once. Back,
json_format.MessageToJson takes 0.24 ms a message; json_object, 10 times
less."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from procscope.api import tetragon_pb2 as pb

if TYPE_CHECKING:
    from procscope.probes.events import ExitEvent

    from .cache import Process
    from .export import Exporter

_WRAPPERS = {"google.protobuf.UInt32Value", "google.protobuf.Int32Value", "google.protobuf.BoolValue"}
_WIDE = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_FIXED64}
MEMO = 8192  # converted objects kept (with the object: an id is not reused while it lives)
# The parts the exporter makes once and shares (Exporter._plain_parts); all else is new each event.
_CLASSES = {"tetragon.Capabilities": pb.Capabilities, "tetragon.ProcessCredentials": pb.ProcessCredentials,
            "tetragon.Namespaces": pb.Namespaces}  # fmt: skip

# How each field of a message is converted: (kind, detail, repeated).
_Plan = dict[str, tuple[str, Any, bool]]
_plans: dict[str, _Plan] = {}


def _plan(desc: Descriptor) -> _Plan:
    plan = _plans.get(desc.full_name)
    if plan is not None:
        return plan
    plan = {}
    for f in desc.fields:
        kind: str
        detail: Any = None
        if f.message_type is not None:
            name = f.message_type.full_name
            if f.message_type.GetOptions().map_entry:
                kind = "plain"
            elif name in _WRAPPERS:
                kind = "wrapper"
            elif name == "google.protobuf.Timestamp":
                kind = "time"
            else:
                kind, detail = "message", f.message_type
        elif f.enum_type is not None:
            kind, detail = "enum", {v.name: v.number for v in f.enum_type.values}
        elif f.type in _WIDE:
            kind = "wide"
        else:
            kind = "plain"
        plan[f.name] = (kind, detail, f.is_repeated)
    _plans[desc.full_name] = plan
    return plan


# The fields of GetEventsResponse that hold an exec and an exit; each refcnt a Process field may have, serialized.
_EXEC = pb.GetEventsResponse.DESCRIPTOR.fields_by_name["process_exec"].number
_EXIT = pb.GetEventsResponse.DESCRIPTOR.fields_by_name["process_exit"].number
_REFCNT = tuple(pb.Process(refcnt=n).SerializeToString() for n in range(64))
_SHARED = tuple((f.name, f.number) for f in pb.Process.DESCRIPTOR.fields if f.message_type
                and f.message_type.full_name in _CLASSES)  # fmt: skip


def _delimited(number: int, data: bytes) -> bytes:
    """Field ``number`` holding a message serialized apart: its key, its length, its bytes."""
    n = len(data)
    return b"".join((_VARINTS[number << 3 | 2], _VARINTS[n] if n < len(_VARINTS) else _varint(n), data))


def _varint(n: int) -> bytes:
    """A non-negative integer, 7 bits a byte, the lowest first."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_VARINTS = tuple(_varint(n) for n in range(1 << 14))  # two bytes at most: a key, a process's length


def _stamp(wall_ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=wall_ns // 1_000_000_000, nanos=wall_ns % 1_000_000_000)


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
        self._templates: dict[tuple, bytes] = {}  # by Exporter.template_key: its processes' message but their own
        self._nodes: dict[str, bytes] = {}  # the node_name field, serialized
        self._parts: dict[int, tuple[Any, bytes]] = {}  # the shared parts' messages, serialized

    def process_event(self, exporter: Exporter, proc: Process, exit: ExitEvent | None) -> bytes:
        """The GetEventsResponse, serialized, that response() makes of
        exporter.exec_event(proc) (exit None) or exit_event(exit, proc):
        joined from its processes' messages, each serialized once while the
        exporter keeps its object (a storm's parent with every child, an
        exit's process after its exec). Protobuf's encoding is made to be
        joined so (a message: its fields in any order; a field of a message:
        its key, its length, its bytes): offline, in a storm, 22 µs an
        exec and 9 an exit, half of building each message."""
        parts = [self._process_field(1, exporter, proc)]
        parent = exporter.cache.parent_of(proc)
        if parent is not None:
            parts.append(self._process_field(2, exporter, parent))
        when = (proc.image.time if proc.image else proc.key.ktime) if exit is None else exit.time
        stamp = _stamp(when + exporter.wall_offset)  # the event's, and an exit's own
        if exit is not None:
            parts.append(pb.ProcessExit(signal=exit.signal_name, status=exit.status, time=stamp).SerializeToString())
        node = self._nodes.get(exporter.node)
        if node is None:
            node = self._nodes[exporter.node] = pb.GetEventsResponse(node_name=exporter.node).SerializeToString()
        field = _EXEC if exit is None else _EXIT
        return b"".join(
            (_delimited(field, b"".join(parts)), node, pb.GetEventsResponse(time=stamp).SerializeToString())
        )

    def _process_field(self, number: int, exporter: Exporter, proc: Process) -> bytes:
        """Field ``number`` (process, parent) holding the process's message, with its refcnt."""
        data = exporter.kept(proc, lambda p: self._process_bytes(exporter, p))
        refs = max(proc.refs, 0)
        return _delimited(
            number, data + (_REFCNT[refs] if refs < len(_REFCNT) else pb.Process(refcnt=refs).SerializeToString())
        )

    def _process_bytes(self, exporter: Exporter, proc: Process) -> bytes:
        """The process's message without refcnt, serialized: the template of
        the processes that show the same (a storm's children), then what is
        its own (the template has none of it: a field joined later would be
        merged into the template's, not put in its place)."""
        if proc.image is None:  # a placeholder: few fields, converted as they are
            return self._without_refcnt(exporter.process_plain(proc))
        key = exporter.template_key(proc)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= MEMO:
                self._templates.clear()
            template = self._templates[key] = self._without_refcnt(exporter.process_plain(proc),
                                                                   exporter.own_object(proc))  # fmt: skip
        own = pb.Process(**self._fields(pb.Process.DESCRIPTOR, exporter.own_object(proc)))
        return template + own.SerializeToString()

    def _without_refcnt(self, plain: dict, own: dict | None = None) -> bytes:
        """A process object's message without refcnt (and without the fields of ``own``), serialized."""
        fields = self._fields(pb.Process.DESCRIPTOR, plain)
        fields.pop("refcnt", None)  # as when the object was made: the current one follows it
        # The shared parts joined as serialized once (copying their messages in was half the time).
        shared = [_delimited(number, self._serialized(fields.pop(name))) for name, number in _SHARED if name in fields]
        message = pb.Process(**fields)
        if own is not None:
            _clear(message, own)
        return message.SerializeToString() + b"".join(shared)

    def _serialized(self, message: Any) -> bytes:
        """A shared part's message (kept in the memo while its object lives), serialized once."""
        kept = self._parts.get(id(message))
        if kept is None or kept[0] is not message:
            if len(self._parts) >= MEMO:
                self._parts.clear()
            kept = self._parts[id(message)] = (message, message.SerializeToString())
        return kept[1]

    def response(self, obj: dict) -> pb.GetEventsResponse:
        """A GetEventsResponse from one line's object (ValueError: a value
        that does not fit its field, which the exporter never makes)."""
        return pb.GetEventsResponse(**self._fields(pb.GetEventsResponse.DESCRIPTOR, obj))

    def _fields(self, desc: Descriptor, obj: dict) -> Any:
        """The message's constructor arguments (a dict), or for a shared part the message."""
        shared = desc.full_name in _CLASSES
        if shared:
            kept = self._memo.get(id(obj))
            if kept is not None and kept[0] is obj:
                return kept[1]
        plan = _plan(desc)
        out: dict[str, Any] = {}
        for name, value in obj.items():
            how = plan.get(name)
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
            message = _CLASSES[desc.full_name](**out)
            if len(self._memo) >= MEMO:
                self._memo.clear()
            self._memo[id(obj)] = (obj, message)
            return message
        return out


_enum_names: dict[str, dict[int, str]] = {}
_objects: dict[tuple[str, bytes], dict] = {}  # shared parts' objects, by their messages' bytes (read only)


def json_object(message: Any) -> dict:
    """The object protojson makes of ``message`` (json_format.MessageToDict with the proto's
    field names): what Tetragon's JSON export holds for it."""
    desc = message.DESCRIPTOR
    shared = desc.full_name in _CLASSES  # the same capabilities etc. in many events: made once
    if shared:
        key = (desc.full_name, message.SerializeToString())
        if (kept := _objects.get(key)) is not None:
            return kept
    plan = _plan(desc)
    out: dict[str, Any] = {}
    for f, value in message.ListFields():
        kind, detail, repeated = plan[f.name]
        if kind == "plain":
            out[f.name] = dict(value) if f.message_type is not None else list(value) if repeated else value
        elif kind == "message":
            out[f.name] = [json_object(v) for v in value] if repeated else json_object(value)
        elif kind == "wrapper":
            out[f.name] = value.value
        elif kind == "enum":
            names = _enum_names.get(f.enum_type.full_name)
            if names is None:
                names = _enum_names[f.enum_type.full_name] = {n: name for name, n in detail.items()}
            out[f.name] = [names.get(v, v) for v in value] if repeated else names.get(value, value)
        elif kind == "wide":
            out[f.name] = [str(v) for v in value] if repeated else str(value)
        else:
            out[f.name] = [v.ToJsonString() for v in value] if repeated else value.ToJsonString()
    if shared:
        if len(_objects) >= MEMO:
            _objects.clear()
        _objects[key] = out
    return out
