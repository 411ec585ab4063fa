"""`procscope agent`: Tetragon's gRPC API (tetragon.FineGuidanceSensors:
GetEvents, GetHealth, GetVersion), so that Tetragon's clients (`tetra
getevents`, `tetra status`) read this machine's processes live.

The collector's events go through the cache and the exporter as for
`procscope events`; each event object becomes a GetEventsResponse once
(agent_messages) and goes to every client whose filters (agent_filters)
pass it. A client first gets the processes alive when it joins, parents
first, as process_exec events, then the events from then on. Each client
has a bounded queue: one that reads too slowly misses events (counted,
told to it as Tetragon tells its rate limit: a rate_limit_info event, and
said in the agent's log when it leaves) and never holds up the collector
or the other clients."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import queue
import ssl
import stat
import threading
import time
import weakref
from collections.abc import Callable

from google.protobuf import field_mask_pb2
from google.protobuf.message import DecodeError

from procscope import __version__
from procscope.api import tetragon_pb2 as pb

from .agent_filters import FilterError, Predicate, predicate
from .agent_messages import Converter
from .agent_server import (
    INVALID_ARGUMENT,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    Abort,
    Methods,
    Server,
    frame,
    tls_context,
    unix_path,
)
from .cache import ProcessCache
from .export import Exporter
from .kinds import EXEC, EXIT
from .options import CLIENT_QUEUE
from .snapshot import tetragon_lines
from .stream import ProcessEvent

MAX_CLIENTS = 16
WAKE_EVERY = 0.02  # seconds: a client's events wait at most this (and a batch's turn) to be sent
WAKE_QUEUED = 256  # or until this many are queued
LIVING_HEADER = "procscope-living"  # GetEvents' initial metadata: the events of the processes alive, sent first
DEFAULT_ADDRESS = (
    "unix:///run/procscope/procscope.sock"  # root's only (Tetragon's: unix:///var/run/tetragon/tetragon.sock)
)
SERVICE = "tetragon.FineGuidanceSensors"
KINDS = frozenset({"procfs", "exec", "exit", "throttle"})  # the stream's kinds served (Tetragon's, and the scan's)


class AgentError(Exception):
    """The agent cannot serve (one line: what and the fix)."""


@dataclasses.dataclass(eq=False)
class Client:
    """One GetEvents call: its filters and its queue of framed messages (a
    Feed of agent_server; one event's, or a batch's joined), filled on the
    collecting thread, emptied on its connection's."""

    name: str  # "client N (peer)", for the log
    passes: Predicate | None  # None: every event
    field_filters: list[pb.FieldFilter]
    limit: int  # events it may fall behind by
    broadcast: Broadcast
    queue: collections.deque[tuple[bytes, int]] = dataclasses.field(default_factory=collections.deque)  # and events
    put: int = 0  # events queued, ever (written on the collecting thread only)
    sent: int = 0  # of those, taken by its connection (written on its thread only)
    lost: int = 0  # events not queued: it read too slowly
    told: int = 0  # of those, said to it
    left: bool = False
    ended: bool = False  # the agent is stopping: nothing more after the queue
    living: int = 0  # the events of the processes alive when it joined, queued first
    admitted: threading.Event = dataclasses.field(default_factory=threading.Event)
    woken: bool = True  # its connection was told of what is queued
    woke_at: float = 0.0  # when (monotonic)
    wake: int = dataclasses.field(default_factory=lambda: os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))

    def __post_init__(self) -> None:
        # Closed with the object: the collecting thread may still hold it (and write to it) after it left.
        weakref.finalize(self, os.close, self.wake)

    def fileno(self) -> int:
        return self.wake

    def queued(self) -> int:
        """Events in its queue (two counts, each of one thread: no lock)."""
        return self.put - self.sent

    def take(self, limit: int) -> list[bytes] | None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.wake)
        parts = []
        lost = self.lost
        if lost > self.told:  # said before what follows: it read too slowly
            parts.append(frame(self.broadcast.dropped(lost - self.told)))
            self.told = lost
        q, size = self.queue, 0
        if not q and not parts:
            return None if self.ended else []
        while q and size < limit:
            data, events = q.popleft()
            parts.append(data)
            size += len(data)
            self.sent += events
        if q:  # more than limit: its connection comes back for the rest
            os.eventfd_write(self.wake, 1)
        return parts

    def close(self) -> None:
        self.broadcast.leave(self)


