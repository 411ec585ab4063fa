"""The ``procscope`` command."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import signal
import sys
import time

from collections import deque

from probes import cgroups, procfs, wire
from probes.collector import DEFAULT_RING_BYTES, Collector
from probes.errors import SetupError
from probes.events import CgroupEvent, CloneEvent, ExecEvent, ExitEvent, ProcessKey, ThrottleEvent
from probes.throttle import RateError, parse_rate

from . import query, snapshot
from .atomic import atomic_writer
from .cache import ANY_HIERARCHY, DEFAULT_GRACE_NS, Process, ProcessCache
from .export import Exporter, compact, counters_json
from .replay import SNAPSHOT_VERSION, Replay, ReplayError
from .sources import live_cache

INCLUDABLE = ("clone", "counters", "procfs", "cgroup")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _include(text: str) -> set[str]:
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    unknown = kinds - set(INCLUDABLE)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown event kind {sorted(unknown)[0]!r}; choose from {', '.join(INCLUDABLE)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procscope", description="Live process monitor driven by eBPF.")
    sub = parser.add_subparsers(dest="command")
    ev = sub.add_parser("events", help="stream exec/exit events (Tetragon JSON or compact text)")
    ev.add_argument("--duration", type=float, help="stop after S seconds")
    ev.add_argument("--count", type=int, help="stop after N events")
    ev.add_argument(
        "-o", "--output",
        help="record to FILE (atomically, mode 0600) instead of stdout; a recording also has clone, procfs and "
        "counters lines, so that --replay rebuilds the whole tree",
    )  # fmt: skip
    ev.add_argument("--format", choices=("json", "compact"), default="json")
    ev.add_argument(
        "--include",
        type=_include,
        default=set(),
        help="also emit procscope's own kinds: clone, counters (once a second), procfs (processes found at start), "
        "cgroup (cgroups made, removed, released, and processes moved, in the tracked hierarchy)",
    )
    _add_source_arguments(ev)
    query.add_arguments(ev)

    snap = sub.add_parser("snapshot", help="every process with its parent, user, capabilities, namespaces and container")
    snap.add_argument("-o", "--output", help="write to FILE (atomically, mode 0600) instead of stdout")
    snap.add_argument(
        "--format", choices=("json", "jsonl"), default="json",
        help="json: one document (schema version %d) with processes, containers, cgroups, drop counters and the "
        "last events; jsonl: Tetragon process_exec lines, parents first, for `tetra getevents`" % SNAPSHOT_VERSION,
    )  # fmt: skip
    snap.add_argument("--duration", type=float, default=0.0, help="watch live events for S seconds first (default 0)")
    snap.add_argument("--last", type=int, default=200, metavar="N", help="keep the last N events (default 200)")
    _add_source_arguments(snap)
    query.add_arguments(snap)

    ui = sub.add_parser("ui", help="the live monitor (what `procscope` with no command runs)")
    ui.add_argument("--snapshot-dir", default=".", help="where the s key writes snapshots (default: here)")
    ui.add_argument(
        "--theme", metavar="NAME",
        help="procscope-dark (default), procscope-light, procscope-high-contrast, or a Textual theme; for this run "
        "(a theme chosen in the monitor with t or the palette is remembered in ~/.config/procscope/config.toml)",
    )  # fmt: skip
    _add_source_arguments(ui)
    query.add_arguments(ui)
    return parser


def cmd_ui(args) -> int:
    import themes  # Textual loads only for the UI
    from tui import config
    from tui.app import ProcscopeApp
    from tui.sources import LiveSource, ProcfsSource, ReplaySource

    if args.theme is not None and args.theme not in themes.all_names():
        _warn(f"unknown theme {args.theme!r}; choose from {', '.join(themes.all_names())}")
        return 2
    grace = int(args.grace * 1e9)
    if args.replay:
        replay = _open_replay(args)
        if replay is None:
            return 2
        source = ReplaySource(replay, grace)
    else:
        collector = _collector(args)
        try:
            collector.open()
            source = LiveSource(collector, grace)
        except SetupError as exc:
            source = ProcfsSource(str(exc), grace)
    ProcscopeApp(source, query_text=str(query.from_args(args)), snapshot_dir=args.snapshot_dir, theme=args.theme,
                 config_path=config.default_path()).run()  # fmt: skip
    return 0


def _rate(text: str):
    try:
        return parse_rate(text)
    except RateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _collector(args) -> Collector:
    return Collector(ring_bytes=args.ring_size, kthreads=args.kthreads, cgroup_rate=args.cgroup_rate)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", metavar="FILE", help="read a recording or snapshot instead of the live system")
    parser.add_argument("--strict", action="store_true", help="with --replay: stop at the first bad line")
    parser.add_argument("--ring-size", type=_size, default=DEFAULT_RING_BYTES, help="BPF ring buffer size (default 16M)")
    parser.add_argument("--kthreads", action="store_true", help="also report kernel threads")
    parser.add_argument(
        "--cgroup-rate", type=_rate, metavar="EVENTS,INTERVAL",
        help="per-cgroup rate limit, e.g. 1000,1s: past it a cgroup's exec/clone/exit events are suppressed (and "
        "counted) until its rate has stayed under the limit for 5 s; THROTTLE_START/STOP events say when (off by default)",
    )  # fmt: skip
    parser.add_argument(
        "--grace", type=float, default=DEFAULT_GRACE_NS / 1e9, metavar="S",
        help="how long an exited process stays in the tree (default 5 s)",
    )  # fmt: skip


def _warn(msg: str) -> None:
    print(f"procscope: {msg}", file=sys.stderr)


class EventStream:
    """Feeds events through the cache and writes the matching ones as
    lines; ``written`` survives an interrupt."""

    def __init__(self, args, out, cache: ProcessCache, recording: bool):
        self.args, self.out = args, out
        self.cache = cache
        self.exporter = Exporter(cache)
        self.query = query.from_args(args)
        self.include = set(args.include) | (set(INCLUDABLE) if recording else set())
        self.written = 0
        self._match = self.query.predicate(cache)

    def _write(self, obj: dict) -> bool:
        """Write one event; True once --count is reached."""
        line = compact(obj) if self.args.format == "compact" else json.dumps(obj, ensure_ascii=False)
        self.out.write(line + "\n")
        self.written += 1
        return self.args.count is not None and self.written >= self.args.count

    def _line_for(self, ev) -> dict | None:
        proc = self.cache.apply(ev)
        if isinstance(ev, ThrottleEvent):
            return self.exporter.throttle_event(ev) if self._throttle_matches(ev) else None
        if isinstance(ev, CgroupEvent):
            tracked = self.cache.cgroup_hierarchy in (ev.hierarchy_id, ANY_HIERARCHY)
            wanted = "cgroup" in self.include and tracked and (not self.query or proc is not None and self._match(proc))
            return self.exporter.cgroup_event(ev) if wanted else None
        if proc is None or (self.query and not self._match(proc)):
            return None
        if isinstance(ev, ExecEvent):
            if ev.flags & wire.FLAG_PROCFS and "procfs" not in self.include:
                return None
            return self.exporter.exec_event(proc)
        if isinstance(ev, ExitEvent):
            return self.exporter.exit_event(ev, proc)
        if isinstance(ev, CloneEvent) and "clone" in self.include:
            return self.exporter.clone_event(ev)
        return None

    def _throttle_matches(self, ev: ThrottleEvent) -> bool:
        """Losses are never filtered away, except those of cgroups that the
        filter's container and cgroup terms exclude."""
        where = self.query.about_cgroups()
        t = self.cache.throttles.get(ev.cgroup_id)
        if not where or t is None:
            return True
        probe = Process(ProcessKey(0, 0), None, 0)  # a stand-in with the cgroup's place only
        probe.cgroup, probe.container = t.path, t.container
        return where.predicate(self.cache)(probe)

    def feed(self, batch) -> bool:
        """Apply and write a batch; True once --count is reached."""
        if self.query:
            self._match = self.query.predicate(self.cache)  # pid: subtrees grow
        for ev in batch:
            line = self._line_for(ev)
            if line is not None and self._write(line):
                return True
        self.cache.expire()
        return False

    def run_live(self, collector: Collector) -> None:
        args = self.args
        deadline = time.monotonic() + args.duration if args.duration is not None else None
        next_counters = time.monotonic() + 1.0
        collector.start()
        while deadline is None or time.monotonic() < deadline:
            if self.feed(collector.get_batch(timeout=0.1) or []):
                return
            if "counters" in self.include and time.monotonic() >= next_counters:
                next_counters += 1.0
                now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
                self.cache.expire(now)
                if self._write(self.exporter.counters_event(collector.counters(), now)):
                    return
            self.out.flush()


