"""procscope's Textual themes: dark, light and high contrast.

Each theme is a ``textual.theme.Theme`` (the colours widget CSS reads as
``$primary``, ``$error``...), an ANSI palette, and a ``.tcss`` file of rules
scoped to the class Textual puts on the app (``-theme-<name>``). The ANSI
palette matters because the panes colour their rows with Rich's named
colours ("bold green", "bold red", "bold yellow"), which Textual maps to
truecolor through the app's ANSI theme: Textual's light palette has a yellow
that is unreadable on white, and high contrast wants pure, bright colours.
"""

from __future__ import annotations

from pathlib import Path

from rich.terminal_theme import TerminalTheme
from textual.theme import BUILTIN_THEMES, Theme

HERE = Path(__file__).parent


def _hex(text: str) -> tuple[int, int, int]:
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


def _palette(bg: str, fg: str, normal: str, bright: str) -> TerminalTheme:
    """ANSI colours as two strings of 8 hex colours (black red green yellow blue magenta cyan white)."""
    return TerminalTheme(_hex(bg), _hex(fg), [_hex(c) for c in normal.split()], [_hex(c) for c in bright.split()])


DARK = Theme(
    name="procscope-dark",
    primary="#4ea1ff",
    secondary="#5b6b7d",
    accent="#ffb454",
    warning="#e3b341",
    error="#f85149",
    success="#3fb950",
    foreground="#d6dde6",
    background="#0d1117",
    surface="#161b22",
    panel="#1f2833",
    dark=True,
)
LIGHT = Theme(
    name="procscope-light",
    primary="#0550ae",
    secondary="#6e7781",
    accent="#8250df",
    warning="#9a6700",
    error="#cf222e",
    success="#1a7f37",
    foreground="#1f2328",
    background="#ffffff",
    surface="#f6f8fa",
    panel="#dde3ea",
    dark=False,
)
HIGH_CONTRAST = Theme(
    name="procscope-high-contrast",
    primary="#00ffff",
    secondary="#ffffff",
    accent="#ffff00",
    warning="#ffff00",
    error="#ff5555",
    success="#00ff00",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#000000",
    boost="#000000",
    dark=True,
    text_alpha=1.0,
    # Full-strength text everywhere: Textual's defaults blend text into the background.
    variables={
        "text": "auto 100%",
        "text-muted": "auto 100%",
        "foreground-muted": "#ffffff",
        "footer-key-foreground": "#ffff00",
        "footer-description-foreground": "#ffffff",
    },
)

THEMES: dict[str, Theme] = {t.name: t for t in (DARK, LIGHT, HIGH_CONTRAST)}
NAMES = tuple(THEMES)
DEFAULT = DARK.name

ANSI: dict[str, TerminalTheme] = {
    DARK.name: _palette(
        "#0d1117",
        "#d6dde6",
        "#484f58 #ff7b72 #3fb950 #d29922 #58a6ff #bc8cff #39c5cf #b1bac4",
        "#6e7681 #ffa198 #56d364 #e3b341 #79c0ff #d2a8ff #56d4dd #f0f6fc",
    ),
    # Every colour at least 4.5:1 on white, so "bold yellow" and "green" stay readable.
    LIGHT.name: _palette(
        "#ffffff",
        "#1f2328",
        "#24292f #b3121f #116329 #7a4a00 #0550ae #6f42c1 #0b6470 #57606a",
        "#57606a #a40e26 #1a7f37 #633c01 #0969da #8250df #1b7c83 #424a53",
    ),
    HIGH_CONTRAST.name: _palette(
        "#000000",
        "#ffffff",
        "#808080 #ff5555 #00ff00 #ffff00 #5fafff #ff55ff #00ffff #ffffff",
        "#c0c0c0 #ff5555 #00ff00 #ffff00 #5fafff #ff55ff #00ffff #ffffff",
    ),
}

CSS_PATHS = [HERE / f"{name.removeprefix('procscope-')}.tcss" for name in NAMES]


def all_names() -> list[str]:
    """Every theme --theme accepts: procscope's first, then Textual's own."""
    return [*NAMES, *(n for n in BUILTIN_THEMES if n not in THEMES)]


def next_name(current: str) -> str:
    """The theme the cycle key goes to: the next procscope theme (the first from any other)."""
    return NAMES[(NAMES.index(current) + 1) % len(NAMES)] if current in NAMES else NAMES[0]


# The checkout has this folder at its root as well as at procscope/themes:
# imported by the bare name it would be a second copy of every module
# (two caches of the same state, classes that are not the same class).
if __name__ == "themes":
    raise ImportError("import procscope.themes, not themes: the folder is linked into the procscope package")
