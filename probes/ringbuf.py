"""Reads a BPF ring buffer map from its memory-mapped pages, as libbpf's
consumer does (kernel/bpf/ringbuf.c gives the layout): one read-write page
with the consumer position, one read-only page with the producer position,
then the data pages mapped twice in a row, so that a record that wraps
around is contiguous. Records are taken in batches, without a call from C
per record (BCC's ring_buffer_poll calls back into Python through ctypes
for each one, which cost more than decoding it).

x86-64 keeps loads in order and stores in order, which gives the acquire
and release the protocol asks for with plain loads and stores."""

from __future__ import annotations

import mmap
import select
import struct

BUSY = 1 << 31  # the producer has reserved the record and not committed it yet
DISCARD = 1 << 30  # committed as discarded: skipped
HEADER = 8  # u32 length with the two bits above, u32 page offset
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingReader:
    """``wait(ms)`` until the kernel signals records (or the time is up);
    ``read()`` every committed record since the last read, as bytes."""

    def __init__(self, map_fd: int, size: int):
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"a ring buffer's size is a power-of-two number of pages, not {size}")
        page = mmap.PAGESIZE
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        self._epoll.poll(timeout_ms / 1000 if timeout_ms > 0 else 0)

    def read(self, limit: int = 1 << 16) -> list[bytes]:
        """At most ``limit`` records (the rest stay for the next read)."""
        out: list[bytes] = []
        data, mask, u32 = self._data, self._mask, _U32.unpack_from
        pos = _U64.unpack_from(self._consumer, 0)[0]
        end = _U64.unpack_from(self._producer, 0)[0]
        while pos < end and len(out) < limit:
            at = pos & mask
            length = u32(data, at)[0]
            if length & BUSY:
                break  # not committed yet: the next read takes it
            size = length & ~(BUSY | DISCARD)
            if not length & DISCARD:
                out.append(data[at + HEADER : at + HEADER + size].tobytes())
            pos += (size + HEADER + 7) & ~7
            if end - pos <= 0:
                end = _U64.unpack_from(self._producer, 0)[0]  # more may have come meanwhile
        _U64.pack_into(self._consumer, 0, pos)  # frees the space for the producer
        return out

    @property
    def pending(self) -> int:
        """Bytes committed or reserved and not read yet."""
        return _U64.unpack_from(self._producer, 0)[0] - _U64.unpack_from(self._consumer, 0)[0]

    def close(self) -> None:
        self._epoll.close()
        self._data.release()
        self._producer.close()
        self._consumer.close()
