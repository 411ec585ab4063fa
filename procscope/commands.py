"""The bodies of `procscope events`, `snapshot` and `ui` (the monitor's
own is in the UI package, imported only when it runs)."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import sys
import time
from collections import deque

from procscope.probes import cgroups, scan_job
from procscope.probes.collector import Collector
from procscope.probes.counters import Counters
from procscope.probes.errors import SetupError
from procscope.probes.events import ExecEvent, ExitEvent
from procscope.probes.loader import PAGE_SIZE, ring_pages
from procscope.probes.text import printable

from . import heap, snapshot
from .cache import ProcessCache
from .export import Exporter
from .live_cache import live_cache
from .options import Options
from .replay import Replay, ReplayError
from .safe_write import OutputError, check_target
from .sampler import Sampler
from .stops import finishing
from .stream import RECORDED, TETRAGON_KINDS, EventStream, Output
from .stream_files import Rotation, StreamFile
from .timetravel import Timeline


def warn(msg: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr gone: nobody to tell
        print(f"procscope: {printable(msg)}", file=sys.stderr)


def _reader_gone() -> None:
    """stdout's reader went away (`| head`): what is still written goes nowhere, the summary still to stderr."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _collector(args: Options, exit_cpu: bool = False) -> Collector:
    return Collector(ring_bytes=args.ring_size, kthreads=args.kthreads, cgroup_rate=args.cgroup_rate,
                     exit_cpu=exit_cpu, creds_exact=args.creds_exact)  # fmt: skip


def _metrics_refused(args: Options) -> bool:
    """--metrics with --replay: said in one line."""
    if args.metrics is not None:
        warn("--metrics is for live collection, not --replay; drop one of them")
        return True
    return False


def serve_metrics(args: Options, counters, cache: ProcessCache) -> bool:
    """--metrics: serve them (False, with one line, when that cannot be done)."""
    if args.metrics is None:
        return True
    if args.replay and _metrics_refused(args):
        return False
    from .metrics import MetricsError, serve  # prometheus-client loads only when asked for

    try:
        port = serve(args.metrics, counters, cache)
    except MetricsError as exc:
        warn(str(exc))
        return False
    host = args.metrics[0]
    warn(f"metrics at http://{f'[{host}]' if ':' in host else host}:{port}/metrics")
    return True


def with_cache(collector: Collector, cache: ProcessCache):
    """The counters of a collector feeding ``cache``, the cache's own included."""

    def counters() -> Counters:
        c = collector.counters()
        c.cache = cache.counters.as_dict()
        return c

    return counters


def ring_text(requested: int) -> str:
    real = ring_pages(requested) * PAGE_SIZE
    text = f"ring buffer {real >> 10} KiB"
    return text if real == requested else f"{text}, rounded up from {requested} bytes to a power of two pages"


def _open_replay(args: Options, path: str) -> Replay | None:
    try:
        return Replay(path, strict=args.strict, warn=warn, max_processes=args.max_processes)
    except ReplayError as exc:
        warn(str(exc))
        return None


def _opened(args: Options, exit_cpu: bool = False) -> tuple[Collector, ProcessCache] | None:
    """The collector, its probes loaded, and a cache for its events (None: said why)."""
    collector = _collector(args, exit_cpu=exit_cpu)
    try:
        collector.open()
    except SetupError as exc:
        warn(str(exc))
        return None
    return collector, live_cache(collector.hierarchy, grace_ns=args.grace_ns)


# -- events ------------------------------------------------------------------------
class _Stdout:
    def __init__(self):
        sys.stdout.flush()  # the lines go to its buffer, below the text layer
        self._out = sys.stdout.buffer

    def write(self, line: bytes) -> None:
        self._out.write(line)
        self._out.write(b"\n")

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


def _outputs(args: Options) -> list[Output]:
    """The stream (stdout or -o) and the recording (--record), opened."""
    rotation = Rotation(args.max_size, args.max_backups, args.rotate_interval, args.compress)
    stream_kinds = frozenset(TETRAGON_KINDS | set(args.include))
    outputs = []
    if args.output not in (None, "-"):
        outputs.append(Output(StreamFile(args.output, rotation), stream_kinds, args.format == "compact"))
    elif args.output == "-" or not args.record:
        outputs.append(Output(_Stdout(), stream_kinds, args.format == "compact"))
    if args.record:
        outputs.append(Output(StreamFile(args.record, rotation), frozenset(RECORDED)))
    return outputs


