"""The screen at the sizes people use (80×24, 120×40, 200×60), replaying
the demo recording and driven as an htop user would: how many process rows
and which columns show, the panels opening and closing, a resize, and
every htop key doing what it does in htop. What is checked is the screen's
text, as the terminal shows it."""

import os
import re
import time
import tomllib
from pathlib import Path

import pytest
from rich.text import Text

from procscope.replay import Replay
from procscope.tui.app import ProcscopeApp
from procscope.tui.screens.help import HelpScreen
from procscope.tui.screens.pick import PickScreen
from procscope.tui.screens.setup import SetupScreen
from procscope.tui.screens.signal import SignalScreen
from procscope.tui.sources import ReplaySource

from .conftest import plain, screen_text
from .factories import with_losses

ROOT = Path(__file__).parent.parent
DEMO = "tests/data/demo.jsonl"
SIZES = [(80, 24), (120, 40), (200, 60)]
PID_ROW = re.compile(r"^│\s*\*?\s*(\d+) ")  # a process row of the list: its pid after the border


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)

    def make(path: str = DEMO, **kw) -> ProcscopeApp:
        return ProcscopeApp(ReplaySource(Replay(path), 5 * 10**9), snapshot_dir=str(tmp_path), **kw)

    return make


def list_lines(app) -> list[str]:
    """The process list's lines on screen: from its column titles to its bottom border."""
    lines = screen_text(app).splitlines()
    top = next(i for i, line in enumerate(lines) if re.match(r"^│\s+PID[ ▲▼]", line))
    end = next(i for i in range(top, len(lines)) if lines[i].startswith("╰"))
    return lines[top:end]


def shown_pids(app) -> list[int]:
    return [int(m[1]) for line in list_lines(app)[1:] if (m := PID_ROW.match(line))]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_list_gets_most_of_the_screen(demo, size):
    app = demo()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        lines = list_lines(app)
        titles = lines[0].split()
        assert titles[1:4] == ["PID", "USER", "CONTAINER"] and "COMMAND" in titles
        rows = shown_pids(app)
        # At 80×24 at least 15 processes (htop gives about 20), each with its command.
        assert len(rows) >= {24: 15, 40: 20, 60: 28}[size[1]], rows
        assert "/sbin/init" in lines[1] and "/usr/bin/bash" in lines[2]
        # Long commands end in an ellipsis, inside the border.
        assert all(len(line) <= size[0] for line in lines)
        if size[0] < 100:
            assert any(line.rstrip(" │").endswith("…") for line in lines)
        # The wider the screen, the more columns (AGE appears from 120).
        assert ("AGE" in titles) == (size[0] >= 120)
        footer = screen_text(app).splitlines()[-1]
        for key in ("F1 Help", "F2 Setup", "F3 Search", "F4 Filter", "F5 Tree", "F6 SortBy", "F9 Kill", "F10 Quit"):
            assert key in footer, (key, footer)


async def test_panels_open_close_and_switch_at_80x24(demo):
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "execs" not in text and "pid                  1" not in text  # the list only
        await pilot.press("enter")  # the selected process's detail, below the list
        await pilot.pause()
        text = screen_text(app)
        assert "key 1:240000000" in text and "binary               /sbin/init" in text
        assert len(shown_pids(app)) >= 5
        await pilot.press("escape")
        await pilot.pause()
        assert "key 1:" not in screen_text(app) and len(shown_pids(app)) >= 15
        # E, X, L open the bottom panel on the exec stream, the exits, the losses; the same key closes it.
        await pilot.press("E")
        await pilot.pause()
        text = screen_text(app)
        assert "TIME" in text and "/usr/bin/sleep 600" in text.split("execs")[1]
        await pilot.press("tab")  # the next: exits
        await pilot.pause()
        assert app.monitor.panel.current == "exits" and "LIFETIME" in screen_text(app)
        assert "exit 0" in screen_text(app).split("exits")[1]
        await pilot.press("tab")  # the history: every process seen
        await pilot.pause()
        assert app.monitor.panel.current == "history" and "STARTED" in screen_text(app)
        await pilot.press("tab")
        await pilot.pause()
        text = screen_text(app)
        assert app.monitor.panel.current == "drops"
        for word in ("unknown", "ENOENT", "E2BIG", "EBUSY", "EINVAL", "ENOSPC", "EAGAIN", "EXECVE", "user space"):
            assert word in text, word
        await pilot.press("L")
        await pilot.pause()
        assert "EAGAIN" not in screen_text(app) and len(shown_pids(app)) >= 15


