"""The ``procscope`` command: arguments and dispatch."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import signal
import sys
import time
from collections import deque

from procscope.probes import cgroups, procfs
from procscope.probes.collector import DEFAULT_RING_BYTES, PAGE_SIZE, Collector, ring_pages
from procscope.probes.errors import SetupError
from procscope.probes.events import ExecEvent, ExitEvent
from procscope.probes.text import printable
from procscope.probes.throttle import RateError, parse_rate

from . import query, snapshot
from .cache import DEFAULT_GRACE_NS, ProcessCache
from .export import Exporter, counters_json
from .outputs import OutputError, Rotation, StreamFile, check_target
from .replay import SNAPSHOT_VERSION, Replay, ReplayError
from .live import live_cache
from .stream import INCLUDABLE, RECORDED, TETRAGON_KINDS, EventStream, Output

MAX_RING_BYTES = 1 << 30
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# -- argument types: each refuses a bad value with one line ----------------------
def _size(text: str) -> int:
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        n = float(t[:-1]) * _UNITS[t[-1]] if t and t[-1] in _UNITS else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: write bytes or a number with K, M or G, e.g. 16M") from None
    if not math.isfinite(n) or n <= 0:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: it must be positive")
    return int(n)


def _ring_size(text: str) -> int:
    n = _size(text)
    if not PAGE_SIZE <= n <= MAX_RING_BYTES:
        raise argparse.ArgumentTypeError(
            f"ring buffer size {text!r} out of range: from {PAGE_SIZE >> 10}K (one page) to {MAX_RING_BYTES >> 30}G"
        )
    return n


def _seconds(text: str) -> float:
    t = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h") if t.endswith(u)), "")
    try:
        n = float(t.removesuffix(unit)) * _SECONDS.get(unit, 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: write seconds, or a number with ms, s, m or h") from None
    if not math.isfinite(n) or n < 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: it must be a finite number, not negative")
    return n


def _positive_seconds(text: str) -> float:
    n = _seconds(text)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: it must be more than 0")
    return n


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad count {text!r}: write a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"bad count {text!r}: it must be at least 1")
    return n


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number {text!r}: write a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"bad number {text!r}: it must not be negative")
    return n


def _rate(text: str):
    try:
        return parse_rate(text)
    except RateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _include(text: str) -> set[str]:
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    unknown = kinds - set(INCLUDABLE)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown event kind {sorted(unknown)[0]!r}; choose from {', '.join(INCLUDABLE)}")
    return kinds


def _directory(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory; create it or choose another")
    return text


# -- the parser --------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procscope", description="Live process monitor driven by eBPF.")
    sub = parser.add_subparsers(dest="command")
    ev = sub.add_parser("events", help="stream exec/exit events (Tetragon JSON or compact text)")
    ev.add_argument("--duration", type=_positive_seconds, metavar="S", help="stop after S seconds (or 500ms, 2m, 1h)")
    ev.add_argument("--count", type=_count, metavar="N", help="stop after N events")
    ev.add_argument(
        "-o", "--output", metavar="FILE",
        help="write the stream to FILE (mode 0600, streamed: what was flushed, at least every second, survives a "
        "crash) instead of stdout; exactly what stdout would show; '-' is stdout",
    )  # fmt: skip
    ev.add_argument(
        "--record", metavar="FILE",
        help="record everything a replay needs (procscope's superset of Tetragon's format: also the processes found "
        "at start, clones, cgroup events and counters) to FILE; stdout then shows nothing unless -o - asks",
    )  # fmt: skip
    ev.add_argument("--format", choices=("json", "compact"), default="json", help="of the stream (a recording is JSON)")
    ev.add_argument(
        "--include", type=_include, default=set(),
        help="add procscope's own kinds to the stream: clone, counters (once a second), procfs (processes found at "
        "start), cgroup (cgroups made, removed, released, and processes moved, in the tracked hierarchy)",
    )  # fmt: skip
    rot = ev.add_argument_group("rotation of -o and --record files (as Tetragon's export file)")
    rot.add_argument("--max-size", type=_size, metavar="SIZE", help="rotate a file once it reaches SIZE (e.g. 10M)")
    rot.add_argument("--rotate-interval", type=_positive_seconds, metavar="DURATION", help="rotate every DURATION (e.g. 1h)")
    rot.add_argument("--max-backups", type=_non_negative, default=5, metavar="N",
                     help="rotated files kept per file (default 5; 0 keeps all)")  # fmt: skip
    rot.add_argument("--compress", action="store_true", help="gzip rotated files")
    _add_source_arguments(ev)
    query.add_arguments(ev)

    snap = sub.add_parser("snapshot", help="every process with its parent, user, capabilities, namespaces and container")
    snap.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically, mode 0600) instead of stdout")
    snap.add_argument(
        "--format", choices=("json", "jsonl"), default="json",
        help="json: one document (schema version %d) with processes, containers, cgroups, drop counters and the "
        "last events; jsonl: Tetragon process_exec lines, parents first, for `tetra getevents`" % SNAPSHOT_VERSION,
    )  # fmt: skip
    snap.add_argument("--duration", type=_seconds, default=0.0, metavar="S", help="watch live events for S seconds first")
    snap.add_argument("--last", type=_non_negative, default=200, metavar="N", help="keep the last N events (default 200)")
    _add_source_arguments(snap)
    query.add_arguments(snap)

    ui = sub.add_parser("ui", help="the live monitor (what `procscope` with no command runs)")
    ui.add_argument("--snapshot-dir", type=_directory, default=".", help="where the s key writes snapshots (default: here)")
    ui.add_argument(
        "--theme", metavar="NAME",
        help="procscope-dark (default), procscope-light, procscope-high-contrast, or a Textual theme; for this run "
        "(a theme chosen in the monitor with t or the palette is remembered in ~/.config/procscope/config.toml)",
    )  # fmt: skip
    _add_source_arguments(ui)
    query.add_arguments(ui)
    return parser


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", metavar="FILE", help="read a recording or snapshot instead of the live system")
    parser.add_argument("--strict", action="store_true", help="with --replay: stop at the first bad line")
    parser.add_argument(
        "--ring-size", type=_ring_size, default=DEFAULT_RING_BYTES, metavar="SIZE",
        help="BPF ring buffer size, rounded up to a power of two pages (default 16M)",
    )  # fmt: skip
    parser.add_argument("--kthreads", action="store_true", help="also report kernel threads")
    parser.add_argument(
        "--cgroup-rate", type=_rate, metavar="EVENTS,INTERVAL",
        help="per-cgroup rate limit, e.g. 1000,1s: past it a cgroup's exec/clone/exit events are suppressed (and "
        "counted) until its rate has stayed under the limit for 5 s; THROTTLE_START/STOP events say when (off by default)",
    )  # fmt: skip
    parser.add_argument(
        "--grace", type=_seconds, default=DEFAULT_GRACE_NS / 1e9, metavar="S",
        help="how long an exited process stays in the tree (default 5 s)",
    )  # fmt: skip


def _warn(msg: str) -> None:
    print(f"procscope: {printable(msg)}", file=sys.stderr)


def _collector(args) -> Collector:
    return Collector(ring_bytes=args.ring_size, kthreads=args.kthreads, cgroup_rate=args.cgroup_rate)


def _ring_text(requested: int) -> str:
    real = ring_pages(requested) * PAGE_SIZE
    text = f"ring buffer {real >> 10} KiB"
    return text if real == requested else f"{text}, rounded up from {requested} bytes to a power of two pages"


def _open_replay(args) -> Replay | None:
    try:
        return Replay(args.replay, strict=args.strict, warn=_warn)
    except ReplayError as exc:
        _warn(str(exc))
        return None


def _finishing() -> None:
    """Ctrl-C or SIGTERM again while the files are completed must not cut the wrap-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# -- events ------------------------------------------------------------------------
