"""The help screen: every described key binding of the monitor, and the filter language."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from procscope import query

from ..text import add_row


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        for binding in self.app.BINDINGS:
            if isinstance(binding, Binding) and binding.description:
                add_row(t, binding.key.replace(",", " or "), binding.description)
        add_row(t, "", "")
        add_row(t, "filter", query.SYNTAX)
        for name, help_text in query.FIELDS.items():
            add_row(t, f"  {name}:", help_text)
        yield Static(t, id="help")
