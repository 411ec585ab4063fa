"""The body of `procscope ui`: the source (live BPF, else /proc, or a
replay), the app, and the exit status (non-zero, with one line, when it
stopped on an error)."""

from __future__ import annotations

from collections.abc import Callable

from procscope import query, themes
from procscope.probes.collector import Collector
from procscope.probes.errors import SetupError
from procscope.replay import Replay

from . import config
from .app import ProcscopeApp
from .sources import LiveSource, ProcfsSource, ReplaySource


def run_monitor(args, collector: Collector | None, replay: Replay | None, warn: Callable[[str], None]) -> int:
    if args.theme is not None and args.theme not in themes.all_names():
        warn(f"unknown theme {args.theme!r}; choose from {', '.join(themes.all_names())}")
        return 2
    grace = int(args.grace * 1e9)
    if replay is not None:
        source = ReplaySource(replay, grace)
    else:
        try:
            collector.open()
            source = LiveSource(collector, grace)
        except SetupError as exc:
            source = ProcfsSource(str(exc), grace)
    app = ProcscopeApp(source, query_text=str(query.from_args(args)), snapshot_dir=args.snapshot_dir, theme=args.theme,
                       config_path=config.default_path())  # fmt: skip
    app.run()
    if app.failure is not None:
        warn(app.failure)
        return 1
    return app.return_code or 0
