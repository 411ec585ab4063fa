"""The newest execs as they happen."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from procscope import describe
from procscope.probes.text import printable
from procscope.process import Process

from ..frame import Frame
from .stream import Entry, StreamPane


def header(containers: bool = True) -> Text:
    """``containers``: with the CONTAINER column (left out while no container is known, as the list leaves it)."""
    return Text(f"{'TIME':<12} {'PID':>7} {'PPID':>7} {'USER':<9} " + ("CONTAINER      " if containers else "")
                + "COMMAND", style="bold")  # fmt: skip


def exec_row(when: str, proc: Process, container: str | None = "") -> Text:
    """``container``: its name, when its runtime gave one; None: no CONTAINER column."""
    img = proc.image
    flags = " ".join(w for w in (img.flag_words if img else []) if w not in ("execve", "clone"))
    # The parent at the exec (Tetragon's), not the reaper an orphan has since.
    text = Text(f"{when:<12} {proc.pid:>7} {proc.parent.pid:>7} {printable(describe.user(proc))[:9]:<9} ")
    if container is not None:
        text.append(f"{printable(container or (proc.container.short_id if proc.container else '-'))[:14]:<14} ")
    text.append(printable(proc.command()))
    if flags:
        text.append(f"  [{flags}]", style="dim")
    return text


class ExecStream(StreamPane):
    def __init__(self, **kwargs) -> None:
        super().__init__(header=header(False), **kwargs)
        self.containers = False  # whether the CONTAINER column is shown

    def show_frame(self, frame: Frame | None) -> None:
        if frame is not None and bool(frame.cache.containers) != self.containers:
            self.containers = not self.containers
            self.header = header(self.containers)
            self._memo.clear()  # the rows drawn with the other columns
        super().show_frame(frame)

    def entries(self, frame: Frame) -> Sequence[Entry]:
        return frame.shown.execs if frame.shown is not None else ()

    def row(self, when: str, proc: Process, frame: Frame) -> Text:
        if not self.containers:
            return exec_row(when, proc, None)
        return exec_row(when, proc, describe.container_name(proc, frame.cache) if proc.container else "")
