"""The BPF side's maps, read and written from user space by their file
descriptors (bpf(2) through libbcc's wrappers): a value, or for a per-CPU
map one value per possible CPU, each in an 8-byte aligned slot as the
kernel lays them out. Key and value types are ctypes types made from the
compiler's description of the C types (BCC's)."""

from __future__ import annotations

import ctypes as ct
import functools
import os
from typing import Any

BPF_ANY, BPF_NOEXIST = 0, 1  # bpf(2) update flags: always; only where absent
PERCPU_TYPES = {5, 6, 10}  # BPF_MAP_TYPE_PERCPU_HASH, _PERCPU_ARRAY, _LRU_PERCPU_HASH


@functools.cache
def possible_cpus() -> int:
    """The kernel's possible CPUs (a per-CPU map has a slot for each), from ranges like 0-3,8."""
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            first, _, last = part.partition("-")
            n += int(last or first) - int(first) + 1
        return n


class Map:
    """One map: ``m[key]`` (KeyError when absent), ``m[key] = value``, ``del m[key]``; a key
    may be an int for an integer key type. Per-CPU: a list of values, one per CPU."""

    def __init__(self, lib: Any, fd: int, map_type: int, key_type: Any, leaf_type: Any):
        self._lib = lib
        self.map_fd = fd
        self.Key = key_type
        self.Leaf = leaf_type
        self.percpu = map_type in PERCPU_TYPES
        self._stride = (ct.sizeof(leaf_type) + 7) & ~7
        self._simple = issubclass(leaf_type, ct._SimpleCData)

    def _key(self, key: Any) -> Any:
        return self.Key(key) if isinstance(key, int) else key

    def __getitem__(self, key: Any) -> Any:
        k = self._key(key)
        if not self.percpu:
            leaf = self.Leaf()
            if self._lib.bpf_lookup_elem(self.map_fd, ct.byref(k), ct.byref(leaf)) < 0:
                raise KeyError(key)
            return leaf.value if self._simple else leaf
        buf = ct.create_string_buffer(self._stride * possible_cpus())
        if self._lib.bpf_lookup_elem(self.map_fd, ct.byref(k), buf) < 0:
            raise KeyError(key)
        values = [self.Leaf.from_buffer_copy(buf, i * self._stride) for i in range(possible_cpus())]
        return [v.value for v in values] if self._simple else values

    def __setitem__(self, key: Any, value: Any) -> None:
        self._update(key, value, BPF_ANY)

    def add(self, key: Any, value: Any) -> bool:
        """Set only where ``key`` has no value yet; whether it was set."""
        try:
            self._update(key, value, BPF_NOEXIST)
        except FileExistsError:
            return False
        return True

    def _update(self, key: Any, value: Any, flags: int) -> None:
        k = self._key(key)
        if self.percpu:
            buf = ct.create_string_buffer(self._stride * possible_cpus())
            for i, v in enumerate(value):
                v = self.Leaf(v) if self._simple else v
                ct.memmove(ct.addressof(buf) + i * self._stride, ct.byref(v), ct.sizeof(self.Leaf))
            data: Any = buf
        else:
            data = ct.byref(self.Leaf(value) if self._simple else value)
        if self._lib.bpf_update_elem(self.map_fd, ct.byref(k), data, flags) < 0:
            err = ct.get_errno()
            raise OSError(err, f"updating a BPF map: {os.strerror(err)}")

    def __delitem__(self, key: Any) -> None:
        if self._lib.bpf_delete_elem(self.map_fd, ct.byref(self._key(key))) < 0:
            raise KeyError(key)
