"""Loading the BPF programs: privileges, the running kernel's BTF offsets,
tracefs, BCC from the distribution, a compile tree; and whatever goes wrong
told in one line that names the cause and the fix."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import bpf_cache, cgroups, kernel_tree, offsets, procfs, wire
from .bcc_import import import_bcc
from .btf import BTF, BTFError
from .errors import SetupError
from .privileges import check_bpf_privileges
from .programs import Compiled, Programs, compiled
from .throttle import RateLimit
from .tracefs import ensure_tracefs

BPF_DIR = Path(__file__).parent / "bpf"
DEFAULT_RING_BYTES = 16 << 20
RATE_ENTRIES = 32768  # cgroups with rate state (Tetragon's default)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def wakeup_every(ring_bytes: int, cpus: int) -> int:
    """Records per CPU between wakeups of the reader (which also reads every
    poll interval). In a storm here its CPU per event was 3.6 µs woken every
    64, 2.0 every 256, 1.6 every 1,024 (each wakeup puts it on a busy core
    with cold caches), no better beyond; fewer if what every CPU holds back
    would pass a quarter of the ring at 512 bytes a record (an exec with a
    short command line is ~400, a clone or an exit 40–56)."""
    return max(1, min(1024, ring_pages(ring_bytes) * PAGE_SIZE // (4 * 512 * max(1, cpus))))


def ring_pages(size_bytes: int) -> int:
    """Ring buffer sizes are a power-of-two number of pages."""
    pages = max(1, size_bytes // PAGE_SIZE)
    return 1 << (pages - 1).bit_length()


def spare_pages(size_bytes: int) -> int:
    """The spare ring (process.c's emit): a sixteenth of the main one."""
    return max(1, ring_pages(size_bytes) // 16)


def load(ring_bytes: int, kthreads: bool, cgroup_rate: RateLimit | None, log: Callable[[str], None],
         compile_log: list[str], exit_cpu: bool = False,
         creds_exact: bool = False) -> tuple[Programs, cgroups.Hierarchy]:  # fmt: skip
    """Compile (or take the compile kept from an earlier start: bpf_cache) and attach the
    programs; returns (them, the tracked cgroup hierarchy). BCC's and clang's output goes
    to ``compile_log``."""
    check_bpf_privileges()
    try:
        btf = BTF.load()
    except BTFError as exc:
        raise SetupError(str(exc)) from None
    ensure_tracefs()  # before importing bcc, which looks for it at import
    bcc = import_bcc()
    hierarchy = cgroups.detect()
    try:
        cflags = offsets.compile_flags(btf, hierarchy.controller)
    except BTFError as exc:
        raise SetupError(f"this kernel's BTF lacks what procscope reads: {exc}") from None
    cflags += wire.compile_flags() + [
        f"-I{BPF_DIR}",
        f"-DPS_RINGBUF_PAGES={ring_pages(ring_bytes)}",
        f"-DPS_SPARE_PAGES={spare_pages(ring_bytes)}",
        f"-DPS_TICK_NS={procfs.TICK_NS}",
        f"-DPS_TRACE_KTHREADS={int(kthreads)}",
        f"-DPS_EXIT_CPU={int(exit_cpu)}",
        f"-DPS_CREDS_EXACT={int(creds_exact)}",
        f"-DPS_CGROUP_HIERARCHY_ID={hierarchy.hierarchy_id}",
        f"-DPS_RATE_EVENTS={cgroup_rate.events if cgroup_rate else 0}",
        f"-DPS_RATE_INTERVAL_NS={cgroup_rate.interval_ns if cgroup_rate else 0}ULL",
        f"-DPS_RATE_ENTRIES={RATE_ENTRIES}",
        f"-DPS_WAKEUP_EVERY={wakeup_every(ring_bytes, os.cpu_count() or 1)}",
    ]
    sources = [(BPF_DIR / name).read_bytes() for name in ("process.c", "msg.h")]
    uname = os.uname()
    # What the compile depends on (and __file__: each checkout or install keeps its own).
    name = bpf_cache.key(*sources, *cflags, uname.release, uname.version, kernel_tree.identity(uname.release),
                         getattr(bcc, "__version__", ""), __file__)  # fmt: skip
    kept = bpf_cache.read(name)
    if kept is not None:
        try:
            progs = _loaded(bcc, kept)
        except Exception as exc:  # noqa: BLE001 - not loadable after all: compiled again below, and replaced
            compile_log.append(f"the kept compile ({bpf_cache.directory()}/{name}) did not load: {exc}")
        else:
            for fact in kept.facts:
                log(f"{fact}; compiled at an earlier start, kept in {bpf_cache.directory()}")
            return progs, hierarchy
    made = _compiled(bcc, cflags, compile_log, log)
    if not bpf_cache.write(name, made):
        compile_log.append(f"the compile could not be kept in {bpf_cache.directory()} (compiled at every start)")
    return _loaded(bcc, made), hierarchy


def _compiled(bcc: Any, cflags: list[str], compile_log: list[str], log: Callable[[str], None]) -> Compiled:
    """BCC's compile of the programs (it loads and attaches them too: that is undone, and
    what it compiled loaded by _loaded, whether it was compiled now or before)."""
    failure: Exception | None = None
    bpf: Any = None  # BCC's BPF object (BCC has no types)
    facts: list[str] = []  # what compiling said (which tree): said again when the compile is loaded from the cache

    def said(fact: str) -> None:
        facts.append(fact)
        log(fact)

    with kernel_tree.compile_tree(said), _captured_stderr(compile_log):
        try:
            bpf = bcc.BPF(src_file=str(BPF_DIR / "process.c").encode(), cflags=cflags)
        except Exception as exc:  # noqa: BLE001 - BCC raises bare Exception
            failure = exc
    if os.environ.get("PROCSCOPE_DEBUG"):
        print("\n".join(compile_log), file=sys.stderr)
    if failure is not None:
        raise load_failure(failure, compile_log) from None
    try:
        made = compiled(bcc, bpf, facts)
    finally:
        bpf.cleanup()
    if made is None:
        raise SetupError("BCC compiled a program that refers to something other than its maps: "
                         "please report this with your BCC version")  # fmt: skip
    return made


def _loaded(bcc: Any, made: Compiled) -> Programs:
    progs = Programs(bcc, made)
    try:
        progs.load()
    except BaseException:
        progs.close()
        raise
    return progs


@contextlib.contextmanager
def _captured_stderr(out: list[str]) -> Iterator[None]:
    """BCC and clang write diagnostics straight to fd 2; keep them so that a
    failure can be reported in one line instead of a wall of text."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(tmp.read().decode(errors="replace").splitlines())


def load_failure(exc: Exception, log: list[str]) -> SetupError:
    """The one line for a failed load, from what BCC, clang or the verifier said."""
    text = "\n".join(log)
    m = re.search(r"^.*error: .*$", text, re.M)
    if m:
        return SetupError(f"compiling the BPF programs failed: {m.group(0).strip()}")
    m = re.search(r"Failed to load program.*?: (.*)$|failed to attach.*$|cannot attach.*$", text, re.M | re.I)
    if "processed " in text and "insns" in text:  # the verifier's log: it rejected a program
        last = [line for line in text.splitlines() if line.strip() and not line.startswith(("processed", ";"))]
        return SetupError(
            f"the kernel's BPF verifier rejected a procscope program ({last[-1].strip() if last else exc}): "
            "please report this with your kernel version (PROCSCOPE_DEBUG=1 prints the full log)"
        )
    if "Operation not permitted" in text:
        return SetupError(
            "the kernel refused to load procscope's BPF programs (Operation not permitted): "
            "run as root, and check kernel.unprivileged_bpf_disabled, lockdown mode or a seccomp profile"
        )
    detail = m.group(0).strip() if m else str(exc)
    return SetupError(f"loading the BPF programs failed: {detail} (set PROCSCOPE_DEBUG=1 for the full log)")
