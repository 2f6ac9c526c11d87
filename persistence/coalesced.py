"""Look-ups by key from many callers, answered by one batched read at a time.

Two bursts of the same shape met MongoDB's pool: the winners' order look-ups of a session's close
(gateway/order_lookups.py) and the token-cache misses of users who came back together
(persistence/accounts.py). Each caller asking for its own key opened or waited for its own pooled
connection; the last ones ran out of DEPENDENCY_TIMEOUT (docs/performance.md, sixth round). Here
every key asked for while a read is in flight waits for the next read, which asks for all of them
(at most `batch_max` a read): one read and one connection at a time per instance, and the first
keys of a burst still go out on the loop turn after they are asked for.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CoalescedLookups(Generic[K, V]):
    """`get(key)` for any number of callers, answered by `fetch(keys)` of many keys at a time."""

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[dict[K, V]]], batch_max: int) -> None:
        self._fetch = fetch
        self._batch_max = batch_max
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """The key's value, None when `fetch` did not find it; the read's error (a MongoDB fault) is
        raised to every caller whose key it asked for."""
        loop = asyncio.get_running_loop()
        runner = self._runner
        if runner is not None and runner.get_loop() is not loop:  # a loop of its own (tests)
            self._runner, self._waiting = None, {}
        future: asyncio.Future[V | None] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._runner is None:
            self._runner = loop.create_task(self._run(), name="coalesced-lookups")
        return await future

    async def _run(self) -> None:
        batch: dict[K, list[asyncio.Future[V | None]]] = {}
        try:
            while self._waiting:
                keys = list(itertools.islice(self._waiting, self._batch_max))
                batch = {key: self._waiting.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except Exception as error:  # each caller decides (a MongoDB fault: 503, or retry later)
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(error)
                    continue
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():  # not a caller cancelled meanwhile
                            future.set_result(found.get(key))
                batch = {}
        finally:
            self._runner = None
            # Cancelled (the process closing): nobody is left waiting for an answer that will not come.
            for futures in itertools.chain(batch.values(), self._waiting.values()):
                for future in futures:
                    future.cancel()
            self._waiting.clear()