def events(args: Options) -> int:
    try:
        for path in (args.output, args.record):
            if path not in (None, "-"):
                check_target(path)  # before anything is loaded
    except OutputError as exc:
        warn(str(exc))
        return 2
    if args.replay:
        replay = _open_replay(args, args.replay)
        if replay is None or _metrics_refused(args):
            return 2
        cache = replay.new_cache(args.grace_ns)

        def run(stream: EventStream) -> None:
            events = replay.events()
            size = 1 if replay.streaming else 512  # from a pipe: each event as soon as it is read
            while batch := list(itertools.islice(events, size)):
                if replay.wall_offset is not None:
                    stream.exporter.wall_offset = replay.wall_offset  # times come out as recorded
                if stream.feed(batch):
                    return
                if size == 1:
                    stream.flush()

        return _write_events(args, cache, run, replay=replay)
    opened = _opened(args, exit_cpu="usage" in args.include)
    if opened is None:
        return 2
    collector, cache = opened
    if not serve_metrics(args, with_cache(collector, cache), cache):
        collector.stop()
        return 2
    try:
        return _write_events(args, cache, lambda stream: stream.run_live(collector, args.duration),
                             started=f"collecting ({ring_text(args.ring_size)}); Ctrl-C to stop")  # fmt: skip
    finally:
        finishing()
        c = collector.counters()
        collector.stop()
        where = ", ".join(f"{place} {n}" for place, n in c.where_lost())
        warn(
            f"lost: {c.lost}"
            + (f" ({where})" if where else "")
            + (f"; the collector's last failure: {c.last_error}" if c.collector_errors else "")
            + (f"; {c.procfs_unreadable} processes unreadable in /proc" if c.procfs_unreadable else "")
        )
        if any(c.suppressed.values()):
            by_cgroup = "; ".join(f"{name}: {sum(n.values())}" for name, n in c.suppressed_by_cgroup.items())
            warn(f"suppressed by --cgroup-rate: {sum(c.suppressed.values())} ({by_cgroup})")


def _write_events(args: Options, cache: ProcessCache, run, replay: Replay | None = None, started: str = "") -> int:
    """``started``: said once the outputs are open (a stop from then on completes them)."""
    outputs: list[Output] = []
    status = 0
    try:
        outputs = _outputs(args)
        stream = EventStream(cache, outputs, args.query, args.count, args.left_out)
        if started:
            warn(started)
        with contextlib.suppress(KeyboardInterrupt):
            run(stream)
        finishing()
        for out in outputs:
            out.sink.close()
    except BrokenPipeError:
        _reader_gone()  # not an error
        return 0
    except OutputError as exc:
        warn(str(exc))
        status = 1 if any(o.written for o in outputs) else 2
        for out in outputs:  # the others are completed; the failed one keeps what it had
            with contextlib.suppress(OutputError, OSError, ValueError):
                out.sink.close()
            if isinstance(out.sink, StreamFile) and not out.sink.special:
                out.written = min(out.written, out.sink.lines_kept)  # what a reader finds whole
    except ReplayError as exc:  # --strict
        warn(str(exc))
        status = 1
    written = (
        ", ".join(f"{o.written} {'recorded' if o.kinds == RECORDED else 'written'}" for o in outputs) or "0 written"
    )
    c = cache.counters
    warn(f"events: {written}; cache: {c.misses} misses (events naming unknown processes), {c.lost_exits} lost exits"
         + (f", {c.enrichment_failures} enrichment failures" if c.enrichment_failures else "")
         + (f", {c.exit_before_start} exits timed before their start" if c.exit_before_start else ""))  # fmt: skip
    if replay is not None and replay.bad_lines:
        warn(f"{replay.bad_lines} bad lines in {replay.path} skipped")
        status = status or 1
    return status


