"""The agent's gRPC server: HTTP/2 by h2, gRPC's framing on it, for
Tetragon's clients (tetra) and procscope's (grpcio).

Not grpcio's server: it sends a stream's messages one call of a Python
generator at a time, ~50 µs of CPU a message here (45 with grpc.aio): in a
storm, more than the collector. Here everything a stream has queued since
its last write goes out at once, many gRPC messages in one DATA frame (a
message's 5-byte prefix says where it ends: frames may split and join
messages at will), one write to the socket. The messages are not copied
into the frame: its header and they go to the kernel as they are
(sendmsg), h2 told only how much was sent (_data_sent): h2's send_data
copied every byte six times, and this thread took 2.4-2.6 µs of CPU an
event in bench/fleet.py, 1.8-2.0 so (1.05-1.1 once a batch's messages
came joined, as one: agent.Broadcast.write_all). One thread per connection,
which carries any number of calls as HTTP/2 allows; a client that stops
reading closes its flow-control window and holds up its own thread only."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import itertools
import os
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.stream

# gRPC's status codes (google.golang.org/grpc/codes), by number: their names, and those the agent answers.
STATUS = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
          "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
          "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")  # fmt: skip
OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = (
    STATUS.index(name) for name in ("OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "INTERNAL",
                                    "UNAVAILABLE")
)  # fmt: skip
MAX_REQUEST = 1 << 20  # a request's bytes (a GetEventsRequest of many filters is a few KiB)
MAX_CONNECTIONS = 64
HANDSHAKE_SECONDS = 10.0  # a TLS client that says nothing for this long is closed
STOP_SECONDS = 0.5  # at stop, a connection's time to send what is queued and the trailers
CHUNK = 1 << 16  # bytes handed to the socket a call
IOV = 512  # buffers handed to the socket a call (Linux takes 1024)
TAKE_BELOW = 1 << 16  # a stream's unsent bytes under which its feed is asked for more
TAKE = 1 << 18  # bytes asked of a feed at a time


class Abort(Exception):
    """A call refused: its gRPC status code and message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def frame(message: bytes) -> bytes:
    """One gRPC message on the wire: not compressed, its length, itself."""
    return b"\0" + len(message).to_bytes(4, "big") + message


class Feed(Protocol):
    """A server stream's messages, framed."""

    def fileno(self) -> int: ...  # readable when there may be messages to take

    def take(self, limit: int) -> list[bytes] | None:
        """The framed messages there now, about ``limit`` bytes at most ([]: nothing yet); None: the stream is over."""
        ...

    def close(self) -> None: ...  # the call is over, whichever side ended it


Unary = Callable[[bytes, str], bytes]  # (request, peer) → the response message
Streaming = Callable[[bytes, str], tuple[Feed, list[tuple[str, str]]]]  # → its feed and initial metadata


@dataclasses.dataclass
class Methods:
    """What the server answers, by path ("/package.Service/Method")."""

    unary: dict[str, Unary]
    streams: dict[str, Streaming]


class _Buffers:
    """Bytes in the buffers they came in, in order, never joined: what is
    taken from the front is taken as they are (the last one cut: a view)."""

    def __init__(self) -> None:
        self.parts: collections.deque[bytes | memoryview] = collections.deque()
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes | memoryview) -> None:
        if data:
            self.parts.append(data)
            self.size += len(data)

    def front(self, n: int, most: int = IOV) -> list[bytes | memoryview]:
        """The first ``n`` bytes (fewer if there are not), in ``most`` buffers at most; left here."""
        out = []
        for part in itertools.islice(self.parts, most):
            if len(part) >= n:
                out.append(part if len(part) == n else memoryview(part)[:n])
                break
            out.append(part)
            n -= len(part)
        return out

    def drop(self, n: int) -> None:
        """Forget the first ``n`` bytes."""
        parts = self.parts
        self.size -= n
        while n:
            if len(parts[0]) > n:
                parts[0] = memoryview(parts[0])[n:]
                return
            n -= len(parts.popleft())


@dataclasses.dataclass(eq=False)
class _Call:
    path: str
    request: bytearray = dataclasses.field(default_factory=bytearray)
    feed: Feed | None = None
    pending: _Buffers = dataclasses.field(default_factory=_Buffers)  # framed, not yet in a DATA frame
    ending: bool = False  # once pending is sent: the trailers