class Broadcast:
    """The event stream's sink (an ObjectSink): each event to the clients
    it passes. Written on the collecting thread; clients join and leave
    from their connections' (the list is replaced, never changed in place,
    under a lock)."""

    def __init__(self, cache: ProcessCache, log):
        self.cache, self.log = cache, log
        self.exporter: Exporter | None = None  # the event stream's, set once it is made
        self.clients: list[Client] = []
        self._joining: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._converter = Converter()
        self._checked: list[Client] | None = None  # the clients list _unfiltered was found for
        self._unfiltered = False

    def join(self, client: Client) -> None:
        """From a connection's thread: admitted by the collecting thread (admit)."""
        self._joining.put(client)

    def admit(self) -> None:
        """New clients get the processes alive now, then what follows; the
        connections of clients with new events are woken, at most every
        WAKE_EVERY seconds unless much is queued: a storm's batches are of a
        few events, and a wake-up for each cost more than sending them."""
        while not self._joining.empty():
            client = self._joining.get()
            assert self.exporter is not None
            for obj in tetragon_lines(self.cache, self.exporter):
                if client.passes is None or client.passes(next(iter(obj)), _given(obj)):
                    client.living += self._put(client, self._serialized(obj, client.field_filters))
            with self._lock:
                if not client.left:  # gone while it waited
                    self.clients = [*self.clients, client]
            client.admitted.set()
        now = time.monotonic()
        for client in self.clients:
            if not client.woken and (now - client.woke_at >= WAKE_EVERY or client.queued() >= WAKE_QUEUED):
                client.woken, client.woke_at = True, now
                os.eventfd_write(client.wake, 1)

    def leave(self, client: Client) -> None:
        with self._lock:
            if client.left:
                return
            client.left = True
            self.clients = [c for c in self.clients if c is not client]
        self.log(f"{client.name} left: {client.sent} events sent"
                 + (f", {client.lost} not sent (it read too slowly)" if client.lost else ""))  # fmt: skip

    def write(self, event: dict | ProcessEvent) -> None:
        shared: bytes | None = None  # converted once for the clients without field filters
        clients = self.clients
        if self._unfiltered_for(clients) and clients and isinstance(event, ProcessEvent):  # a storm's every event
            shared = self._serialized(event, [])
            for client in clients:
                self._put(client, shared)
            return
        for client in clients:
            if client.passes is not None:
                if isinstance(event, ProcessEvent):
                    passes = client.passes(EXEC if event.exit is None else EXIT, event.object)
                else:
                    passes = client.passes(next(iter(event)), _given(event))
                if not passes:
                    continue
            if client.field_filters:
                self._put(client, self._serialized(event, client.field_filters))
                continue
            if shared is None:
                shared = self._serialized(event, [])
            self._put(client, shared)

    def write_all(self, events: list[ProcessEvent]) -> None:
        """A batch's execs and exits: when every client takes every event as
        it is (a storm's monitor, tetra), converted once, their messages
        joined, queued for each client in one step (and taken, and sent, in
        one on its connection's thread)."""
        clients = self.clients
        if not clients or not events:
            return
        if not self._unfiltered_for(clients):
            for event in events:
                self.write(event)
            return
        joined, n = self._converter.joined(events), len(events)
        framed: list[bytes] | None = None  # one by one, for a client with room for some
        for client in clients:
            room = client.limit - client.queued()
            if room >= n:
                client.queue.append((joined, n))
                client.put += n
                client.woken = False
                continue
            fits = max(room, 0)  # falling behind: what fits, one by one; the rest lost
            if fits:
                framed = framed or self._converter.frames(events)
                client.queue.extend((data, 1) for data in framed[:fits])
                client.put += fits
                client.woken = False
            client.lost += n - fits

    def _unfiltered_for(self, clients: list[Client]) -> bool:
        """Whether every client takes every event as it is (found again only for a new list)."""
        if clients is not self._checked:
            self._checked = clients
            self._unfiltered = not any(c.passes is not None or c.field_filters for c in clients)
        return self._unfiltered

    def _serialized(self, event: dict | ProcessEvent, field_filters: list[pb.FieldFilter]) -> bytes:
        if isinstance(event, ProcessEvent):
            data = self._converter.frames([event], framed=False)[0]
            if not field_filters:
                return frame(data)
            message = pb.GetEventsResponse.FromString(data)
        else:
            message = self._converter.response(event)
        return frame(_fielded(message, field_filters).SerializeToString())

    @staticmethod
    def _put(client: Client, data: bytes) -> bool:
        if client.queued() >= client.limit:
            client.lost += 1
            return False
        client.queue.append((data, 1))
        client.put += 1
        client.woken = False
        return True

    def dropped(self, n: int) -> bytes:
        """Tetragon's word for events a client missed."""
        message = pb.GetEventsResponse(rate_limit_info=pb.RateLimitInfo(number_of_dropped_process_events=n),
                                       node_name=self.exporter.node if self.exporter else "")  # fmt: skip
        message.time.FromNanoseconds(time.time_ns())
        return message.SerializeToString()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        for client in self.clients:
            client.ended = True
            os.eventfd_write(client.wake, 1)