# -- snapshot ----------------------------------------------------------------------
def snapshot_command(args: Options) -> int:
    if args.output is not None:
        try:
            check_target(args.output)  # before the collection, which may take --duration
        except OutputError as exc:
            warn(str(exc))
            return 2
    recent: deque[dict] = deque(maxlen=args.last)
    if (args.at or args.diff) and not args.replay:
        warn("--at and --diff look back in a recording: add --replay FILE")
        return 2
    if args.replay:
        replay = _open_replay(args, args.replay)
        if replay is None or _metrics_refused(args):
            return 2
        grace = args.grace_ns
        try:
            if args.diff or args.at:
                timeline = Timeline.of_replay(replay, grace)
            if args.diff:
                t1, t2 = sorted(timeline.boot_time(m) for m in args.diff)
                return _write(args, timeline.diff(t1, t2), "changes", replay)
            if args.at:
                cache = timeline.cache_at(timeline.boot_time(args.at))
            else:
                cache = replay.new_cache(grace)
                replay.feed(cache)
            # What was read stays to the end: the collector need not walk it again and again
            # (a fifth of the time of a snapshot of 500,000 processes).
            gc.freeze()
        except ReplayError as exc:
            warn(str(exc))
            return 1
        exporter = Exporter(cache, node=replay.node or None, wall_offset=replay.wall_offset)
        recent.extend(replay.recent)
        counters = Counters.from_json(replay.counters)
        source = f"replay:{args.replay}"
    else:
        found = _live_snapshot(args, recent)
        if found is None:
            return 2
        cache, counters, source = found
        cache.usage = Sampler.once(cache.cgroup_index.container_cgroups())  # what each uses, as of now
        exporter = Exporter(cache)
    q = args.query
    keep = q.predicate(cache) if q else None
    content: dict | list[dict]
    if args.format == "json":
        content = snapshot.document(cache, exporter, counters, list(recent), source, keep)
    else:
        exporter.tetragon_only = True
        content = snapshot.tetragon_lines(cache, exporter, keep)
    if args.at and isinstance(content, dict):
        content["as_of"] = exporter.time(cache.now)
    return _write(args, content, "processes", replay if args.replay else None)


def _write(args: Options, content, what: str, replay: Replay | None) -> int:
    """A snapshot or diff to -o (atomically) or stdout; the exit status."""
    try:
        snapshot.write(args.output, content, sys.stdout)
    except BrokenPipeError:
        _reader_gone()
        return 0
    except OutputError as exc:
        warn(str(exc))
        return 2
    if args.output:
        if what == "processes":
            n = len(content["processes"]) if isinstance(content, dict) else len(content)
        else:
            n = sum(len(content[k]) for k in ("started", "exited", "privileges"))
        warn(f"wrote {n} {what} to {args.output}")
    return 1 if replay is not None and replay.bad_lines else 0