class _Stdout:
    def write(self, line: str) -> None:
        sys.stdout.write(line + "\n")

    def flush(self) -> None:
        sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.flush()


def _outputs(args) -> list[Output]:
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


def cmd_events(args) -> int:
    try:
        for path in (args.output, args.record):
            if path not in (None, "-"):
                check_target(path)  # before anything is loaded
    except OutputError as exc:
        _warn(str(exc))
        return 2
    if args.replay:
        replay = _open_replay(args)
        if replay is None:
            return 2
        cache = replay.new_cache(int(args.grace * 1e9))

        def run(stream: EventStream) -> None:
            events = replay.events()
            size = 1 if replay.streaming else 512  # from a pipe: each event as soon as it is read
            while batch := list(itertools.islice(events, size)):
                stream.exporter.wall_offset = replay.wall_offset  # times come out as recorded
                if stream.feed(batch):
                    return
                if size == 1:
                    stream.flush()

        return _write_events(args, cache, run, replay=replay)
    collector = _collector(args)
    try:
        collector.open()
    except SetupError as exc:
        _warn(str(exc))
        return 2
    _warn(f"collecting ({_ring_text(args.ring_size)}); Ctrl-C to stop")
    cache = live_cache(collector.hierarchy, grace_ns=int(args.grace * 1e9))
    try:
        return _write_events(args, cache, lambda stream: stream.run_live(collector, args.duration))
    finally:
        _finishing()
        c = collector.counters()
        collector.stop()
        where = ", ".join(f"{op} {err} {n}" for op, row in c.sent_failed.items() for err, n in row.items() if n)
        _warn(
            f"lost: {c.kernel_dropped} in the kernel ({where or 'none'}), {c.userspace_dropped} in user space, "
            f"{c.decode_errors} undecodable, {c.collector_errors} in collector failures"
            + (f" (last: {c.last_error})" if c.collector_errors else "")
            + (f"; {c.procfs_unreadable} processes unreadable in /proc" if c.procfs_unreadable else "")
        )
        if any(c.suppressed.values()):
            by_cgroup = "; ".join(f"{name}: {sum(n.values())}" for name, n in c.suppressed_by_cgroup.items())
            _warn(f"suppressed by --cgroup-rate: {sum(c.suppressed.values())} ({by_cgroup})")


