"""The winners' `result` frames of a close of many lots: their order look-ups coalesced into one
MongoDB query at a time (gateway/order_lookups.py), on the real server, every winner still told
their order_id and pay_by."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Sequence
from typing import Any, cast

import orjson
import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.book import Book
from engine.book.events import LotClosed
from engine.book.increments import FixedIncrement
from engine.book.states import LotState
from gateway.order_lookups import OrderLookups
from gateway.ws import BidderSocket, Hub
from persistence.lot_results import LotOrder

LOTS = 30
SESSION_ID = 1


class OrdersFinds(monitoring.CommandListener):
    """The `find`s on `orders`: how many, and the most in flight at once."""

    def __init__(self) -> None:
        self.sent = self.in_flight = self.peak = 0
        self.ours: set[int] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "orders":
            self.ours.add(event.request_id)
            self.sent += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._ended(event.request_id)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ended(event.request_id)

    def _ended(self, request_id: int) -> None:
        if request_id in self.ours:
            self.ours.discard(request_id)
            self.in_flight -= 1


class Winner:
    """Stands for a winner's socket: what the hub writes to it (no subscriptions to catch up on)."""

    subscriptions: tuple[int, ...] = ()

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))


def closed_book() -> tuple[Book, list[LotClosed]]:
    """A session of LOTS lots, each won by its own bidder (user 1001 + i), all closed at once."""
    book = Book()
    book.put_session(SESSION_ID, preview_start=0, preview_end=0, bidding_start=10, bidding_end=10_000)
    for lot_id in range(1, LOTS + 1):
        book.put_lot(lot_id, SESSION_ID, FixedIncrement(100, 10))
    book.advance(10)
    events = []
    for lot_id in range(1, LOTS + 1):
        assert book.place(lot_id, 1000 + lot_id, 200, False, 20).accepted
        book.close_lot(lot_id, 50)
        events.append(LotClosed(lot_id, SESSION_ID, LotState.SOLD, 1000 + lot_id, 200, 1, 50, "closed_early"))
    return book, events


def order_doc(lot_id: int) -> dict[str, Any]:
    return {
        "_id": 5000 + lot_id,
        "lot_id": lot_id,
        "user_id": 1000 + lot_id,
        "deadline_ms": 900 + lot_id,
        "status": 0,
    }


async def test_a_close_of_many_lots_looks_their_orders_up_one_query_at_a_time(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    finds = OrdersFinds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, event_listeners=[finds])
    try:
        db = client[mongo_db.name]
        book, events = closed_book()
        # Half the orders are recorded before the close, the rest a little after (the settlement
        # worker's pace): those winners are looked up again, with the others still waiting.
        await db.orders.insert_many([order_doc(lot_id) for lot_id in range(1, LOTS + 1, 2)])
        ctx = types.SimpleNamespace(engine=types.SimpleNamespace(book=book), db=db, settlement=None)
        hub = Hub(cast(Any, ctx))
        winners = {event.winner: Winner() for event in events}
        for user, winner in winners.items():
            hub.by_user[user].add(cast(BidderSocket, winner))

        for event in events:
            hub._send_results(event)
        await asyncio.sleep(0.15)  # the first look-ups have gone out
        await db.orders.insert_many([order_doc(lot_id) for lot_id in range(2, LOTS + 1, 2)])
        await asyncio.wait_for(asyncio.gather(*hub._result_tasks), 5)  # every winner told

        for event in events:
            assert winners[event.winner].frames == [
                {
                    "type": "result",
                    "session_id": SESSION_ID,
                    "lot_id": event.lot_id,
                    "outcome": "won",
                    "price": 200,
                    "order_id": 5000 + event.lot_id,
                    "pay_by": 900 + event.lot_id,
                }
            ]
        # One look-up per round for every winner of the close (one per winner at once before, 30
        # queries and as many pooled connections at the first round alone).
        assert finds.peak == 1
        assert finds.sent <= 4, finds.sent
    finally:
        await client.close()


async def test_look_ups_asked_during_a_query_wait_for_the_next_one_and_a_fault_reaches_each() -> None:
    asked: list[list[int]] = []
    release = asyncio.Event()
    fail = False

    async def fetch(lot_ids: Sequence[int]) -> dict[int, LotOrder]:
        asked.append(list(lot_ids))
        await release.wait()
        if fail:
            raise ConnectionError("MongoDB did not answer")
        return {lot_id: LotOrder(lot_id * 10, 7, 99, 0) for lot_id in lot_ids if lot_id != 3}

    lookups = OrderLookups(fetch, batch_max=2)
    first = asyncio.ensure_future(lookups.order_of(1))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(lookups.order_of(lot_id)) for lot_id in (2, 3, 4, 2)]
    await asyncio.sleep(0)
    assert asked == [[1]]  # the rest wait for the query in flight
    release.set()
    assert (await first) == LotOrder(10, 7, 99, 0)
    assert [await f for f in later] == [
        LotOrder(20, 7, 99, 0),
        None,
        LotOrder(40, 7, 99, 0),
        LotOrder(20, 7, 99, 0),
    ]
    assert asked == [[1], [2, 3], [4]]  # at most batch_max lots a query, each lot asked for once

    release.clear()
    fail = True
    failing = [asyncio.ensure_future(lookups.order_of(lot_id)) for lot_id in (5, 6)]
    await asyncio.sleep(0)
    release.set()
    for future in failing:
        with pytest.raises(ConnectionError):
            await future
