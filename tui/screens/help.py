"""The help screen: the keys, as typed, grouped by what they are for (read
from the app's bindings, so they cannot drift), the badges, and the filter
language."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen
from textual.widgets import Static

from procscope import describe, query

from ..keys import KEYS
from ..safe_text import add_row

# (title, a note beside it, actions): the titles share the keys' column, so they stay as short as
# the keys (a long one made that column wide and wrapped every description at 80 columns).
GROUPS = (
    ("Find and narrow", "", ("prompt('search')", "search_next(1)", "search_next(-1)", "prompt('filter')", "pick_user",
                         "pick_container")),
    ("View", "", ("toggle_tree", "pick_sort", "sort_by('CPU%')", "sort_by('MEM%')", "sort_by('TIME+')", "step_sort(-1)",
              "step_sort(1)", "invert_sort", "expand", "collapse", "expand_all", "cycle_group", "freeze", "follow",
              "setup")),
    ("Panels", "", ("toggle_detail", "scroll_detail(4)", "scroll_detail(-4)", "next_panel(1)", "next_panel(-1)",
                "panel('execs')", "panel('exits')", "panel('history')", "panel('drops')", "close_panels")),
    ("Act", "", ("tag", "tag_children", "untag_all", "renice(-1)", "renice(1)", "signal", "snapshot")),
    ("Time travel", "a replay, or the live window; Z: live", ("step_time(-1)", "step_time(1)", "step_event(-1)", "step_event(1)", "prompt('time')")),
    ("Other", "", ("help", "cycle_theme", "quit")),
)  # fmt: skip


def key_text(key: str) -> str:
    """A key as it is typed: F5, ?, /, space, ^t."""
    if key.startswith("f") and key[1:].isdigit():
        return key.upper()
    if key.startswith("ctrl+"):
        return "^" + format_key(key[5:])
    return format_key(key)


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,f1,h,question_mark", "app.pop_screen", "Close")]

    def __init__(self, facts: list[str] | None = None) -> None:
        """``facts``: how the session was set up (the source's), shown at the end."""
        super().__init__()
        self.facts = list(facts or ())

    def compose(self) -> ComposeResult:
        by_action: dict[str, Binding] = {}
        for binding in KEYS:
            by_action.setdefault(binding.action, binding)
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        for title, note, actions in GROUPS:
            add_row(t, Text(title, style="underline"), note)
            for action in actions:
                b = by_action.get(action)
                if b is not None:
                    add_row(t, " ".join(key_text(k) for k in b.key.split(",")), b.description)
            add_row(t, "", "")
        add_row(t, "^p", "the command palette: every action by name")
        add_row(t, "", "")
        add_row(t, "Badges", "", style="underline")
        for name, meaning in describe.BADGES.items():
            add_row(t, name, meaning)
        add_row(t, "", "")
        add_row(t, "Filter", query.SYNTAX, style="underline")
        for name, help_text in query.FIELDS.items():
            add_row(t, f"{name}:", help_text)
        if self.facts:
            add_row(t, "", "")
            add_row(t, "This session", "", style="underline")
            for fact in self.facts:
                add_row(t, "", fact)
        with VerticalScroll(id="help"):
            yield Static(t)
