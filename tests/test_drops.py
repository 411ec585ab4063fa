"""Nothing is lost silently: a full ring buffer is counted per op and errno,
and received (through the main ring or the spare one) + counted drops
account for every exec."""

import subprocess
import sys
import textwrap

import pytest

from procscope.probes.collector import Collector
from procscope.probes.events import ExecEvent

from .conftest import open_collector, unique_copy

BURST = 300
SPAWNER = textwrap.dedent(
    """
    import os, sys
    binary = sys.argv[1]
    sys.stdin.readline()  # wait until the collector is attached
    for _ in range(int(sys.argv[2])):
        pid = os.posix_spawn(binary, [binary], {})
        os.waitpid(pid, 0)
    """
)


@pytest.mark.bpf
def test_full_ring_buffer_is_counted(scratch):
    binary = unique_copy("/bin/true", scratch)
    # Started before the probes load, so its own exec is not in the count.
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER, binary, str(BURST)], stdin=subprocess.PIPE, text=True)
    collector = open_collector(ring_bytes=4096, scan_proc=False)  # one page: a handful of execs
    try:
        spawner.stdin.write("go\n")
        spawner.stdin.flush()
        assert spawner.wait(timeout=60) == 0
        received = 0
        while batch := collector.poll(200):
            received += sum(1 for e in batch if isinstance(e, ExecEvent) and e.binary == binary)
        counters = collector.counters()
    finally:
        collector.stop()
    execve = counters.sent_failed["EXECVE"]
    dropped = sum(execve.values())
    assert dropped > 0, "a one-page ring must overflow during the burst"
    # A BPF ring buffer that is full makes bpf_ringbuf_output fail with
    # -EAGAIN (kernel/bpf/ringbuf.c); perf buffers would say ENOSPC.
    assert execve["EAGAIN"] == dropped
    # Every exec of the burst was received (through either ring) or counted. The counts are
    # the whole machine's: a daemon that execs meanwhile (CI's dockerd winding down) adds a few.
    assert BURST <= received + dropped <= BURST + 25
    assert counters.sent_spare > 0  # it took what the main ring refused until full itself
    assert counters.sent_failed["EXIT"]["EAGAIN"] > 0  # exits of the burst overflowed too
    assert counters.decode_errors == 0 and counters.userspace_dropped == 0


def test_a_failure_of_the_collector_thread_is_counted_reported_once_and_survived():
    said = []
    collector = Collector(log=said.append)
    for _ in range(3):
        assert collector._guarded(lambda: 1 / 0) is False  # one poll's failure: the thread goes on
    c = collector.counters()
    assert c.collector_errors == 3 and c.last_error == "ZeroDivisionError: division by zero" and c.lost >= 3
    assert said == [
        "the collector thread failed (ZeroDivisionError: division by zero); counted, and collection goes on"
    ]
