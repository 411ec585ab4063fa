"""Clone and exit events: processes only (not threads), exit status and
signals decoded as waitpid reports them."""

import os
import resource
import signal
import subprocess
import sys
import textwrap

import pytest

from procscope.probes.events import CloneEvent, ExecEvent, ExitEvent

from .conftest import unique_copy

pytestmark = pytest.mark.bpf  # root and BPF: every test here

THREADED = textwrap.dedent(
    """
    import sys, threading, time
    ts = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    sys.exit(7)
    """
)


def test_threads_make_no_clone_or_exit_events(live, scratch):
    python = unique_copy(sys.executable, scratch)
    proc = subprocess.run([python, "-c", THREADED])
    assert proc.returncode == 7
    ev = live.exec_of(python)
    exit_ev = live.wait_for(lambda e: isinstance(e, ExitEvent) and e.key == ev.key)
    live.sync(scratch)
    assert live.matching(lambda e: isinstance(e, CloneEvent) and e.parent == ev.key) == []
    assert live.matching(lambda e: isinstance(e, ExitEvent) and e.key.pid == ev.key.pid) == [exit_ev]
    assert (exit_ev.status, exit_ev.signal) == (7, 0)


def test_clone_event_for_a_forked_process(live, scratch):
    shell = unique_copy("/bin/sh", scratch)
    # The subshell is a fork of the shell that runs only builtins: no exec.
    out = subprocess.run([shell, "-c", "(echo $$; exit 3); true"], capture_output=True, text=True, check=True)
    sh = live.exec_of(shell)
    clone = live.wait_for(lambda e: isinstance(e, CloneEvent) and e.parent == sh.key)
    assert clone.key.pid != sh.key.pid and clone.tid == clone.key.pid
    assert out.stdout.strip() == str(sh.key.pid)  # $$ in a subshell is the parent's pid
    exit_ev = live.wait_for(lambda e: isinstance(e, ExitEvent) and e.key == clone.key)
    assert exit_ev.status == 3


def _spawn_with_core_limit(argv):
    """Core dumps allowed, written (if core_pattern is a plain name) beside the binary."""

    def preexec():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    return subprocess.Popen(argv, preexec_fn=preexec, cwd=os.path.dirname(argv[0]))


def test_kill_9_is_sigkill(live, scratch):
    binary = unique_copy("/bin/sleep", scratch)
    child = subprocess.Popen([binary, "30"])
    ev = live.exec_of(binary)
    child.send_signal(signal.SIGKILL)
    _, status = os.waitpid(child.pid, 0)
    child.returncode = -9
    exit_ev = live.wait_for(lambda e: isinstance(e, ExitEvent) and e.key == ev.key)
    assert exit_ev.signal == os.WTERMSIG(status) == signal.SIGKILL
    assert exit_ev.signal_name == "SIGKILL" and not exit_ev.core_dumped


def test_core_dumping_signal(live, scratch):
    binary = unique_copy("/bin/sleep", scratch)
    child = _spawn_with_core_limit([binary, "30"])
    ev = live.exec_of(binary)
    os.kill(child.pid, signal.SIGQUIT)
    _, status = os.waitpid(child.pid, 0)
    child.returncode = -3
    exit_ev = live.wait_for(lambda e: isinstance(e, ExitEvent) and e.key == ev.key)
    assert exit_ev.signal == os.WTERMSIG(status) == signal.SIGQUIT
    assert exit_ev.core_dumped == os.WCOREDUMP(status)


def test_exit_status(live, scratch):
    shell = unique_copy("/bin/sh", scratch)
    assert subprocess.run([shell, "-c", "exit 42"]).returncode == 42
    ev = live.exec_of(shell)
    exit_ev = live.wait_for(lambda e: isinstance(e, ExitEvent) and e.key == ev.key)
    assert (exit_ev.status, exit_ev.signal, exit_ev.core_dumped) == (42, 0, False)


def test_leader_exits_before_its_threads(live, scratch):
    """The main thread exits first; the exit event comes when the last
    thread is gone, with that thread's exit code."""
    python = unique_copy(sys.executable, scratch)
    code = textwrap.dedent(
        """
        import ctypes, threading, time, os
        libc = ctypes.CDLL(None)
        def last():
            time.sleep(0.3)
            os._exit(5)
        threading.Thread(target=last).start()
        libc.syscall(60, 0)  # SYS_exit: only the main thread
        """
    )
    assert subprocess.run([python, "-c", code]).returncode == 5
    ev = live.exec_of(python)
    exit_ev = live.wait_for(lambda e: isinstance(e, ExitEvent) and e.key == ev.key)
    assert exit_ev.status == 5
    assert exit_ev.tid != ev.key.pid  # reported by the thread that was last
    live.sync(scratch)
    assert len(live.matching(lambda e: isinstance(e, ExitEvent) and e.key.pid == ev.key.pid)) == 1


def test_exec_from_a_thread(live, scratch):
    """A non-leader thread execs: the new image keeps the process id."""
    python = unique_copy(sys.executable, scratch)
    target = unique_copy("/bin/true", scratch)
    code = f"import os, threading; t = threading.Thread(target=os.execv, args=({target!r}, [{target!r}])); t.start(); t.join()"
    assert subprocess.run([python, "-c", code]).returncode == 0
    py = live.exec_of(python)
    ev = live.exec_of(target)
    assert ev.key.pid == py.key.pid and ev.cleanup == py.key
    assert isinstance(ev, ExecEvent)
