"""Tetragon's JSON read back, one value at a time: what a recording holds
is input like any other, so every number is checked to fit the kernel's
field, every string made valid text, exec ids and times parsed or refused
(BadRecord names what was wrong)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from procscope.probes import names, wire
from procscope.probes.events import (
    NAMESPACES,
    Capabilities,
    CapSets,
    Credentials,
    Namespaces,
    ProcessKey,
    UserNamespace,
)
from procscope.probes.text import clean

from . import schema
from .clock import parse_rfc3339

_S = TypeVar("_S", bound=msgspec.Struct)

_fast = msgspec.json.Decoder().decode


def decode(text: str):
    """What json.loads gives (msgspec's, several times faster; json's
    where msgspec refuses: lone surrogates, huge numbers, its messages)."""
    try:
        return _fast(text)
    except msgspec.DecodeError:
        return json.loads(text)


def read(value: object, kind: type[_S]) -> _S:
    """A decoded JSON value as one of schema's Structs; BadRecord naming the field that does not fit."""
    try:
        return msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRecord(str(exc)) from None


def credentials(pc: schema.ProcessCredentials, cap: schema.Capabilities, uid: int) -> Credentials:
    """Tetragon's process_credentials (and cap) → Credentials; ids missing: ``uid``; neither given
    (schema.NO_CREDENTIALS, schema.NO_CAPS): not known."""
    uns = pc.user_ns
    ids = (pc.uid, pc.gid, pc.suid, pc.sgid, pc.euid, pc.egid, pc.fsuid, pc.fsgid)
    uid_, gid, suid, sgid, euid, egid, fsuid, fsgid = (uid if n is UNSET else n for n in ids)
    return Credentials(
        uid_, gid, suid, sgid, euid, egid, fsuid, fsgid, names.securebit_mask(pc.securebits),
        Capabilities(names.cap_mask(cap.permitted), names.cap_mask(cap.effective), names.cap_mask(cap.inheritable)),
        UserNamespace(uns.level, wire.UNKNOWN_ID if uns.uid is UNSET else uns.uid,
                      wire.UNKNOWN_ID if uns.gid is UNSET else uns.gid, uns.ns.inum),
        pc is not schema.NO_CREDENTIALS or cap is not schema.NO_CAPS,
    )  # fmt: skip


def cap_sets(sets: schema.CapSets | UnsetType) -> CapSets | None:
    """The bounding and ambient sets of a procscope_creds side, when recorded."""
    return None if sets is UNSET else CapSets(names.cap_mask(sets.bounding), names.cap_mask(sets.ambient))


def namespaces(ns: dict[str, schema.Namespace]) -> Namespaces:
    none = schema.Namespace()
    return Namespaces(*(ns.get(n, none).inum for n in NAMESPACES))


class BadRecord(ValueError):
    """One record that cannot be understood."""


# A boot clock past this (146 years of uptime) is no kernel's: times made from it would not be dates.
MAX_KTIME = 1 << 62


_exec_ids: dict[str, tuple[str, ProcessKey]] = {}  # read already: a parent's id comes with each child, an exit's


def parse_exec_id(text: str) -> tuple[str, ProcessKey]:
    if type(text) is not str:  # what a hostile line holds: said as bad
        return _parse_exec_id(text)
    found = _exec_ids.get(text)
    if found is None:
        found = _parse_exec_id(text)
        if len(_exec_ids) >= 8192:
            _exec_ids.clear()
        _exec_ids[text] = found
    return found


def _parse_exec_id(text: str) -> tuple[str, ProcessKey]:
    try:
        node, ktime, pid = base64.b64decode(text, validate=True).decode().rsplit(":", 2)
        key = ProcessKey(int(pid), int(ktime))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise BadRecord(f"bad exec_id {text!r}") from None
    if not (0 <= key.ktime < MAX_KTIME and 0 <= key.pid < 1 << 32):
        raise BadRecord(f"exec_id {text!r} holds a time or pid no kernel gives")
    return node, key


def parse_time(text: str) -> int:
    """RFC 3339 (UTC) with up to nanoseconds → wall-clock ns."""
    try:
        return parse_rfc3339(text)
    except (ValueError, AttributeError):
        raise BadRecord(f"bad time {text!r}") from None


_LIMITS = {32: 1 << 32, 64: 1 << 64, 8: 1 << 8, 62: 1 << 62}


def number(value, bits: int = 32) -> int:
    """A recorded number that must fit the kernel's field."""
    if type(value) is int and 0 <= value < _LIMITS[bits]:
        return value  # nearly all of them: no conversion
    n = int(value)
    if not 0 <= n < 1 << bits:
        raise BadRecord(f"{value!r} is out of range")
    return n


def text(value) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"expected a string, not {type(value).__name__}")
    return clean(value)
