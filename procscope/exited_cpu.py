"""The CPU of the exited, as the kernel counts it at their exit (every
thread's scheduler time, ExitEvent.cpu_ns): each process's own, and added
to its parent's "exited descendants" figure, so that a build's or a fork
storm's CPU shows on the process that started it, even for processes that
lived 5 ms and that no sampler ever read (htop and top sample the living
and miss them). A process passes what it used and what it was passed on to
its own parent when it exits, as the kernel's CTIME+ does: one addition an
exit, not a walk to init (a storm makes thousands a second).

The parents are by origin (each image's parent: the process that cloned
its task, as Tetragon's parent_exec_id), not the kernel's current parents:
a double fork's grandchild is re-parented to init when its parent exits,
yet its CPU is the doing of the process that started the chain; so when
the parent exited first, it goes on up to the nearest one still running.
No UI here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .process import EXITED

if TYPE_CHECKING:
    from collections.abc import Mapping

    from procscope.probes.events import ProcessKey
    from procscope.probes.usage import Usage

    from .cache import ProcessCache
    from .process import Process

# Exited ancestors passed through per exit at most (a process can make a
# chain of exited parents as long as it likes). Beyond, counted, not credited.
MAX_DEPTH = 128


def exited(cache: ProcessCache, proc: Process, cpu_ns: int) -> None:
    """At its exit: its figure kept, and with what its exited descendants
    passed to it, added to its parent's at once (so a folded subtree's CPU%
    counts the children that exited in the interval); through parents that
    exited already, to the nearest one running (or an image its pid replaced:
    the running one counts it)."""
    cache.exit_cpu = True
    proc.cpu_ns = cpu_ns
    procs = cache.procs
    carried, before = cpu_ns + proc.exited_cpu_ns, proc.previous
    for _ in range(MAX_DEPTH):  # the images its pid ran before (exec_chain's, without its list: a storm's path)
        image = procs.get(before) if before is not None else None
        if image is None or image is proc:
            break
        carried += image.exited_cpu_ns
        before = image.previous
    key = proc.parent
    for _ in range(MAX_DEPTH):
        up = procs.get(key)
        if up is None or up is proc:
            return
        up.exited_cpu_ns += carried
        if up.state is not EXITED:
            return
        key = up.parent
    cache.counters.cpu_too_deep += 1


def baselines(cache: ProcessCache, procs: Mapping[ProcessKey, Usage]) -> None:
    """At the first usage pass: what the processes found at start had from
    their exited children before (the kernel's figure for those waited for,
    less what was counted here since), so that their CTIME+ goes on from it."""
    for key, u in procs.items():
        p = cache.procs.get(key)  # found by the /proc scan: keyed by its start, as the sampler's
        if p is not None and p.exited_cpu_base is None:
            p.exited_cpu_base = max(u.children_cpu_ns - p.exited_cpu_ns, 0)


def exited_children_ns(cache: ProcessCache, proc: Process) -> int:
    """What its exited children used and were passed, summed over the images
    its pid ran (an exec keeps the children's CPU of the image before it)."""
    return sum(p.exited_cpu_ns for p in cache.exec_chain(proc))
