"""Text that processes control (names, paths, arguments, cwd, cgroup names):
bytes until here, then one representation everywhere.

Linux names are bytes, and anything but '/' and NUL may be in them:
invalid UTF-8, escape sequences, newlines, Rich markup. procscope keeps
them as ``str`` that is always valid UTF-8 and loses nothing:

- a byte that is not part of valid UTF-8 becomes ``\\xHH`` (e.g. ``\\xff``);
- a backslash becomes ``\\\\``, so that the two cannot be confused;
- everything else, control characters included, stays as it is.

JSON output can therefore always be written, and ``to_bytes`` gives back
the exact bytes. Control characters are made visible only where text goes
to a terminal (``printable``), since JSON escapes them itself.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata

from wcwidth import wcwidth


def from_bytes(raw: bytes) -> str:
    """Kernel or /proc bytes → procscope text (lossless, valid UTF-8)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return text.replace("\\", "\\\\") if "\\" in text else text


def from_os(name: str) -> str:
    """A name Python decoded from the OS (surrogateescape) → procscope text."""
    return from_bytes(os.fsencode(name))


_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def to_bytes(text: str) -> bytes:
    """procscope text → the bytes it stands for (the inverse of from_bytes)."""
    return _ESCAPE.sub(lambda m: b"\\" if m[1] == b"\\" else bytes([int(m[1][1:], 16)]), text.encode())


def clean(text: str) -> str:
    """Text from elsewhere (a recording, a Tetragon export: JSON may hold
    lone surrogates) → procscope text. Valid text is left as it is."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


# What a terminal may act on: C0 controls, DEL and C1 controls (ESC starts
# sequences, U+009B is a CSI by itself), line and paragraph separators, the
# bidirectional controls that reorder what is shown, and the characters
# that show as nothing (zero-width spaces and joiners, the BOM, soft
# hyphen, invisible operators, variation selectors, Hangul fillers). JSON
# escapes C0 itself; the rest (of the Basic Multilingual Plane) it leaves raw.
_BEYOND_C0 = (
    "\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2028\u2029\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb"
)
_UNPRINTABLE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_JSON_RAW = re.compile(f"[{_BEYOND_C0}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Shown as nothing, or joined with what follows, whatever their category says.
_INVISIBLE = frozenset(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0, *range(0x180B, 0x1810),
     *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0), *range(0x1F1E6, 0x1F200), *range(0x1F3FB, 0x1F400)]
)  # fmt: skip
_NEVER = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"})  # controls, format, unassigned, private, surrogates
_COMBINING = frozenset({"Mn", "Me"})  # Mc (spacing marks) have no width terminals agree on


def _escape(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x80 else f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"


def _escape_char(m: re.Match) -> str:
    return _escape(m[0])


@functools.lru_cache(maxsize=1 << 14)
def _kind(c: str) -> int:
    """0: shown as itself; 1: a combining mark (shown after a character that is); 2: escaped.
    A character is shown only with a width the terminal agrees on (wcwidth's
    table; Rich's, which lays out the screen, differs from it only on the
    regional indicators and skin tones, escaped above): else a row would shift."""
    category = unicodedata.category(c)
    if category in _NEVER or (category == "Zs" and c != " ") or ord(c) in _INVISIBLE:
        return 2
    width = wcwidth(c)
    if category in _COMBINING:
        return 1 if width == 0 else 0
    return 0 if width > 0 else 2


def printable(text: str) -> str:
    """Text for a terminal: every character that could move the cursor,
    start an escape sequence, split a line, reorder the display, show as
    nothing or take another width than the screen's layout gives it is
    shown as an escape instead (``\\n``, ``\\x1b``, ``\\u009b``, ``\\u202e``,
    ``\\u200b``, ``\\U000e0041``); a combining mark stays only on a character shown."""
    if text.isascii():
        return _UNPRINTABLE.sub(_escape_char, text) if _UNPRINTABLE.search(text) else text
    out = []
    base = False  # the last character is one shown (a combining mark may follow it)
    for c in text:
        kind = _kind(c) if c >= "\x7f" else 2 if c < " " or c == "\x7f" else 0
        if kind == 0 or kind == 1 and base:
            out.append(c)
            base = True
        else:
            out.append(_escape(c))
            base = False
    return "".join(out)


def scripts(text: str) -> list[str]:
    """The scripts of ``text``'s letters (LATIN, CYRILLIC, GREEK…), in order of
    appearance: more than one in a name is how look-alikes are made (Cyrillic 'ѕ' for 's')."""
    found: dict[str, None] = {}
    for c in text:
        if not c.isascii() and unicodedata.category(c).startswith("L"):
            words = unicodedata.name(c, "UNKNOWN").split(" ")
            found.setdefault(words[1] if words[0] in ("FULLWIDTH", "HALFWIDTH") and len(words) > 1 else words[0])
        elif c.isascii() and c.isalpha():
            found.setdefault("LATIN")
    return list(found)


def json_escaped(line: str) -> str:
    """A line of JSON with the characters JSON leaves raw and a terminal
    would act on written as \\uXXXX escapes (the same string to a reader)."""
    if line.isascii() and "\x7f" not in line:  # isascii is a flag of the string: most lines end here
        return line
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m[0]):04x}", line) if _JSON_RAW.search(line) else line


def json_escaped_bytes(line: bytes) -> bytes:
    """json_escaped for a line of UTF-8 (as an encoder makes it): most are ASCII and pass as they are."""
    if line.isascii() and b"\x7f" not in line:
        return line
    return json_escaped(line.decode()).encode()
