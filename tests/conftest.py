import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console

from procscope.probes.collector import Collector
from procscope.probes.errors import SetupError
from procscope.probes.events import ExecEvent

REQUIRE_BPF = os.environ.get("PROCSCOPE_REQUIRE_BPF") == "1"
REPO = Path(__file__).resolve().parent.parent


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


def running_live(scan_proc: bool, **options):
    """A started collector with every event it delivers kept (for fixtures)."""
    collector = open_collector(scan_proc=scan_proc, **options)
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


# -- hostile processes ------------------------------------------------------------
# Terminal escapes (window title, clipboard write, clear screen), CR/LF, a
# C1 CSI (U+009B) and a right-to-left override, in a directory name.
HOSTILE_ESCAPES = b"\x1b]0;PWNED\x07\x1b]52;c;cHduZWQ=\x07\x1b[2J\r\n\xc2\x9b31m\xe2\x80\xae"
MARKUP = (b"[/]", b"[@click=app.quit]z[/]", b"[link=https://evil.example]x[/link]")
HOSTILE_ARGS = (b"\xff\xfe", b"a\nb\rc", b"\x1b]0;PWNED\x07", b"\xc2\x9b", *MARKUP)
# Raw sequences that must never reach a terminal from a process's text.
RAW_FROM_NAMES = (b"\x1b]0;PWNED", b"\x1b]52;c;cHduZWQ", b"\xc2\x9b", b"\xe2\x80\xae")
HOSTILE_COMM = b"x\xffy\x1b]0;PWNED\x07"
# argv[0] set to pass for a kernel thread, with escapes, a newline and markup (shown beside the binary).
HOSTILE_ARGV0 = b"[kworker/0:0]\x1b]0;PWNED\x07\n\xff[bold]x"
HOSTILE_ROOT = b"/var/tmp/procscope-hostile"  # every user can traverse it; no nosuid


@dataclass
class Hostile:
    """Processes whose binary paths, arguments, cwd, comm and cgroup are
    hostile (all as bytes, as the kernel has them)."""

    binaries: list[bytes]  # each run as [binary, -c, script, *HOSTILE_ARGS] in cwd
    script: bytes
    cwd: bytes
    deep: bytes  # a binary whose path is close to PATH_MAX
    procs: list[subprocess.Popen] = field(default_factory=list)
    runs: dict[int, bytes] = field(default_factory=dict)  # pid → binary, of those run with HOSTILE_ARGS
    comm_pid: int = 0  # comm HOSTILE_COMM, run as nobody
    long_args_pid: int = 0  # 200 KB of arguments
    argv0_pid: int = 0  # run with argv[0] HOSTILE_ARGV0
    cgroup: bytes | None = None  # the tracked hierarchy's cgroup (0xff in its name) holding comm_pid
    cgroup_dir: bytes | None = None

    @property
    def arguments(self) -> bytes:
        """Tetragon's "arguments" of those run with HOSTILE_ARGS: argv[1:] joined by spaces."""
        return b" ".join((b"-c", self.script, *HOSTILE_ARGS))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        if self.cgroup_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.cgroup_dir)


def _hostile_files(root: bytes) -> tuple[list[bytes], bytes, bytes]:
    """Copies of dash at hostile paths (one ending in /[/]), a hostile cwd,
    and a path near PATH_MAX."""
    binaries = [
        root + b"/h" + HOSTILE_ESCAPES + b"/[/]",
        root + b"/[@click=app.quit]z[/]",
        root + b"/[link=https:evil.example]ok",
        root + b"/bin\xff\xfe",
    ]
    for b in binaries:
        os.makedirs(os.path.dirname(b), mode=0o755, exist_ok=True)
        if not os.path.exists(b):
            shutil.copy2(b"/bin/dash", b)
    cwd = root + b"/cwd\xff\x1b[31m"
    os.makedirs(cwd, mode=0o755, exist_ok=True)
    deep = root + b"/deep"
    while len(deep) < 3900:
        deep += b"/" + b"d" * 200
    os.makedirs(deep, exist_ok=True)
    deep += b"/sh"
    if not os.path.exists(deep):
        shutil.copy2(b"/bin/dash", deep)
    return binaries, cwd, deep


