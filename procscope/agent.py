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

import contextlib
import dataclasses
import itertools
import os
import queue
import stat
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import field_mask_pb2

from procscope import __version__
from procscope.api import tetragon_pb2 as pb

from .agent_filters import FilterError, Predicate, predicate
from .agent_messages import Converter
from .cache import ProcessCache
from .export import Exporter
from .options import CLIENT_QUEUE
from .snapshot import tetragon_lines

MAX_CLIENTS = 16
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
    name: str  # "client N (peer)", for the log
    passes: Predicate
    field_filters: list[pb.FieldFilter]
    queue: queue.Queue[bytes | None]
    sent: int = 0
    lost: int = 0  # events not queued: it read too slowly
    told: int = 0  # of those, said to it
    left: bool = False
    living: int = 0  # the events of the processes alive when it joined, queued first
    admitted: threading.Event = dataclasses.field(default_factory=threading.Event)


class Broadcast:
    """The event stream's sink (an ObjectSink): each event to the clients
    it passes. Written on the collecting thread; clients join and leave
    from gRPC's (the list is replaced, never changed in place, under a lock)."""

    def __init__(self, cache: ProcessCache, log):
        self.cache, self.log = cache, log
        self.exporter: Exporter | None = None  # the event stream's, set once it is made
        self.clients: list[Client] = []
        self._joining: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._converter = Converter()

    def join(self, client: Client) -> None:
        """From a gRPC thread: admitted by the collecting thread (admit)."""
        self._joining.put(client)

    def admit(self) -> None:
        """New clients get the processes alive now, then what follows."""
        while not self._joining.empty():
            client = self._joining.get()
            assert self.exporter is not None
            for obj in tetragon_lines(self.cache, self.exporter):
                if client.passes(next(iter(obj)), obj):
                    client.living += self._put(client, self._serialized(obj, client.field_filters))
            with self._lock:
                if not client.left:  # gone while it waited
                    self.clients = [*self.clients, client]
            client.admitted.set()

    def leave(self, client: Client) -> None:
        with self._lock:
            client.left = True
            self.clients = [c for c in self.clients if c is not client]
        self.log(f"{client.name} left: {client.sent} events sent"
                 + (f", {client.lost} not sent (it read too slowly)" if client.lost else ""))  # fmt: skip

    def write(self, obj: dict) -> None:
        shared: bytes | None = None  # converted once for the clients without field filters
        for client in self.clients:
            if not client.passes(next(iter(obj)), obj):
                continue
            if client.field_filters:
                self._put(client, self._serialized(obj, client.field_filters))
                continue
            if shared is None:
                shared = self._serialized(obj, [])
            self._put(client, shared)

    def _serialized(self, obj: dict, field_filters: list[pb.FieldFilter]) -> bytes:
        return _fielded(self._converter.response(obj), field_filters).SerializeToString()

    @staticmethod
    def _put(client: Client, data: bytes) -> bool:
        try:
            client.queue.put_nowait(data)
        except queue.Full:
            client.lost += 1
            return False
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        for client in self.clients:  # a full queue's reader sees the agent stopping within 0.5 s anyway
            with contextlib.suppress(queue.Full):
                client.queue.put_nowait(None)


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

    def get_events(self, request: pb.GetEventsRequest, context: grpc.ServicerContext):
        try:
            passes = predicate(request)
            for f in request.field_filters:
                mask = field_mask_pb2.FieldMask(paths=f.fields.paths)
                if not any(mask.IsValidForDescriptor(m.DESCRIPTOR) for m in (pb.ProcessExec, pb.ProcessExit)):
                    raise FilterError(f"field filter {', '.join(f.fields.paths)}: not fields of process events")
        except FilterError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if len(self.broadcast.clients) >= MAX_CLIENTS:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{MAX_CLIENTS} clients already")
        client = Client(f"client {next(self._numbers)} ({context.peer()})", passes, list(request.field_filters),
                        queue.Queue(self.client_queue))  # fmt: skip
        self.broadcast.log(f"{client.name} joined")
        self.broadcast.join(client)
        try:
            while not client.admitted.wait(0.5):
                if not context.is_active() or self.stopping.is_set():
                    return
            # How many of the first events are the living (a header tetra ignores): a monitor
            # coming back after a break tells from them which processes ended meanwhile.
            context.send_initial_metadata(((LIVING_HEADER, str(client.living)),))
            while context.is_active() and not self.stopping.is_set():
                try:
                    data = client.queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                if data is None:
                    break
                if client.lost > client.told:
                    yield self._dropped(client.lost - client.told)
                    client.told = client.lost
                client.sent += 1
                yield data
        finally:
            self.broadcast.leave(client)

    def _dropped(self, n: int) -> bytes:
        message = pb.GetEventsResponse(rate_limit_info=pb.RateLimitInfo(number_of_dropped_process_events=n),
                                       node_name=self.node)  # fmt: skip
        message.time.FromNanoseconds(time.time_ns())
        return message.SerializeToString()

    def get_health(self, request: pb.GetHealthStatusRequest, context) -> pb.GetHealthStatusResponse:
        status = pb.HealthStatus(event=pb.HEALTH_STATUS_TYPE_STATUS, status=pb.HEALTH_STATUS_RUNNING,
                                 details="running")  # fmt: skip
        return pb.GetHealthStatusResponse(health_status=[status])

    def get_version(self, request: pb.GetVersionRequest, context) -> pb.GetVersionResponse:
        return pb.GetVersionResponse(version=__version__)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "GetEvents": grpc.unary_stream_rpc_method_handler(
                self.get_events, request_deserializer=pb.GetEventsRequest.FromString,
                response_serializer=lambda data: data),  # serialized once for every client
            "GetHealth": grpc.unary_unary_rpc_method_handler(
                self.get_health, request_deserializer=pb.GetHealthStatusRequest.FromString,
                response_serializer=pb.GetHealthStatusResponse.SerializeToString),
            "GetVersion": grpc.unary_unary_rpc_method_handler(
                self.get_version, request_deserializer=pb.GetVersionRequest.FromString,
                response_serializer=pb.GetVersionResponse.SerializeToString),
        })  # fmt: skip


