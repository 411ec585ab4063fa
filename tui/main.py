"""The body of `procscope ui`: the source (live BPF, else /proc, or a
replay), the app, and the exit status (non-zero, with one line, when it
stopped on an error)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from procscope import themes
from procscope.options import Options
from procscope.probes.collector import Collector
from procscope.probes.scan_job import ScanJob
from procscope.replay import Replay
from procscope.window import Window

from . import config
from .app import ProcscopeApp
from .columns import COLUMNS
from .screen_fd import no_terminal, screen_apart
from .sources import LiveSource, RemoteSource, ReplaySource, Source

FROM_CONFIG = ""  # what `--connect` without an address appends (procscope.cli): the config's nodes


def config_nodes(args: Options, warn: Callable[[str], None]) -> Options | None:
    """``args`` with a bare `--connect` replaced by the nodes the config names
    (and its TLS files, unless the command line gives some); None, said in
    one line, when it names none."""
    if FROM_CONFIG not in (args.connect or ()):
        return args
    path, said = config.default_path(), list[str]()
    settings = config.load(path, warn=said.append)
    if not settings.connect:
        why = next((w for w in said if "connect" in w), f"{path} names none")
        warn(f"--connect without an address watches the nodes of the config: {why}; "
             f'add connect = ["host:54321", ...] there, or give the addresses')  # fmt: skip
        return None
    nodes = [n for a in args.connect or () for n in (settings.connect if a == FROM_CONFIG else [a])]
    if args.connect_ca or args.connect_cert or args.connect_key:  # TLS on the command line: its own
        return dataclasses.replace(args, connect=nodes)
    return dataclasses.replace(args, connect=nodes, connect_ca=settings.connect_ca,
                               connect_cert=settings.connect_cert, connect_key=settings.connect_key)  # fmt: skip


def run_monitor(args: Options, collector: Collector | None, replay: Replay | None, warn: Callable[[str], None],
                metrics: Callable | None = None, scan: ScanJob | None = None) -> int:  # fmt: skip
    """``metrics(counters, cache)``: serves --metrics for a live source (False: it could not);
    ``scan``: the first /proc scan, started before Textual was loaded."""
    if args.theme is not None and args.theme not in themes.all_names():
        warn(f"unknown theme {args.theme!r}; choose from {', '.join(themes.all_names())}")
        return 2
    if args.sort_key is not None and args.sort_key not in COLUMNS:
        warn(f"unknown column {args.sort_key!r} for -s; choose from {', '.join(COLUMNS)}")
        return 2
    grace = args.grace_ns
    # Live: the probes attach behind the first frame (the source says so, or why they could not).
    if replay is not None:
        source: Source = ReplaySource(replay, grace, args.window_events)
        replay.warn = source.messages.append  # said in the monitor: its stderr is not the terminal's
    elif args.connect:
        from procscope.agent_client import Remote, credentials, request_for  # the gRPC client loads only for this

        try:
            tls = credentials(args.connect_ca, args.connect_cert, args.connect_key) if args.connect_ca else None
        except OSError as exc:
            warn(f"cannot read {exc.filename}: {exc.strerror}")
            return 2
        nodes: list[Source] = [RemoteSource(Remote(a, request_for(args.query), tls=tls), grace) for a in args.connect]
        source = nodes[0]
    else:
        assert collector is not None  # live: the commands hand one over
        source = LiveSource(collector, grace, scan)
    if metrics is not None and not metrics(source.counters, source.cache):
        return 2
    recent = Window(args.window, args.window_events) if replay is None else None
    shown = nodes if args.connect else source  # several nodes: a monitor each
    app = ProcscopeApp(shown, query_text=str(args.query), snapshot_dir=args.snapshot_dir, theme=args.theme,
                       config_path=config.default_path(), allow_signals=not args.no_signals, window=recent,
                       allow_writes=not args.no_writes, usage_interval=args.usage,
                       sort=None if args.tree else args.sort_key)  # fmt: skip
    if (why := no_terminal(app)) is not None:
        warn(why)
        return 2
    with screen_apart(app):
        app.run()
    if app.failure is not None:
        warn(app.failure)
        return 1
    if replay is not None and replay.bad_lines:  # as `events` and `snapshot` end: the status says it
        warn(f"{replay.bad_lines} bad lines in {replay.path} skipped")
        return 1
    return app.return_code or 0