def _given(obj: dict) -> Callable[[], dict]:
    """An object made already, as a Predicate reads it."""
    return lambda: obj


def _fielded(message: pb.GetEventsResponse, filters: list[pb.FieldFilter]) -> pb.GetEventsResponse:
    """Tetragon's field filters on the event's own message (process_exec...):
    INCLUDE keeps the fields named, EXCLUDE clears them."""
    kind = message.WhichOneof("event")
    if kind is None or not filters:
        return message
    event_type = pb.GetEventsResponse.DESCRIPTOR.fields_by_name[kind].number
    inner = getattr(message, kind)
    for f in filters:
        applies = not f.event_set or event_type in f.event_set
        if f.invert_event_set.value:
            applies = not applies
        if not applies:
            continue
        if f.action == pb.INCLUDE:
            mask = field_mask_pb2.FieldMask(paths=f.fields.paths)
            if mask.IsValidForDescriptor(inner.DESCRIPTOR):
                kept = type(inner)()
                mask.MergeMessage(inner, kept)
                inner.CopyFrom(kept)
        else:
            for path in f.fields.paths:
                *parents, last = path.split(".")
                target = inner
                for name in parents:
                    if name not in target.DESCRIPTOR.fields_by_name:
                        break  # a path of the other event type's (checked when asked)
                    target = getattr(target, name)
                else:
                    if last in target.DESCRIPTOR.fields_by_name:
                        target.ClearField(last)
    return message


