"""Decoding is defensive: short or unknown records raise DecodeError (the
collector counts them), never anything else."""

import struct

import pytest

from procscope.probes import wire
from procscope.probes.decode import DecodeError, decode
from procscope.probes.events import CgroupEvent, ExitEvent, ProcessKey


def test_exit_record_round_trip():
    raw = wire.EXIT.pack(wire.OP_EXIT, 0, wire.EXIT.size, 123, 42, 456, (9 | 0x80), 43, 7_000_000)
    ev = decode(raw)
    assert ev == ExitEvent(123, ProcessKey(42, 456), 43, 0x89, 7_000_000)
    assert (ev.signal_name, ev.core_dumped, ev.status) == ("SIGKILL", True, 0)


def test_cgroup_record_round_trip():
    header = wire.CGROUP_HEADER.pack(
        wire.OP_CGROUP, 0, wire.CGROUP_HEADER.size + 9, 123, 0, 0,
        wire.CGROUP_ATTACH_TASK, 42, 7, 0, 123, 8153, 8153,
        0, 4, 2, b"inner",
    )  # fmt: skip
    ev = decode(header + b"/a/inner\0")
    assert ev == CgroupEvent(123, wire.CGROUP_ATTACH_TASK, 42, 7, 0, 8153, 8153, 2, 4, "inner", "/a/inner")
    assert ev.op_name == "ATTACH_TASK"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes([wire.OP_EXECVE]) + b"\0" * 20,
        bytes([wire.OP_CLONE, 0, 0]),
        bytes([99]) * 64,
        bytes([wire.OP_CGROUP]) * 100,
    ],
)
def test_bad_records_raise_decode_error(raw):
    with pytest.raises(DecodeError):
        decode(raw)


def test_exec_sizes_beyond_the_record_are_rejected():
    header = bytearray(wire.EXECVE_HEADER.size)
    header[0] = wire.OP_EXECVE
    struct.pack_into("<HHHH", header, wire.EXECVE_HEADER.size - 8, 100, 0, 0, 0)  # path of 100 bytes, none sent
    with pytest.raises(DecodeError, match="exceed"):
        decode(bytes(header))