def _open_replay(args) -> Replay | None:
    try:
        return Replay(args.replay, strict=args.strict, warn=_warn)
    except ReplayError as exc:
        _warn(str(exc))
        return None


def cmd_events(args) -> int:
    if args.replay:
        replay = _open_replay(args)
        if replay is None:
            return 2
        cache = replay.new_cache(int(args.grace * 1e9))

        def run(stream: EventStream) -> None:
            events = replay.events()
            while batch := list(itertools.islice(events, 512)):
                stream.exporter.wall_offset = replay.wall_offset  # times come out as recorded
                if stream.feed(batch):
                    return

        return _write_events(args, cache, run, replay=replay)
    collector = _collector(args)
    try:
        collector.open()
    except SetupError as exc:
        _warn(str(exc))
        return 2
    _warn(f"collecting (ring buffer {args.ring_size >> 10} KiB); Ctrl-C to stop")
    try:
        cache = live_cache(collector.hierarchy, grace_ns=int(args.grace * 1e9))
        return _write_events(args, cache, lambda stream: stream.run_live(collector))
    finally:
        c = collector.counters()
        collector.stop()
        _warn(
            f"lost: {c.kernel_dropped} in the kernel "
            f"({', '.join(f'{op} {err} {n}' for op, row in c.sent_failed.items() for err, n in row.items() if n) or 'none'}), "
            f"{c.userspace_dropped} in user space, {c.decode_errors} undecodable"
        )
        if any(c.suppressed.values()):
            by_cgroup = "; ".join(f"{name}: {sum(n.values())}" for name, n in c.suppressed_by_cgroup.items())
            _warn(f"suppressed by --cgroup-rate: {sum(c.suppressed.values())} ({by_cgroup})")


