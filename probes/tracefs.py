"""Make sure tracefs is mounted: tracepoints are attached through it."""

from __future__ import annotations

import ctypes
import os

from .errors import SetupError

TRACEFS = "/sys/kernel/tracing"
_CANDIDATES = (TRACEFS, "/sys/kernel/debug/tracing")


def tracefs_path() -> str | None:
    for path in _CANDIDATES:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    return None


def ensure_tracefs() -> str:
    """Return the tracefs mount point, mounting it at /sys/kernel/tracing
    when it is absent (fresh machines and minimal VMs often lack it)."""
    path = tracefs_path()
    if path:
        return path
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tracefs", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise SetupError(
            f"tracefs is not mounted and mounting it at {TRACEFS} failed ({os.strerror(err)}): "
            f"run 'mount -t tracefs tracefs {TRACEFS}' as root"
        )
    return TRACEFS
