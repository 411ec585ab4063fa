"""Processes as they exit: status or signal, core dumps, lifetime."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from procscope import describe
from procscope.probes.text import printable
from procscope.process import Process

from ..frame import Frame
from .stream import Entry, StreamPane

HEADER = Text(f"{'TIME':<12} {'PID':>7} {'STATUS':<24} {'LIFETIME':>9} COMMAND", style="bold")


def exit_row(when: str, proc: Process) -> Text:
    status = describe.state_text(proc)
    bad = proc.exit is not None and (proc.exit.signal or proc.exit.status)
    text = Text(f"{when:<12} {proc.pid:>7} ")
    text.append(f"{status[:24]:<24}", style="bold red" if bad else "")
    command = " ".join((proc.binary or "?", *proc.args))
    text.append(f" {describe.lifetime_text(describe.age_ns(proc, proc.exit_time)):>9} {printable(command)}")
    return text


class Exits(StreamPane):
    def __init__(self, **kwargs) -> None:
        super().__init__(header=HEADER, **kwargs)

    def entries(self, frame: Frame) -> Sequence[Entry]:
        return frame.shown.exits if frame.shown is not None else ()

    def row(self, when: str, proc: Process, frame: Frame) -> Text:
        return exit_row(when, proc)
