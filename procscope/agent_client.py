"""Another machine's events, from its agent's GetEvents stream (a procscope
agent's, or a real Tetragon's): each message becomes the object Tetragon's
JSON export would hold for it (protojson, as Tetragon writes it:
agent_objects.json_object), read by the same reader as a recording's
lines (replay.Replay, given the objects on the connection's thread: a
line written and read again through a pipe, on a thread of its own, cost
several times the reading). A connection that fails or ends is tried
again with backoff; each connection gets a reader of its own (a procscope
agent sends the processes alive first again)."""

from __future__ import annotations

import collections
import contextlib
import errno
import re
import ssl
import threading
import time
from collections.abc import Callable

from google.protobuf.message import DecodeError

from procscope.agent import LIVING_HEADER, SERVICE
from procscope.agent_objects import json_object
from procscope.api import tetragon_pb2 as pb
from procscope.probes.events import ProcessKey

from .agent_server import unix_path
from .agent_stream import CallError, ServerStream, host_port, tls_context
from .options import Options
from .query import OR_FIELDS, Query
from .records import BadRecord, parse_exec_id
from .replay import Recorded, Replay

QUEUE = 200_000  # events waiting for the monitor; past that they are dropped and counted
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)  # seconds before each new try, the last repeated
STEADY = 10.0  # seconds a connection lasts to count as having worked
GET_EVENTS = f"/{SERVICE}/GetEvents"


