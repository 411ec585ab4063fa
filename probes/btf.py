"""Read the running kernel's BTF (/sys/kernel/btf/vmlinux) and resolve
struct member offsets, type sizes, enum values and tracepoint prototypes.

The BPF programs are compiled against whatever kernel headers are installed,
which may belong to another kernel version; every kernel-struct field they
read uses an offset from here instead, so the values are right anyway.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_MAGIC = 0xEB9F
# BTF kinds (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_MODIFIERS = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}
# Bytes that follow the 12-byte common header: fixed, or per vlen entry.
_EXTRA_FIXED = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
_EXTRA_PER_MEMBER = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}


class BTFError(Exception):
    """The BTF blob is missing, unreadable, or lacks something we need."""


@dataclass(frozen=True, slots=True)
class Member:
    """A resolved struct member: byte offset from the start of the outer
    struct, its size in bytes, and for bitfields the bit offset/size within
    the byte-aligned 64-bit word starting at ``offset``."""

    offset: int
    size: int
    bit_offset: int = 0
    bit_size: int = 0


class BTF:
    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", data, 0
        )
        if magic != _MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x} (big-endian or not BTF)")
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        # Type id 0 is void; ids count from 1 in file order.
        self._types: list[tuple[int, int, int, int, int]] = [(0, 0, 0, 0, 0)]
        self._data = data
        self._by_name: dict[tuple[int, str], list[int]] = {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            # (kind, vlen, kind_flag, size_or_type, offset of kind-specific data)
            self._types.append((kind, vlen, info >> 31, size_or_type, pos + 12))
            if name_off:
                self._by_name.setdefault((kind, self._str(name_off)), []).append(len(self._types) - 1)
            pos += 12 + _EXTRA_FIXED.get(kind, 0) + vlen * _EXTRA_PER_MEMBER.get(kind, 0)

    @classmethod
    def load(cls, path: Path = VMLINUX) -> BTF:
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            raise BTFError(
                f"{path} not found: this kernel was built without CONFIG_DEBUG_INFO_BTF; "
                "procscope needs BTF to read kernel structs correctly"
            ) from None
        except PermissionError:
            raise BTFError(f"{path} is not readable: run procscope as root") from None

    # -- low level -------------------------------------------------------
    def _str(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _members(self, tid: int):
        kind, vlen, kflag, _size, extra = self._types[tid]
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self._data, extra + 12 * i)
            bit_size, bit_off = (moff >> 24, moff & 0xFFFFFF) if kflag else (0, moff)
            yield self._str(name_off) if name_off else "", mtype, bit_off, bit_size

    def _strip(self, tid: int) -> int:
        """Follow typedefs and qualifiers to the underlying type."""
        while self._types[tid][0] in _MODIFIERS:
            tid = self._types[tid][3]
        return tid

    def _find(self, kinds: tuple[int, ...], name: str) -> int:
        for kind in kinds:
            for tid in self._by_name.get((kind, name), ()):
                if self._types[tid][0] != FWD:
                    return tid
        raise BTFError(f"type {name!r} not found in the kernel's BTF")

    def _sizeof_id(self, tid: int) -> int:
        tid = self._strip(tid)
        kind, _vlen, _kf, size, extra = self._types[tid]
        if kind == PTR:
            return 8
        if kind == ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", self._data, extra)
            return self._sizeof_id(elem) * nelems
        return size

    # -- queries ---------------------------------------------------------
    def sizeof(self, struct_name: str) -> int:
        return self._sizeof_id(self._find((STRUCT, UNION), struct_name))

    def member(self, struct_name: str, path: str) -> Member:
        """Resolve a dotted member path such as ``"ns.inum"`` in ``struct
        uts_namespace``. Anonymous unions/structs are searched transparently;
        ``a[3].b`` style indexing is not needed and not supported."""
        tid = self._find((STRUCT, UNION), struct_name)
        bits = 0
        bit_size = 0
        for part in path.split("."):
            found = self._lookup(self._strip(tid), part)
            if found is None:
                raise BTFError(f"struct {struct_name} has no member {path!r} in this kernel's BTF")
            tid, member_bits, bit_size = found
            bits += member_bits
        if bit_size:
            return Member(offset=(bits // 8) & ~7, size=8, bit_offset=bits - ((bits // 8) & ~7) * 8, bit_size=bit_size)
        return Member(offset=bits // 8, size=self._sizeof_id(tid))

    def _lookup(self, tid: int, name: str) -> tuple[int, int, int] | None:
        if self._types[tid][0] not in (STRUCT, UNION):
            return None
        for mname, mtype, bit_off, bit_size in self._members(tid):
            if mname == name:
                return mtype, bit_off, bit_size
            if not mname:  # anonymous struct/union: look inside
                inner = self._lookup(self._strip(mtype), name)
                if inner is not None:
                    return inner[0], bit_off + inner[1], inner[2]
        return None

    def enum_value(self, enum_name: str, value_name: str) -> int:
        tid = self._find((ENUM, ENUM64), enum_name)
        kind, vlen, _kf, _size, extra = self._types[tid]
        step = 8 if kind == ENUM else 12
        for i in range(vlen):
            name_off, lo = struct.unpack_from("<Ii", self._data, extra + step * i)
            if self._str(name_off) == value_name:
                if kind == ENUM64:
                    hi = struct.unpack_from("<I", self._data, extra + step * i + 8)[0]
                    return (hi << 32) | (lo & 0xFFFFFFFF)
                return lo
        raise BTFError(f"enum {enum_name} has no value {value_name!r}")

    def has_tracepoint(self, tracepoint: str) -> bool:
        try:
            self._find((TYPEDEF,), f"btf_trace_{tracepoint}")
        except BTFError:
            return False
        return True

    def tracepoint_arity(self, tracepoint: str) -> int:
        """Number of raw tracepoint arguments (the typedef
        ``btf_trace_<name>`` is a pointer to a prototype whose first
        parameter is the hidden ``void *`` context)."""
        tid = self._find((TYPEDEF,), f"btf_trace_{tracepoint}")
        ptr = self._types[tid][3]
        proto = self._types[ptr][3]
        if self._types[proto][0] != FUNC_PROTO:
            raise BTFError(f"btf_trace_{tracepoint} is not a function pointer")
        return self._types[proto][1] - 1