def spawn_hostile(seconds: float, hierarchy=None) -> Hostile:
    """Start the hostile processes; each lives ``seconds``. With a cgroup
    hierarchy, the comm process is moved into a cgroup named with 0xff."""
    if os.geteuid() != 0:
        pytest.skip("hostile processes: not root (they run as nobody and in a cgroup)")
    os.makedirs(HOSTILE_ROOT, mode=0o755, exist_ok=True)
    binaries, cwd, deep = _hostile_files(HOSTILE_ROOT)
    script = f"sleep {seconds}; :".encode()  # ':' keeps the shell itself alive
    h = Hostile(binaries, script, cwd, deep)
    start = dict(cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for binary in binaries:
        h.procs.append(subprocess.Popen([binary, b"-c", script, *HOSTILE_ARGS], **start))
        h.runs[h.procs[-1].pid] = binary
    h.procs.append(subprocess.Popen([deep, b"-c", script], **start))
    h.procs.append(subprocess.Popen([HOSTILE_ARGV0, b"-c", script], executable=binaries[0], **start))
    h.argv0_pid = h.procs[-1].pid
    code = f"import ctypes, time; ctypes.CDLL(None).prctl(15, {HOSTILE_COMM!r}, 0, 0, 0); time.sleep({seconds})"
    comm = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", code],
                            start_new_session=True)  # fmt: skip
    h.procs.append(comm)
    h.comm_pid = comm.pid
    big = [b"x" * 100_000, b"y" * 100_000]  # 200 KB in two (one argument is at most 128 KiB)
    h.procs.append(subprocess.Popen([binaries[0], b"-c", script, *big], **start))
    h.long_args_pid = h.procs[-1].pid
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _comm_is(comm.pid, HOSTILE_COMM):
        time.sleep(0.02)
    if hierarchy is not None and hierarchy.mountpoint:
        name = b"/procscope-test-\xff\x1b]0;PWNED\x07-" + uuid.uuid4().hex[:6].encode()
        h.cgroup, h.cgroup_dir = name, os.fsencode(hierarchy.mountpoint) + name
        os.mkdir(h.cgroup_dir)
        with open(h.cgroup_dir + b"/cgroup.procs", "w") as f:
            f.write(str(comm.pid))
    return h


