"""Every process seen (in a replay: up to the moment shown), newest first,
exited ones included; the filter narrows it as it does the other panels."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from procscope import describe
from procscope.probes.text import printable
from procscope.process import Process

from ..frame import Frame
from .stream import Entry, StreamPane

HEADER = Text(f"{'STARTED':<12} {'PID':>7} {'PPID':>7} {'USER':<9} {'STATE':<16} COMMAND", style="bold")


def history_row(when: str, proc: Process) -> Text:
    state = describe.state_text(proc)
    text = Text(f"{when:<12} {proc.pid:>7} {proc.tree_parent.pid:>7} {printable(describe.user(proc))[:9]:<9} ")
    text.append(f"{state[:16]:<16}", style="dim" if not proc.alive else "")
    text.append(" " + printable(" ".join((proc.binary or "?", *proc.args))))
    return text


class History(StreamPane):
    def __init__(self, **kwargs) -> None:
        super().__init__(header=HEADER, **kwargs)

    def entries(self, frame: Frame) -> Sequence[Entry]:
        if frame.shown is None:  # up to 20,000 processes (made only while shown: StreamPane)
            return ()
        return sorted(((p.key.ktime, p) for p in frame.shown.seen.values()), key=lambda e: e[0])

    def row(self, when: str, proc: Process, frame: Frame) -> Text:
        return history_row(when, proc)
