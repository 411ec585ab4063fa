"""The collector: loads the BPF programs, polls the ring buffer on a thread,
decodes records into typed events and hands them out in batches."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import cgroups, kernel_tree, offsets, procfs, wire
from .throttle import RateLimit, ThrottleMonitor, Window
from .bcc_import import import_bcc
from .btf import BTF, BTFError
from .decode import decode
from .errors import SetupError
from .events import CgroupEvent, Event, ThrottleEvent, ThrottleMsg
from .privileges import check_bpf_privileges
from .tracefs import ensure_tracefs

BPF_DIR = Path(__file__).parent / "bpf"
DEFAULT_RING_BYTES = 16 << 20
RATE_ENTRIES = 32768  # cgroups with rate state (Tetragon's default)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BPF_NOEXIST = 1  # bpf(2) map update flag: only if absent


def ring_pages(size_bytes: int) -> int:
    """Ring buffer sizes are a power-of-two number of pages."""
    pages = max(1, size_bytes // PAGE_SIZE)
    return 1 << (pages - 1).bit_length()


@dataclass
class Counters:
    """Everything lost, and where. ``sent_failed[op][errno]`` is the kernel
    side, summed over CPUs; the rest is user space."""

    sent_failed: dict[str, dict[str, int]] = field(default_factory=dict)
    decode_errors: int = 0
    userspace_dropped: int = 0  # events in batches the consumer was too slow for
    exec_map_full: int = 0  # execs whose key fell back to the start time
    received: int = 0
    # Processes the /proc scan could not read (gone half-way, or unparsable):
    # missing from the tree until they exec, clone or exit.
    procfs_unreadable: int = 0
    # Failures of the collector thread itself (it reports and carries on);
    # the events of the failed poll may be lost.
    collector_errors: int = 0
    last_error: str = ""
    # The rate limit's suppressed events: totals per op, and per cgroup
    # (name → per-op counts) for the cgroups throttled so far.
    suppressed: dict[str, int] = field(default_factory=dict)
    suppressed_by_cgroup: dict[str, dict[str, int]] = field(default_factory=dict)
    throttled_now: list[str] = field(default_factory=list)  # cgroups throttled right now

    @property
    def kernel_dropped(self) -> int:
        return sum(sum(row.values()) for row in self.sent_failed.values())

    @property
    def lost(self) -> int:
        return self.kernel_dropped + self.decode_errors + self.userspace_dropped + self.collector_errors


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """BCC and clang write diagnostics straight to fd 2; keep them so that a
    failure can be reported in one line instead of a wall of text."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(tmp.read().decode(errors="replace").splitlines())


def _load_failure(exc: Exception, log: list[str]) -> SetupError:
    text = "\n".join(log)
    m = re.search(r"^.*error: .*$", text, re.M)
    if m:
        return SetupError(f"compiling the BPF programs failed: {m.group(0).strip()}")
    m = re.search(r"Failed to load program.*?: (.*)$|failed to attach.*$|cannot attach.*$", text, re.M | re.I)
    if "processed " in text and "insns" in text:  # the verifier's log: it rejected a program
        last = [line for line in text.splitlines() if line.strip() and not line.startswith(("processed", ";"))]
        return SetupError(
            f"the kernel's BPF verifier rejected a procscope program ({last[-1].strip() if last else exc}): "
            "please report this with your kernel version (PROCSCOPE_DEBUG=1 prints the full log)"
        )
    if "Operation not permitted" in text:
        return SetupError(
            "the kernel refused to load procscope's BPF programs (Operation not permitted): "
            "run as root, and check kernel.unprivileged_bpf_disabled, lockdown mode or a seccomp profile"
        )
    detail = m.group(0).strip() if m else str(exc)
    return SetupError(f"loading the BPF programs failed: {detail} (set PROCSCOPE_DEBUG=1 for the full log)")


class _BpfRateMaps:
    """ThrottleMonitor's view of the rate maps."""

    def __init__(self, bpf):
        self.rates = bpf[b"cgroup_rate_map"]
        self.counts = bpf[b"cgroup_suppressed"]

    def windows(self, cgroup_id: int) -> list[Window] | None:
        try:
            per_cpu = self.rates[self.rates.Key(cgroup_id)]
        except KeyError:
            return None
        return [Window(v.curr, v.prev, v.time, v.throttled) for v in per_cpu]

    def clear_throttled(self, cgroup_id: int) -> None:
        # Races the BPF side's update as Tetragon's does: a crossing in
        # between throttles again with the next event.
        key = self.rates.Key(cgroup_id)
        try:
            per_cpu = self.rates[key]
        except KeyError:
            return
        for v in per_cpu:
            v.throttled = 0
        self.rates[key] = per_cpu

    def suppressed(self, cgroup_id: int) -> tuple[int, ...]:
        try:
            per_cpu = self.counts[self.counts.Key(cgroup_id)]
        except KeyError:
            return (0,) * len(wire.RATE_OPS)
        return tuple(sum(cpu.n[i] for cpu in per_cpu) for i in range(len(wire.RATE_OPS)))

    def forget(self, cgroup_id: int) -> None:
        with contextlib.suppress(KeyError):
            del self.counts[self.counts.Key(cgroup_id)]