def _write_events(args, cache: ProcessCache, run, replay: Replay | None = None) -> int:
    outputs: list[Output] = []
    status = 0
    try:
        outputs = _outputs(args)
        stream = EventStream(cache, outputs, query.from_args(args), args.count)
        try:
            run(stream)
        except KeyboardInterrupt:
            pass
        _finishing()
        for out in outputs:
            out.sink.close()
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    except OutputError as exc:
        _warn(str(exc))
        status = 1 if any(o.written for o in outputs) else 2
        for out in outputs:  # the others are completed; the failed one keeps what it had
            with contextlib.suppress(OutputError, OSError):
                out.sink.close()
    except ReplayError as exc:  # --strict
        _warn(str(exc))
        status = 1
    written = ", ".join(f"{o.written} {'recorded' if o.kinds == RECORDED else 'written'}" for o in outputs) or "0 written"
    c = cache.counters
    _warn(f"events: {written}; cache: {c.misses} misses (events naming unknown processes), {c.lost_exits} lost exits")
    if replay is not None and replay.bad_lines:
        _warn(f"{replay.bad_lines} bad lines in {replay.path} skipped")
        status = status or 1
    return status


# -- snapshot ----------------------------------------------------------------------
def cmd_snapshot(args) -> int:
    if args.output is not None:
        try:
            check_target(args.output)  # before the collection, which may take --duration
        except OutputError as exc:
            _warn(str(exc))
            return 2
    recent: deque[dict] = deque(maxlen=args.last)
    if args.replay:
        replay = _open_replay(args)
        if replay is None:
            return 2
        cache = replay.new_cache(int(args.grace * 1e9))
        try:
            replay.feed(cache)
        except ReplayError as exc:
            _warn(str(exc))
            return 1
        exporter = Exporter(cache, node=replay.node or None, wall_offset=replay.wall_offset)
        recent.extend(replay.recent)
        counters = replay.counters or {}
        source = f"replay:{args.replay}"
    else:
        cache, counters, source = _live_snapshot(args, recent)
        exporter = Exporter(cache)
    q = query.from_args(args)
    keep = q.predicate(cache) if q else None
    if args.format == "json":
        content = snapshot.document(cache, exporter, counters, list(recent), source, keep)
    else:
        exporter.tetragon_only = True
        content = snapshot.tetragon_lines(cache, exporter, keep)
    try:
        snapshot.write(args.output, content, sys.stdout)
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except OutputError as exc:
        _warn(str(exc))
        return 2
    if args.output:
        n = len(content["processes"]) if isinstance(content, dict) else len(content)
        _warn(f"wrote {n} processes to {args.output}")
    return 1 if args.replay and replay.bad_lines else 0


def _live_snapshot(args, recent: deque) -> tuple[ProcessCache, dict, str]:
    """The cache from BPF (the /proc scan, then --duration of events), or
    from the /proc scan alone when BPF cannot be used."""
    collector = _collector(args)
    try:
        collector.open()
    except SetupError as exc:
        _warn(f"{exc}; taking the snapshot from /proc alone (no exec/exit history, no drop counters)")
        hierarchy = cgroups.detect()
        cache = live_cache(hierarchy, grace_ns=int(args.grace * 1e9))
        found = procfs.scan(hierarchy)
        cache.apply_all(found.events)
        return cache, {"procfs_unreadable": found.unreadable}, "procfs"
    cache = live_cache(collector.hierarchy, grace_ns=int(args.grace * 1e9))
    exporter = Exporter(cache)
    try:
        collector.start()
        cache.apply_all(collector.get_batch(timeout=30) or [])  # the /proc scan comes first
        deadline = time.monotonic() + args.duration
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
        _finishing()
        cache.expire(time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        counters = counters_json(collector.counters(), cache.counters)
    finally:
        collector.stop()
    return cache, counters, "live"


# -- the monitor -------------------------------------------------------------------
def cmd_ui(args) -> int:
    from procscope.tui.main import run_monitor  # Textual loads only for the UI

    if args.replay:
        replay = _open_replay(args)
        return 2 if replay is None else run_monitor(args, None, replay, _warn)
    return run_monitor(args, _collector(args), None, _warn)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM stops as Ctrl-C does, so output files are still completed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["ui", *argv]  # `procscope [options]` opens the monitor
    args = parser.parse_args(argv)
    try:
        query.from_args(args)  # a bad filter is reported before anything is loaded
        if args.command == "events":
            return cmd_events(args)
        if args.command == "snapshot":
            return cmd_snapshot(args)
        if args.command == "ui":
            return cmd_ui(args)
    except query.QueryError as exc:
        parser.error(printable(str(exc)))
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
