import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from probes.collector import Collector
from probes.errors import SetupError
from probes.events import ExecEvent

REQUIRE_BPF = os.environ.get("PROCSCOPE_REQUIRE_BPF") == "1"


def bpf_unavailable(reason: str):
    """BPF tests fail, not skip, when CI requires BPF."""
    if REQUIRE_BPF:
        pytest.fail(f"PROCSCOPE_REQUIRE_BPF=1 but BPF cannot be used: {reason}", pytrace=False)
    pytest.skip(f"BPF unavailable: {reason}")


def open_collector(**kwargs) -> Collector:
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    collector = Collector(**kwargs)
    try:
        collector.open()
    except SetupError as exc:
        bpf_unavailable(str(exc))
    return collector


class Live:
    """Every event of a running collector, for tests to wait on."""

    def __init__(self, collector: Collector):
        self.collector = collector
        self.events: list = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        while not self._stop:
            batch = self.collector.get_batch(timeout=0.1)
            if batch:
                with self._cond:
                    self.events.extend(batch)
                    self._cond.notify_all()

    def wait_for(self, pred: Callable, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for ev in self.events[seen:]:
                    if pred(ev):
                        return ev
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event within {timeout}s ({len(self.events)} events seen)")
                self._cond.wait(left)

    def exec_of(self, binary: str, timeout: float = 15.0) -> ExecEvent:
        return self.wait_for(lambda e: isinstance(e, ExecEvent) and e.binary == binary, timeout)

    def sync(self, scratch: str) -> None:
        """Run a marker process and wait for its exec and exit: the ring
        buffer is ordered, so everything before it has been received."""
        marker = unique_copy("/bin/true", scratch)
        subprocess.run([marker], check=True)
        ev = self.exec_of(marker)
        self.wait_for(lambda e: getattr(e, "key", None) == ev.key and type(e).__name__ == "ExitEvent")

    def matching(self, pred: Callable) -> list:
        with self._cond:
            return [e for e in self.events if pred(e)]

    def close(self):
        self._stop = True
        self._thread.join()


def unique_copy(src: str, directory: str, prefix: str = "ps") -> str:
    """A uniquely named copy of a binary, so a test can find its own exec."""
    dst = os.path.join(directory, f"{prefix}-{uuid.uuid4().hex[:10]}-{os.path.basename(src)}")
    shutil.copy2(os.path.realpath(src), dst)
    os.chmod(dst, 0o755)
    return dst


def running_live(scan_proc: bool):
    """A started collector with every event it delivers kept (for fixtures)."""
    collector = open_collector(scan_proc=scan_proc)
    collector.start()
    live = Live(collector)
    yield live
    live.close()
    collector.stop()


@pytest.fixture(scope="session")
def live():
    yield from running_live(scan_proc=False)


@pytest.fixture
def scratch():
    """A directory every user can traverse (pytest's tmp_path is 0700) on
    a filesystem without nosuid."""
    d = tempfile.mkdtemp(prefix="procscope-test-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def proc_status(pid: int) -> dict[str, list[str]]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, _, v in (line.partition(":") for line in f)}


def proc_ns(pid: int) -> dict[str, int]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/ns"):
        link = os.readlink(f"/proc/{pid}/ns/{name}")
        out[name] = int(link[link.index("[") + 1 : -1])
    return out
