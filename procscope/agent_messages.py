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

from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from procscope.api import tetragon_pb2 as pb

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
