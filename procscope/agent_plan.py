"""How Tetragon's gRPC messages and the JSON objects protojson makes of them
correspond, field by field (read from the messages' descriptors), shared by
both directions: agent_messages (objects into messages, for the agent) and
agent_objects (messages back into objects, for the monitor reading another
machine)."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from procscope.api import tetragon_pb2 as pb

_WRAPPERS = {"google.protobuf.UInt32Value", "google.protobuf.Int32Value", "google.protobuf.BoolValue"}
_WIDE = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_FIXED64}
T = TypeVar("T")
MEMO = 8192  # converted objects kept (with the object: an id is not reused while it lives)
# The parts the exporter makes once and shares (Exporter._plain_parts); all else is new each event.
CLASSES = {"tetragon.Capabilities": pb.Capabilities, "tetragon.ProcessCredentials": pb.ProcessCredentials,
            "tetragon.Namespaces": pb.Namespaces}  # fmt: skip

# How each field of a message is converted: (kind, detail, repeated).
Plan = dict[str, tuple[str, Any, bool]]
_plans: dict[str, Plan] = {}


def plan(desc: Descriptor) -> Plan:
    found = _plans.get(desc.full_name)
    if found is not None:
        return found
    out: Plan = {}
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
        out[f.name] = (kind, detail, f.is_repeated)
    _plans[desc.full_name] = out
    return out


def keep(memo: dict, key: Any, value: T) -> T:
    """``value``, kept in ``memo`` under ``key`` (emptied once it holds MEMO)."""
    if len(memo) >= MEMO:
        memo.clear()
    memo[key] = value
    return value