async def test_the_selected_row_stays_in_view_when_the_list_gets_shorter(demo):
    """At 80x24 the detail or a panel takes most of the list's lines: the row
    the cursor is on (found by a search far down) is still on screen."""
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        tree = app.monitor.tree_pane
        await pilot.press("end")
        await pilot.pause()
        last = tree.selected_key
        for key in ("enter", "escape", "E"):
            await pilot.press(key)
            await pilot.pause()
            assert tree.selected_key == last
            assert (
                tree.scroll_offset.y <= tree.cursor < tree.scroll_offset.y + tree.scrollable_content_region.height - 1
            )
            assert last.pid in shown_pids(app), key


async def test_wide_screens_show_the_detail_beside_the_list_and_resizing_lays_out_again(demo):
    app = demo()
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        tree, detail = app.query_one("#tree").region, app.query_one("#detail").region
        assert detail.x >= tree.right and detail.y == tree.y  # beside
        assert app.monitor.panel.region.y >= tree.bottom  # and the exec stream below both
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.3)
        assert not app.query_one("#detail").display and not app.monitor.panel.display
        assert len(shown_pids(app)) >= 15 and "AGE" not in list_lines(app)[0]
        await pilot.resize_terminal(120, 40)
        await pilot.pause(0.3)
        assert "AGE" in list_lines(app)[0] and app.monitor.panel.display and not app.query_one("#detail").display
        await pilot.press("enter")
        await pilot.pause()
        tree, detail = app.query_one("#tree").region, app.query_one("#detail").region
        assert detail.y >= tree.bottom  # below, as narrower than WIDE
        await pilot.resize_terminal(200, 60)
        await pilot.pause(0.3)
        assert app.query_one("#detail").region.x >= app.query_one("#tree").region.right


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_losses_are_one_glance_and_one_key_away(demo, tmp_path, size):
    app = demo()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        status = screen_text(app).splitlines()[0]
        assert status.startswith(" lost 0 │") and not app.query_one("#status").has_class("losing")
    with_losses(DEMO, tmp_path / "lossy.jsonl")
    app = demo(str(tmp_path / "lossy.jsonl"))
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        status = screen_text(app).splitlines()[0]
        # Whole, whatever else the width leaves out.
        assert status.startswith(" ⚠ lost 15: kernel EAGAIN on EXECVE 12, user-space queue 3 (L)"), status
        assert app.query_one("#status").has_class("losing")
        if app.monitor.panel.display:
            await pilot.press("L")  # the panel may be open on another
            await pilot.pause()
        if app.monitor.panel.current != "drops" or not app.monitor.panel.display:
            await pilot.press("L")
            await pilot.pause()
        execve = next(line for line in screen_text(app).splitlines() if re.match(r"│\s*EXECVE ", line))
        assert execve.split()[-4:] == ["12", "12", "0.0", "│"]  # EAGAIN, total, per second


