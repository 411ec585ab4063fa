"""The ``procscope`` command: arguments and dispatch."""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import NoReturn

from procscope.probes.loader import DEFAULT_RING_BYTES, PAGE_SIZE
from procscope.probes.text import printable
from procscope.probes.throttle import RateError, parse_rate

from . import __version__, commands, query, sampler, stops, window
from .cache import DEFAULT_GRACE_NS
from .options import CLIENT_QUEUE, Options
from .replay import MAX_PROCESSES
from .snapshot_doc import SNAPSHOT_VERSION
from .stream import INCLUDABLE
from .timetravel import Moment, MomentError

MAX_RING_BYTES = 1 << 30
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# -- argument types: each refuses a bad value with one line ----------------------
def _size(text: str) -> int:
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        n = float(t[:-1]) * _UNITS[t[-1]] if t and t[-1] in _UNITS else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad size {text!r}: write bytes or a number with K, M or G, e.g. 16M"
        ) from None
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
        raise argparse.ArgumentTypeError(
            f"bad duration {text!r}: write seconds, or a number with ms, s, m or h"
        ) from None
    if not math.isfinite(n) or n < 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: it must be a finite number, not negative")
    return n


def _positive_seconds(text: str) -> float:
    n = _seconds(text)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: it must be more than 0")
    return n


def _whole(text: str, what: str, least: int, hint: str = "write a whole number") -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad {what} {text!r}: {hint}") from None
    if n < least:
        limit = "it must not be negative" if least == 0 else f"it must be at least {least}"
        raise argparse.ArgumentTypeError(f"bad {what} {text!r}: {limit}")
    return n


def _tenths(text: str) -> float:
    return _whole(text, "delay", 0, "tenths of a second, as htop's -d (10: 1 s)") / 10


# htop's names for the columns procscope has (htop -s, --sort-key).
HTOP_COLUMNS = {"PERCENT_CPU": "CPU%", "PERCENT_MEM": "MEM%", "M_RESIDENT": "RES", "M_VIRT": "VIRT", "M_SHARE": "SHR",
                "TIME": "TIME+", "STATE": "S", "IO_READ_RATE": "IO_R", "IO_WRITE_RATE": "IO_W", "ST_UID": "UID",
                "STARTTIME": "START", "COMM": "COMMAND", "CGROUP": "CGROUP"}  # fmt: skip


def _sort_key(text: str) -> str:
    """A column's name (htop's names too); the monitor says which it has."""
    return HTOP_COLUMNS.get(text.upper(), text.upper())


def _count(text: str) -> int:
    return _whole(text, "count", 1)


def _non_negative(text: str) -> int:
    return _whole(text, "number", 0)


def _rate(text: str):
    try:
        return parse_rate(text)
    except RateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _include(text: str) -> set[str]:
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    unknown = kinds - set(INCLUDABLE)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown event kind {sorted(unknown)[0]!r}; choose from {', '.join(INCLUDABLE)}"
        )
    return kinds


def _moment(text: str) -> Moment:
    try:
        return Moment.parse(text)
    except MomentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: a number from 1 to 65535")
    return int(text)


def _metrics_address(text: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT for 127.0.0.1; [::1]:PORT) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad address {text!r}: give HOST:PORT, e.g. 127.0.0.1:2112")
    return host.strip("[]") or "127.0.0.1", int(port)


