"""The ``procscope`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time

from probes import wire
from probes.collector import DEFAULT_RING_BYTES, Collector
from probes.errors import SetupError
from probes.events import CloneEvent, ExecEvent, ExitEvent

from .atomic import atomic_writer
from .export import Exporter, compact
from .process_table import ProcessTable

INCLUDABLE = ("clone", "counters", "procfs")


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
    ev.add_argument("-o", "--output", help="write to FILE (atomically, mode 0600) instead of stdout")
    ev.add_argument("--format", choices=("json", "compact"), default="json")
    ev.add_argument(
        "--include",
        type=_include,
        default=set(),
        help="also emit procscope's own kinds: clone, counters (once a second), procfs (processes found at start)",
    )
    ev.add_argument("--ring-size", type=_size, default=DEFAULT_RING_BYTES, help="BPF ring buffer size (default 16M)")
    ev.add_argument("--kthreads", action="store_true", help="also report kernel threads")
    return parser


class EventStream:
    """Writes collector events as lines; ``written`` survives an interrupt."""

    def __init__(self, args, out):
        self.args, self.out = args, out
        self.exporter = Exporter()
        self.table = ProcessTable()
        self.written = 0

    def _write(self, obj: dict) -> bool:
        """Write one event; True once --count is reached."""
        line = compact(obj) if self.args.format == "compact" else json.dumps(obj, ensure_ascii=False)
        self.out.write(line + "\n")
        self.written += 1
        return self.args.count is not None and self.written >= self.args.count

    def _line_for(self, ev) -> dict | None:
        proc, parent = self.table.apply(ev)
        if isinstance(ev, ExecEvent):
            if ev.flags & wire.FLAG_PROCFS and "procfs" not in self.args.include:
                return None
            return self.exporter.exec_event(ev, parent)
        if isinstance(ev, ExitEvent):
            return self.exporter.exit_event(ev, proc, parent)
        if isinstance(ev, CloneEvent) and "clone" in self.args.include:
            return self.exporter.clone_event(ev)
        return None

    def run(self, collector: Collector) -> None:
        args = self.args
        deadline = time.monotonic() + args.duration if args.duration is not None else None
        next_counters = time.monotonic() + 1.0
        collector.start()
        while deadline is None or time.monotonic() < deadline:
            for ev in collector.get_batch(timeout=0.1) or []:
                line = self._line_for(ev)
                if line is not None and self._write(line):
                    return
            if "counters" in args.include and time.monotonic() >= next_counters:
                next_counters += 1.0
                now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
                if self._write(self.exporter.counters_event(collector.counters(), now)):
                    return
            self.out.flush()


def cmd_events(args) -> int:
    collector = Collector(ring_bytes=args.ring_size, kthreads=args.kthreads)
    try:
        collector.open()
    except SetupError as exc:
        print(f"procscope: {exc}", file=sys.stderr)
        return 2
    print(f"procscope: collecting (ring buffer {args.ring_size >> 10} KiB); Ctrl-C to stop", file=sys.stderr, flush=True)
    stream = None
    try:
        sink = atomic_writer(args.output) if args.output else contextlib.nullcontext(sys.stdout)
        with sink as out:
            stream = EventStream(args, out)
            try:
                stream.run(collector)
            except KeyboardInterrupt:
                pass
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    finally:
        c = collector.counters()
        collector.stop()
    summary = (
        f"procscope: {stream.written if stream else 0} events written; lost: {c.kernel_dropped} in the kernel "
        f"({', '.join(f'{op} {err} {n}' for op, row in c.sent_failed.items() for err, n in row.items() if n) or 'none'}), "
        f"{c.userspace_dropped} in user space, {c.decode_errors} undecodable"
    )
    print(summary, file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    # SIGTERM stops as Ctrl-C does, so output files are still completed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "events":
        return cmd_events(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
