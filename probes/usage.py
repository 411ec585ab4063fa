"""What processes and the machine use, as the kernel counts it: a process's
CPU time, memory, threads, state and IO from /proc/PID/stat (statm and io
when asked), the machine's CPUs, memory, swap and load through psutil.

Read directly, not through psutil, per process: at 10,000 processes one
pass over /proc/PID/stat took 0.12 s of CPU here against psutil's 0.53 s
(oneshot, the same figures). The files are the kernel's, not the
processes': a name in stat may hold anything, so fields are counted from
its last ')'."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import msgspec
import psutil

from .events import ProcessKey
from .procfs import PF_KTHREAD, TICK_NS, read_at

PAGE = os.sysconf("SC_PAGE_SIZE")
CPUS = os.cpu_count() or 1


class Usage(msgspec.Struct, frozen=True, gc=False):
    """One process's figures at one reading (htop's columns)."""

    state: str  # R S D Z T t I X, as /proc/PID/stat has it
    cpu_ns: int  # user + system, its own threads (live and exited)
    children_cpu_ns: int  # of its children that exited and were waited for
    cpu_pct: float  # of one CPU since the previous reading (the first: since it started)
    rss: int  # bytes resident
    virt: int  # bytes of address space
    threads: int
    shared: int | None = None  # bytes resident and file-backed (statm), when asked
    io_read: float | None = None  # bytes/s from storage (/proc/PID/io, root only), when asked
    io_write: float | None = None
    kernel: bool = False  # a kernel thread (PF_KTHREAD): htop's Tasks meter counts them apart
    priority: int | None = None  # the kernel's, as htop's PRI (20 + nice; below 0 real-time), live only
    nice: int | None = None  # -20 to 19 (htop's NI), live only: recordings keep neither


class Reading(msgspec.Struct, frozen=True, gc=False):
    """What the next reading's rates are computed from."""

    at: int  # monotonic ns
    cpu_ns: int
    io_read: int | None
    io_write: int | None


def _read(dir_fd: int, name: str) -> bytes | None:
    """A file of /proc (None: the process is gone, or the file is not readable)."""
    try:
        return read_at(dir_fd, name)
    except OSError:
        return None


def _io(raw: bytes | None) -> tuple[int | None, int | None]:
    if raw is None:
        return None, None
    fields = dict(line.split(b": ", 1) for line in raw.splitlines() if b": " in line)
    try:
        return int(fields[b"read_bytes"]), int(fields[b"write_bytes"])
    except (KeyError, ValueError):
        return None, None


def read_process(
    proc_fd: int, pid: str, before: dict[ProcessKey, Reading], boot_ns: int, shared: bool = False, io: bool = False
) -> tuple[ProcessKey, Usage, Reading] | None:
    """One process's usage (None when it is gone or not a process). ``proc_fd``:
    /proc, opened; ``before``: the last readings by key (a pid reused since is
    another key, and starts again); ``boot_ns``: the boot clock now, for the
    first reading's CPU% since the process started."""
    raw = _read(proc_fd, pid + "/stat")
    if raw is None:
        return None
    try:
        f = raw[raw.rindex(b")") + 2 :].split(b" ", 23)
        state = f[0].decode("ascii", "replace")
        kernel = bool(int(f[6]) & PF_KTHREAD)
        cpu_ns = (int(f[11]) + int(f[12])) * TICK_NS
        children_ns = (int(f[13]) + int(f[14])) * TICK_NS
        priority, nice = int(f[15]), int(f[16])
        threads, start_ns, virt, rss = int(f[17]), int(f[19]) * TICK_NS, int(f[20]), int(f[21]) * PAGE
    except (ValueError, IndexError):
        return None
    now = time.monotonic_ns()
    key = ProcessKey(int(pid), start_ns)
    last = before.get(key)
    if last is not None:
        spent, span = cpu_ns - last.cpu_ns, now - last.at
    else:
        spent, span = cpu_ns, boot_ns - start_ns
    pct = min(max(100.0 * spent / span, 0.0), 100.0 * CPUS) if span > 0 else 0.0
    shr = None
    if shared:
        statm = _read(proc_fd, pid + "/statm")
        if statm is not None and len(parts := statm.split()) > 2:
            shr = int(parts[2]) * PAGE
    rd = wr = None
    r_rate = w_rate = None
    if io:
        rd, wr = _io(_read(proc_fd, pid + "/io"))
        if rd is not None and wr is not None and last is not None and last.io_read is not None and span > 0:
            r_rate = max(rd - last.io_read, 0) * 1e9 / span
            w_rate = max(wr - (last.io_write or 0), 0) * 1e9 / span
    usage = Usage(state, cpu_ns, children_ns, pct, rss, virt, threads, shr, r_rate, w_rate, kernel, priority, nice)
    return key, usage, Reading(now, cpu_ns, rd, wr)


