"""The real monitor in a pseudo-terminal, its screen kept by a terminal
emulator (pyte): what the benchmarks read is what a user would see."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyte

REPO = Path(__file__).resolve().parent.parent
# The reader notes when each chunk arrived: it gets the GIL within 0.5 ms (not Python's 5 ms) while
# another thread parses what came before with pyte, so that arrivals are not noted late.
sys.setswitchinterval(0.0005)
KEYS = {"f5": "\x1b[15~", "q": "q", "down": "\x1b[B", "up": "\x1b[A", "enter": "\r"}


def status(lines: list[str]) -> str:
    """The monitor's status line (below htop's header of meters when that shows)."""
    return next((line for line in lines if line.lstrip().startswith(("lost ", "⚠ lost "))), "")


class Terminal:
    """`procscope ARGS` (or ``command``) at cols×rows; ``lines()`` is the
    screen now, ``wait(test)`` waits until the screen passes ``test``."""

    def __init__(self, args: list[str], cols: int = 200, rows: int = 50, env: dict | None = None,
                 command: list[str] | None = None):  # fmt: skip
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        # The reader only reads and notes when each chunk arrived; pyte (in Python, slower
        # than the monitor's drawing) parses them when the screen is asked for. A terminal
        # written in C shows bytes as they arrive, so "on screen" is when they arrived here;
        # and nothing parses while no one looks, as a remote session's sshd only forwards.
        self.arrived = threading.Condition()
        self._chunks: list[tuple[float, bytes]] = []  # (when it arrived, what): not parsed yet
        self._parsing = threading.Lock()  # one parser at a time; the reader never waits for it
        self._parsed_at = 0.0  # when the last bytes parsed arrived
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.master = master
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows), **(env or {})}
        self.started = time.monotonic()
        command = command or [sys.executable, "-m", "procscope.cli", *args]
        self.proc = subprocess.Popen(command, cwd=REPO, stdin=slave,
                                     stdout=slave, stderr=slave, env=env, start_new_session=True)  # fmt: skip
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            with self.arrived:
                self._chunks.append((time.monotonic(), data))
                self.arrived.notify_all()

    def _screen(self) -> tuple[list[str], float]:
        """The screen with everything that arrived so far, and when the last of it arrived."""
        with self._parsing:
            with self.arrived:
                chunks, self._chunks = self._chunks, []
            for when, data in chunks:
                self.stream.feed(data)
                self._parsed_at = when
            return list(self.screen.display), self._parsed_at

    def lines(self) -> list[str]:
        return self._screen()[0]

    def wait(self, test: Callable[[list[str]], bool], timeout: float, since: float | None = None) -> float | None:
        """Seconds from ``since`` (monotonic; default now) until the bytes
        that made the screen pass ``test`` arrived (None: not within
        ``timeout``). When several chunks are parsed at once, the last one's
        arrival counts: never less than it took."""
        start = time.monotonic() if since is None else since
        while True:
            lines, when = self._screen()
            if test(lines):
                return max(when - start, 0.0)
            left = start + timeout - time.monotonic()
            if left <= 0:
                return None
            with self.arrived:
                if not self._chunks:
                    self.arrived.wait(left)

    def press(self, key: str) -> None:
        os.write(self.master, KEYS.get(key, key).encode())

    def quit(self, timeout: float = 10) -> int:
        self.press("q")
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()
        finally:
            self._reader.join(2)
            os.close(self.master)
