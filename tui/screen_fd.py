"""The monitor draws on its own copy of the terminal's descriptor while fd 2
points at /dev/null: the probes load behind the first frame, and what BCC,
clang or a C library writes to stderr meanwhile (or ever) must not land on
the screen. Only for Textual's Linux driver (not the web driver of
`procscope serve`, not tests' headless one). Its driver also tells when it
last read a key or click (since_input), so that a storm's tick lets it go
first, and gives the terminal back at once for a quick quit."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from textual import events
from textual.app import App
from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message

# What a user waits to see answered (not the mouse's moves, which come by the dozen).
_ANSWERED = (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)


class TerminalDriver(LinuxDriver):
    input_at = 0.0  # when the last key or click was read (monotonic), on the input thread

    def process_message(self, message: Message) -> None:
        if isinstance(message, _ANSWERED):
            self.input_at = time.monotonic()
        super().process_message(message)

    def give_back(self) -> None:
        """The terminal as it was, for a process about to end: without waiting
        for the key thread's last reads (0.1–0.2 s: disable_input joins it)."""
        self._key_thread = None
        self.stop_application_mode()
        self.close()  # its writer thread has written everything


def no_terminal(app: App) -> str | None:
    """Why the monitor cannot run here (None: it can): Textual's terminal driver draws
    on stderr and reads keys from stdin; without a terminal there it drew into a file
    or a pipe, or its input thread spun a core reading a closed stdin (/dev/null, cron)."""
    if app.driver_class is not LinuxDriver:  # the web driver of `procscope serve`, tests' headless one
        return None
    for fd, name, does in ((0, "stdin", "reads its keys from"), (2, "stderr", "draws on")):
        if not os.isatty(fd):
            return (
                f"the monitor {does} {name}, which is not a terminal here; run it in one (ssh -t for another "
                "machine), or use `procscope events` or `procscope snapshot` for a file or a pipe"
            )
    return None


def since_input(app: App) -> float:
    """Seconds since the terminal's last key or click was read (inf: not a terminal's driver)."""
    driver = app._driver
    return time.monotonic() - driver.input_at if isinstance(driver, TerminalDriver) else float("inf")


@contextlib.contextmanager
def screen_apart(app: App) -> Iterator[None]:
    if app.driver_class is not LinuxDriver:
        yield
        return
    screen = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")

    class Driver(TerminalDriver):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._file = screen  # what Textual's writer thread writes to (sys.__stderr__ else)

    app.driver_class = Driver
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)  # the one line of a failure goes to the terminal again
        os.close(saved)
        screen.close()