class Agent:
    def __init__(self, broadcast: Broadcast, node: str, client_queue: int = CLIENT_QUEUE):
        self.broadcast = broadcast
        self.node = node
        self.client_queue = client_queue
        self.stopping = threading.Event()
        self._numbers = itertools.count(1)

    def get_events(self, data: bytes, peer: str) -> tuple[Client, list[tuple[str, str]]]:
        request = _parsed(pb.GetEventsRequest, data)
        try:
            passes = predicate(request) if request.allow_list or request.deny_list else None
            for f in request.field_filters:
                mask = field_mask_pb2.FieldMask(paths=f.fields.paths)
                if not any(mask.IsValidForDescriptor(m.DESCRIPTOR) for m in (pb.ProcessExec, pb.ProcessExit)):
                    raise FilterError(f"field filter {', '.join(f.fields.paths)}: not fields of process events")
        except FilterError as exc:
            raise Abort(INVALID_ARGUMENT, str(exc)) from None
        if len(self.broadcast.clients) >= MAX_CLIENTS:
            raise Abort(RESOURCE_EXHAUSTED, f"{MAX_CLIENTS} clients already")
        client = Client(f"client {next(self._numbers)} ({peer})", passes, list(request.field_filters),
                        self.client_queue, self.broadcast)  # fmt: skip
        self.broadcast.log(f"{client.name} joined")
        self.broadcast.join(client)
        while not client.admitted.wait(0.5):  # the next batch's turn: a tenth of a second
            if self.stopping.is_set():
                client.close()
                raise Abort(UNAVAILABLE, "the agent is stopping")
        # How many of the first events are the living (a header tetra ignores): a monitor
        # coming back after a break tells from them which processes ended meanwhile.
        return client, [(LIVING_HEADER, str(client.living))]

    def get_health(self, data: bytes, peer: str) -> bytes:
        _parsed(pb.GetHealthStatusRequest, data)
        status = pb.HealthStatus(event=pb.HEALTH_STATUS_TYPE_STATUS, status=pb.HEALTH_STATUS_RUNNING,
                                 details="running")  # fmt: skip
        return pb.GetHealthStatusResponse(health_status=[status]).SerializeToString()

    def get_version(self, data: bytes, peer: str) -> bytes:
        _parsed(pb.GetVersionRequest, data)
        return pb.GetVersionResponse(version=__version__).SerializeToString()

    def methods(self) -> Methods:
        return Methods(unary={f"/{SERVICE}/GetHealth": self.get_health, f"/{SERVICE}/GetVersion": self.get_version},
                       streams={f"/{SERVICE}/GetEvents": self.get_events})  # fmt: skip


def _parsed(kind, data: bytes):
    try:
        return kind.FromString(data)
    except DecodeError:
        raise Abort(INVALID_ARGUMENT, f"not a {kind.DESCRIPTOR.name}") from None


@dataclasses.dataclass
class Tls:
    cert: str
    key: str
    client_ca: str | None = None


def check_address(address: str) -> None:
    """AgentError if ``address`` cannot be served safely (before the probes load)."""
    path = unix_path(address)
    if path is not None:
        _own_directory(path)


def _own_directory(path: str) -> None:
    """The socket's directory: made 0700, or one root alone can write (a
    link, or a directory others write to, could hand the socket to them)."""
    directory = os.path.dirname(path) or "."
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise AgentError(f"cannot make {directory}: {exc.strerror}; choose another --address") from None
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise AgentError(f"{directory} is not a directory that only this user can write to (a link, or writable by "
                         "others); remove it or choose another --address")  # fmt: skip
    if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise AgentError(f"{path} exists and is not a socket; remove it or choose another --address")


def serve(agent: Agent, address: str, tls: Tls | None, log) -> Server:
    """The server, started (AgentError: it could not listen)."""
    check_address(address)
    try:
        context = tls_context(tls.cert, tls.key, tls.client_ca) if tls is not None else None
    except ssl.SSLError as exc:
        raise AgentError(f"cannot use the TLS certificate or key ({exc.reason}); give PEM files that match") from None
    except OSError as exc:
        raise AgentError(f"cannot read {exc.filename}: {exc.strerror}") from None
    server = Server(agent.methods(), context)
    old = os.umask(0o177)  # a socket made while binding: 0600
    try:
        server.listen(address)
    except (OSError, ValueError) as exc:
        raise AgentError(f"cannot listen on {address} ({getattr(exc, 'strerror', None) or exc}); is another agent "
                         "there?") from None  # fmt: skip
    finally:
        os.umask(old)
    server.start()
    if unix_path(address) is None and tls is None:
        log(f"WARNING: serving every process of this machine on {address} WITHOUT TLS: anyone who can reach it "
            "reads them; give --tls-cert and --tls-key (and --tls-client-ca to ask clients for certificates)")  # fmt: skip
    return server
