"""What the outputs make once for all the processes of one template (the
processes that show the same but their own fields, Exporter.template_key:
a storm's children), kept by that key."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Templates(Generic[T]):
    """Bounded (once full it starts again). The last key found is compared
    first: a storm's children have the same, and comparing it part by part
    (the same objects) costs less than hashing it (a child's credentials,
    hashed field by field, at every exec)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._table: dict[Hashable, T] = {}
        self._last: tuple[Hashable, T | None] = (None, None)

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value kept for ``key``, made (``make()``) if there is none."""
        last_key, value = self._last
        if value is None or key != last_key:
            value = self._table.get(key)
            if value is None:
                if len(self._table) >= self.limit:
                    self._table.clear()
                value = self._table[key] = make()
            self._last = key, value
        return value

    def clear(self) -> None:
        self._table.clear()
        self._last = (None, None)
