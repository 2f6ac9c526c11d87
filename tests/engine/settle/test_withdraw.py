"""Withdrawing a lot (`CancelLot`, before or during bidding): the book closes it unsold with no
winner, and settlement then refunds every per-lot deposit on it and makes no order."""

from __future__ import annotations

import pytest

from engine.book.book import Book
from engine.book.events import LotClosed
from engine.book.increments import FixedIncrement
from engine.book.states import LotState
from engine.book.types import NO_USER
from engine.settle.worker import OutboxItem, OutboxStatus
from tests.engine.settle.test_handlers import T0, World


def withdrawn(during_bidding: bool, bidders: list[int]) -> LotClosed:
    """The LotClosed a real book emits when lot 1 is withdrawn (with `bidders` bidding on it)."""
    book = Book()
    book.put_session(1, preview_start=T0, preview_end=T0 + 10, bidding_start=T0 + 10, bidding_end=T0 + 1_000)
    book.put_lot(1, 1, FixedIncrement(100, 10), reserve=0, deposit=500)
    for user in bidders:
        book.register_deposit(1, 1, user)
    if during_bidding:
        book.advance(T0 + 10)
        for n, user in enumerate(bidders):
            assert book.place(1, user, 100 + 10 * n, False, T0 + 20 + n).accepted
        assert book.lot(1).leader == bidders[-1]
    book.cancel_lot(1, T0 + 500, "consignor withdrew")
    [closed] = [event for event in book.drain_events() if isinstance(event, LotClosed)]
    return closed


@pytest.mark.parametrize("during_bidding", [False, True])
async def test_every_deposit_on_a_withdrawn_lot_is_refunded_and_no_order_is_made(
    during_bidding: bool,
) -> None:
    w = World()
    session_id = w.scene.session(ended=False)
    lot_id = w.scene.lot(session_id)
    users = [w.scene.user(5_000) for _ in range(3)]
    deposits = [w.scene.deposit(user, session_id, 500, lot_id) for user in users[:2]]
    deposits.append(w.scene.deposit(users[2], session_id, 500, lot_id, via="provider"))

    event = withdrawn(during_bidding, users)
    assert (event.result, event.winner, event.reason) == (
        LotState.UNSOLD,
        NO_USER,
        "cancelled: consignor withdrew",
    )
    # What the archiver writes for it (persistence/archive.py: winner 0 is stored as None).
    w.store.state.outbox[lot_id] = OutboxItem(
        lot_id,
        session_id,
        event.result,
        event.winner or None,
        event.price,
        event.bid_count,
        event.at,
        OutboxStatus.PENDING,
    )
    assert await w.worker.drain_outbox() == 1
    await w.worker.execute_pending_refunds()

    assert w.store.state.orders == {}
    assert w.store.state.lots[lot_id]["state"] is LotState.UNSOLD
    refunded = {refund.deposit_id for refund in w.store.state.refunds.values()}
    assert refunded == set(deposits)
    assert [w.balance(user) for user in users[:2]] == [5_000, 5_000]  # back to the balance
    assert w.provider.refunds  # the provider-paid deposit went back the way it came
    w.check_money()
