"""SVG snapshots of the monitor replaying tests/data/demo.jsonl (recorded by
scripts/record-demo). A replay draws the same screen on every run at a given
size, so any difference is a change in how the monitor looks: inspect the
report pytest writes (snapshot_report.html), and if the change is wanted,
regenerate the baselines in tests/__snapshots__/ with `make snapshots`
(pytest tests/test_snapshots.py --snapshot-update)."""

import time
from pathlib import Path

import pytest

from procscope import themes
from procscope.replay import Replay
from procscope.tui.app import ProcscopeApp
from procscope.tui.sources import ReplaySource

from .factories import with_losses

ROOT = Path(__file__).parent.parent
DEMO = "tests/data/demo.jsonl"  # relative: the status line names it, the same on every machine
CONTAINER = "d7565509c160"  # the demo's docker-like container
SMALL, LARGE = (80, 24), (200, 60)


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("TZ", "UTC")  # the times shown are local: the same everywhere
    time.tzset()

    def make(path: str = DEMO, **kw) -> ProcscopeApp:
        return ProcscopeApp(ReplaySource(Replay(path), 5 * 10**9), snapshot_dir=str(tmp_path), **kw)

    yield make
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "200x60"])
@pytest.mark.parametrize("theme", themes.NAMES)
def test_main_screen(snap_compare, demo, theme, size):
    assert snap_compare(demo(theme=theme), terminal_size=size)


def test_help_screen(snap_compare, demo):
    assert snap_compare(demo(), press=["f1"], terminal_size=SMALL)


def test_setup_screen(snap_compare, demo):
    assert snap_compare(demo(), press=["f2"], terminal_size=SMALL)


def test_loss_warning(snap_compare, demo, tmp_path, monkeypatch):
    with_losses(DEMO, tmp_path / "lossy.jsonl")
    monkeypatch.chdir(tmp_path)  # the status line names it: relative, the same on every machine
    assert snap_compare(demo("lossy.jsonl"), press=["L"], terminal_size=SMALL)


def test_filtered_to_the_container(snap_compare, demo):
    assert snap_compare(demo(), press=["backslash", *f"container:{CONTAINER}", "enter"], terminal_size=LARGE)


def test_flat_sorted_view_with_the_detail(snap_compare, demo):
    assert snap_compare(demo(), press=["f6", "down", "enter", "down", "enter"], terminal_size=SMALL)