async def test_htop_keys(demo, tmp_path):
    config = tmp_path / "config.toml"
    app = demo(config_path=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for key in ("f1", "h", "question_mark"):  # help
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen), key
            await pilot.press("escape")
            await pilot.pause()
        # F5 and t: the tree off (a flat list by PID) and on again.
        for key in ("f5", "t"):
            await pilot.press(key)
            await pilot.pause()
            assert not app.monitor.view.tree and "├─" not in "".join(list_lines(app))
            await pilot.press(key)
            await pilot.pause()
            assert app.monitor.view.tree and "├─" in "".join(list_lines(app))
        # F3 and /: search, then n and N for the next and previous match.
        await pilot.press("f3", *"sleep 600", "enter")
        await pilot.pause()
        first = app.monitor.tree_pane.cursor
        assert "sleep 600" in " ".join((app.monitor.cache.get(app.monitor.tree_pane.selected_key).binary,
                                        *app.monitor.cache.get(app.monitor.tree_pane.selected_key).args))  # fmt: skip
        await pilot.press("n")
        await pilot.pause()
        second = app.monitor.tree_pane.cursor
        assert second > first
        await pilot.press("N")
        await pilot.pause()
        assert app.monitor.tree_pane.cursor == first
        await pilot.press("slash", *"payload", "enter")
        await pilot.pause()
        assert "/memfd:payload" in app.monitor.cache.get(app.monitor.tree_pane.selected_key).binary
        # F4 and \: the filter.
        await pilot.press("f4", *"user:nobody", "enter")
        await pilot.pause()
        assert str(app.monitor.filter_query) == "user:nobody"
        assert {app.monitor.cache.by_pid[p].image.uid for p in shown_pids(app) if p != 1} <= {65534, 0}
        await pilot.press("backslash", "ctrl+u", "enter")
        await pilot.pause()
        assert not app.monitor.filter_query
        # u: one user's processes, from a list of users.
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, PickScreen)
        await pilot.press("down", "enter")  # after "all users": nobody
        await pilot.pause()
        assert str(app.monitor.filter_query) == "user:nobody"
        await pilot.press("u", "home", "enter")  # all users again
        await pilot.pause()
        assert not app.monitor.filter_query
        # F6: sort by a column (a flat list); < and > the next column; I inverts.
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, PickScreen)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.monitor.view.sort == "USER" and not app.monitor.view.tree and "USER▲" in list_lines(app)[0]
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert app.monitor.view.sort == "CONTAINER"
        await pilot.press("less_than_sign", "less_than_sign")
        await pilot.pause()
        assert app.monitor.view.sort == "PID"
        pids = shown_pids(app)
        assert pids == sorted(pids)
        await pilot.press("I")
        await pilot.pause()
        pids = shown_pids(app)
        assert pids == sorted(pids, reverse=True) and "PID▼" in list_lines(app)[0]
        await pilot.press("I", "t")
        await pilot.pause()
        # space tags and moves down, U untags all.
        await pilot.press("home", "space", "space")
        await pilot.pause()
        assert len(app.monitor.tagged) == 2 and app.monitor.tree_pane.cursor == 2
        assert [(line[1], int(line[2:].split()[0])) for line in list_lines(app)[1:4]] == [
            ("*", 1),
            ("*", 19279),
            (" ", 19280),
        ]
        await pilot.press("U")
        await pilot.pause()
        assert not app.monitor.tagged
        # - folds the subtree (htop marks it with +), + unfolds, * unfolds all.
        await pilot.press("home", "down", "minus")
        await pilot.pause()
        lines = list_lines(app)
        assert 19280 not in shown_pids(app) and re.search(r"[├└]\+ /usr/bin/bash", lines[2]), lines[2]
        await pilot.press("plus")
        await pilot.pause()
        assert len(shown_pids(app)) >= 15
        await pilot.press("minus", "asterisk")
        await pilot.pause()
        assert len(shown_pids(app)) >= 15 and not app.monitor.view.collapsed
        # Z freezes the view; F follows the selected process.
        await pilot.press("Z")
        await pilot.pause()
        assert "FROZEN (Z)" in screen_text(app).splitlines()[0]
        await pilot.press("Z", "down", "F")
        await pilot.pause()
        followed = app.monitor.tree_pane.selected_key
        assert app.monitor.following == followed and f"following {followed.pid} (F)" in screen_text(app).splitlines()[0]
        await pilot.press("t")  # the list reorders: the followed process stays selected
        await pilot.pause()
        assert app.monitor.tree_pane.selected_key == followed
        await pilot.press("F", "t")
        await pilot.pause()
        # F9 and k: the signal dialog (a replay refuses to send, and says so).
        for key in ("f9", "k"):
            await pilot.press(key)
            await pilot.pause()
            assert not isinstance(app.screen, SignalScreen)
        # F2: setup; space hides a column, ] moves one, Enter saves it in the config file.
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, SetupScreen)
        # On and off read without colour (✓ or a blank), and a chosen column not shown says why.
        lines = screen_text(app).splitlines()
        assert any(re.search(r"▐✓▌ PID +process id +\(always\)", line) for line in lines)
        assert any(re.search(r"▐✓▌ MEM% +\(hidden: nothing to show\)", line) for line in lines)  # a recording's
        assert any(re.search(r"▐✓▌ AGE +\(hidden: too narrow\)", line) for line in lines)
        assert any(re.search(r"▐ ▌ PPID +parent's id", line) for line in lines)
        # From the first not always shown (CPU%), past MEM% RES S TIME+: CONTAINER off.
        await pilot.press("down", "down", "down", "down", "down", "space")
        await pilot.press("down", "down", "down", "space")  # past BADGES and AGE: PPID on
        await pilot.press("left_square_bracket", "left_square_bracket")  # PPID before BADGES
        await pilot.press("enter")
        await pilot.pause()
        titles = list_lines(app)[0].split()[1:]
        # A recording's has no CPU% or RES to show: those columns leave the room to the others.
        assert titles[:4] == ["PID", "USER", "PPID", "BADGES"] and "CONTAINER" not in titles
        saved = tomllib.loads(config.read_text())
        usage = ["CPU%", "MEM%", "RES", "S", "TIME+"]
        assert saved["columns"] == ["PID", "USER", *usage, "PPID", "BADGES", "AGE", "COMMAND"]
        assert os.stat(config).st_mode & 0o777 == 0o600
        # F10 and q quit.
        await pilot.press("f10")
        await pilot.pause()
    assert app.return_code == 0
    app = demo(config_path=config)  # the columns are remembered
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert list_lines(app)[0].split()[1:4] == ["PID", "USER", "PPID"]
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_the_detail_reads_as_words(demo, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # times are local, with the zone
    time.tzset()
    try:
        app = demo()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(*["slash", *"setuid-sleep", "enter"] * 2, "enter")  # the binary, not its shell
            await pilot.pause()
            assert re.search(r"│ started +2026-11-25 12:00:11\.\d{3} JST", screen_text(app))
            text = " ".join(plain(app, app.query_one("#detail").content).split())  # all of it, scrolled or not
            assert "/tmp/procscope-demo/bin/setuid-sleep" in text
            assert "login user unset" in text  # auid 4294967295
            assert "real 65534 (nobody) effective 0 (root)" in text
            # The capabilities nobody's shell lacked are red, and the pane says what red means.
            table = app.query_one("#detail-body").content
            red = {cell.plain[s.start : s.end].strip() for cell in table.columns[1]._cells
                   if isinstance(cell, Text) for s in cell.spans if "red" in str(s.style)}  # fmt: skip
            assert {"SYS_ADMIN", "SETUID", "DAC_OVERRIDE"} <= red
            assert "in red: capabilities its parent lacked" in text
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_the_first_hour_search_exits_and_capabilities(demo):
    """Issue 28: a search finds the program's name before an argument that holds the
    text; the exits say sub-second lifetimes and the arguments; root's full
    capability sets are a count, not 41 names."""
    app = demo()
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"sleep", "enter")  # dash -c .../setuid-sleep 600 comes first in the tree
        await pilot.pause()
        found = app.monitor.cache.get(app.monitor.tree_pane.selected_key)
        assert "sleep" in os.path.basename(found.binary), found
        await pilot.press("X")
        await pilot.pause()
        exits = [row.plain for row in app.query_one("#exits").rows]
        assert any(re.search(r"exit 0 +2\.20s /usr/bin/sleep 2\.2$", row) for row in exits), exits
        assert any(row.endswith("/usr/bin/dash -c kill -SEGV $$") for row in exits)
        await pilot.press("home")
        await pilot.pause()
        detail = plain(app, app.query_one("#detail").content)
        assert re.search(r"cap permitted +all 41", detail) and "CAP_SYS_ADMIN" not in detail


