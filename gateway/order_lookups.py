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

from collections.abc import Awaitable, Callable, Sequence

from engine.book.types import LotId
from persistence.coalesced import CoalescedLookups
from persistence.lot_results import LotOrder

# One query asks for at most this many lots (a session has ~100; a larger wave takes a few rounds).
LOOKUP_BATCH_MAX = 500

FetchOrders = Callable[[Sequence[LotId]], Awaitable[dict[LotId, LotOrder]]]


class OrderLookups:
    """`order_of(lot_id)` for any number of callers, answered by one `fetch` of many lots at a time
    (persistence/coalesced.py)."""

    def __init__(self, fetch: FetchOrders, batch_max: int = LOOKUP_BATCH_MAX) -> None:
        self._lookups: CoalescedLookups[LotId, LotOrder] = CoalescedLookups(fetch, batch_max)

    async def order_of(self, lot_id: LotId) -> LotOrder | None:
        """The lot's order, None until recorded; the query's error (a MongoDB fault) is raised to
        every caller whose lot it asked for."""
        return await self._lookups.get(lot_id)
