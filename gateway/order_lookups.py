"""The winners' order look-ups after a close, coalesced into one query at a time.

A session's lots close together: with one look-up per winner, the hub's `_send_won` tasks (one per
winner with a socket, gateway/ws.py) asked MongoDB for their orders all at once and again at each
step of their back-off, and each burst opened dozens of pooled connections (a close of 100 lots
took the request client's pool to 35-77 connections in the soak; docs/performance.md, "the pool's
bursts at a close"). Here every look-up that arrives while a query is in flight waits for the next
one, which asks for all of them with one `$in`: one query and one pooled connection at a time per
hub, however many lots close together, and the first look-ups of a close still go out on the turn
they are asked for.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence

from engine.book.types import LotId
from persistence.lot_results import LotOrder

# One query asks for at most this many lots (a session has ~100; a larger wave takes a few rounds).
LOOKUP_BATCH_MAX = 500

FetchOrders = Callable[[Sequence[LotId]], Awaitable[dict[LotId, LotOrder]]]


class OrderLookups:
    """`order_of(lot_id)` for any number of callers, answered by one `fetch` of many lots at a time."""

    def __init__(self, fetch: FetchOrders, batch_max: int = LOOKUP_BATCH_MAX) -> None:
        self._fetch = fetch
        self._batch_max = batch_max
        self._waiting: dict[LotId, list[asyncio.Future[LotOrder | None]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def order_of(self, lot_id: LotId) -> LotOrder | None:
        """The lot's order, None until recorded; the query's error (a MongoDB fault) is raised to
        every caller whose lot it asked for."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LotOrder | None] = loop.create_future()
        self._waiting.setdefault(lot_id, []).append(future)
        if self._runner is None:
            self._runner = loop.create_task(self._run(), name="order-lookups")
        return await future

    async def _run(self) -> None:
        batch: dict[LotId, list[asyncio.Future[LotOrder | None]]] = {}
        try:
            while self._waiting:
                lot_ids = list(itertools.islice(self._waiting, self._batch_max))
                batch = {lot_id: self._waiting.pop(lot_id) for lot_id in lot_ids}
                try:
                    found = await self._fetch(lot_ids)
                except Exception as error:  # each caller decides (a MongoDB fault: try again later)
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(error)
                    continue
                for lot_id, futures in batch.items():
                    for future in futures:
                        if not future.done():  # not a caller cancelled meanwhile
                            future.set_result(found.get(lot_id))
                batch = {}
        finally:
            self._runner = None
            # Cancelled (the hub closing): nobody is left waiting for an answer that will not come.
            for futures in itertools.chain(batch.values(), self._waiting.values()):
                for future in futures:
                    future.cancel()
            self._waiting.clear()
