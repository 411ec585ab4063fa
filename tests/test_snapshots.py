"""SVG snapshots of the monitor replaying tests/data/demo.jsonl (recorded by
scripts/record-demo). A replay draws the same screen on every run at a given
size, so any difference is a change in how the monitor looks: inspect the
report pytest writes (snapshot_report.html), and if the change is wanted,
regenerate the baselines in tests/__snapshots__/ with `make snapshots`
(pytest tests/test_snapshots.py --snapshot-update)."""

from pathlib import Path

import pytest

from procscope import themes
from procscope.replay import Replay
from procscope.tui.app import ProcscopeApp
from procscope.tui.sources import ReplaySource

ROOT = Path(__file__).parent.parent
DEMO = "tests/data/demo.jsonl"  # relative: the status line names it, the same on every machine
CONTAINER = "d7565509c160"  # the demo's docker-like container
SIZE = (160, 48)


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)

    def make(**kw) -> ProcscopeApp:
        return ProcscopeApp(ReplaySource(Replay(DEMO), 5 * 10**9), snapshot_dir=str(tmp_path), **kw)

    return make


@pytest.mark.parametrize("theme", themes.NAMES)
def test_main_screen(snap_compare, demo, theme):
    assert snap_compare(demo(theme=theme), terminal_size=SIZE)


def test_help_screen(snap_compare, demo):
    assert snap_compare(demo(), press=["question_mark"], terminal_size=SIZE)


def test_filtered_to_the_container(snap_compare, demo):
    assert snap_compare(demo(), press=["backslash", *f"container:{CONTAINER}", "enter"], terminal_size=SIZE)


def test_flat_sorted_view(snap_compare, demo):
    assert snap_compare(demo(), press=["f6"], terminal_size=SIZE)
