"""One server-streaming gRPC call (GetEvents) read over HTTP/2 by h2, on
the thread that reads it: what the socket holds is taken at once and split
into gRPC messages here (each one's 5-byte prefix says where it ends).

Not grpcio's client, which hands over each message through its completion
queue: with it the monitor took 81-89 µs of CPU an event from four agents
in a storm, 61-68 with this (bench/fleet.py, alternating runs). The agent's
server (agent_server) is h2 for the same reason."""

from __future__ import annotations

import contextlib
import socket
import ssl
import urllib.parse
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from procscope import __version__

from .agent_server import STATUS, frame, unix_path

CONNECT_SECONDS = 10.0  # to connect, and for TLS's handshake
MAX_MESSAGE = 4 << 20  # bytes: a larger message ends the call (grpcio's default limit)
WINDOW = 8 << 20  # the flow-control window asked of the server, for the stream and the connection
# The largest DATA frame the server may send (HTTP/2's default: 16 KiB). h2 handles each frame in
# Python at both ends: with 1 MiB frames a storm's event cost the agent 0.6-0.8 µs of framing
# instead of 1.4-1.9, and this reader 1.5 µs instead of 1.9-3.0 (offline, its recorded messages).
FRAME = 1 << 20
READ = 1 << 18  # bytes taken from the socket at a time
DETAILS = 200  # characters of a server's grpc-message kept (it is said in the monitor)
KEEPALIVE = (30, 10, 3)  # TCP: idle seconds before probes, seconds between, probes lost: a peer gone is seen


# h2 formats every frame it receives for its trace log, whether or not anything logs
# (H2Connection._receive_frame: repr(frame)), and hyperframe's repr of a DATA frame writes all
# its payload in hex before cutting it to 20 characters: 220 µs of the 270 h2 took for a 64 KiB
# frame in a loop of its own, 2.5% of the monitor's CPU in bench/fleet.py (py-spy). Its length
# says enough.
def _data_repr(data_frame: hyperframe.frame.DataFrame) -> str:
    return f"<{len(data_frame.data)} bytes>"


hyperframe.frame.DataFrame._body_repr = _data_repr  # type: ignore[method-assign, assignment]


class CallError(Exception):
    """The call failed: its gRPC status name (UNAVAILABLE: not reached, or gone) and what was said."""

    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


