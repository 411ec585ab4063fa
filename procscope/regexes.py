"""Regular expressions matched against what processes control (binaries,
arguments, pod names): RE2's, in time linear in the text, as Tetragon's
filters (Go's regexp, RE2's syntax). A backtracking engine (Python's re)
lets a filter's pattern and a process's arguments hold up the thread that
matches them: `(a+)+$` against 40 a's and a `!` takes hours, and the thread
is the collector's (`procscope events --filter`, the agent's clients)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


@functools.cache
def _engine() -> tuple[Any, Any]:
    """RE2 and its options, loaded with the first pattern (4 ms: not at every start)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would write a bad pattern's error to stderr: the monitor's screen
    return re2, options


def searcher(pattern: str) -> Callable[[str], bool]:
    """Whether a text holds a match of ``pattern`` (ValueError: not a pattern RE2 reads, in one line)."""
    re2, options = _engine()
    try:
        search = re2.compile(pattern, options).search
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(reason) from None
    return lambda text: search(text) is not None
