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
KEYS = {"f5": "\x1b[15~", "q": "q", "down": "\x1b[B", "up": "\x1b[A", "enter": "\r"}


class Terminal:
    """`procscope ARGS` (or ``command``) at cols×rows; ``lines()`` is the
    screen now, ``wait(test)`` waits until the screen passes ``test``."""

    def __init__(self, args: list[str], cols: int = 200, rows: int = 50, env: dict | None = None,
                 command: list[str] | None = None):  # fmt: skip
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.changed = threading.Condition()
        self.updates = 0  # screen writes seen
        # While held, what the monitor writes is read (it never blocks) but kept, not
        # parsed: as a remote session's sshd forwards it. pyte, in Python, costs the
        # machine more than the monitor's drawing does; lines() parses what was kept.
        self._held: list[bytes] | None = None
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
            with self.changed:
                if self._held is not None:
                    self._held.append(data)
                    continue
                self.stream.feed(data)
                self.updates += 1
                self.changed.notify_all()

    def hold(self) -> None:
        """Keep the output unparsed until lines() or wait() (see _held)."""
        with self.changed:
            if self._held is None:
                self._held = []

    def _release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            for data in held:
                self.stream.feed(data)

    def lines(self) -> list[str]:
        with self.changed:
            self._release()
            return list(self.screen.display)

    def wait(self, test: Callable[[list[str]], bool], timeout: float) -> float | None:
        """Seconds until the screen passed ``test`` (None: not within ``timeout``)."""
        start = time.monotonic()
        with self.changed:
            self._release()
            while True:
                if test(list(self.screen.display)):
                    return time.monotonic() - start
                left = start + timeout - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)

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
