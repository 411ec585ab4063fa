"""Read the running kernel's BTF (/sys/kernel/btf/vmlinux) and resolve
struct member offsets, type sizes, enum values and tracepoint prototypes.

The BPF programs are compiled against whatever kernel headers are installed,
which may belong to another kernel version; every kernel-struct field they
read uses an offset from here instead, so the values are right anyway.
"""

from __future__ import annotations

import struct
import sys
from array import array
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
_SKIP = [12 + _EXTRA_FIXED.get(kind, 0) for kind in range(32)]  # by kind: the header and its fixed part
_PER_MEMBER = [_EXTRA_PER_MEMBER.get(kind, 0) for kind in range(32)]
_HEADER = struct.Struct("<III")  # name_off, info, size_or_type


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
        self._data = data
        # Where each type starts and its name's offset, by type id (0 is void; ids count from 1
        # in file order). Nothing else is decoded: a query reads the few types it needs, and a
        # name is found by its offset in the (deduplicated) string table (start-up pays 0.05 s,
        # not the 0.3 s that decoding every type's name took).
        self._starts = array("I", [0])
        self._names = array("I", [0])
        header, start, name = _HEADER.unpack_from, self._starts.append, self._names.append
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, _ = header(data, pos)
            kind = (info >> 24) & 0x1F
            start(pos)
            name(name_off)
            pos += _SKIP[kind] + (info & 0xFFFF) * _PER_MEMBER[kind]
        self._name_bytes = self._names.tobytes()
        self._named: dict[str, list[int]] = {}  # the types of each name looked up

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
    def _type(self, tid: int) -> tuple[int, int, int, int, int]:
        """(kind, vlen, kind_flag, size_or_type, offset of the kind-specific data)."""
        if tid == 0:
            return 0, 0, 0, 0, 0
        pos = self._starts[tid]
        _, info, size_or_type = _HEADER.unpack_from(self._data, pos)
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size_or_type, pos + 12

    def _ids_named(self, name: str) -> list[int]:
        """The types with this name (the string sits once in the deduplicated table)."""
        found = self._named.get(name)
        if found is None:
            found = self._named[name] = []
            off = self._strings.find(b"\0" + name.encode() + b"\0") + 1  # the table starts with "" (offset 0)
            if off:  # the name offsets as bytes: memmem finds the types that have it
                needle, names = off.to_bytes(4, sys.byteorder), self._name_bytes  # the array's own order
                at = names.find(needle, 4)
                while at != -1:
                    if at % 4 == 0:  # a whole entry, not bytes across two
                        found.append(at // 4)
                    at = names.find(needle, at + 1)
        return found

    def _str(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _members(self, tid: int):
        kind, vlen, kflag, _size, extra = self._type(tid)
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self._data, extra + 12 * i)
            bit_size, bit_off = (moff >> 24, moff & 0xFFFFFF) if kflag else (0, moff)
            yield self._str(name_off) if name_off else "", mtype, bit_off, bit_size

    def _strip(self, tid: int) -> int:
        """Follow typedefs and qualifiers to the underlying type."""
        while (t := self._type(tid))[0] in _MODIFIERS:
            tid = t[3]
        return tid

    def _find(self, kinds: tuple[int, ...], name: str) -> int:
        found = [(kinds.index(t[0]), tid) for tid in self._ids_named(name) if (t := self._type(tid))[0] in kinds]
        if found:
            return min(found)[1]  # the first kind asked for, the first type of it
        raise BTFError(f"type {name!r} not found in the kernel's BTF")

    def _sizeof_id(self, tid: int) -> int:
        tid = self._strip(tid)
        kind, _vlen, _kf, size, extra = self._type(tid)
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
        if self._type(tid)[0] not in (STRUCT, UNION):
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
        kind, vlen, _kf, _size, extra = self._type(tid)
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
        ptr = self._type(tid)[3]
        proto = self._type(ptr)[3]
        if self._type(proto)[0] != FUNC_PROTO:
            raise BTFError(f"btf_trace_{tracepoint} is not a function pointer")
        return self._type(proto)[1] - 1