class Server:
    def __init__(self, methods: Methods, tls: ssl.SSLContext | None = None):
        self.methods, self.tls = methods, tls
        self.stopping = threading.Event()
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # wakes every connection at stop
        self._listener: socket.socket | None = None
        self._connections: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def listen(self, address: str) -> None:
        """Bind ``address`` (unix:PATH, unix://PATH, HOST:PORT, [V6]:PORT); OSError if it cannot."""
        path = unix_path(address)
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            if os.path.lexists(path):  # a socket (checked before): someone's listening, or a dead agent's
                with socket.socket(socket.AF_UNIX) as probe:
                    listening = probe.connect_ex(path) == 0
                if listening:
                    raise OSError(errno.EADDRINUSE, f"an agent is listening on {path}")
                os.unlink(path)
            sock.bind(path)
        else:
            named, _, port = address.rpartition(":")
            host = named.removeprefix("[").removesuffix("]") or None
            family, kind, proto, _, where = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                                               flags=socket.AI_PASSIVE)[0]  # fmt: skip
            sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
        sock.listen(64)
        self._listener = sock

    def start(self) -> None:
        threading.Thread(target=self._accept, name="agent-accept", daemon=True).start()

    def stop(self, grace: float = 1.0) -> None:
        """Streams end (their trailers sent), then every connection closes, within ``grace`` seconds."""
        self.stopping.set()
        os.eventfd_write(self._stop_fd, 1)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            threads = list(self._connections)
        for thread in threads:
            thread.join(grace / max(len(threads), 1))

    def _accept(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                sock, where = self._listener.accept()
            except OSError:
                return  # closed: stopping
            with self._lock:
                if len(self._connections) >= MAX_CONNECTIONS:
                    sock.close()
                    continue
                peer = _peer(sock.family, where)
                thread = threading.Thread(target=self._serve, args=(sock, peer), name=f"agent {peer}", daemon=True)
                self._connections.add(thread)
            thread.start()

    def _serve(self, sock: socket.socket, peer: str) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(HANDSHAKE_SECONDS)
                sock = self.tls.wrap_socket(sock, server_side=True)
            sock.setblocking(False)
            _Connection(self, sock, peer).run()
        except (OSError, h2.exceptions.H2Error):
            pass  # the client went away, or spoke no HTTP/2: its connection only
        finally:
            sock.close()
            with self._lock:
                self._connections.discard(threading.current_thread())


class _Connection:
    def __init__(self, server: Server, sock: socket.socket, peer: str):
        self.server, self.sock, self.peer = server, sock, peer
        # Headers as bytes: a client's that are not UTF-8 must not end its thread in a traceback.
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.calls: dict[int, _Call] = {}
        self.outgoing = _Buffers()
        self.gone_by: float | None = None  # stopping: the time by which it closes

    def run(self) -> None:
        self.h2.initiate_connection()
        try:
            while True:
                self._pump()
                self.outgoing.append(self.h2.data_to_send())
                stopping = self.server.stopping.is_set()
                if stopping:
                    if self.gone_by is None:
                        self.gone_by = time.monotonic() + STOP_SECONDS
                    if not self.calls and not self.outgoing or time.monotonic() > self.gone_by:
                        return  # all said, or a client that does not read is left
                # Once stopping is seen, its fd would wake every select: left out.
                waits: list = [self.sock] if stopping else [self.sock, self.server._stop_fd]
                if len(self.outgoing) < CHUNK:  # what _pump takes from: a feed it would not read would wake it at once
                    waits += [c.feed for c in self.calls.values() if c.feed is not None and not c.pending]
                tls_buffered = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
                readable, writable, _ = select.select(waits,
                                                      [self.sock] if self.outgoing else [], [],
                                                      0 if tls_buffered else 1.0)  # fmt: skip
                if self.sock in writable or (self.outgoing and not readable):
                    self._write()
                if (self.sock in readable or tls_buffered) and not self._read():
                    return
                if self.server.stopping.is_set():
                    for stream_id, call in list(self.calls.items()):
                        if call.feed is None and not call.ending:  # its request still coming
                            self._refuse(stream_id, Abort(UNAVAILABLE, "the agent is stopping"))
                        call.ending = True
        finally:
            for call in self.calls.values():
                if call.feed is not None:
                    call.feed.close()

    def _write(self) -> None:
        try:
            if isinstance(self.sock, ssl.SSLSocket):  # no sendmsg: TLS encrypts a copy anyway
                sent = self.sock.send(b"".join(self.outgoing.front(CHUNK)))
            else:
                sent = self.sock.sendmsg(self.outgoing.front(CHUNK * 4))
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        self.outgoing.drop(sent)

    def _read(self) -> bool:
        """False once the client has closed the connection."""
        try:
            data = self.sock.recv(CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        if not data:
            return False
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                path = next((bytes(value).decode("utf-8", "replace") for name, value in event.headers or ()
                             if name == b":path"), "")  # fmt: skip
                self.calls[event.stream_id] = _Call(path)
            elif isinstance(event, h2.events.DataReceived):
                with contextlib.suppress(h2.exceptions.StreamClosedError):  # refused: its window matters no more
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                call = self.calls.get(event.stream_id)
                if call is not None and call.feed is None and not call.ending:
                    call.request += event.data
                    if len(call.request) > MAX_REQUEST:
                        self._refuse(event.stream_id, Abort(RESOURCE_EXHAUSTED, "request too large"))
            elif isinstance(event, h2.events.StreamEnded):
                call = self.calls.get(event.stream_id)
                if call is not None and call.feed is None and not call.ending:
                    self._dispatch(event.stream_id, call)
            elif isinstance(event, h2.events.StreamReset):
                self._forget(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                return False
        return True

    def _dispatch(self, stream_id: int, call: _Call) -> None:
        methods = self.server.methods
        try:
            request = _message(bytes(call.request))
            if call.path in methods.unary:
                response = methods.unary[call.path](request, self.peer)
                self._headers(stream_id, [])
                call.pending.append(frame(response))
                call.ending = True
            elif call.path in methods.streams:
                call.feed, metadata = methods.streams[call.path](request, self.peer)
                self._headers(stream_id, metadata)
            else:
                raise Abort(UNIMPLEMENTED, f"unknown method {call.path}")
        except Abort as refused:
            self._refuse(stream_id, refused)
        except Exception as exc:  # noqa: BLE001 - a handler's bug: this call fails, the agent goes on
            self._refuse(stream_id, Abort(INTERNAL, f"{type(exc).__name__}: {exc}"))

    def _headers(self, stream_id: int, metadata: list[tuple[str, str]]) -> None:
        self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"), *metadata])

    def _refuse(self, stream_id: int, refused: Abort) -> None:
        """Trailers-only: the status and its message, and the call is over."""
        with contextlib.suppress(h2.exceptions.StreamClosedError):  # the client reset it meanwhile
            self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                             *_status(refused.code, str(refused))], end_stream=True)  # fmt: skip
        self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        call = self.calls.pop(stream_id, None)
        if call is not None and call.feed is not None:
            call.feed.close()

    def _pump(self) -> None:
        """Each call's feed into DATA frames, as far as the client's windows allow; the trailers after its last."""
        if len(self.outgoing) >= CHUNK:
            return  # the socket first
        for stream_id, call in list(self.calls.items()):
            try:
                self._send(stream_id, call)
            except h2.exceptions.StreamClosedError:  # reset by the client, not yet read: that call only
                self._forget(stream_id)

    def _send(self, stream_id: int, call: _Call) -> None:
        if call.feed is not None and not call.ending and len(call.pending) < TAKE_BELOW:
            more = call.feed.take(TAKE)
            if more is None:
                call.ending = True
            else:
                for message in more:
                    call.pending.append(message)
        pending = call.pending
        while pending:
            n = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size, len(pending))
            if n <= 0:
                break
            self._data_sent(stream_id, n)
            # A DATA frame's header (length, type 0, no flags, the stream), after what h2 has queued.
            self.outgoing.append(self.h2.data_to_send())
            self.outgoing.append(n.to_bytes(3, "big") + b"\0\0" + stream_id.to_bytes(4, "big"))
            for part in pending.front(n, len(pending.parts)):
                self.outgoing.append(part)
            pending.drop(n)
        if call.ending and not call.pending:
            self.h2.send_headers(stream_id, _status(OK, ""), end_stream=True)
            self._forget(stream_id)

    def _data_sent(self, stream_id: int, n: int) -> None:
        """What H2Connection.send_data does but make the frame (h2 4.4, pinned): the
        states' checks (StreamClosedError, ProtocolError) and the windows."""
        self.h2.state_machine.process_input(h2.connection.ConnectionInputs.SEND_DATA)
        stream = self.h2.streams[stream_id]
        stream.state_machine.process_input(h2.stream.StreamInputs.SEND_DATA)
        stream.outbound_flow_control_window -= n
        self.h2.outbound_flow_control_window -= n