def _write_events(args, cache: ProcessCache, run, replay: Replay | None = None) -> int:
    stream = None
    try:
        sink = atomic_writer(args.output) if args.output else contextlib.nullcontext(sys.stdout)
        with sink as out:
            stream = EventStream(args, out, cache, recording=bool(args.output) and args.format == "json")
            try:
                run(stream)
            except KeyboardInterrupt:
                pass
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    except ReplayError as exc:  # --strict
        _warn(str(exc))
        return 1
    misses = cache.counters.misses
    _warn(f"{stream.written if stream else 0} events written; {misses} cache misses (events naming unknown processes)")
    if replay is not None and replay.bad_lines:
        _warn(f"{replay.bad_lines} bad lines in {replay.path} skipped")
        return 1
    return 0


def cmd_snapshot(args) -> int:
    recent: deque[dict] = deque(maxlen=max(args.last, 0))
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
    except OSError as exc:
        _warn(f"cannot write {args.output}: {exc.strerror}; choose a writable path with -o")
        return 2
    if args.output:
        n = len(content["processes"]) if isinstance(content, dict) else len(content)
        _warn(f"wrote {n} processes to {args.output}")
    return 0


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
        cache.apply_all(procfs.scan(hierarchy))
        return cache, {}, "procfs"
    cache = live_cache(collector.hierarchy, grace_ns=int(args.grace * 1e9))
    exporter = Exporter(cache)
    try:
        collector.start()
        cache.apply_all(collector.get_batch(timeout=30) or [])  # the /proc scan comes first
        deadline = time.monotonic() + args.duration
        while (left := deadline - time.monotonic()) > 0:
            for ev in collector.get_batch(timeout=min(left, 0.1)) or []:
                proc = cache.apply(ev)
                if proc is not None and isinstance(ev, ExecEvent):
                    recent.append(exporter.exec_event(proc))
                elif proc is not None and isinstance(ev, ExitEvent):
                    recent.append(exporter.exit_event(ev, proc))
        cache.expire(time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        counters = counters_json(collector.counters(), cache.counters)
    finally:
        collector.stop()
    return cache, counters, "live"


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
        parser.error(str(exc))
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