class Remote:
    """Reads ``address`` on threads of its own until stop(); ``events``
    holds what was read, ``state`` says how the connection is; of the
    events that did not arrive, ``agent_dropped`` counts those the agent
    could not send (its count), ``queue_dropped`` those the monitor was too
    slow to take."""

    def __init__(self, address: str, request: pb.GetEventsRequest | None = None,
                 log: Callable[[str], None] = lambda message: None, tls: ssl.SSLContext | None = None,
                 queue_size: int = QUEUE):  # fmt: skip
        """``tls``: a TLS connection with these credentials (credentials()), else plain."""
        self.address = address
        self.request = request or pb.GetEventsRequest()
        self.log = log
        self.tls = tls
        # Appended and taken without a lock (deque's are atomic): a queue.Queue's locks, per event,
        # were a tenth of a busy node's reading.
        self.events: collections.deque[Recorded] = collections.deque()
        self.queue_size = queue_size
        self.state = "connecting"
        self.node = ""
        self.agent_dropped = 0
        self.queue_dropped = 0
        self.down_since: float | None = None  # wall clock: when a connection that worked ended
        self.connections = 0  # made so far; the current one's number
        # A procscope agent's list of the living, sent first on each connection: (its number,
        # their keys and their parents'), once all of it has arrived.
        self.living: tuple[int, frozenset[ProcessKey]] | None = None
        self.reader: tuple[int, Replay] | None = None  # the current connection's reader, with its number
        self._said = ""  # the last failure said: the same one again is not (the state shows it)
        self._stop = threading.Event()
        self._stream: ServerStream | None = None
        self._thread = threading.Thread(target=self._run, name=f"remote {address}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:  # its read, waiting on the connection's thread, returns
            stream.close()

    def _run(self) -> None:
        tries = 0
        while not self._stop.is_set():
            began = time.monotonic()
            got_any = self._connection()
            if self._stop.is_set():
                return
            # A connection that worked a while starts the backoff and what was said afresh; one
            # that fails again soon (a server that sends one good message, then garbage) does not.
            if got_any and time.monotonic() - began > STEADY:
                tries, self._said = 0, ""
            else:
                tries += 1
            wait = BACKOFF[min(tries, len(BACKOFF) - 1)]
            self.state = f"reconnecting in {wait:g} s"
            self._stop.wait(wait)

    def _connection(self) -> bool:
        """One connection, until it ends; whether anything came through it."""
        self.state = "connecting"
        self.connections += 1
        number = self.connections
        replay = Replay(self.address, warn=self.log, given=True)
        self.reader = (number, replay)
        got_any = False
        stream = self._stream = ServerStream(self.address, GET_EVENTS, self.request.SerializeToString(), self.tls)
        try:
            if self._stop.is_set():  # stopped before stop() could see the stream
                return got_any
            living = _Living(number, stream.open())
            if living.left == 0:
                self.living = (number, frozenset())
            for messages in stream.messages():
                for data in messages:
                    message = pb.GetEventsResponse.FromString(data)
                    if not got_any:
                        got_any, self.state, self.down_since = True, "connected", None
                        self.node = message.node_name
                    if message.WhichOneof("event") == "rate_limit_info":  # the agent's: we read too slowly
                        self.agent_dropped += message.rate_limit_info.number_of_dropped_process_events
                        continue
                    for ev in replay.record(json_object(message)):
                        if len(self.events) < self.queue_size:
                            self.events.append(ev)
                        else:
                            self.queue_dropped += 1
                    if living.left > 0 and (done := living.add(message)) is not None:
                        self.living = done
            self._say(f"{self.address}: the agent ended the stream; reconnecting")
        except CallError as exc:
            if not self._stop.is_set():
                self._say(f"{self.address}: {_reason(exc)}; reconnecting")
        except DecodeError:
            self._say(f"{self.address}: it sent what is not a Tetragon event (GetEventsResponse); is it a procscope "
                      "or Tetragon agent?; reconnecting")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - whatever a server's bytes cause: that connection, never the reader
            if not self._stop.is_set():
                self._say(f"{self.address}: {type(exc).__name__}: {exc}; reconnecting")
        finally:
            self._stream = None
            stream.release()
        if got_any:
            self.down_since = time.time()
        return got_any

    def _say(self, message: str) -> None:
        if message != self._said:
            self._said = message
            self.log(message)

    def drain(self, limit: int = 100_000) -> list[Recorded]:
        events = self.events
        return [events.popleft() for _ in range(min(limit, len(events)))]


class _Living:
    """A procscope agent's list of the living, the first ``left`` execs of a connection (its
    header says how many; another agent's has none), gathered as they arrive."""

    def __init__(self, number: int, metadata) -> None:
        count = dict(metadata or ()).get(LIVING_HEADER, "")
        self.number, self.left = number, int(count) if isinstance(count, str) and count.isdigit() else -1
        self.keys: set[ProcessKey] = set()

    def add(self, message: pb.GetEventsResponse) -> tuple[int, frozenset[ProcessKey]] | None:
        """The whole list once this message completes it."""
        if self.left > 0 and message.WhichOneof("event") == "process_exec":
            self.left -= 1
            for p in (message.process_exec.process, message.process_exec.parent):
                with contextlib.suppress(BadRecord):
                    self.keys.add(parse_exec_id(p.exec_id)[1])
        return (self.number, frozenset(self.keys)) if self.left == 0 else None


def request_for(query: Query) -> pb.GetEventsRequest:
    """The monitor's filter as the agent's allow and deny lists, where
    Tetragon's Filter can say it, so that a busy node sends only what may be
    shown: the positive terms it can say in one allow filter (a superset
    where a field repeats: Tetragon ORs a field's values), each negated one
    in a deny filter. The monitor applies the whole filter itself; the terms
    the lists cannot say (bare words, user, cap, ns, badge, container,
    cgroup, image, a pod's namespace/name) are left to it."""
    allow, deny = pb.Filter(), []
    for term in query.terms:
        f = pb.Filter() if term.negate else allow
        values = term.value.split(",") if term.field in OR_FIELDS else [term.value]
        if term.field in ("bin", "args"):
            v = term.value
            regex = v[1:-1] if len(v) > 2 and v[0] == v[-1] == "/" else re.escape(v)
            (f.binary_regex if term.field == "bin" else f.arguments_regex).append(regex)
        elif term.field == "pid" and not term.negate:  # the pid and its descendants, as pid_set
            f.pid_set.extend(int(v) for v in values)
        elif term.field == "pod" and not any("/" in v for v in values):
            f.pod_regex.extend(f"^{re.escape(v)}$" for v in values)
        elif term.field == "k8s-ns":
            f.namespace.extend(values)
        else:
            continue
        if term.negate:
            deny.append(f)
    return pb.GetEventsRequest(allow_list=[allow] if allow.ListFields() else [], deny_list=deny)


def refusal(args: Options) -> str | None:
    """Why the --connect options cannot be used together, in one line; None when they can."""
    if args.replay:
        return "--connect watches another machine live: not with --replay"
    if (args.connect_cert is None) != (args.connect_key is None) or (args.connect_cert and not args.connect_ca):
        return "a client certificate needs --connect-cert and --connect-key, with --connect-ca"
    nodes = args.connect or []
    if twice := next((a for i, a in enumerate(nodes) if a in nodes[:i]), None):
        return f"--connect {twice} is given twice: each node once"
    if bad := next((a for a in nodes if unix_path(a) is None and host_port(a) is None), None):
        return f"--connect {bad} is not an address; write unix:///PATH or HOST:PORT"
    return None


def credentials(ca: str | None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """TLS trusting ``ca`` (None: the system's roots), with a client certificate if given
    (OSError naming the file: one that cannot be read, or holds no certificate or key)."""
    for path in (ca, cert, key):
        if path is not None:
            with open(path, "rb"):  # unreadable: its own OSError, with its name
                pass
    try:
        return tls_context(ca, cert, key)
    except ssl.SSLError as exc:
        raise OSError(
            errno.EINVAL, f"not a PEM certificate or key ({exc.reason})", ca if cert is None else cert
        ) from None


def _reason(exc: CallError) -> str:
    if exc.code == "UNAVAILABLE":
        return f"cannot reach it ({exc.details}); is an agent listening there?"
    return f"{exc.code}: {exc.details}"