@dataclasses.dataclass
class Tls:
    cert: str
    key: str
    client_ca: str | None = None


def unix_path(address: str) -> str | None:
    if address.startswith("unix://"):
        return address.removeprefix("unix://")
    if address.startswith("unix:"):
        return address.removeprefix("unix:")
    return None


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


def serve(agent: Agent, address: str, tls: Tls | None, log) -> grpc.Server:
    """The server, started (AgentError: it could not listen)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_CLIENTS + 4),
                         maximum_concurrent_rpcs=MAX_CLIENTS + 4)  # fmt: skip
    server.add_generic_rpc_handlers((agent.handler(),))
    check_address(address)
    old = os.umask(0o177)  # a socket made while binding: 0600
    try:
        if tls is not None:
            with open(tls.key, "rb") as k, open(tls.cert, "rb") as c:
                pair = [(k.read(), c.read())]
            ca = open(tls.client_ca, "rb").read() if tls.client_ca else None  # noqa: SIM115
            port = server.add_secure_port(address, grpc.ssl_server_credentials(
                pair, root_certificates=ca, require_client_auth=ca is not None))  # fmt: skip
        else:
            port = server.add_insecure_port(address)
    except OSError as exc:
        raise AgentError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except RuntimeError as exc:
        raise AgentError(f"cannot listen on {address} ({exc}); is another agent there?") from None
    finally:
        os.umask(old)
    if not port:
        raise AgentError(f"cannot listen on {address}; is another agent there?")
    server.start()
    if unix_path(address) is None and tls is None:
        log(f"WARNING: serving every process of this machine on {address} WITHOUT TLS: anyone who can reach it "
            "reads them; give --tls-cert and --tls-key (and --tls-client-ca to ask clients for certificates)")  # fmt: skip
    return server
