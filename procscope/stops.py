"""Ctrl-C and SIGTERM for the commands: one stop, and its wrap-up (output
files completed, the summary said) never cut short by another."""

from __future__ import annotations

import signal

_stopping = False  # a stop was asked (or the wrap-up began): the next signals are no-ops


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the command (KeyboardInterrupt: output files are still
    completed), once. A stop often comes twice at once (`timeout` forwards its TERM as the
    shell's kill sends another; a process group gets INT and TERM): the second would land
    in the first one's handling, even in a lock's release (a traceback, the summary lost)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # a background job's SIGINT stays ignored
            signal.signal(sig, _stop)


def _stop(signum: int, frame: object) -> None:
    global _stopping
    if not _stopping:
        _stopping = True
        raise KeyboardInterrupt


def finishing() -> None:
    """Ctrl-C or SIGTERM again while the files are completed must not cut the wrap-up short.
    Handled and let go, not SIG_IGN: one pending meanwhile would be reported as a race."""
    global _stopping
    _stopping = True
    stop_on_signals()


def ignore_stops() -> None:
    """The process's last steps (Python gives the signals their default action, death, back
    as it ends): a stop is ignored, set once the handlers had their turn so that none is pending."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
