"""The BPF programs as compiled (instructions, the maps they use, where
each map is referred to) and as loaded (maps, programs, attachments, by
file descriptor). BCC compiles; what it compiled is taken out of its
module (``compiled``) so that it can be kept (probes.bpf_cache) and loaded
again without compiling (``load``): a second of clang at every start, not
spent when nothing it depends on changed."""

from __future__ import annotations

import ctypes as ct
import json
import os
import threading
from typing import Any

import msgspec

from .errors import SetupError
from .maps import Map

LD_IMM64 = 0x18  # BPF_LD | BPF_DW | BPF_IMM: a 64-bit constant, or with src_reg 1 a map's fd
PSEUDO_MAP_FD = 1
PROG_TYPES = {"tracepoint__": 5, "raw_tracepoint__": 17}  # BPF_PROG_TYPE_TRACEPOINT, _RAW_TRACEPOINT
LOG_BYTES = 1 << 20


class MapDef(msgspec.Struct, frozen=True):
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    key_desc: str  # the C type, as BCC describes it (JSON)
    leaf_desc: str


class ProgDef(msgspec.Struct, frozen=True):
    name: str  # BCC's function name: tracepoint__CATEGORY__NAME or raw_tracepoint__NAME
    insns: bytes
    maps: list[tuple[int, str]]  # (instruction index, map name) of each map reference


class Compiled(msgspec.Struct, frozen=True):
    license: str
    maps: list[MapDef]
    programs: list[ProgDef]
    facts: list[str]  # what the compile said (which kernel tree): said again when loaded from the cache