def _live_snapshot(args: Options, recent: deque) -> tuple[ProcessCache, Counters, str] | None:
    """The cache from BPF (the /proc scan, then --duration of events), or
    from the /proc scan alone when BPF cannot be used (None: --metrics
    could not be served)."""
    collector = _collector(args)
    try:
        collector.open()
    except SetupError as exc:
        warn(f"{exc}; taking the snapshot from /proc alone (no exec/exit history, no drop counters)")
        hierarchy = cgroups.detect()
        cache = live_cache(hierarchy, grace_ns=args.grace_ns)
        found = scan_job.scan(hierarchy)
        cache.apply_all(found.events)
        return cache, Counters(procfs_unreadable=found.unreadable, cache=cache.counters.as_dict()), "procfs"
    cache = live_cache(collector.hierarchy, grace_ns=args.grace_ns)
    exporter = Exporter(cache)
    if not serve_metrics(args, with_cache(collector, cache), cache):
        collector.stop()
        return None
    try:
        collector.start()
        cache.apply_all(collector.get_batch(timeout=30) or [])  # the /proc scan comes first
        deadline = time.monotonic() + (args.duration or 0.0)
        try:
            while (left := deadline - time.monotonic()) > 0:
                for ev in collector.get_batch(timeout=min(left, 0.1)) or []:
                    proc = cache.apply(ev)
                    if proc is not None and isinstance(ev, ExecEvent):
                        recent.append(exporter.exec_event(proc))
                    elif proc is not None and isinstance(ev, ExitEvent):
                        recent.append(exporter.exit_event(ev, proc))
        except KeyboardInterrupt:
            pass  # Ctrl-C ends the watching: the snapshot is still written
        finishing()
        cache.expire(time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        counters = collector.counters()
        counters.cache = cache.counters.as_dict()
    finally:
        collector.stop()
    return cache, counters, "live"


# -- the monitor -------------------------------------------------------------------
@heap.paused()  # no garbage collection until the monitor, mounted, settles what its start made
def ui(args: Options) -> int:
    if args.connect:
        from procscope.agent_client import refusal  # grpc loads only for this
        from procscope.tui.main import config_nodes, run_monitor

        nodes = config_nodes(args, warn)
        if nodes is None:
            return 2
        args = nodes
        if why := refusal(args):
            warn(why)
            return 2
        return run_monitor(args, None, None, warn)
    if args.replay:
        from procscope.tui.main import run_monitor  # Textual loads only for the UI

        replay = _open_replay(args, args.replay)
        return 2 if replay is None or _metrics_refused(args) else run_monitor(args, None, replay, warn)
    # The first /proc scan starts on the other core while this one loads Textual (a fork: no threads yet).
    with scan_job.ScanJob(cgroups.detect(), defer=True) as scan:
        from procscope.tui.main import run_monitor

        return run_monitor(args, _collector(args, exit_cpu=args.usage > 0), None, warn,
                           lambda counters, cache: serve_metrics(args, counters, cache), scan)  # fmt: skip


def agent(args: Options) -> int:
    from procscope import agent as served  # grpc loads only for this

    if args.replay:
        warn("the agent serves the live machine: --replay is for events, snapshot and the monitor")
        return 2
    if (args.tls_cert is None) != (args.tls_key is None) or (args.tls_client_ca and not args.tls_cert):
        warn("TLS needs both --tls-cert and --tls-key (--tls-client-ca only with them)")
        return 2
    tls = served.Tls(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert and args.tls_key else None
    address = args.address or served.DEFAULT_ADDRESS
    try:
        served.check_address(address)
    except served.AgentError as exc:
        warn(str(exc))
        return 2
    opened = _opened(args)
    if opened is None:
        return 2
    collector, cache = opened
    broadcast = served.Broadcast(cache, warn)
    stream = EventStream(cache, [Output(broadcast, served.KINDS, objects=True)], args.query, left_out=args.left_out)
    broadcast.exporter = stream.exporter
    node = served.Agent(broadcast, stream.exporter.node, args.client_queue)
    try:
        server = served.serve(node, address, tls, warn)
    except served.AgentError as exc:
        collector.stop()
        warn(str(exc))
        return 2
    if not serve_metrics(args, with_cache(collector, cache), cache):
        server.stop(0)
        collector.stop()
        return 2
    try:  # a stop from the line below on is wrapped up as any
        warn(f"serving Tetragon's gRPC API on {address} ({ring_text(args.ring_size)}); Ctrl-C to stop")
        collector.start()
        with heap.settled() as full:
            while True:
                batch = collector.get_batch(timeout=0.1) or []
                if broadcast.clients:
                    stream.feed(batch)
                else:  # no one to send them to: the cache only (what a client joining is sent first)
                    cache.apply_all(batch)
                    cache.expire()
                broadcast.admit()
                full.due()
    except KeyboardInterrupt:
        pass
    finally:
        node.stopping.set()
        broadcast.close()
        server.stop(1)
        collector.stop()
        warn(f"lost: {collector.counters().lost}")
    return 0


def serve(args: Options) -> int:
    from procscope.tui.serve import run_server  # textual-serve loads only for this

    return run_server(args.host, args.port, list(args.ui_args), args.allow_signals, warn, unix=args.unix,
                      max_sessions=args.max_sessions, allow_writes=args.allow_writes)  # fmt: skip
