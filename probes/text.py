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

import os
import re


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
# sequences, U+009B is a CSI by itself), line and paragraph separators, and
# the bidirectional overrides that reorder what is shown. JSON escapes C0
# itself; the rest it leaves raw.
_BEYOND_C0 = "\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNPRINTABLE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_JSON_RAW = re.compile(f"[{_BEYOND_C0}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(m: re.Match) -> str:
    c = m[0]
    named = _NAMED.get(c)
    if named is not None:
        return named
    return f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}"


def printable(text: str) -> str:
    """Text for a terminal: every character that could move the cursor,
    start an escape sequence, split a line or reorder the display is
    shown as an escape instead (``\\n``, ``\\x1b``, ``\\u009b``, ``\\u202e``)."""
    return _UNPRINTABLE.sub(_escape_char, text) if _UNPRINTABLE.search(text) else text


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