async def test_the_detail_scrolls_from_the_keyboard_at_80x24(demo):
    """Its capabilities and namespaces are below the few rows it gets: ctrl+down reaches them."""
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        detail = app.query_one("#detail")
        assert detail.scroll_offset.y == 0 and detail.max_scroll_y > 0
        for _ in range(10):
            await pilot.press("ctrl+down")
        await pilot.pause()
        assert detail.scroll_offset.y > 0 and app.monitor.tree_pane.has_focus  # the list keeps the keys
        assert "ns net" in screen_text(app)
        await pilot.press("ctrl+up")
        await pilot.pause()
        assert detail.scroll_offset.y < detail.max_scroll_y


async def test_the_help_reads_a_key_a_line_at_80x24(demo):
    """At 80 columns each key's description fits on its line: no title as
    wide as the keys' column squeezes them into a narrow one."""
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        await pilot.pause()
        text = screen_text(app)
        for shown in ("Next match of the search", "Previous match of the search", "Show one user's processes",
                      "Sort by CPU%, the busiest first"):  # fmt: skip
            assert shown in text, text


async def test_the_sort_dialog_wraps_a_columns_meaning_beside_the_names_at_80x24(demo):
    """F6 at 80 columns: a long meaning (COMMAND's; live, S's and TIME+'s) goes on under itself,
    not under the column names, where it read as a column of its own."""
    app = demo()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f6")
        await pilot.pause()
        names = [c.name for c in app.monitor.shown_columns]
        lines = [m.group(1) for line in screen_text(app).splitlines() if (m := re.search(r"▊ (.*?)\s*▎", line))]
        assert len(lines) > len(names), lines  # one wraps at least
        for line in lines:
            assert line.split()[0] in names or line.startswith(" " * 10), line