class CpuShare(msgspec.Struct, frozen=True, gc=False):
    """One CPU's time since the previous reading, as fractions (htop's colours)."""

    user: float  # user and nice
    system: float  # system, irq and softirq
    iowait: float
    steal: float

    @property
    def busy(self) -> float:
        return self.user + self.system + self.iowait + self.steal


class Machine(msgspec.Struct, frozen=True, gc=False):
    """The header's figures (htop's meters)."""

    cpus: tuple[CpuShare, ...]
    mem_used: int  # bytes, as htop counts it: total − free − buffers − cache (with the reclaimable slab)
    mem_total: int
    swap_used: int
    swap_total: int
    load: tuple[float, float, float]
    uptime_s: float
    processes: int  # as htop's Tasks meter: the processes (kernel threads apart),
    threads: int  # their threads but the first (htop's "thr"),
    running: int  # tasks runnable now, as /proc/loadavg counts them
    kthreads: int = 0  # and the kernel threads ("kthr"; recordings before it: 0)


class MachineReader:
    """The machine's meters, each reading against the previous one."""

    def __init__(self):
        self._times = psutil.cpu_times(percpu=True)

    def read(self, procs: Iterable[Usage]) -> Machine:
        """``procs``: the last figures of every process, kernel threads too (counted as htop counts them)."""
        times = psutil.cpu_times(percpu=True)
        cpus = tuple(_share(a, b) for a, b in zip(self._times, times, strict=False))
        self._times = times
        mem, swap = psutil.virtual_memory(), psutil.swap_memory()
        # htop's used, not psutil's (total − available since psutil 6, twice htop's on this VM);
        # psutil's cached holds the reclaimable slab, as htop's does.
        used = mem.total - mem.free - mem.buffers - mem.cached
        if used < 0:
            used = mem.total - mem.free
        with open("/proc/loadavg", "rb") as f:
            fields = f.read().split()
        running = fields[3].partition(b"/")[0]
        processes = threads = kthreads = 0
        for u in procs:
            if u.kernel:
                kthreads += 1
            else:
                processes += 1
                threads += u.threads - 1
        return Machine(cpus, used, mem.total, swap.used, swap.total,
                       (float(fields[0]), float(fields[1]), float(fields[2])), time.clock_gettime(time.CLOCK_BOOTTIME),
                       processes, threads, int(running), kthreads)  # fmt: skip


def _share(a, b) -> CpuShare:
    """Each kind of time's share between two psutil readings of one CPU."""
    d = {name: max(getattr(b, name) - getattr(a, name), 0.0) for name in b._fields}
    total = sum(v for name, v in d.items() if name not in ("guest", "guest_nice")) or 1.0  # guest is inside user
    return CpuShare((d["user"] + d["nice"]) / total, (d["system"] + d["irq"] + d["softirq"]) / total,
                    d["iowait"] / total, d["steal"] / total)  # fmt: skip