class Collector:
    """``open()`` loads and attaches; ``poll()`` reads once; ``start()`` polls
    on a thread into a bounded queue read with ``get_batch()``; ``stop()``
    detaches everything."""

    def __init__(
        self,
        ring_bytes: int = DEFAULT_RING_BYTES,
        kthreads: bool = False,
        scan_proc: bool = True,
        queue_batches: int = 1024,
        poll_ms: int = 100,
        log: Callable[[str], None] | None = None,
        cgroup_rate: RateLimit | None = None,
    ):
        self.ring_pages = ring_pages(ring_bytes)
        self.kthreads = kthreads
        self.scan_proc = scan_proc
        self.poll_ms = poll_ms
        self.log = log or (lambda msg: print(f"procscope: {msg}", file=sys.stderr))
        self.hierarchy: cgroups.Hierarchy | None = None
        self.cgroup_rate = cgroup_rate
        self.throttle: ThrottleMonitor | None = None
        # cgroup id → (name, suppressed counts reported by STOPs), of every cgroup throttled so far
        self._throttled: dict[int, tuple[str, tuple[int, ...]]] = {}
        self._bpf = None
        self._batch: list[Event] = []
        self._queue: queue.Queue[list[Event]] = queue.Queue(maxsize=queue_batches)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._decode_errors = 0
        self._userspace_dropped = 0
        self._received = 0
        self._procfs_unreadable = 0
        self._collector_errors = 0
        self._last_error = ""
        self.compile_log: list[str] = []

    # -- set-up ------------------------------------------------------------
    def open(self) -> None:
        check_bpf_privileges()
        try:
            btf = BTF.load()
        except BTFError as exc:
            raise SetupError(str(exc)) from None
        ensure_tracefs()  # before importing bcc, which looks for it at import
        bcc = import_bcc()
        self.hierarchy = cgroups.detect()
        try:
            cflags = offsets.compile_flags(btf, self.hierarchy.controller)
        except BTFError as exc:
            raise SetupError(f"this kernel's BTF lacks what procscope reads: {exc}") from None
        cflags += wire.compile_flags() + [
            f"-I{BPF_DIR}",
            f"-DPS_RINGBUF_PAGES={self.ring_pages}",
            f"-DPS_TICK_NS={procfs.TICK_NS}",
            f"-DPS_TRACE_KTHREADS={int(self.kthreads)}",
            f"-DPS_CGROUP_HIERARCHY_ID={self.hierarchy.hierarchy_id}",
            f"-DPS_RATE_EVENTS={self.cgroup_rate.events if self.cgroup_rate else 0}",
            f"-DPS_RATE_INTERVAL_NS={self.cgroup_rate.interval_ns if self.cgroup_rate else 0}ULL",
            f"-DPS_RATE_ENTRIES={RATE_ENTRIES}",
        ]
        with kernel_tree.compile_tree(self.log):
            with _captured_stderr() as self.compile_log:
                try:
                    self._bpf = bcc.BPF(src_file=str(BPF_DIR / "process.c").encode(), cflags=cflags)
                    failure = None
                except Exception as exc:  # BCC raises bare Exception
                    failure = exc
        if os.environ.get("PROCSCOPE_DEBUG"):
            print("\n".join(self.compile_log), file=sys.stderr)
        if failure is not None:
            raise _load_failure(failure, self.compile_log) from None
        self._bpf[b"events"].open_ring_buffer(self._on_record)
        if self.cgroup_rate is not None:
            self.throttle = ThrottleMonitor(self.cgroup_rate, _BpfRateMaps(self._bpf), self.hierarchy.hierarchy_id)

    @property
    def hierarchy_id(self) -> int | None:
        """The tracked hierarchy's id as cgroup events carry it (v2: 0);
        None before ``open()``."""
        return self.hierarchy.hierarchy_id if self.hierarchy is not None else None

    def _on_record(self, _ctx, data, size) -> int:
        try:
            self._batch.append(decode(ctypes.string_at(data, size)))
        except Exception:  # noqa: BLE001 - DecodeError, or any surprise a record causes: counted, never raised into BCC
            self._decode_errors += 1
        return 0

    # -- reading -------------------------------------------------------------
    def poll(self, timeout_ms: int = 0) -> list[Event]:
        """Read what the ring buffer holds (waiting up to timeout_ms)."""
        self._batch = []
        self._bpf.ring_buffer_poll(timeout_ms)
        batch, self._batch = self._batch, []
        self._received += len(batch)
        if self.throttle is not None:
            batch = self._throttle_events(batch)
        return batch

    def _throttle_events(self, batch: list) -> list[Event]:
        """Replace the kernel's throttle messages with START events, and add
        the STOPs that are due."""
        now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        out: list[Event] = []
        made: list[ThrottleEvent] = []
        for ev in batch:
            if not isinstance(ev, ThrottleMsg):
                out.append(ev)
            if isinstance(ev, (ThrottleMsg, CgroupEvent)):  # the only records the monitor acts on
                found = self.throttle.handle(ev, now)
                out += found
                made += found
        stops = self.throttle.check(now)
        out += stops
        for ev in made + stops:
            name, counts = self._throttled.get(ev.cgroup_id, (ev.name, (0,) * len(wire.RATE_OPS)))
            self._throttled[ev.cgroup_id] = (name, tuple(a + b for a, b in zip(counts, ev.suppressed)))
        return out

    def scan(self) -> list[Event]:
        """The /proc scan, after the probes are attached; the processes it
        finds in a container's init tree are marked for the BPF side, whose
        clones inherit the mark."""
        found = procfs.scan(self.hierarchy or cgroups.detect())
        self._procfs_unreadable += found.unreadable
        if self._bpf is not None:
            self._mark_init_tree(ev for ev in found.events if ev.flags & wire.FLAG_IN_INIT_TREE)
        return found.events

    def _mark_init_tree(self, events) -> None:
        table = self._bpf[b"proc_state"]
        bcc = import_bcc()
        for ev in events:
            key = table.Key(ev.key.pid)
            leaf = table.Leaf(ev.key.ktime, wire.FLAG_IN_INIT_TREE, 0)
            # BPF_NOEXIST: a process that cloned or exec'd since the scan already has its own entry.
            bcc.lib.bpf_update_elem(table.map_fd, ctypes.byref(key), ctypes.byref(leaf), BPF_NOEXIST)

    def start(self) -> None:
        """Poll on a thread. The first batch is the /proc scan (taken after
        the probes are attached, so nothing falls between the two)."""
        if self._bpf is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="procscope-collector", daemon=True)
        self._thread.start()

    def _put(self, batch: list[Event]) -> None:
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._userspace_dropped += len(batch)

    def _run(self) -> None:
        if self.scan_proc:
            self._guarded(lambda: self._put(self.scan()))
        while not self._stop.is_set():
            if not self._guarded(self._poll_once):
                self._stop.wait(0.1)  # a failure that repeats must not spin

    def _poll_once(self) -> None:
        batch = self.poll(self.poll_ms)
        if batch:
            self._put(batch)

    def _guarded(self, step: Callable[[], None]) -> bool:
        """Run one step of the thread; a failure is counted and reported
        (the first of each kind), and collection goes on."""
        try:
            step()
            return True
        except Exception as exc:  # noqa: BLE001 - nothing may stop collection
            self._collector_errors += 1
            text = f"{type(exc).__name__}: {exc}"
            if text != self._last_error:
                self.log(f"the collector thread failed ({text}); counted, and collection goes on")
            self._last_error = text
            return False

    def get_batch(self, timeout: float | None = None) -> list[Event] | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def counters(self) -> Counters:
        c = Counters(
            decode_errors=self._decode_errors,
            userspace_dropped=self._userspace_dropped,
            received=self._received,
            procfs_unreadable=self._procfs_unreadable,
            collector_errors=self._collector_errors,
            last_error=self._last_error,
        )
        if self._bpf is None:
            return c
        per_cpu = self._bpf[b"stats"][0]
        for op, name in wire.OP_NAMES.items():
            row = {
                err: sum(cpu.sent_failed[op * len(wire.SENT_FAILED_NAMES) + i] for cpu in per_cpu)
                for i, err in enumerate(wire.SENT_FAILED_NAMES)
            }
            if op in (wire.OP_EXECVE, wire.OP_CLONE, wire.OP_EXIT) or any(row.values()):
                c.sent_failed[name] = row
        c.exec_map_full = sum(self._bpf[b"probe_errors"][0])
        totals = self._bpf[b"suppressed_total"]
        c.suppressed = {name: sum(totals[i]) for i, name in enumerate(wire.RATE_OPS)}
        if self.throttle is not None:
            maps = self.throttle.maps
            for cgroup_id, (name, reported) in self._throttled.items():
                # The map's counts only grow; once the cgroup is removed they are gone, and its STOP reported them.
                counts = map(max, maps.suppressed(cgroup_id), reported)
                c.suppressed_by_cgroup[name] = dict(zip(wire.RATE_OPS, counts))
            c.throttled_now = sorted(t.name for t in self.throttle.active.values())
        return c

    # -- tear-down -----------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._bpf is not None:
            self._bpf.cleanup()  # detaches every probe and closes the maps
            self._bpf = None

    def __enter__(self) -> "Collector":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
