"""Text from processes, for widgets: never parsed as markup (so no style,
link or click action can be smuggled in), control characters shown as
escapes (so nothing reaches the terminal raw)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from procscope.probes.text import printable


def safe(text: str, style: str = "") -> Text:
    return Text(printable(text), style=style)


def add_row(table: Table, *cells, **kwargs) -> None:
    """``table.add_row`` with str cells made safe (Rich would parse them as markup)."""
    table.add_row(*(safe(c) if isinstance(c, str) else c for c in cells), **kwargs)
