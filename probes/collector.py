"""The collector: attaches the BPF programs (probes.loader), polls the ring
buffer on a thread, decodes records into typed events and hands them out
in batches through a bounded queue; counts everything it loses."""

from __future__ import annotations

import collections
import operator
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import cast

from . import cgroups, scan_job, wire
from .counters import Counters
from .decode import decode
from .errors import SetupError
from .events import Event, ExecEvent, ThrottleMsg
from .loader import DEFAULT_RING_BYTES, PAGE_SIZE, load, ring_pages, spare_pages
from .programs import Programs
from .ringbuf import RingReader
from .throttle import BpfRateMaps, RateLimit, ThrottleMonitor

_event_time = operator.attrgetter("time")


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
        exit_cpu: bool = False,
        creds_exact: bool = False,
    ):
        self.ring_bytes = ring_bytes
        self.kthreads = kthreads
        self.scan_proc = scan_proc
        self.poll_ms = poll_ms
        self.log = log or (lambda msg: print(f"procscope: {msg}", file=sys.stderr))
        self.hierarchy: cgroups.Hierarchy | None = None
        self.cgroup_rate = cgroup_rate
        self.exit_cpu = exit_cpu  # exit events carry the process's CPU time (procscope.exited_cpu)
        self.creds_exact = creds_exact  # creds changes told by the syscall that made them (syscall tracepoints)
        self.throttle: ThrottleMonitor | None = None
        self._bpf: Programs | None = None
        self._ring: RingReader | None = None
        self._spare: RingReader | None = None
        self._queue: queue.Queue[list[Event]] = queue.Queue(maxsize=queue_batches)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._decode_errors = 0
        self._userspace_dropped = 0
        self._received = 0
        self._by_type: collections.Counter[type[Event]] = collections.Counter()
        self._procfs_unreadable = 0
        self._collector_errors = 0
        self._last_error = ""
        self.compile_log: list[str] = []
        self.setup_error: str | None = None  # why open() failed on the thread (start(attach=True))
        self.scanned: list[ExecEvent] | None = None  # the thread's /proc scan, after start(attach=True)

    # -- set-up ------------------------------------------------------------
    def open(self) -> None:
        """Load and attach (SetupError, one line, when it cannot)."""
        self._bpf, self.hierarchy = load(self.ring_bytes, self.kthreads, self.cgroup_rate, self.log, self.compile_log,
                                          self.exit_cpu, self.creds_exact)  # fmt: skip
        self._ring = RingReader(self._bpf[b"events"].map_fd, ring_pages(self.ring_bytes) * PAGE_SIZE)
        self._spare = RingReader(self._bpf[b"spare"].map_fd, spare_pages(self.ring_bytes) * PAGE_SIZE)
        if self.cgroup_rate is not None:
            self.throttle = ThrottleMonitor(self.cgroup_rate, BpfRateMaps(self._bpf), self.hierarchy.hierarchy_id)

    @property
    def attached(self) -> bool:
        return self._ring is not None

    @property
    def hierarchy_id(self) -> int | None:
        """The tracked hierarchy's id as cgroup events carry it (v2: 0);
        None before ``open()``."""
        return self.hierarchy.hierarchy_id if self.hierarchy is not None else None

    # -- reading -------------------------------------------------------------
    def poll(self, timeout_ms: int = 0) -> list[Event]:
        """Read what the ring buffer holds (waiting up to timeout_ms for the
        kernel's wakeup, which comes once per batch of records, not each)."""
        ring, spare = self._ring, self._spare
        assert ring is not None and spare is not None, "poll() before open()"
        if timeout_ms:
            ring.wait(timeout_ms)
        decoded: list[Event | ThrottleMsg] = []
        errors = 0
        records = ring.read()
        spared = spare.read()  # rare (see emit in process.c): in time order with the rest
        for record in records + spared if spared else records:
            try:
                decoded.append(decode(record))
            except Exception:  # noqa: BLE001 - DecodeError, or any surprise a record causes: counted, never raised
                errors += 1
        if spared:
            decoded.sort(key=_event_time)
        self._decode_errors += errors
        self._received += len(decoded)
        if self.throttle is not None:
            batch = self.throttle.process(decoded, time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        else:  # without a rate limit the kernel sends no throttle message
            batch = cast("list[Event]", decoded)
        self._by_type.update(map(type, batch))  # counted in C
        return batch

    def scan(self) -> list[ExecEvent]:
        """The /proc scan, after the probes are attached; the processes it
        finds in a container's init tree are marked for the BPF side, whose
        clones inherit the mark."""
        found = scan_job.scan(self.hierarchy or cgroups.detect())
        self._procfs_unreadable += found.unreadable
        if self._bpf is not None:
            self._mark_init_tree(ev for ev in found.events if ev.flags & wire.FLAG_IN_INIT_TREE)
        return found.events

    def _mark_init_tree(self, events) -> None:
        assert self._bpf is not None
        table = self._bpf[b"proc_state"]
        for ev in events:
            # Only where absent: a process that cloned or exec'd since the scan has its own entry.
            table.add(ev.key.pid, table.Leaf(ev.key.ktime, wire.FLAG_IN_INIT_TREE, 0))

    def start(self, attach: bool = False) -> None:
        """Poll on a thread. The first batch is the /proc scan (taken after
        the probes are attached, so nothing falls between the two).
        ``attach``: load and attach on the thread too (compiling takes a
        second); a failure is left in ``setup_error``, and the scan in
        ``scanned`` instead of the queue."""
        if self._bpf is None and not attach:
            self.open()
        thread = threading.Thread(target=self._run, name="procscope-collector", daemon=True)
        thread.start()
        self._thread = thread  # once started: a stop (Ctrl-C) in between must not have stop() join it

    def _put(self, batch: list[Event]) -> None:
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._userspace_dropped += len(batch)

    def _run(self) -> None:
        if self._bpf is None:
            try:
                self.open()
            except Exception as exc:  # noqa: BLE001 - SetupError, or whatever BCC raised: the caller shows it
                self.setup_error = str(exc) if isinstance(exc, SetupError) else f"{type(exc).__name__}: {exc}"
                return
            if self.scan_proc and not self._guarded(lambda: setattr(self, "scanned", self.scan())):
                self.scan_proc = False  # failed (counted): the caller's own scan stands
        elif self.scan_proc:
            self._guarded(lambda: self._put([*self.scan()]))
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
            by_type={t.TYPE: n for t, n in list(self._by_type.items())},
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
        internal = self._bpf[b"probe_errors"]
        c.exec_map_full, c.sent_spare = sum(internal[0]), sum(internal[1])
        if self.throttle is not None:
            c.suppressed = dict(zip(wire.RATE_OPS, self.throttle.maps.totals(), strict=True))
            c.suppressed_by_cgroup = self.throttle.by_cgroup()
            c.throttled_now = sorted(t.name for t in self.throttle.active.values())
        return c

    # -- tear-down -----------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for ring in (self._ring, self._spare):
            if ring is not None:
                ring.close()
        self._ring = self._spare = None
        if self._bpf is not None:
            self._bpf.close()  # detaches, closes the programs and the maps
            self._bpf = None

    def detach_now(self) -> None:
        """Only the programs detached, for a process about to end: the reading
        thread is not waited for (its ring stays mapped), nothing else freed."""
        if self._bpf is not None:
            self._bpf.detach()

    def __enter__(self) -> Collector:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
