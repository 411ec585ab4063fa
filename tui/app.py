"""The application around the monitor's screen (tui.monitor): themes and
the saved settings, garbage collection while it runs, SIGTERM, and what
an error nothing handled leaves on the terminal."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys

from textual.app import App
from textual.binding import Binding

from procscope import heap, themes
from procscope.window import Window

from . import config, fleet
from .columns import COLUMNS
from .crash import crash_report
from .monitor import MonitorScreen
from .screen_fd import TerminalDriver, since_input
from .screens.help import key_text
from .sources import ReplaySource, Source


class ProcscopeApp(App):
    CSS_PATH = ["app.tcss", *themes.CSS_PATHS]
    TITLE = "procscope"
    DEFAULT_MODE = "node 0"  # a mode per node's monitor (--connect to several), the first's first

    def __init__(self, source: Source | list[Source], query_text: str = "", snapshot_dir: str | None = None,
                 theme: str | None = None, config_path: str | os.PathLike | None = None,
                 allow_signals: bool = True, window: Window | None = None, allow_writes: bool = True,
                 usage_interval: float = 1.0, sort: str | None = None, **kwargs) -> None:  # fmt: skip
        """``theme``: None for the saved one (or the default); ``config_path``: where settings
        chosen at run time are saved, None (tests) to read and write no config; ``allow_signals``:
        False in the monitors `procscope serve` runs (without --allow-signals); ``window``:
        keeps the live source's recent events for time travel; ``allow_writes``: False in the
        monitors `procscope serve` runs (without --allow-writes): no snapshot, no config written;
        ``usage_interval``: seconds between readings of CPU%, memory and the meters (0: none);
        ``sort``: a column to start as a flat list sorted by (the figures the most first).
        Several sources (other machines, --connect more than once): a monitor each, the first
        shown, ctrl+n picks another; each keeps collecting while another is shown."""
        super().__init__(**kwargs)
        self.failure: str | None = None  # why the monitor stopped, when an error stopped it
        self._warnings: list[str] = []
        self._ansi_defaults = (self.ansi_theme_dark, self.ansi_theme_light)  # Textual's, for its own themes
        for t in themes.THEMES.values():
            self.register_theme(t)
        settings = config.Config()
        if config_path is not None:
            settings = config.load(config_path, self.available_themes, self._warnings.append, COLUMNS)
        sources = source if isinstance(source, list) else [source]
        self.monitors = [MonitorScreen(
            s, settings, query_text=query_text, snapshot_dir=snapshot_dir, config_path=config_path,
            allow_signals=allow_signals, allow_writes=allow_writes, usage_interval=usage_interval, sort=sort,
            window=window if i == 0 or window is None else Window(window.span_ns / 1e9, window.max_events),
            nodes=sources,
        ) for i, s in enumerate(sources)]  # fmt: skip
        self.monitor = self.monitors[0]
        for i, monitor in enumerate(self.monitors):
            self.add_mode(f"node {i}", lambda shown=monitor: shown)  # type: ignore[misc]
        if len(self.monitors) > 1:  # every node's processes in one list, made when first shown
            self.add_mode(fleet.MODE, lambda: fleet.FleetScreen(self.monitors))
        self.theme = theme or settings.theme or themes.DEFAULT
        self._saved_theme = self.theme  # only a change made here is written back
        self._gc_threshold: tuple[int, ...] | None = None  # Python's, while the monitor runs with its own

    async def on_mount(self) -> None:
        # Every node's monitor mounted now, so that each collects from the start (a mode's screen
        # is mounted when first shown); the first shown.
        for i in range(1, len(self.monitors)):
            await self.switch_mode(f"node {i}")
        if len(self.monitors) > 1:
            await self.switch_mode("node 0")
        for warning in self._warnings:
            self.monitor.say(warning, severity="warning", timeout=10)
        # What start-up made (the /proc scan's tree, the widgets) mostly stays: frozen, and full
        # garbage collections (~0.1 s at 10k processes) once a minute, between keys (procscope.heap).
        self._gc_threshold = heap.settle()
        self._full = heap.Full()
        self.set_interval(1.0, self.collect_garbage)
        self.set_interval(heap.YOUNG_EVERY, self.collect_young)
        # SIGTERM ends the monitor as q does (the terminal is restored, the exit status is 0).
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.exit)

    def on_unmount(self) -> None:
        if self._gc_threshold is not None:
            heap.unsettle(self._gc_threshold)

    async def action_quit(self) -> None:
        """F10 or q: back at the shell at once, as htop. In a terminal the probes
        are detached, other nodes' connections closed and the terminal given
        back, then the process ends without Textual unmounting every widget
        (0.2 s) and the interpreter freeing the caches object by object (0.1 s;
        0.34 s in all with two nodes connected): what they would free the
        kernel frees (settings are saved as they change). A replay (whose bad
        lines the exit status tells), served or under test, as Textual does."""
        driver = self._driver
        sources = [monitor.source for monitor in self.monitors]
        if not isinstance(driver, TerminalDriver) or any(isinstance(s, ReplaySource) for s in sources):
            self.exit()
            return
        for source in sources:
            source.quit()
        driver.give_back()
        sys.stdout.flush()
        os._exit(0)

    def collect_garbage(self) -> None:
        self._full.due(since_input(self))

    def collect_young(self) -> None:
        gc.collect(0)

    def get_key_display(self, binding: Binding) -> str:
        return key_text(binding.key.split(",")[0])  # F5, not f5

    def _handle_exception(self, error: Exception) -> None:
        # Textual's hook for an error nothing handled: the monitor stops either way. The full
        # traceback goes to a log file and the terminal gets one line (tui.main prints it),
        # instead of Textual's traceback with locals, which may hold any process's text.
        self.failure = crash_report(error)
        super()._handle_exception(error)
        self._exit_renderables.clear()

    def watch_theme(self, name: str) -> None:
        # Rich's named colours in the rows ("bold green", "bold red") follow the theme's ANSI palette.
        palette = themes.ANSI.get(name)
        self.ansi_theme_dark = palette or self._ansi_defaults[0]
        self.ansi_theme_light = palette or self._ansi_defaults[1]
        # getattr: the first theme is set in __init__, before there is a saved one to compare with.
        if name != getattr(self, "_saved_theme", name):
            self.monitor.settings.theme = self._saved_theme = name
            self.monitor.save_settings("theme")