def _directory(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory; create it or choose another")
    return text


# -- the parser --------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, saying a bad argument in one line (the usage only with -h)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {printable(message)} ({self.prog} -h lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="procscope", description="Live process monitor driven by eBPF.")
    parser.add_argument("--version", action="version", version=f"procscope {__version__}")
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
        "start), cgroup (cgroups made, removed, released, and processes moved, in the tracked hierarchy), creds "
        "(credentials or namespaces changed after exec: procscope_creds, old and new)",
    )  # fmt: skip
    _add_part_arguments(ev, "the stream's")
    rot = ev.add_argument_group("rotation of -o and --record files (as Tetragon's export file)")
    rot.add_argument("--max-size", type=_size, metavar="SIZE", help="rotate a file once it reaches SIZE (e.g. 10M)")
    rot.add_argument(
        "--rotate-interval", type=_positive_seconds, metavar="DURATION", help="rotate every DURATION (e.g. 1h)"
    )
    rot.add_argument("--max-backups", type=_non_negative, default=5, metavar="N",
                     help="rotated files kept per file (default 5; 0 keeps all)")  # fmt: skip
    rot.add_argument("--compress", action="store_true", help="gzip rotated files")
    _add_source_arguments(ev)
    query.add_arguments(ev)

    snap = sub.add_parser(
        "snapshot", help="every process with its parent, user, capabilities, namespaces and container"
    )
    snap.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically, mode 0600) instead of stdout")
    snap.add_argument(
        "--format", choices=("json", "jsonl"), default="json",
        help=f"json: one document (schema version {SNAPSHOT_VERSION}) with processes, containers, cgroups, drop "
        "counters and the last events; jsonl: Tetragon process_exec lines, parents first, for `tetra getevents`",
    )  # fmt: skip
    snap.add_argument(
        "--duration", type=_seconds, default=0.0, metavar="S", help="watch live events for S seconds first"
    )
    snap.add_argument(
        "--last", type=_non_negative, default=200, metavar="N", help="keep the last N events (default 200)"
    )
    snap.add_argument("--at", type=_moment, metavar="TIME",
                      help="with --replay: the snapshot as of TIME (RFC 3339; --at=-30s from the end, +10s from the start)")  # fmt: skip
    snap.add_argument("--diff", type=_moment, nargs=2, metavar=("T1", "T2"),
                      help="with --replay: what started, exited, and gained or lost privileges between T1 and T2 (JSON)")  # fmt: skip
    _add_source_arguments(snap)
    query.add_arguments(snap)

    ui = sub.add_parser("ui", help="the live monitor (what `procscope` with no command runs)")
    ui.add_argument("--snapshot-dir", type=_directory, default=None,
                    help="where the W key writes snapshots (default: $XDG_STATE_HOME/procscope, ~/.local/state/procscope)")  # fmt: skip
    ui.add_argument(
        "--theme", metavar="NAME",
        help="procscope-dark (default), procscope-light, procscope-high-contrast, or a Textual theme; for this run "
        "(a theme chosen in the monitor with ctrl+t or the palette is remembered in ~/.config/procscope/config.toml)",
    )  # fmt: skip
    ui.add_argument("--window", type=_seconds, default=window.DEFAULT_SECONDS, metavar="DURATION",
                    help="how far back time travel (, . { } @) reaches in the live monitor "
                         "(default 10m; 0 turns it off)")  # fmt: skip
    ui.add_argument(
        "--window-events",
        type=_count,
        default=window.DEFAULT_EVENTS,
        metavar="N",
        help=f"and at most the last N events (default {window.DEFAULT_EVENTS:,}, some 90 MB)",
    )
    ui.add_argument("--usage", type=_seconds, default=sampler.INTERVAL, metavar="DURATION",
                    help="how often CPU%%, memory and the header's meters are read (default 1s; 0: never, "
                         "the columns and header go)")  # fmt: skip
    # htop's habits: -d in tenths of a second, -s and --sort-key with htop's column names too, -t.
    ui.add_argument("-d", "--delay", type=_tenths, dest="usage", metavar="TENTHS",
                    help="as htop's: --usage in tenths of a second (-d 15: 1.5 s)")  # fmt: skip
    ui.add_argument("-s", "--sort-key", type=_sort_key, metavar="COLUMN",
                    help="start as a flat list sorted by COLUMN (CPU%%, MEM%%, TIME+, PID... or htop's names: "
                         "PERCENT_CPU, PERCENT_MEM, M_RESIDENT, TIME); the figures the most first")  # fmt: skip
    ui.add_argument("-t", "--tree", action="store_true", help="start as the tree (the default; after -s, the tree)")
    ui.add_argument("--connect", metavar="ADDR", action="append", nargs="?", const="",
                    help="watch another machine: its agent's gRPC stream (procscope agent, or Tetragon), e.g. "
                         "unix:///run/procscope/procscope.sock or host:54321; again for more nodes "
                         "(ctrl+n picks the one shown); without ADDR, the nodes the config names "
                         "(connect = [...], and connect-ca, -cert, -key)")  # fmt: skip
    ui.add_argument(
        "--connect-ca",
        metavar="FILE",
        help="with --connect: TLS, the agent's certificate checked against this CA (PEM)",
    )
    ui.add_argument(
        "--connect-cert", metavar="FILE", help="with --connect-ca: this side's certificate (PEM), for mutual TLS"
    )
    ui.add_argument("--connect-key", metavar="FILE", help="with --connect-cert: its private key (PEM)")
    # Set by `procscope serve` for the monitors it runs (unless --allow-signals).
    ui.add_argument("--no-signals", action="store_true", help=argparse.SUPPRESS)
    ui.add_argument(
        "--no-writes", action="store_true", help=argparse.SUPPRESS
    )  # and no snapshots or config (unless --allow-writes)
    _add_source_arguments(ui)
    query.add_arguments(ui)

    srv = sub.add_parser("serve", help="the monitor in a web browser (textual-serve): each page gets its own")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1, this machine only: the page shows every process)")  # fmt: skip
    srv.add_argument("--port", type=_port, default=8000, help="default 8000")
    srv.add_argument(
        "--allow-signals", action="store_true", help="let the page send signals and renice (off by default)"
    )
    srv.add_argument("--allow-writes", action="store_true",
                     help="let the page write snapshots (W) and the config (off by default)")  # fmt: skip
    srv.add_argument("--unix", metavar="PATH",
                     help="serve on a Unix socket of mode 0600 (root only; reach it with ssh -L) instead of TCP with a token")  # fmt: skip
    srv.add_argument("--max-sessions", type=_count, default=4, metavar="N",
                     help="monitors running at once, at most (default 4; each is a root process with its own probes)")  # fmt: skip
    srv.add_argument("ui_args", nargs=argparse.REMAINDER, metavar="-- UI-OPTIONS",
                     help="options for each monitor, as `procscope ui` takes them (e.g. -- --container web)")  # fmt: skip
    ag = sub.add_parser(
        "agent", help="serve Tetragon's gRPC API from the live collector (tetra getevents, tetra status)"
    )
    ag.add_argument("--address", metavar="ADDR",
                    help="unix:///PATH (a socket of mode 0600 in a directory only root writes) or HOST:PORT "
                         "(default unix:///run/procscope/procscope.sock)")  # fmt: skip
    ag.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate (PEM; with --tls-key)")
    ag.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    ag.add_argument("--tls-client-ca", metavar="FILE",
                    help="ask every client for a certificate signed by this CA (PEM): mutual TLS")  # fmt: skip
    ag.add_argument("--client-queue", type=_count, default=CLIENT_QUEUE, metavar="N",
                    help=f"events a client may fall behind by (default {CLIENT_QUEUE:,}); past that its events are dropped, "
                         "counted and told to it (rate_limit_info), and the others go on")  # fmt: skip
    _add_part_arguments(ag, "the events'")
    _add_source_arguments(ag)
    query.add_arguments(ag)
    return parser