def tls_context(ca: str | None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """TLS trusting ``ca`` (None: the system's roots), with a client certificate if given (OSError:
    a file that cannot be read); HTTP/2 by ALPN, as gRPC's servers ask."""
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    return context


class ServerStream:
    """``open()`` the call (its response's metadata), then ``messages()``
    until the server ends it (CallError unless it ends OK); ``close()``,
    from any thread, ends a read that waits."""

    def __init__(self, address: str, method: str, request: bytes, tls: ssl.SSLContext | None = None):
        self.address, self.method, self.request, self.tls = address, method, request, tls
        self.sock: socket.socket | None = None
        # Headers as bytes, read as text here: a server's invalid UTF-8 must not stop the reader.
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.stream_id = 0
        self._closed = False
        self._buffer = bytearray()
        self._ended: tuple[str, str] | None = None  # the trailers' status and message, once read
        self._headers: dict[str, str] | None = None

    def open(self) -> dict[str, str]:
        """Connect, send the request, wait for the response's headers (its metadata)."""
        self.sock = self._connect()
        # A window wide enough for a storm's events between two reads (h2's default: 64 KiB), and large frames.
        codes = h2.settings.SettingCodes
        settings = {codes(code): value for code, value in self.h2.local_settings.items()}
        settings[codes.INITIAL_WINDOW_SIZE] = WINDOW
        settings[codes.MAX_FRAME_SIZE] = FRAME
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.h2.max_inbound_frame_size = FRAME  # h2 takes it from a change acknowledged, which initial values are not
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(WINDOW - self.h2.inbound_flow_control_window)
        self.stream_id = self.h2.get_next_available_stream_id()
        scheme = "https" if self.tls is not None else "http"
        self.h2.send_headers(self.stream_id, [
            (":method", "POST"), (":scheme", scheme), (":path", self.method), (":authority", self._authority()),
            ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", f"procscope/{__version__}"),
        ])  # fmt: skip
        self.h2.send_data(self.stream_id, frame(self.request), end_stream=True)
        self._flush()
        while self._headers is None:
            if not self._receive():
                raise self._error()
        return self._headers

    def messages(self) -> Iterator[list[bytes]]:
        """The messages as they come, in lists of those one read brought; ends when the call does."""
        while True:
            out = self._split()
            if out:
                yield out
            elif not self._receive():
                if self._buffer:
                    raise CallError("INTERNAL", "the stream ended within a message")
                code, details = self._ended or ("UNAVAILABLE", "the connection closed")
                if code != "OK":
                    raise CallError(code, details)
                return

    def close(self) -> None:
        self._closed = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # a recv waiting on another thread returns

    def release(self) -> None:
        """The socket closed (by the thread that reads)."""
        if self.sock is not None:
            self.sock.close()

    def _connect(self) -> socket.socket:
        path = unix_path(self.address)
        try:
            if path is not None:
                host = "localhost"
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                sock.settimeout(CONNECT_SECONDS)
                sock.connect(path)
            else:
                host, port = self._host_port()
                sock = socket.create_connection((host, port), CONNECT_SECONDS)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for option, value in zip((socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT),
                                         KEEPALIVE, strict=True):  # fmt: skip
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=host)
                if sock.selected_alpn_protocol() != "h2":
                    sock.close()
                    raise CallError("UNAVAILABLE", "its TLS does not offer HTTP/2 (ALPN h2)")
        except ssl.SSLError as exc:
            raise CallError("UNAVAILABLE", f"TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise CallError("UNAVAILABLE", exc.strerror or str(exc)) from None
        sock.settimeout(None)  # reads wait until data, or close()
        if self._closed:
            sock.close()
            raise CallError("CANCELLED", "closed")
        return sock

    def _host_port(self) -> tuple[str, int]:
        found = host_port(self.address)
        if found is None:
            raise CallError("UNAVAILABLE", "not an address: unix:PATH or HOST:PORT")
        return found

    def _authority(self) -> str:
        return "localhost" if unix_path(self.address) is not None else self.address.removeprefix("dns:///")

    def _receive(self) -> bool:
        """Read what the socket holds and take in its frames; False once no more will come."""
        if self._ended is not None or self._closed:
            return False
        assert self.sock is not None
        try:
            data = self.sock.recv(READ)
        except OSError as exc:  # reset, or TLS failing
            if self._closed:
                return False
            raise CallError("UNAVAILABLE", getattr(exc, "reason", None) or exc.strerror or str(exc)) from None
        if not data:
            return False
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise CallError("UNAVAILABLE", f"not HTTP/2 as gRPC speaks it ({type(exc).__name__})") from None
        for event in events:
            self._take(event)
        self._flush()
        return True

    def _take(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            headers = _text(event.headers)
            if headers.get(":status") != "200" or not headers.get("content-type", "").startswith("application/grpc"):
                raise CallError("UNAVAILABLE" if headers.get(":status") in ("502", "503", "504") else "UNKNOWN",
                                f"not a gRPC server (HTTP status {headers.get(':status')})")  # fmt: skip
            self._headers = headers
            if "grpc-status" in headers:  # trailers-only: the call is over already
                self._end(headers)
        elif isinstance(event, h2.events.DataReceived):
            self._buffer += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            self._end(_text(event.headers))
        elif isinstance(event, h2.events.StreamReset):
            code = event.error_code
            raise CallError("CANCELLED" if code == h2.errors.ErrorCodes.CANCEL else "INTERNAL",
                            f"the server reset the stream ({getattr(code, 'name', code)})")  # fmt: skip
        elif isinstance(event, h2.events.ConnectionTerminated) and self._ended is None:
            raise CallError("UNAVAILABLE", "the server closed the connection (GOAWAY)")

    def _end(self, headers: dict[str, str]) -> None:
        code = headers.get("grpc-status", "")
        name = STATUS[int(code)] if code.isdigit() and int(code) < len(STATUS) else "UNKNOWN"
        self._ended = name, urllib.parse.unquote(headers.get("grpc-message", ""))[:DETAILS]
        if self._headers is None:
            self._headers = headers

    def _split(self) -> list[bytes]:
        """The whole messages in the buffer, taken from it."""
        buffer, out, at = self._buffer, [], 0
        with memoryview(buffer) as view:
            while len(buffer) - at >= 5:
                if buffer[at]:
                    raise CallError("INTERNAL", "a compressed message, which was not asked for")
                size = int.from_bytes(view[at + 1 : at + 5], "big")
                if size > MAX_MESSAGE:
                    raise CallError("RESOURCE_EXHAUSTED", f"a message of {size} bytes (at most {MAX_MESSAGE})")
                if len(buffer) - at - 5 < size:
                    break
                out.append(bytes(view[at + 5 : at + 5 + size]))
                at += 5 + size
        del buffer[:at]
        return out

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.sock is not None:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                if not self._closed:
                    raise CallError("UNAVAILABLE", exc.strerror or str(exc)) from None

    def _error(self) -> CallError:
        if self._closed:
            return CallError("CANCELLED", "closed")
        return CallError("UNAVAILABLE", "the connection closed before the server answered")


def host_port(address: str) -> tuple[str, int] | None:
    """HOST:PORT, [V6]:PORT or dns:///HOST:PORT as (host, port); None for anything else."""
    named, colon, port = address.removeprefix("dns:///").rpartition(":")
    host = named.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _text(headers) -> dict[str, str]:
    """A header block as text, what is not UTF-8 replaced."""

    def text(value: bytes | str) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    return {text(name): text(value) for name, value in headers or ()}
