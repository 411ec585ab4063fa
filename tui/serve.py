"""`procscope serve`: the monitor in a browser, with textual-serve. Each
page that connects gets its own monitor (`procscope ui`, run by the
server), which shows what root sees, so the server lets in only whoever
holds its key:

- on TCP a random token, printed at start (as Jupyter does), is needed in
  the page's URL and in the websocket's path; a websocket whose Origin is
  another site's is refused (any page the user opens could try);
- ``--unix PATH`` serves on a Unix socket of mode 0600 instead (root only;
  e.g. ``ssh -L 8000:PATH host`` from a workstation);
- at most ``--max-sessions`` monitors run at once; each runs in its own
  process group and is reaped when its websocket closes (asked to quit,
  then SIGTERM, then SIGKILL to the group);
- served monitors send no signals and write no snapshot or config unless
  the server was started with --allow-signals / --allow-writes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import shlex
import signal
import socket
import stat
import sys
from collections.abc import Callable

LOCAL = ("127.0.0.1", "localhost", "::1")
MAX_SESSIONS = 4
QUIT_S = 2.0  # a monitor asked to quit has this long before SIGTERM, and again before SIGKILL
MAX_MESSAGE = 1 << 16  # bytes of one message from a page: keys and sizes are small


def monitor_command(ui_args: list[str], allow_signals: bool, allow_writes: bool = False) -> list[str]:
    return [sys.executable, "-m", "procscope", "ui", *ui_args, *([] if allow_signals else ["--no-signals"]),
            *([] if allow_writes else ["--no-writes"])]  # fmt: skip


def _server_class():
    """The Server, built when textual-serve is imported (only for `serve`)."""
    import aiohttp_jinja2
    from aiohttp import web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server

    class Monitor(AppService):
        """One page's monitor: its own process group, reaped for sure."""

        async def _open_app_process(self, width: int = 80, height: int = 24):
            self._process = process = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self._build_environment(width=width, height=height),
                start_new_session=True,
            )  # fmt: skip
            self._stdin = process.stdin
            return process

        async def stop(self) -> None:
            process = self._process
            if process is None:
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send_meta({"type": "quit"}), QUIT_S)
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, sig)
                try:
                    await asyncio.wait_for(process.wait(), QUIT_S)
                    break
                except TimeoutError:
                    continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever it started
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
                self._task = None

    class ProcscopeServer(Server):
        def __init__(self, command: list[str], host: str, port: int, token: str, unix: str | None,
                     max_sessions: int):  # fmt: skip
            super().__init__(shlex.join(command), host=host, port=port, title="procscope")
            self.argv = command
            self.token = token
            self.unix = unix
            self.max_sessions = max_sessions
            self.sessions = 0
            self.monitors: set = set()  # the running ones' processes
            self.origins = {self.public_url.rstrip("/")}
            if host in LOCAL:
                self.origins |= {f"http://{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")}

        def initialize_logging(self) -> None:
            pass  # the server's one line at start is ours

        async def on_startup(self, app) -> None:
            pass

        async def on_shutdown(self, app) -> None:
            """The server stops: no monitor outlives it."""
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for process in list(self.monitors):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, sig)
                for process in list(self.monitors):
                    with contextlib.suppress(TimeoutError, ProcessLookupError):
                        await asyncio.wait_for(process.wait(), QUIT_S)

        async def _make_app(self):
            app = await super()._make_app()
            # The websocket's path carries the token: the page's script appends its own query.
            app.router.add_get("/ws/{token}", self.handle_websocket)
            return app

        def _allowed(self, request, token: str) -> bool:
            if self.token and not hmac.compare_digest(token.encode(), self.token.encode()):
                return False
            origin = request.headers.get("Origin")
            return origin is None or origin.rstrip("/") in self.origins

        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request):
            if not self._allowed(request, request.query.get("token", "")):
                raise web.HTTPForbidden(
                    text="procscope: this page needs the URL with the token that `procscope serve` printed\n"
                )
            context = await Server.handle_index.__wrapped__(self, request)  # the template's data
            context["app_websocket_url"] = context["app_websocket_url"] + (f"/{self.token}" if self.token else "")
            return context

        async def handle_websocket(self, request):
            if request.path == "/ws" and self.token or not self._allowed(request, request.match_info.get("token", "")):
                raise web.HTTPForbidden(text="procscope: wrong or missing token, or another site's page\n")
            if self.sessions >= self.max_sessions:
                raise web.HTTPServiceUnavailable(text=f"procscope: {self.max_sessions} monitors are open already\n")
            self.sessions += 1
            websocket = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE)
            service = None
            try:
                await websocket.prepare(request)
                service = Monitor(self.argv, write_bytes=websocket.send_bytes, write_str=websocket.send_str,
                                  close=websocket.close, download_manager=self.download_manager)  # fmt: skip
                width = _size(request.query.get("width"), 80)
                height = _size(request.query.get("height"), 24)
                await service.start(width, height)
                self.monitors.add(service._process)
                await self._process_messages(websocket, service)
            except Exception:  # noqa: BLE001, S110 - a page's garbage or a closed socket ends its session only
                pass
            finally:
                self.sessions -= 1
                if service is not None:
                    await service.stop()
                    self.monitors.discard(service._process)
                with contextlib.suppress(Exception):
                    await websocket.close()
            return websocket

        def serve(self, debug: bool = False) -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            from aiohttp.web_runner import GracefulExit

            def leave() -> None:
                raise GracefulExit()

            loop.add_signal_handler(signal.SIGINT, leave)
            loop.add_signal_handler(signal.SIGTERM, leave)
            if self.unix is not None:
                sock = _unix_socket(self.unix)
                web.run_app(self._make_app(), sock=sock, handle_signals=False, loop=loop, print=lambda *a: None)
            else:
                web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=False, loop=loop,
                            print=lambda *a: None)  # fmt: skip

    return ProcscopeServer