async def test_a_short_terminal_gives_the_borders_rows_to_processes(demo):
    """In a tmux split of 12 rows every line but the status, the column
    titles and the footer lists a process (the border took two of them: a
    third of what was left); 24 rows keep the border."""
    app = demo()
    async with app.run_test(size=(80, 12)) as pilot:
        await pilot.pause()
        tree = app.monitor.tree_pane
        assert tree.scrollable_content_region.height - 1 == 12 - 3  # the column titles are its first line
        lines = screen_text(app).splitlines()
        assert sum(bool(PID_ROW.match("│" + line)) for line in lines) == 9, lines
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert list_lines(app)  # within its border again


async def test_a_deep_command_cut_at_80_columns_keeps_the_programs_name(tmp_path):
    """Issue 28, point 2: where the tree is deep and the path long, the row
    shows the program's name (`…/sleeper 600`) rather than directories cut
    in the middle; the detail keeps the whole path."""
    from .factories import K, clone_event, exec_event, record

    deep = "/usr/lib/x86_64-linux-gnu/procscope-test/libexec/very/deep/sleeper"
    events, parent = [exec_event(1, 10, K(0, 0), "/sbin/init")], K(1, 10)
    for i in range(6):  # a chain of shells, each under the one before
        pid = 100 + i
        events += [
            clone_event(pid, 20 + 10 * i, parent),
            exec_event(pid, 25 + 10 * i, parent, "/bin/sh", cleanup=K(pid, 20 + 10 * i)),
        ]
        parent = K(pid, 25 + 10 * i)
    events += [clone_event(200, 100, parent), exec_event(200, 105, parent, deep, ("600",), cleanup=K(200, 100))]
    path = tmp_path / "deep.jsonl"
    record(events, path)
    app = ProcscopeApp(ReplaySource(Replay(str(path)), 5 * 10**9), snapshot_dir=str(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        row = next(line for line in list_lines(app) if line.split()[1:2] == ["200"] or " 200 " in line[:10])
        assert "…/sleeper 600" in row and "/usr/lib" not in row, row
        await pilot.press("slash", *"sleeper", "enter", "enter")
        await pilot.pause(0.3)
        assert deep in " ".join(plain(app, app.query_one("#detail").content).split())


def test_a_command_whose_path_just_fills_the_column_keeps_the_programs_name():
    """At the edge: the path fits the column exactly, so the arguments after
    it would put the ellipsis on the name's last letter (`/usr/bin/slee…`)."""
    from rich.cells import cell_len

    from procscope.cache import ROOT, ProcessCache
    from procscope.tui.columns import COLUMNS, Context
    from procscope.tui.panes.process_tree import row_text
    from procscope.tui.rows import ViewOptions

    from .factories import exec_event
    from .test_ui_rows import process_rows

    cache = ProcessCache()
    cache.apply(exec_event(100, 1_000, ROOT, binary="/usr/bin/sleep", args=("900",)))
    row = next(r for r in (process_rows(cache, None, ViewOptions())[i] for i in range(1)))
    for width in range(10, 25):
        text = row_text(row, Context(cache, 2_000, 0, command_width=width), [COLUMNS["COMMAND"]])
        text.truncate(width, overflow="ellipsis")  # as the list draws it
        if cell_len(row.branch + "/usr/bin/sleep 900") <= width:
            assert text.plain.startswith(row.branch + "/usr/bin/sleep 900"), (width, text.plain)
        else:  # the name whole: the directories go first, then the arguments
            assert re.match(r"(/usr/bin|…)/sleep( |…|$)", text.plain.removeprefix(row.branch)), (width, text.plain)
