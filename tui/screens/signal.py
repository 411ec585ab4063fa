"""Confirm a signal: the targets, and which signal. Dismissed with the
signal's name (e.g. "TERM"), or None when cancelled; the app sends it."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from ..safe_text import add_row


class SignalScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, targets: list[tuple[int, str, str]], signals: tuple[str, ...]) -> None:
        """``targets``: (pid, user, command) of each process; ``signals``: names, the default first."""
        super().__init__()
        self.targets = targets
        self.signals = signals

    def compose(self) -> ComposeResult:
        t = Table(box=None, padding=(0, 1), header_style="bold", expand=True)
        # Whole, however long a command is (Rich shrinks every column to fit it otherwise).
        t.add_column(
            "PID", justify="right", no_wrap=True, min_width=max(3, *(len(str(pid)) for pid, _, _ in self.targets))
        )
        t.add_column("USER", no_wrap=True, min_width=max(4, *(len(user) for _, user, _ in self.targets)))
        t.add_column("COMMAND", no_wrap=True, overflow="ellipsis", ratio=1)  # as the list shows it: which one this is
        for pid, user, command in self.targets:
            add_row(t, str(pid), user, command)
        n = len(self.targets)
        with Vertical(id="dialog"):
            yield Static(f"Send a signal to {n} process{'es' if n > 1 else ''}", id="title")
            yield Static(t, id="targets")
            yield OptionList(*(Option(f"SIG{name}", id=name) for name in self.signals), id="signals")
            with Horizontal(id="buttons"):
                yield Button("Send", variant="error", id="send")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        options = self.query_one(OptionList)
        chosen = options.get_option_at_index(options.highlighted or 0).id
        self.dismiss(chosen if event.button.id == "send" else None)
