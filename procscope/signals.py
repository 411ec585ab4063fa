"""Sending a signal to a process the cache shows, or changing its nice
value, safely (procscope runs as root): never pid 1 or procscope itself,
never a process the cache no longer sees running, and never a pid that
has been reused since.

Pid reuse is ruled out with a pidfd: it is opened first and pins whatever
holds the pid now; then /proc/PID/stat must still give the start time
the cache knows for the process. If the pid changed hands in between, the
pidfd names the exited process and the signal fails with ESRCH.
setpriority has no pidfd form: the start time is read again after it,
and a pid that changed hands meanwhile is said."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

from procscope.probes import procfs

from .cache import Process, ProcessCache

# Offered in this order; TERM first, the default.
SIGNALS = ("TERM", "KILL", "INT", "HUP", "STOP", "CONT", "USR1", "USR2", "QUIT")


@dataclass(frozen=True)
class Outcome:
    pid: int
    binary: str
    status: str  # "sent", "reniced", "gone" or "refused"
    reason: str = ""

    def __str__(self) -> str:
        text = f"{self.pid} {self.binary or '?'}: {self.status}"
        return f"{text} ({self.reason})" if self.reason else text


def check(cache: ProcessCache, proc: Process) -> str:
    """Why ``proc`` must not be signalled, or "" when it may be."""
    if proc.pid <= 1:
        return "pid 1 and the kernel are never signalled"
    if proc.pid == os.getpid():
        return "procscope itself"
    if not proc.alive or cache.by_pid.get(proc.pid) is not proc:
        return "not running"
    if not cache.start_times(proc):
        return "its start time is unknown"
    return ""


def _same(cache: ProcessCache, proc: Process) -> bool:
    """Whether the pid still holds the process the cache knows (its start time);
    FileNotFoundError or ProcessLookupError when nothing holds it."""
    return procfs.start_key(proc.pid).ktime in cache.start_times(proc)


def send(cache: ProcessCache, proc: Process, sig: int) -> Outcome:
    def outcome(status: str, reason: str = "") -> Outcome:
        return Outcome(proc.pid, proc.binary, status, reason)

    if reason := check(cache, proc):
        return outcome("refused", reason)
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return outcome("gone")
    except OSError as exc:
        return outcome("refused", exc.strerror or str(exc))
    try:
        try:
            same = _same(cache, proc)
        except (FileNotFoundError, ProcessLookupError):
            return outcome("gone")
        if not same:
            return outcome("refused", "its pid now belongs to another process")
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return outcome("gone")
    except OSError as exc:
        return outcome("refused", exc.strerror or str(exc))
    finally:
        os.close(fd)
    return outcome("sent", signal.Signals(sig).name)


def renice(cache: ProcessCache, proc: Process, change: int) -> Outcome:
    """Nice ``proc`` by ``change`` (-1: more CPU, as htop's F7; +1: less, F8),
    every thread of it (the kernel keeps a nice value per thread, and
    setpriority changes one: renice(1) would leave a busy process's other
    threads as they were), within -20..19."""

    def outcome(status: str, reason: str = "") -> Outcome:
        return Outcome(proc.pid, proc.binary, status, reason)

    if reason := check(cache, proc):
        return outcome("refused", reason)
    try:
        if not _same(cache, proc):
            return outcome("refused", "its pid now belongs to another process")
        nice = min(max(os.getpriority(os.PRIO_PROCESS, proc.pid) + change, -20), 19)
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.setpriority(os.PRIO_PROCESS, int(tid), nice)
        if not _same(cache, proc):
            return outcome("refused", "its pid changed hands while it was reniced")
    except (FileNotFoundError, ProcessLookupError):
        return outcome("gone")
    except OSError as exc:
        return outcome("refused", exc.strerror or str(exc))
    return outcome("reniced", f"nice {nice}")
