"""When the monitor must stop on an error: the full traceback goes to a
private log file and the user gets one line naming the cause and the file."""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from procscope.probes.text import printable
from procscope.safe_write import free_name


def log_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "procscope"


def crash_report(error: BaseException) -> str:
    """Write the traceback (mode 0600); return the line to show."""
    cause = printable(f"{type(error).__name__}: {error}")[:300]
    try:
        directory = log_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = free_name(str(directory), f"crash-{time.strftime('%Y%m%d-%H%M%S')}", ".log")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with open(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write("".join(traceback.format_exception(error)))
    except OSError as exc:
        return f"the monitor stopped on an error ({cause}); the traceback could not be saved ({exc.strerror})"
    return f"the monitor stopped on an error ({cause}); full traceback in {path}"