def _lib(bcc: Any) -> Any:
    """libbcc with the prototypes BCC's Python module does not declare (its own handle, not BCC's)."""
    lib = ct.CDLL(bcc.libbcc.lib._name, use_errno=True)
    for name, res, args in (
        ("bpf_num_tables", ct.c_size_t, [ct.c_void_p]),
        ("bpf_table_name", ct.c_char_p, [ct.c_void_p, ct.c_size_t]),
        ("bpf_table_fd", ct.c_int, [ct.c_void_p, ct.c_char_p]),
        ("bpf_table_type", ct.c_int, [ct.c_void_p, ct.c_char_p]),
        ("bpf_table_max_entries", ct.c_size_t, [ct.c_void_p, ct.c_char_p]),
        ("bpf_table_flags", ct.c_int, [ct.c_void_p, ct.c_char_p]),
        ("bpf_table_key_size", ct.c_size_t, [ct.c_void_p, ct.c_char_p]),
        ("bpf_table_leaf_size", ct.c_size_t, [ct.c_void_p, ct.c_char_p]),
        ("bpf_table_key_desc", ct.c_char_p, [ct.c_void_p, ct.c_char_p]),
        ("bpf_table_leaf_desc", ct.c_char_p, [ct.c_void_p, ct.c_char_p]),
        ("bpf_num_functions", ct.c_size_t, [ct.c_void_p]),
        ("bpf_function_name", ct.c_char_p, [ct.c_void_p, ct.c_size_t]),
        ("bpf_function_start", ct.c_void_p, [ct.c_void_p, ct.c_char_p]),
        ("bpf_function_size", ct.c_size_t, [ct.c_void_p, ct.c_char_p]),
        ("bpf_module_license", ct.c_char_p, [ct.c_void_p]),
        ("bcc_create_map", ct.c_int, [ct.c_int, ct.c_char_p, ct.c_int, ct.c_int, ct.c_int, ct.c_int]),
        ("bcc_prog_load", ct.c_int, [ct.c_int, ct.c_char_p, ct.c_void_p, ct.c_int, ct.c_char_p, ct.c_uint, ct.c_int,
                                     ct.c_char_p, ct.c_uint]),
        ("bpf_attach_tracepoint", ct.c_int, [ct.c_int, ct.c_char_p, ct.c_char_p]),
        ("bpf_attach_raw_tracepoint", ct.c_int, [ct.c_int, ct.c_char_p]),
        ("bpf_lookup_elem", ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p]),
        ("bpf_update_elem", ct.c_int, [ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_ulonglong]),
        ("bpf_delete_elem", ct.c_int, [ct.c_int, ct.c_void_p]),
    ):  # fmt: skip
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def compiled(bcc: Any, bpf: Any, facts: list[str]) -> Compiled | None:
    """What BCC's ``bpf`` compiled, with each map reference named; None when a reference is
    not to one of its maps (then it cannot be loaded again elsewhere)."""
    lib, module = _lib(bcc), bpf.module
    maps, by_fd = [], {}
    for i in range(lib.bpf_num_tables(module)):
        name = lib.bpf_table_name(module, i)
        by_fd[lib.bpf_table_fd(module, name)] = name.decode()
        maps.append(MapDef(name.decode(), lib.bpf_table_type(module, name), lib.bpf_table_key_size(module, name),
                           lib.bpf_table_leaf_size(module, name), lib.bpf_table_max_entries(module, name),
                           lib.bpf_table_flags(module, name), (lib.bpf_table_key_desc(module, name) or b"").decode(),
                           (lib.bpf_table_leaf_desc(module, name) or b"").decode()))  # fmt: skip
    programs = []
    for i in range(lib.bpf_num_functions(module)):
        name = lib.bpf_function_name(module, i)
        if not name.decode().startswith(tuple(PROG_TYPES)):
            continue
        insns = ct.string_at(lib.bpf_function_start(module, name), lib.bpf_function_size(module, name))
        refs = []
        for n in range(len(insns) // 8):
            if insns[8 * n] == LD_IMM64 and insns[8 * n + 1] >> 4:
                fd = int.from_bytes(insns[8 * n + 4 : 8 * n + 8], "little", signed=True)
                if insns[8 * n + 1] >> 4 != PSEUDO_MAP_FD or fd not in by_fd:
                    return None
                refs.append((n, by_fd[fd]))
        programs.append(ProgDef(name.decode(), insns, refs))
    return Compiled(lib.bpf_module_license(module).decode(), maps, programs, facts)


class Programs:
    """Maps, programs and attachments, loaded by ``load``; ``programs[b"name"]`` is a map."""

    def __init__(self, bcc: Any, prog: Compiled):
        self._lib = _lib(bcc)
        self._decode = bcc.BPF._decode_table_type
        self.compiled = prog
        self.maps: dict[str, Map] = {}
        self._fds: list[int] = []  # maps' and programs'
        self.attachments: list[int] = []

    def __getitem__(self, name: bytes) -> Map:
        return self.maps[name.decode()]

    def load(self) -> None:
        """Create the maps, load the programs with the maps' fds in place, attach them
        (SetupError naming what failed; what was made is closed by close())."""
        lib = self._lib
        for m in self.compiled.maps:
            fd = lib.bcc_create_map(m.type, m.name.encode()[:15], m.key_size, m.value_size, m.max_entries, m.flags)
            if fd < 0:
                raise SetupError(f"creating BPF map {m.name} failed: {os.strerror(ct.get_errno())}")
            self._fds.append(fd)
            key, leaf = (self._decode(json.loads(d)) if d else ct.c_uint32 for d in (m.key_desc, m.leaf_desc))
            self.maps[m.name] = Map(lib, fd, m.type, key, leaf)
        for p in self.compiled.programs:
            insns = bytearray(p.insns)
            for n, name in p.maps:
                insns[8 * n + 4 : 8 * n + 8] = self.maps[name].map_fd.to_bytes(4, "little", signed=True)
            prefix = next(pre for pre in PROG_TYPES if p.name.startswith(pre))
            point = p.name[len(prefix) :]
            code = (ct.c_char * len(insns)).from_buffer(insns)
            kind, license = PROG_TYPES[prefix], self.compiled.license.encode()
            fd = lib.bcc_prog_load(kind, program_name(point), code, len(insns), license, 0, 0, None, 0)
            if fd < 0:  # again with the verifier's log, for what it says
                log = ct.create_string_buffer(LOG_BYTES)
                lib.bcc_prog_load(kind, program_name(point), code, len(insns), license, 0, 1, log, LOG_BYTES)
                said = [line for line in log.value.decode(errors="replace").splitlines() if line.strip()]
                raise SetupError(f"loading BPF program {p.name} failed: {os.strerror(ct.get_errno())}"
                                 + (f" ({said[-1]})" if said else ""))  # fmt: skip
            self._fds.append(fd)
            if prefix == "raw_tracepoint__":
                link = lib.bpf_attach_raw_tracepoint(fd, point.encode())
            else:
                category, _, event = point.partition("__")
                link = lib.bpf_attach_tracepoint(fd, category.encode(), event.encode())
            if link < 0:
                raise SetupError(f"attaching BPF program {p.name} failed: {os.strerror(ct.get_errno())}")
            self.attachments.append(link)

    def detach(self) -> None:
        """Every program detached. Closing a syscall tracepoint's waits for an RCU grace
        period (~75 ms here; --creds-exact attaches 13): the closes overlap on threads."""
        links, self.attachments = self.attachments, []
        threads = [threading.Thread(target=os.close, args=(fd,), name="procscope-detach") for fd in links]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        self.detach()
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)


def program_name(point: str) -> bytes:
    """A program's name as the kernel keeps it (15 characters): ps_ and what it attaches to."""
    for long, short in (("sched_process_", ""), ("syscalls__sys_exit_", "x_"), ("syscalls__sys_enter_", "e_")):
        point = point.replace(long, short)
    return ("ps_" + point)[:15].encode()