def _message(body: bytes) -> bytes:
    """The one message of a request."""
    if len(body) < 5 or body[0] != 0:
        raise Abort(UNIMPLEMENTED if body[:1] == b"\1" else INVALID_ARGUMENT,
                    "compressed requests are not served" if body[:1] == b"\1" else "no request message")  # fmt: skip
    length = int.from_bytes(body[1:5], "big")
    if len(body) != 5 + length:
        raise Abort(INVALID_ARGUMENT, "a request of one message was expected")
    return body[5:]


def _status(code: int, message: str) -> list[tuple[str, str]]:
    out = [("grpc-status", str(code))]
    if message:  # percent-encoded, as gRPC's HTTP/2 protocol asks
        out.append(("grpc-message", urllib.parse.quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")))
    return out


def _peer(family: int, where) -> str:
    """The client, as grpc names a peer (ipv4:ADDR:PORT, ipv6:[ADDR]:PORT, unix:)."""
    if family == socket.AF_INET:
        return f"ipv4:{where[0]}:{where[1]}"
    if family == socket.AF_INET6:
        return f"ipv6:[{where[0]}]:{where[1]}"
    return "unix:"


def unix_path(address: str) -> str | None:
    if address.startswith("unix://"):
        return address.removeprefix("unix://")
    if address.startswith("unix:"):
        return address.removeprefix("unix:")
    return None


def tls_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """The server's TLS: HTTP/2 by ALPN, as gRPC's clients ask; client certificates of ``client_ca`` required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
