"""`procscope serve`: the monitor in a browser. A real headless Chromium
loads the page and gets the monitor's screen (driven through the DevTools
protocol); a client speaking the page's own websocket protocol reads the
screen's text through a terminal emulator; the server listens on
127.0.0.1 unless told otherwise; served monitors refuse signals unless the
server was started with --allow-signals."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import pyte
import pytest

from .conftest import REPO
from .test_metrics import free_port

COLS, ROWS = 120, 40


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """`procscope serve ARGS`, once it listens: (process, what it said; its token in the URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "procscope", "serve", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    said = proc.stderr.readline()
    for flag in ("--allow-signals", "--allow-writes"):
        if flag in args:
            said += proc.stderr.readline()
    if "--unix" in args:
        path = args[args.index("--unix") + 1]
        for _ in range(100):
            if os.path.exists(path):
                return proc, said
            time.sleep(0.1)
        proc.kill()
        raise AssertionError(f"procscope serve did not listen: {said}{proc.stderr.read()}")
    port = int(args[args.index("--port") + 1])
    for _ in range(100):
        if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in psutil.net_connections("tcp")):
            return proc, said
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"procscope serve did not listen: {said}{proc.stderr.read()}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Page:
    """One session as the page's script opens it: the monitor's output
    arrives as bytes on the websocket, keys go back as ["stdin", text]."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)

    async def until(self, test, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if test("\n".join(self.screen.display)):
                return True
            try:
                msg = await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.stream.feed(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        return test("\n".join(self.screen.display))

    async def press(self, key: str) -> None:
        await self.ws.send_json(["stdin", key])


def token_of(said: str) -> str:
    return re.search(r"\?token=([\w-]+)", said)[1]


def ws_url(port: int, token: str) -> str:
    return f"ws://127.0.0.1:{port}/ws/{token}?width={COLS}&height={ROWS}"


async def session(port: int, keys: list[tuple[str, str]], token: str) -> str:
    """Open a session, wait for the tree, press each key until its text shows; the screen."""
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(port, token)) as ws:
        page = Page(ws)
        assert await page.until(lambda text: "PID" in text and " shown" in text, 60), "\n".join(page.screen.display)
        for key, expect in keys:
            await page.press(key)
            assert await page.until(lambda text, expect=expect: expect in text, 15), "\n".join(page.screen.display)
        await page.press("q")
        return "\n".join(page.screen.display)


async def chromium_loads(url: str, profile: Path, screenshot: Path) -> None:
    """Headless Chromium opens ``url``; once the monitor's first bytes reach the page, a screenshot."""
    browser = subprocess.Popen([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                                "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={1200},{900}",
                                url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        active = profile / "DevToolsActivePort"
        for _ in range(300):
            if active.exists() and active.read_text().count("\n") >= 1:
                break
            await asyncio.sleep(0.1)
        port = int(active.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                target = next(t for t in await r.json() if t["type"] == "page")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=1 << 26) as cdp:
                ids = iter(range(1, 1 << 30))

                async def call(method: str, **params):
                    n = next(ids)
                    await cdp.send_json({"id": n, "method": method, "params": params})
                    while True:
                        msg = json.loads((await cdp.receive(timeout=30)).data)
                        if msg.get("id") == n:
                            return msg["result"]

                expression = (
                    "document.body.classList.contains('-first-byte') && document.querySelector('.xterm') !== null"
                )
                for _ in range(120):
                    got = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                    if got["result"].get("value"):
                        break
                    await asyncio.sleep(0.5)
                assert got["result"].get("value"), "the page never got the monitor's output"
                await asyncio.sleep(2.0)  # drawn
                shot = await call("Page.captureScreenshot", format="png")
                screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.kill()
        browser.wait()


@pytest.fixture
def served(request):
    port = free_port()
    proc, said = start_server("--port", str(port), *getattr(request, "param", ()))
    yield port, said
    stop_server(proc)


def test_chromium_shows_the_monitor_and_it_listens_on_localhost_only(served, tmp_path):
    port, said = served
    assert f"serving the monitor at http://127.0.0.1:{port}/?token=" in said and "(this machine only" in said
    listening = [
        c.laddr.ip for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == psutil.CONN_LISTEN
    ]
    assert listening == ["127.0.0.1"]
    shot = tmp_path / "served.png"
    asyncio.run(chromium_loads(f"http://127.0.0.1:{port}/?token={token_of(said)}", tmp_path / "profile", shot))
    # The screenshot holds the monitor: a page of mostly one colour compresses to a few KB.
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 30_000
    screen = asyncio.run(
        session(
            port, [("k", "signals and renice are off in this served monitor"), ("W", "writes no files")], token_of(said)
        )
    )
    assert "PID" in screen and "COMMAND" in screen


@pytest.mark.parametrize("served", [("--allow-signals",)], indirect=True)
def test_signals_need_allow_signals(served):
    port, said = served
    assert "--allow-signals: the page can send signals" in said
    asyncio.run(session(port, [("k", "SIGTERM")], token_of(said)))  # the signal dialog opens (and q leaves it)


def test_another_host_is_warned_about(tmp_path):
    port = free_port()
    proc, said = start_server("--host", "0.0.0.0", "--port", str(port))
    try:
        assert said.startswith("procscope: WARNING: serving the monitor at http://0.0.0.0:")
        assert "sees every process of this machine" in said
    finally:
        stop_server(proc)


def test_bad_monitor_options_are_refused_before_serving():
    r = subprocess.run([sys.executable, "-m", "procscope", "serve", "--port", "1", "--", "--filter", "bogus:("],
                       cwd=REPO, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
