"""The command palette (ctrl+p) offers every key-bound action of the app,
read from its BINDINGS when the palette opens, so actions added later
appear without being listed twice."""

from __future__ import annotations

from functools import partial

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider


class BindingCommands(Provider):
    def _commands(self) -> list[tuple[str, str, str]]:
        """(description, keys, action) of each described binding of the app."""
        return [
            (b.description, b.key.replace(",", " or "), b.action)
            for b in type(self.app).BINDINGS
            if isinstance(b, Binding) and b.description
        ]

    def _run(self, action: str):
        return partial(self.app.run_action, action)

    async def discover(self) -> Hits:
        for name, keys, action in self._commands():
            yield DiscoveryHit(name, self._run(action), help=f"key: {keys}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, keys, action in self._commands():
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), self._run(action), text=name, help=f"key: {keys}")
