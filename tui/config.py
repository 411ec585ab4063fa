"""The monitor's remembered settings: $XDG_CONFIG_HOME/procscope/config.toml
(default ~/.config/procscope/config.toml). Read with tomllib; written
atomically with mode 0600. A config that cannot be used never stops the
monitor: a one-line warning names the file and line, and defaults apply."""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from procscope.safe_read import Untrusted, read_file
from procscope.safe_write import atomic_writer

MAX_CONFIG = 1 << 20  # bytes: a config is a few lines


@dataclass
class Config:
    theme: str | None = None
    columns: list[str] | None = None  # the process list's, in order (tui.columns)
    header: bool = True  # htop's header of meters above the list
    # The nodes `procscope --connect` (no address) watches, and TLS to them (tui.main.config_nodes).
    connect: list[str] | None = None
    connect_ca: str | None = None
    connect_cert: str | None = None
    connect_key: str | None = None


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "procscope" / "config.toml"


def snapshot_dir() -> Path:
    """Where W writes snapshots without --snapshot-dir: $XDG_STATE_HOME/procscope
    (default ~/.local/state/procscope), made 0700; OSError when it is not a
    directory of this user's alone (a link planted there, another's)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    path = Path(base) / "procscope"
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise OSError(f"{path} is not a directory of this user's alone; choose one with --snapshot-dir")
    return path


def _line_of(text: str, key: str) -> int:
    """Where a key is set, for warnings about its value (tomllib keeps no positions)."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return lineno
    return 1


def load(path: str | os.PathLike, known_themes: Iterable[str] = (), warn: Callable[[str], None] = print,
         known_columns: Iterable[str] = ()) -> Config:  # fmt: skip
    """The config at ``path``; defaults when it is missing, or (with a warning) unusable."""
    try:
        # A regular file only (never waits on a FIFO), a few lines at most.
        text = read_file(os.fspath(path), MAX_CONFIG, follow=True).decode("utf-8")
    except FileNotFoundError:
        return Config()
    except Untrusted as exc:
        warn(f"{exc}; using defaults (remove it, or make it a small regular file)")
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        warn(f"{path}: cannot read the config ({getattr(exc, 'strerror', None) or exc}); using defaults")
        return Config()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python < 3.14 has the position only in the message: "Invalid value (at line 3, column 7)".
        m = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
        reason = str(exc)[: m.start()].strip() if m else str(exc)
        warn(f"{path}:{m[1] if m else 1}: corrupt config ({reason}); using defaults")
        return Config()
    theme = data.get("theme")
    known = list(known_themes)
    if theme is not None and not isinstance(theme, str):
        warn(f"{path}:{_line_of(text, 'theme')}: theme must be a string; using the default theme")
        theme = None
    elif theme is not None and known and theme not in known:
        warn(f"{path}:{_line_of(text, 'theme')}: unknown theme {theme!r}; using the default theme")
        theme = None
    columns = data.get("columns")
    names = set(known_columns)
    if columns is not None and not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
        warn(f"{path}:{_line_of(text, 'columns')}: columns must be a list of names; using the default columns")
        columns = None
    elif columns is not None and names and (unknown := [c for c in columns if c not in names]):
        warn(f"{path}:{_line_of(text, 'columns')}: unknown column {unknown[0]!r}; using the default columns")
        columns = None
    header = data.get("header", True)
    if not isinstance(header, bool):
        warn(f"{path}:{_line_of(text, 'header')}: header must be true or false; showing it")
        header = True
    connect = data.get("connect")
    if connect is not None and not (isinstance(connect, list) and all(isinstance(a, str) and a for a in connect)):
        warn(f'{path}:{_line_of(text, "connect")}: connect must be a list of addresses, e.g. ["host:54321"]')
        connect = None
    tls: dict[str, str | None] = {}
    for key in ("connect-ca", "connect-cert", "connect-key"):
        value = tls[key] = data.get(key)
        if value is not None and not isinstance(value, str):
            warn(f"{path}:{_line_of(text, key)}: {key} must be a file's path")
            tls[key] = None
    return Config(theme=theme, columns=columns, header=header, connect=connect, connect_ca=tls["connect-ca"],
                  connect_cert=tls["connect-cert"], connect_key=tls["connect-key"])  # fmt: skip


def save(path: str | os.PathLike, config: Config) -> None:
    """Write ``config`` (private: mode 0600, directory 0700). Raises OSError."""
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_writer(os.fspath(path)) as f:
        f.write("# procscope settings, written by the monitor\n")
        # JSON strings and arrays of them are valid TOML.
        if config.theme is not None:
            f.write(f"theme = {json.dumps(config.theme)}\n")
        if config.columns is not None:
            f.write(f"columns = {json.dumps(config.columns)}\n")
        if not config.header:
            f.write("header = false\n")
        if config.connect is not None:
            f.write(f"connect = {json.dumps(config.connect)}\n")
        for key, value in (("connect-ca", config.connect_ca), ("connect-cert", config.connect_cert),
                           ("connect-key", config.connect_key)):  # fmt: skip
            if value is not None:
                f.write(f"{key} = {json.dumps(value)}\n")