def _size(value: str | None, default: int) -> int:
    try:
        return min(max(int(value or default), 10), 1000)
    except ValueError:
        return default


def _unix_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from its creation (the umask, not a chmod after)."""
    with contextlib.suppress(FileNotFoundError):
        if _is_socket(path):
            os.unlink(path)  # a previous server's
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(16)
    return sock


def _is_socket(path: str) -> bool:
    """Whether ``path`` itself (not a link's target) is a socket; FileNotFoundError when absent."""
    return stat.S_ISSOCK(os.lstat(path).st_mode)


def run_server(host: str, port: int, ui_args: list[str], allow_signals: bool, warn: Callable[[str], None],
               unix: str | None = None, max_sessions: int = MAX_SESSIONS, allow_writes: bool = False) -> int:  # fmt: skip
    token = "" if unix is not None else secrets.token_urlsafe(24)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    if unix is not None:
        warn(f"serving the monitor on {unix} (mode 0600: root only; e.g. ssh -L 8000:{unix} HOST, "
             "then http://localhost:8000/); Ctrl-C to stop")  # fmt: skip
    elif host in LOCAL:
        warn(
            f"serving the monitor at {url}/?token={token} (this machine only; --host to serve elsewhere); Ctrl-C to stop"
        )
    else:
        warn(f"WARNING: serving the monitor at {url}/?token={token}: whoever has this URL sees every process of "
             "this machine, in clear text (no TLS); Ctrl-C to stop")  # fmt: skip
    if allow_signals:
        warn("--allow-signals: the page can send signals to any process, as root")
    if allow_writes:
        warn("--allow-writes: the page can write snapshots and the config, as root")
    if unix is not None and os.path.lexists(unix) and not _is_socket(unix):
        warn(f"cannot serve on {unix}: something that is not a socket is there; choose another path")
        return 2
    server = _server_class()(
        monitor_command(ui_args, allow_signals, allow_writes), host, port, token, unix, max_sessions
    )
    try:
        server.serve()
    except OSError as exc:
        where = unix if unix is not None else url
        warn(f"cannot serve at {where}: {exc.strerror or exc}; choose another {'path' if unix else '--port'}")
        return 2
    return 0