def _comm_is(pid: int, comm: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n") == comm[:15]
    except OSError:
        return False


@pytest.fixture(scope="session")
def hostile():
    """Long-lived hostile processes for the whole session."""
    from procscope.probes import cgroups

    h = spawn_hostile(600, cgroups.detect())
    yield h
    h.stop()


# -- Tetragon's own tools ------------------------------------------------------------
EVENT_LINE = re.compile(r"^(🚀 process|💥 exit   |🧬 throttle) ", re.M)  # as tetra prints them


def _tool(name: str) -> str:
    """Tetragon's tools: PROCSCOPE_TETRA (set by .ci/run), or the shared copy beside the checkout."""
    tetra = os.environ.get("PROCSCOPE_TETRA") or str(REPO.parent / "shared" / "tools" / "tetra")
    path = os.path.join(os.path.dirname(tetra), name)
    if not os.access(path, os.X_OK):
        if os.environ.get("PROCSCOPE_TETRA"):
            pytest.fail(f"PROCSCOPE_TETRA is set but {path} is not executable", pytrace=False)
        pytest.skip(f"Tetragon's {name} not found (set PROCSCOPE_TETRA)")
    return path


def tetra_reads_every_line(path: str) -> str:
    """Feed a file to tetra; every line must come out as one event."""
    data = Path(path).read_bytes()
    n = data.count(b"\n")
    out = subprocess.run([_tool("tetra"), "getevents", "-o", "compact"], input=data, capture_output=True, timeout=120)
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr
    assert len(EVENT_LINE.findall(text)) == n > 0, (n, text[-1500:], out.stderr[-500:])
    return text


def strictcheck_finds_only_our_extras(path: str) -> None:
    out = subprocess.run(
        [_tool("strictcheck")], input=Path(path).read_text(), capture_output=True, text=True, timeout=120
    )
    report = out.stdout
    assert "LENIENT REJECT" not in report and "parses but no Tetragon event" not in report, report[:3000]
    # Strict parsing fails only at procscope's own object (tetra ignores unknown fields).
    strict = [line for line in report.splitlines() if re.match(r"line \d+ strict:", line)]
    assert all('unknown field "procscope"' in line for line in strict), strict[:5]
    fields = report.split("fields not in the proto (discarded by tetra):\n", 1)[1].split("values that differ", 1)
    unknown = [line.split()[0] for line in fields[0].splitlines() if line.strip()]
    assert all(
        re.fullmatch(r"\.process_(exec|exit|throttle)(\.process|\.parent)?\.procscope(\..+)?", f) for f in unknown
    ), unknown
    assert fields[1].split("\n", 1)[1].strip() == "", fields[1]  # no value differs from canonical protojson


# -- the monitor in a real terminal --------------------------------------------------
class Terminal:
    """`procscope ARGS` in a pseudo-terminal of its own: everything it writes
    is kept, keys can be typed."""

    def __init__(self, args: list[str], cols: int = 200, rows: int = 50):
        import fcntl
        import pty
        import struct
        import termios

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        self.proc = subprocess.Popen([sys.executable, "-m", "procscope.cli", *args], cwd=REPO, stdin=slave,
                                     stdout=slave, stderr=slave, env=env, start_new_session=True)  # fmt: skip
        os.close(slave)
        self.out = bytearray()

    def read(self, seconds: float) -> bytes:
        """What it writes in the next ``seconds``."""
        import select

        start, until = len(self.out), time.monotonic() + seconds
        while time.monotonic() < until:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.out.extend(os.read(self.master, 65536))
                except OSError:  # it closed the terminal
                    break
        return bytes(self.out[start:])

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def quit(self) -> tuple[bytes, int]:
        """Press q; everything it wrote, and its exit status."""
        self.type(b"q")
        deadline = time.monotonic() + 15
        while self.alive() and time.monotonic() < deadline:
            self.read(0.2)
        self.read(0.2)
        self.close()
        return bytes(self.out), self.proc.wait()

    def close(self) -> None:
        """Its terminal closed, the monitor killed if still running: left behind (a test
        failed before q), its terminal gone, it would spin at a core under later tests."""
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- cgroups made by tests ------------------------------------------------------
def evacuate(mount: str, directory: str) -> None:
    """Move every process of a test cgroup back to the root, then remove it."""
    if not os.path.isdir(directory):
        return
    for sub in sorted((os.path.join(directory, d) for d in os.listdir(directory)), reverse=True):
        if os.path.isdir(sub):
            evacuate(mount, sub)
    try:
        with open(os.path.join(directory, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            with open(os.path.join(mount, "cgroup.procs"), "w") as f:
                f.write(pid)
    except OSError:
        pass
    for _ in range(50):
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)  # a dying process still holds it


# -- the monitor, driven by Pilot -------------------------------------------------
SIZE = (150, 48)


def commands(view) -> list[str]:
    return [row.plain.split("  ")[-1].strip(" ├▸") for row in view.rows]


def pids(view, column: int = 0) -> list[int]:
    return [int(row.plain.split()[column]) for row in view.rows]


async def wait_for(pilot, check, seconds: float = 10.0) -> bool:
    """Whether ``check()`` comes true within ``seconds`` of the app running (a slower machine takes longer)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() >= deadline:
            return False
        await pilot.pause(0.1)
    return True


def plain(app, renderable) -> str:
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def screen_text(app) -> str:
    """The screen as the terminal shows it, as text (what a user reads)."""
    console = Console(file=io.StringIO(), width=app.size.width, height=app.size.height, record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False, safe_box=False)  # fmt: skip
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()
