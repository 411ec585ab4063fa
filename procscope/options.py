"""The command line's options, typed once: built from argparse's namespace
by the command line (procscope.cli), read by the commands and the
monitor. Durations the cache takes in nanoseconds are converted here, and
the filter options are parsed into one Query here, once."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

from procscope.probes.loader import DEFAULT_RING_BYTES
from procscope.probes.throttle import RateLimit

from . import containers_here, query
from .cache import DEFAULT_GRACE_NS
from .export import PARTS
from .query import Query
from .replay import MAX_PROCESSES
from .sampler import INTERVAL
from .timetravel import Moment
from .window import DEFAULT_EVENTS, DEFAULT_SECONDS

CLIENT_QUEUE = 10_000  # events an agent's client may fall behind by


@dataclass(frozen=True)
class Options:
    command: str = "ui"
    query: Query = field(default_factory=Query)  # every filter option, as one query
    # Where events come from (every command).
    replay: str | None = None
    strict: bool = False
    max_processes: int = MAX_PROCESSES
    ring_size: int = DEFAULT_RING_BYTES
    kthreads: bool = False
    creds_exact: bool = False  # creds changes at the syscalls that make them (syscall tracepoints)
    cgroup_rate: RateLimit | None = None
    metrics: tuple[str, int] | None = None
    grace_ns: int = DEFAULT_GRACE_NS
    # events and snapshot
    duration: float | None = None
    output: str | None = None
    format: str = "json"
    # events
    count: int | None = None
    record: str | None = None
    include: frozenset[str] = frozenset()
    process_cred: bool = True  # cap and process_credentials in process objects (Tetragon: --enable-process-cred)
    process_ns: bool = True  # ns in them (Tetragon: --enable-process-ns)
    max_size: int | None = None
    rotate_interval: float | None = None
    max_backups: int = 5
    compress: bool = False
    # snapshot
    last: int = 200
    at: Moment | None = None
    diff: tuple[Moment, Moment] | None = None
    # ui
    theme: str | None = None
    snapshot_dir: str | None = None  # None: the XDG state directory (tui.config.snapshot_dir)
    window: float = DEFAULT_SECONDS
    window_events: int = DEFAULT_EVENTS
    usage: float = INTERVAL  # s between the sampler's passes; 0: none
    sort_key: str | None = None  # start as a flat list sorted by this column
    tree: bool = False  # -t: the tree (after -s)
    connect: list[str] | None = None  # other machines' agents, instead of this machine
    connect_ca: str | None = None  # TLS to it: the CA its certificate is checked against
    connect_cert: str | None = None  # and this side's certificate and key (mutual TLS)
    connect_key: str | None = None
    no_signals: bool = False
    no_writes: bool = False
    # serve
    host: str = "127.0.0.1"
    port: int = 8000
    unix: str | None = None
    max_sessions: int = 4
    allow_signals: bool = False
    allow_writes: bool = False
    ui_args: tuple[str, ...] = ()
    # agent
    address: str | None = None  # None: agent.DEFAULT_ADDRESS
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    client_queue: int = CLIENT_QUEUE

    @property
    def left_out(self) -> frozenset[str]:
        """What `events` leaves out of process objects (export.PARTS), as Tetragon does unless asked."""
        return frozenset((*(PARTS[:2] if not self.process_cred else ()), *(PARTS[2:] if not self.process_ns else ())))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """QueryError when a filter option is bad."""
        given = vars(args)
        values = {f.name: given[f.name] for f in fields(cls) if given.get(f.name) is not None}
        if "grace" in given:
            values["grace_ns"] = int(given["grace"] * 1e9)
        for name, kind in (("include", frozenset), ("ui_args", tuple), ("diff", tuple)):
            if name in values:
                values[name] = kind(values[name])
        if values.get("ui_args", ())[:1] == ("--",):
            values["ui_args"] = values["ui_args"][1:]
        # Live on this machine, a container named must be one it has.
        here = values.get("replay") is None and not values.get("connect") and values.get("command") != "agent"
        return cls(**values, query=query.from_args(args, containers_here.known if here else None))
