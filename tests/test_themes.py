"""Themes: the t key, --theme, and the remembered choice in config.toml."""

import gc
import os
import stat
from pathlib import Path

import pytest

from procscope import cli, themes
from procscope.replay import Replay
from procscope.tui import config
from procscope.tui import main as tui_main
from procscope.tui.app import ProcscopeApp
from procscope.tui.sources import ReplaySource

DEMO = str(Path(__file__).parent / "data" / "demo.jsonl")
SIZE = (150, 48)


def app_for(tmp_path, **kw) -> ProcscopeApp:
    return ProcscopeApp(ReplaySource(Replay(DEMO), 5 * 10**9), snapshot_dir=str(tmp_path), **kw)


@pytest.fixture(autouse=True)
def private_config_home(tmp_path, monkeypatch):
    """Nothing here may touch the real ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


async def test_theme_key_cycles_the_three_themes(tmp_path):
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "procscope-dark"
        seen = []
        for _ in range(3):
            await pilot.press("ctrl+t")
            await pilot.pause()
            seen.append(app.theme)
            # The rows' Rich colours follow the theme's own ANSI palette.
            assert app.ansi_theme is themes.ANSI[app.theme]
            assert f"-theme-{app.theme}" in app.classes
        assert seen == ["procscope-light", "procscope-high-contrast", "procscope-dark"]
        app.theme = "nord"  # from Textual's picker: t goes back to procscope's first
        await pilot.press("ctrl+t")
        assert app.theme == "procscope-dark"
    assert not (tmp_path / "xdg").exists()  # no config_path: nothing written


async def test_theme_option_sets_the_theme(tmp_path):
    args = cli.build_parser().parse_args(["ui", "--replay", DEMO, "--theme", "procscope-high-contrast"])
    app = app_for(tmp_path, theme=args.theme)
    async with app.run_test(size=SIZE):
        assert app.theme == "procscope-high-contrast"
        assert app.ansi_theme.background_color.hex == "#000000"


def test_unknown_theme_is_one_line_naming_the_choices(capsys):
    assert cli.main(["--theme", "neon", "--replay", DEMO]) == 2
    assert gc.isenabled()  # paused for the start only (procscope.heap): back on when it fails
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown theme 'neon'" in err
    assert all(name in err for name in themes.NAMES)


def test_cmd_ui_passes_the_xdg_config_path(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(ProcscopeApp, "run", lambda self: seen.update(path=self.monitor.config_path, theme=self.theme))
    monkeypatch.setattr(tui_main, "no_terminal", lambda app: None)  # pytest's stdin is none: the app is not run
    assert cli.main(["ui", "--replay", DEMO]) == 0
    assert seen == {"path": tmp_path / "xdg" / "procscope" / "config.toml", "theme": "procscope-dark"}
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config.default_path() == tmp_path / "home" / ".config" / "procscope" / "config.toml"


async def test_chosen_theme_is_saved_private_and_used_next_time(tmp_path):
    path = tmp_path / "cfg" / "procscope" / "config.toml"
    app = app_for(tmp_path, config_path=path)
    async with app.run_test(size=SIZE) as pilot:
        assert not path.exists()  # starting writes nothing
        await pilot.press("ctrl+t")
        await pilot.pause()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert config.load(path).theme == "procscope-light"
    again = app_for(tmp_path, config_path=path)
    async with again.run_test(size=SIZE):
        assert again.theme == "procscope-light"
    # --theme wins for its run, and is not saved.
    once = app_for(tmp_path, config_path=path, theme="procscope-high-contrast")
    async with once.run_test(size=SIZE):
        assert once.theme == "procscope-high-contrast"
    assert config.load(path).theme == "procscope-light"


@pytest.mark.parametrize(
    "text, where, why",
    [
        ('# settings\ntheme = "procscope-light\n', ":2:", "corrupt config"),
        ("\n\ntheme = 3\n", ":3:", "theme must be a string"),
        ('theme = "neon"\n', ":1:", "unknown theme 'neon'"),
    ],
)
async def test_corrupt_config_warns_and_falls_back(tmp_path, text, where, why):
    path = tmp_path / "config.toml"
    path.write_text(text)
    warnings = []
    assert config.load(path, themes.all_names(), warnings.append) == config.Config()
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}{where} {why}") and "\n" not in warnings[0]
    app = app_for(tmp_path, config_path=path)
    shown = []
    app.notify = lambda message, **kw: shown.append(message)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == themes.DEFAULT
        assert shown == warnings  # in the monitor too
