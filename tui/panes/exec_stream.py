"""The newest execs as they happen."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from procscope import describe
from procscope.probes.text import printable
from procscope.process import Process

from ..frame import Frame
from .stream import Entry, StreamPane

HEADER = Text(f"{'TIME':<12} {'PID':>7} {'PPID':>7} {'USER':<9} {'CONTAINER':<12} COMMAND", style="bold")


def exec_row(when: str, proc: Process, container: str = "") -> Text:
    """``container``: its name, when its runtime gave one."""
    img = proc.image
    flags = " ".join(w for w in (img.flag_words if img else []) if w not in ("execve", "clone"))
    container = printable(container or (proc.container.short_id if proc.container else "-"))[:14]
    # The parent at the exec (Tetragon's), not the reaper an orphan has since.
    text = Text(
        f"{when:<12} {proc.pid:>7} {proc.parent.pid:>7} {printable(describe.user(proc))[:9]:<9} {container:<14} "
    )
    text.append(printable(proc.command()))
    if flags:
        text.append(f"  [{flags}]", style="dim")
    return text


class ExecStream(StreamPane):
    def __init__(self, **kwargs) -> None:
        super().__init__(header=HEADER, **kwargs)

    def entries(self, frame: Frame) -> Sequence[Entry]:
        return frame.shown.execs if frame.shown is not None else ()

    def row(self, when: str, proc: Process, frame: Frame) -> Text:
        return exec_row(when, proc, describe.container_name(proc, frame.cache) if proc.container else "")