def _add_part_arguments(parser: argparse.ArgumentParser, whose: str) -> None:
    """--no-process-cred and --no-process-ns: process objects as Tetragon writes them by default."""
    for part, what in (("cred", "cap and process_credentials"), ("ns", "ns")):
        parser.add_argument(f"--process-{part}", action=argparse.BooleanOptionalAction, default=True,
                            help=f"{what} in {whose} process objects (the default); --no-process-{part} leaves "
                                 f"them out, as Tetragon does unless --enable-process-{part}")  # fmt: skip


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", metavar="FILE", help="read a recording or snapshot instead of the live system")
    parser.add_argument("--strict", action="store_true", help="with --replay: stop at the first bad line")
    parser.add_argument("--max-processes", type=_count, default=MAX_PROCESSES, metavar="N",
                        help=f"with --replay: read until more than N processes are alive at once (default "
                             f"{MAX_PROCESSES:,}, some 1.3 GB)")  # fmt: skip
    parser.add_argument(
        "--ring-size", type=_ring_size, default=DEFAULT_RING_BYTES, metavar="SIZE",
        help="BPF ring buffer size, rounded up to a power of two pages (default 16M)",
    )  # fmt: skip
    parser.add_argument("--kthreads", action="store_true", help="also report kernel threads")
    parser.add_argument(
        "--creds-exact", action="store_true",
        help="tell a credential or namespace change (setuid, capset, setns...) by the call that made it, as it "
        "returns, instead of where the process next clones, execs or exits; costs every syscall of every process "
        "on the machine (a getppid loop ran at 0.75 of its rate, bench/cost.py)",
    )  # fmt: skip
    parser.add_argument(
        "--cgroup-rate", type=_rate, metavar="EVENTS,INTERVAL",
        help="per-cgroup rate limit, e.g. 1000,1s: past it a cgroup's exec/clone/exit events are suppressed (and "
        "counted) until its rate has stayed under the limit for 5 s; THROTTLE_START/STOP events say when (off by default)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics", type=_metrics_address, metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics while collecting (e.g. 127.0.0.1:2112; off by default)",
    )  # fmt: skip
    parser.add_argument(
        "--grace", type=_seconds, default=DEFAULT_GRACE_NS / 1e9, metavar="S",
        help="how long an exited process stays in the tree (default 5 s)",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """``argv`` None: the process's command line (and the process ends after)."""
    stops.stop_on_signals()
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    finally:
        if argv is None:  # Python gives SIGINT and SIGTERM their default action (death) back as it ends
            stops.ignore_stops()


def _main(argv: list[str]) -> int:
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["ui", *argv]  # `procscope [options]` opens the monitor
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM where nothing was running to be completed (opening a FIFO)
        commands.warn("interrupted")
        return 130


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        opts = Options.from_args(args)  # a bad filter is reported before anything is loaded
        if opts.command == "events":
            if opts.record and opts.left_out:
                parser.error("--no-process-cred and --no-process-ns are for the stream; a recording keeps everything "
                             "a replay needs: record in a run of its own")  # fmt: skip
            return commands.events(opts)
        if opts.command == "snapshot":
            return commands.snapshot_command(opts)
        if opts.command == "ui":
            return commands.ui(opts)
        if opts.command == "agent":
            return commands.agent(opts)
        if opts.command == "serve":
            Options.from_args(parser.parse_args(["ui", *opts.ui_args]))  # bad monitor options: refused before serving
            return commands.serve(opts)
    except query.QueryError as exc:
        parser.error(printable(str(exc)))
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
