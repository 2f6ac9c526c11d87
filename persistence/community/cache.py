"""A small per-process cache with a time to live, for what every feed page reads and rarely changes
(authors' names and avatars, topics' titles): each hit saves a MongoDB round trip on the busiest
page of the app. Entries are at most `ttl_s` old; this process drops an entry when it writes it,
other processes see the change within `ttl_s`. Bounded: cleared wholesale when full."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, size: int = 50_000, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self.now = now
        self._entries: dict[K, tuple[float, V]] = {}

    def get_many(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """(the fresh entries found, the keys to load)."""
        found: dict[K, V] = {}
        missing: list[K] = []
        oldest = self.now() - self.ttl_s
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry[0] >= oldest:
                found[key] = entry[1]
            else:
                missing.append(key)
        return found, missing

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (self.now(), value)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
