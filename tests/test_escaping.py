"""What reaches the terminal from names a process chose: random Unicode of
every category (unassigned and private-use code points too) through the
escaper, and through the process list's rows as a terminal lays them out
(wcwidth, what terminals and pyte use) and as the screen does (Rich)."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len, get_character_cell_size
from rich.text import Text
from wcwidth import wcswidth, wcwidth

from procscope.cache import ROOT, ProcessCache
from procscope.probes.text import printable
from procscope.runtimes import ContainerInfo
from procscope.tui.columns import COLUMNS, Context
from procscope.tui.panes.detail import lookalike
from procscope.tui.panes.process_tree import row_text
from procscope.tui.rows import ViewOptions

from .factories import DOCKER, exec_event
from .test_ui_rows import process_rows

ANY = st.characters(codec=None, exclude_categories=["Cs"])  # lone surrogates are not str that reach here
TEXT = st.text(ANY, max_size=40)
HOSTILE = st.text(st.one_of(ANY, st.sampled_from(list("\u200b\u200d\u2060\ufeff\u00ad\u180e\u061c\u202e\u3164\ufe0f"
                                                    "\U000e0041\U0001f1e6\U0001f3fb\u0301👍中\x1b\n"))), max_size=40)  # fmt: skip
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"}


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(TEXT, HOSTILE))
def test_nothing_invisible_direction_changing_or_control_survives_the_escaper(text):
    shown = printable(text)
    base = False
    for c in shown:
        category = unicodedata.category(c)
        assert category not in INVISIBLE_CATEGORIES, (text, c)
        assert category != "Zs" or c == " ", (text, c)
        width = wcwidth(c)
        assert width == get_character_cell_size(c), (text, c)  # the terminal and the screen agree
        if category in ("Mn", "Me") and width == 0:
            assert base, (text, c)  # a combining mark only on a character shown
        else:
            assert width > 0, (text, c)
        base = True
    assert wcswidth(shown) == cell_len(shown)
    assert printable(shown) == shown  # escaping twice changes nothing


def _row_cells(binary: str, args: tuple[str, ...], container: str, width: int) -> Text:
    cache = ProcessCache()
    proc = cache.apply(exec_event(100, 1_000, ROOT, binary=binary, args=args, cgroup=DOCKER))
    cache.cgroup_index.info[proc.container.id] = ContainerInfo(proc.container.id, "docker", container)
    rows = process_rows(cache, None, ViewOptions())
    ctx = Context(cache, 2_000, 0)
    columns = [COLUMNS[n] for n in ("PID", "USER", "CONTAINER", "BADGES", "STATE", "COMMAND")]
    row = next(r for r in (rows[i] for i in range(len(rows))) if getattr(r, "proc", None) is not None)
    # Each column keeps its width in cells, whatever its text: the command starts where the header says.
    assert cell_len(row_text(row, ctx, columns[:-1]).plain) == sum(c.width + 1 for c in columns[:-1])
    text = row_text(row, ctx, columns)
    text.truncate(width, overflow="ellipsis", pad=True)  # as the list draws a row (RowsView._strip)
    return text


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE, st.lists(HOSTILE, max_size=3), HOSTILE, st.sampled_from([80, 200]))
def test_every_row_is_exactly_the_screens_width_in_the_terminals_cells(name, args, container, width):
    text = _row_cells("/usr/bin/" + name, tuple(args), container, width)
    assert cell_len(text.plain) == width
    assert wcswidth(text.plain) == width, repr(text.plain)


def test_eleven_sshd_look_alikes_are_told_apart():
    names = ["ss\u200bhd", "ssh\u200cd", "s\u200dshd", "ssh\u2060d", "\ufeffsshd", "ss\u00adhd", "ssh\u180ed",
             "\u061csshd", "sshd\U000e0020", "ѕѕhd", "sѕhd"]  # fmt: skip
    shown = {printable(n) for n in names}
    assert len(shown) == len(names) and "sshd" not in shown
    assert all(lookalike(n) for n in names) and not lookalike("sshd")
    assert "Latin, Cyrillic" in lookalike("sѕhd")


def test_a_binary_nobody_could_read_is_said_unknown():
    """pid 1 here: /proc/1/exe cannot be read, so the scan has no path."""
    from procscope.export import Exporter
    from procscope.tui.panes.detail import render_detail

    from .conftest import plain

    cache = ProcessCache()
    proc = cache.apply(exec_event(1, 1_000, ROOT, binary="", args=("--init",)))
    detail = plain(None, render_detail(proc, cache, 2_000, Exporter(cache, node="n")))
    assert re.search(r"^binary +\? \(unknown\) *$", detail, re.M) and "inode 0" not in detail, detail
