"""The command palette (ctrl+p) offers every key-bound action of the
monitor, read from its keys (tui.keys), so actions added later appear
without being listed twice."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .keys import KEYS


class BindingCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        """(description, keys, action) of each described key."""
        return [(b.description, b.key.replace(",", " or "), b.action) for b in KEYS if b.description]

    def _run(self, action: str):
        return partial(self.app.run_action, action, self.screen)  # the monitor's, the palette was opened on

    async def discover(self) -> Hits:
        for name, keys, action in self._commands():
            yield DiscoveryHit(name, self._run(action), help=f"key: {keys}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, keys, action in self._commands():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), self._run(action), text=name, help=f"key: {keys}")
