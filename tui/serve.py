"""`procscope serve`: the monitor in a browser, with textual-serve. Each
page that connects gets its own monitor (`procscope ui`, run by the
server); served monitors cannot send signals unless the server was started
with --allow-signals."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable

LOCAL = ("127.0.0.1", "localhost", "::1")


def monitor_command(ui_args: list[str], allow_signals: bool) -> str:
    return shlex.join([sys.executable, "-m", "procscope", "ui", *ui_args, *([] if allow_signals else ["--no-signals"])])


def run_server(host: str, port: int, ui_args: list[str], allow_signals: bool, warn: Callable[[str], None]) -> int:
    from textual_serve.server import Server

    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    if host in LOCAL:
        warn(f"serving the monitor at {url} (this machine only; --host to serve elsewhere); Ctrl-C to stop")
    else:
        warn(f"WARNING: serving the monitor at {url}: whoever reaches it sees every process of this machine"
             " (there is no login); Ctrl-C to stop")  # fmt: skip
    if allow_signals:
        warn("--allow-signals: the page can send signals to any process, as root")
    server = Server(monitor_command(ui_args, allow_signals), host=host, port=port, title="procscope")
    try:
        server.serve()
    except OSError as exc:
        warn(f"cannot serve at {url}: {exc.strerror or exc}; choose another --port")
        return 2
    return 0
