"""Arguments are checked by argparse before anything starts: a bad value
is refused with one line naming it (exit status 2), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from procscope.probes.loader import PAGE_SIZE

REPO = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "procscope.cli", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["events", "--grace", "nan"], "argument --grace: bad duration 'nan'"),
        (["events", "--grace", "-1"], "argument --grace: bad duration '-1'"),
        (["events", "--duration", "-5"], "argument --duration: bad duration '-5'"),
        (["events", "--duration", "0"], "argument --duration: bad duration '0': it must be more than 0"),
        (["events", "--duration", "inf"], "argument --duration: bad duration 'inf'"),
        (["events", "--count", "0"], "argument --count: bad count '0': it must be at least 1"),
        (["events", "--ring-size", "0"], "argument --ring-size: bad size '0': it must be positive"),
        (["events", "--ring-size", "3"], "argument --ring-size: ring buffer size '3' out of range"),
        (["events", "--ring-size", "64G"], "argument --ring-size: ring buffer size '64G' out of range"),
        (["events", "--cgroup-rate", "99999999999999999999,1s"], "argument --cgroup-rate: bad cgroup rate"),
        (["events", "--cgroup-rate", "10,100h"], "argument --cgroup-rate: bad cgroup rate"),
        (["events", "--cgroup-rate", "10,0.1ms"], "argument --cgroup-rate: bad cgroup rate"),
        (["events", "--max-size", "ten"], "argument --max-size: bad size 'ten'"),
        (["events", "--max-backups", "-1"], "argument --max-backups: bad number '-1'"),
        (["snapshot", "--last", "-3"], "argument --last: bad number '-3'"),
        (["ui", "--snapshot-dir", "/no/such/dir"], "argument --snapshot-dir: '/no/such/dir' is not a directory"),
        (["ui", "-d", "ten"], "argument -d/--delay: bad delay 'ten': tenths of a second, as htop's -d (10: 1 s)"),
        (["events", "--filter", "bin:[/]x cap:[/]"], "--filter: unknown capability '[/]'"),
        (["events", "--user", "nosuchuser"], "--user: unknown user 'nosuchuser'"),
        (["ui", "--filter", "user:nosuchuser"], "--filter: unknown user 'nosuchuser'"),
        (["events", "--container", "nosuch"], "--container: no container 'nosuch' on this machine"),
        (["ui", "--filter", "bin:sh container:web,nosuch"], "--filter: no container 'web' on this machine"),
        (["events", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_are_one_line(argv, said):
    out = _run(*argv)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and said in lines[0], out.stderr  # no usage before it
    assert "-h lists the options" in lines[0]


def test_a_container_is_looked_for_only_on_this_machine():
    """A replay or another machine's agent has its own containers: not refused here."""
    from procscope.cli import build_parser
    from procscope.options import Options

    for source in (["--replay", "rec.json"], ["--connect", "unix:///run/agent.sock"]):
        opts = Options.from_args(build_parser().parse_args(["ui", *source, "--container", "nosuch"]))
        assert str(opts.query) == "container:nosuch"
    opts = Options.from_args(build_parser().parse_args(["ui", "--container", "host", "--filter=-container:nosuch"]))
    assert str(opts.query) == "-container:nosuch container:host"  # the processes in none; excluding one absent


def test_ring_size_is_reported_as_rounded():
    from procscope.commands import ring_text

    assert ring_text(16 << 20) == "ring buffer 16384 KiB"
    assert (
        ring_text(5 * PAGE_SIZE)
        == f"ring buffer {8 * PAGE_SIZE >> 10} KiB, rounded up from {5 * PAGE_SIZE} bytes to a power of two pages"
    )


def test_htops_habits_are_understood():
    """-d in tenths, -s with htop's column names, -u for a user, -t; a column it lacks is one line."""
    from procscope.cli import build_parser
    from procscope.options import Options

    opts = Options.from_args(build_parser().parse_args(["ui", "-d", "15", "-s", "PERCENT_CPU", "-u", "root"]))
    assert opts.usage == 1.5 and opts.sort_key == "CPU%" and str(opts.query) == "user:root"
    assert Options.from_args(build_parser().parse_args(["ui", "--sort-key", "mem%", "-t"])).tree
    out = _run("ui", "-s", "NOSUCH")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown column 'NOSUCH' for -s" in out.stderr
