"""A snapshot file's document (`procscope snapshot -f json`): read whole,
at most MAX_SNAPSHOT_BYTES, and checked to be a procscope snapshot of the
version this procscope reads, before any of it is used (a corrupt one is
refused whole: its processes cannot be read in part); and what its header
says besides the processes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import BinaryIO

from .records import BadRecord, number, parse_time, text

SNAPSHOT_SCHEMA = "procscope-snapshot"
SNAPSHOT_VERSION = 1
MAX_SNAPSHOT_BYTES = 1 << 30


class SnapshotError(ValueError):
    """The document cannot be used (one line: what, and the fix)."""


def load(path: str, f: BinaryIO) -> dict:
    """The document of the snapshot ``f`` (read to its end and closed), named ``path`` in what is said."""
    with f:
        data = f.read(MAX_SNAPSHOT_BYTES + 1)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{path}: a snapshot larger than {MAX_SNAPSHOT_BYTES >> 30} GiB is not read")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        lineno = getattr(exc, "lineno", 1)
        raise SnapshotError(f"{path}:{lineno}: corrupt snapshot ({exc}); it cannot be read in part") from None
    if not isinstance(doc, dict) or doc.get("schema") != SNAPSHOT_SCHEMA:
        raise SnapshotError(f'{path}: not a procscope snapshot (no "schema": "{SNAPSHOT_SCHEMA}")')
    version = doc.get("version")
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"{path}: snapshot schema version {version!r} is not supported (this procscope reads "
            f"version {SNAPSHOT_VERSION}); use the procscope version that wrote it"
        )
    return doc


@dataclass
class Header:
    node: str
    offset: int | None  # wall clock − boot clock when taken (None: not said)
    boot: int  # the boot clock when taken
    host_ns: dict[str, int]
    counters: dict | None  # the collector's counters then
    recent: list[dict]  # the last events, as exported


def header(doc: dict) -> Header:
    """What the document says besides its processes (BadRecord, KeyError...: malformed)."""
    clock, host_ns, events, processes = (doc.get(k, d) for k, d in (("clock", {}), ("host_ns", {}), ("events", []),
                                                                     ("processes", [])))  # fmt: skip
    for name, value, kind in (("clock", clock, dict), ("host_ns", host_ns, dict), ("events", events, list),
                              ("processes", processes, list)):  # fmt: skip
        if not isinstance(value, kind):
            raise BadRecord(f"{name} is not a{'n object' if kind is dict else ' list'}")
    boot = number(clock.get("boot_ns", 0), 62)
    counters = doc.get("counters")
    return Header(text(doc.get("node_name", "")), parse_time(text(clock["wall"])) - boot if "wall" in clock else None,
                  boot, {text(k): number(v) for k, v in host_ns.items()}, counters if isinstance(counters, dict) else None,
                  [e for e in events if isinstance(e, dict)])  # fmt: skip
