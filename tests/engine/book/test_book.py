"""Tests for engine.book.book: timers and advance, admin actions, blocking, overdue and snapshots."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from engine.book.book import Book, closed_lots
from engine.book.errors import IllegalTransition, InvalidCommand, NotFound, RejectCode
from engine.book.events import (
    BidPlaced,
    Event,
    LotClosed,
    LotOverdue,
    LotStateChanged,
    Outbid,
    PriceChanged,
    SessionStateChanged,
)
from engine.book.increments import BandedIncrement, FixedIncrement
from engine.book.lot import Decision
from engine.book.states import LotState, SessionState
from engine.book.types import NO_USER

S, S2 = 1, 2
L1, L2, L3 = 10, 11, 20
A, B, C = 1, 2, 3
PREVIEW_AT, OPEN_AT, END = 1000, 2000, 10_000


def rule() -> FixedIncrement:
    return FixedIncrement(1000, 100)


def make_book(*lots: int, soft: int = 0, cap: int = 0, deposit: int = 0) -> Book:
    book = Book()
    book.put_session(
        S,
        preview_start=PREVIEW_AT,
        preview_end=OPEN_AT,
        bidding_start=OPEN_AT,
        bidding_end=END,
        deposit=deposit,
        soft_close_ms=soft,
        soft_close_cap_ms=cap,
    )
    for lot_id in lots or (L1, L2):
        book.put_lot(lot_id, S, rule())
    return book


def opened(*lots: int, soft: int = 0, cap: int = 0) -> Book:
    book = make_book(*lots, soft=soft, cap=cap)
    book.advance(OPEN_AT)
    book.drain_events()
    return book


def preview(lot_id: int, ends_at: int = END) -> LotStateChanged:
    return LotStateChanged(lot_id, S, LotState.PREVIEW, ends_at)


def opening(lot_id: int, ends_at: int = END) -> LotStateChanged:
    return LotStateChanged(lot_id, S, LotState.BIDDING, ends_at)


def session_to(state: SessionState, at: int, session_id: int = S) -> SessionStateChanged:
    return SessionStateChanged(session_id, state, at)


def states(book: Book) -> tuple[SessionState, list[LotState]]:
    session = book.session(S)
    return session.state, [book.lot(lot_id).state for lot_id in session.lot_ids]


# -- timers and advance ---------------------------------------------------------------------------
class TestAdvance:
    def test_full_timeline(self) -> None:
        book = make_book()
        assert book.next_due() == PREVIEW_AT
        book.advance(PREVIEW_AT - 1)
        assert book.drain_events() == []
        assert states(book) == (SessionState.SCHEDULED, [LotState.SCHEDULED] * 2)

        book.advance(PREVIEW_AT)
        assert book.drain_events() == [session_to(SessionState.PREVIEW, PREVIEW_AT), preview(L1), preview(L2)]
        assert states(book) == (SessionState.PREVIEW, [LotState.PREVIEW] * 2)
        assert book.next_due() == OPEN_AT

        book.advance(OPEN_AT - 1)
        assert book.drain_events() == []
        book.advance(OPEN_AT)
        assert book.drain_events() == [session_to(SessionState.BIDDING, OPEN_AT), opening(L1), opening(L2)]
        assert states(book) == (SessionState.BIDDING, [LotState.BIDDING] * 2)
        assert book.next_due() == END

        book.advance(END - 1)
        assert book.drain_events() == []
        book.advance(END)
        assert book.drain_events() == [
            LotClosed(L1, S, LotState.UNSOLD, NO_USER, 0, 0, END, "ended"),
            LotClosed(L2, S, LotState.UNSOLD, NO_USER, 0, 0, END, "ended"),
            session_to(SessionState.ENDED, END),
        ]
        assert states(book) == (SessionState.ENDED, [LotState.UNSOLD] * 2)
        assert book.next_due() is None
        book.advance(END * 10)
        assert book.drain_events() == []

    def test_long_gap_fires_preview_then_opening(self) -> None:
        book = make_book()
        book.advance(5000)
        assert book.drain_events() == [
            session_to(SessionState.PREVIEW, 5000),
            preview(L1),
            preview(L2),
            session_to(SessionState.BIDDING, 5000),
            opening(L1),
            opening(L2),
        ]
        assert book.lot(L1).ends_at == END
        assert book.place(L1, A, 1000, False, 5000).accepted

    def test_long_gap_past_the_end_closes_everything(self) -> None:
        book = make_book(soft=500)
        book.advance(20_000)
        events = book.drain_events()
        assert [event.state for event in events if isinstance(event, SessionStateChanged)] == [
            SessionState.PREVIEW,
            SessionState.BIDDING,
            SessionState.ENDED,
        ]
        assert {event.lot_id: event.result for event in closed_lots(events)} == {
            L1: LotState.UNSOLD,
            L2: LotState.UNSOLD,
        }
        assert states(book) == (SessionState.ENDED, [LotState.UNSOLD] * 2)
        assert book.place(L1, A, 1000, False, 20_000).code is RejectCode.CLOSED
        assert book.lot(L1).ends_at == END  # not re-opened with a fresh window
        assert book.next_due() is None

    def test_long_gap_past_the_end_of_an_open_lot(self) -> None:
        book = opened()
        book.place(L1, A, 1000, False, 3000)
        book.drain_events()
        book.advance(50_000)
        assert book.drain_events() == [
            LotClosed(L1, S, LotState.SOLD, A, 1000, 1, 50_000, "ended"),
            LotClosed(L2, S, LotState.UNSOLD, NO_USER, 0, 0, 50_000, "ended"),
            session_to(SessionState.ENDED, 50_000),
        ]

    def test_preview_and_opening_at_the_same_instant(self) -> None:
        book = Book()
        book.put_session(S, preview_start=500, preview_end=500, bidding_start=500, bidding_end=900)
        book.put_lot(L1, S, rule())
        book.advance(500)
        assert book.drain_events() == [
            session_to(SessionState.PREVIEW, 500),
            preview(L1, 900),
            session_to(SessionState.BIDDING, 500),
            opening(L1, 900),
        ]

    def test_session_ends_only_after_its_last_lot(self) -> None:
        book = opened(soft=1000)
        book.place(L1, A, 1000, False, 9500)  # extends L1 to 10_500
        book.drain_events()
        assert book.next_due() == END
        book.advance(END)
        assert book.drain_events() == [LotClosed(L2, S, LotState.UNSOLD, NO_USER, 0, 0, END, "ended")]
        assert states(book) == (SessionState.BIDDING, [LotState.BIDDING, LotState.UNSOLD])
        assert book.next_due() == 10_500
        book.advance(10_499)
        assert book.drain_events() == []
        book.advance(10_500)
        assert book.drain_events() == [
            LotClosed(L1, S, LotState.SOLD, A, 1000, 1, 10_500, "ended"),
            session_to(SessionState.ENDED, 10_500),
        ]

    def test_two_sessions_fire_in_time_order(self) -> None:
        book = make_book(L1)
        book.put_session(S2, preview_start=1500, preview_end=2500, bidding_start=2500, bidding_end=4000)
        book.put_lot(L3, S2, rule())
        book.advance(3000)
        assert book.drain_events() == [
            session_to(SessionState.PREVIEW, 3000),
            preview(L1),
            session_to(SessionState.PREVIEW, 3000, S2),
            LotStateChanged(L3, S2, LotState.PREVIEW, 4000),
            session_to(SessionState.BIDDING, 3000),
            opening(L1),
            session_to(SessionState.BIDDING, 3000, S2),
            LotStateChanged(L3, S2, LotState.BIDDING, 4000),
        ]
        assert book.next_due() == 4000
        book.advance(END)
        assert book.drain_events() == [
            LotClosed(L3, S2, LotState.UNSOLD, NO_USER, 0, 0, END, "ended"),
            session_to(SessionState.ENDED, END, S2),
            LotClosed(L1, S, LotState.UNSOLD, NO_USER, 0, 0, END, "ended"),
            session_to(SessionState.ENDED, END),
        ]

    def test_session_without_lots_ends_when_it_opens(self) -> None:
        book = Book()
        book.put_session(S, preview_start=1, preview_end=2, bidding_start=2, bidding_end=3)
        book.advance(2)
        assert book.drain_events() == [
            session_to(SessionState.PREVIEW, 2),
            session_to(SessionState.BIDDING, 2),
            session_to(SessionState.ENDED, 2),
        ]

    def test_reconfigured_session_uses_the_new_times(self) -> None:
        book = make_book()
        book.put_session(S, preview_start=3000, preview_end=4000, bidding_start=4000, bidding_end=8000)
        assert book.lot(L1).ends_at == 8000
        assert book.next_due() == 3000
        book.advance(2999)
        assert book.drain_events() == []
        book.advance(4000)
        assert states(book) == (SessionState.BIDDING, [LotState.BIDDING] * 2)
        assert book.lot(L1).ends_at == 8000
        book.advance(7999)
        assert book.session(S).state is SessionState.BIDDING
        book.advance(8000)
        assert states(book) == (SessionState.ENDED, [LotState.UNSOLD] * 2)

    def test_reconfiguring_a_session_keeps_a_cancelled_lots_end(self) -> None:
        book = make_book()
        book.cancel_lot(L1, 500, "withdrawn")
        assert book.lot(L1).ends_at == 500
        book.put_session(
            S, preview_start=PREVIEW_AT, preview_end=OPEN_AT, bidding_start=OPEN_AT, bidding_end=20_000
        )
        assert book.lot(L2).ends_at == 20_000
        assert book.lot(L1).ends_at == 500

    def test_session_cannot_be_reconfigured_once_bidding(self) -> None:
        book = opened()
        with pytest.raises(InvalidCommand):
            book.put_session(S, preview_start=0, preview_end=1, bidding_start=1, bidding_end=99_999)
        assert book.session(S).bidding_end == END
        assert book.lot(L1).ends_at == END


# -- configuring lots -----------------------------------------------------------------------------
class TestPutLot:
    def test_errors(self) -> None:
        book = make_book(L1)
        book.put_session(S2, preview_start=0, preview_end=1, bidding_start=1, bidding_end=99)
        with pytest.raises(NotFound):
            book.put_lot(L2, 999, rule())
        with pytest.raises(InvalidCommand):
            book.put_lot(L2, S, rule(), reserve=-1)
        with pytest.raises(InvalidCommand):
            book.put_lot(L2, S, rule(), deposit=-1)
        with pytest.raises(InvalidCommand):
            book.put_lot(L1, S2, rule())
        assert list(book.lots) == [L1]
        with pytest.raises(NotFound):
            book.lot(L2)
        with pytest.raises(NotFound):
            book.session(999)

    def test_change_before_opening_applies(self) -> None:
        book = make_book(L1)
        book.put_lot(L1, S, FixedIncrement(500, 50), reserve=800, deposit=0)
        book.advance(OPEN_AT)
        assert book.place(L1, A, 550, False, 3000).accepted
        assert book.place(L1, B, 5000, True, 3001).price == 800  # the new reserve

    def test_no_change_after_opening(self) -> None:
        book = opened(L1)
        with pytest.raises(InvalidCommand):
            book.put_lot(L1, S, FixedIncrement(1, 1))
        assert book.lot(L1).rule.start == 1000

    def test_no_new_lot_once_bidding(self) -> None:
        book = opened(L1)
        with pytest.raises(InvalidCommand):
            book.put_lot(L2, S, rule())
        assert L2 not in book.lots
        assert book.session(S).lot_ids == [L1]

    def test_lot_added_during_preview_is_previewed_and_opens(self) -> None:
        book = make_book(L1)
        book.advance(PREVIEW_AT)
        book.drain_events()
        book.put_lot(L2, S, rule())
        assert book.drain_events() == [preview(L2)]
        book.advance(OPEN_AT)
        assert book.drain_events() == [session_to(SessionState.BIDDING, OPEN_AT), opening(L1), opening(L2)]
        book.advance(END)
        assert states(book) == (SessionState.ENDED, [LotState.UNSOLD] * 2)


# -- admin actions --------------------------------------------------------------------------------
class TestCancel:
    def test_cancel_before_opening(self) -> None:
        book = make_book()
        book.cancel_lot(L1, 500, "withdrawn")
        assert book.drain_events() == [
            LotClosed(L1, S, LotState.UNSOLD, NO_USER, 0, 0, 500, "cancelled: withdrawn")
        ]
        book.advance(OPEN_AT)
        assert states(book) == (SessionState.BIDDING, [LotState.UNSOLD, LotState.BIDDING])
        assert book.place(L1, A, 1000, False, 3000).code is RejectCode.CLOSED
        book.advance(END)
        assert states(book) == (SessionState.ENDED, [LotState.UNSOLD, LotState.UNSOLD])

    def test_cancel_during_bidding_never_sells(self) -> None:
        book = opened()
        book.place(L1, A, 3000, False, 3000)
        book.drain_events()
        book.cancel_lot(L1, 4000, "fraud")
        assert book.drain_events() == [
            LotClosed(L1, S, LotState.UNSOLD, NO_USER, 3000, 1, 4000, "cancelled: fraud")
        ]
        lot = book.lot(L1)
        assert (lot.state, lot.winner, lot.ends_at) == (LotState.UNSOLD, NO_USER, 4000)
        assert book.place(L1, B, 3100, False, 4001).code is RejectCode.CLOSED
        with pytest.raises(InvalidCommand):
            book.cancel_lot(L1, 4002, "again")
        with pytest.raises(NotFound):
            book.cancel_lot(999, 4002, "none")

    def test_cancelling_the_last_open_lot_ends_the_session(self) -> None:
        book = opened()
        book.cancel_lot(L1, 3000, "x")
        assert book.session(S).state is SessionState.BIDDING
        book.drain_events()
        book.cancel_lot(L2, 3001, "y")
        assert book.drain_events() == [
            LotClosed(L2, S, LotState.UNSOLD, NO_USER, 0, 0, 3001, "cancelled: y"),
            session_to(SessionState.ENDED, 3001),
        ]
        book.advance(END)
        assert book.drain_events() == []

    def test_cancelling_every_lot_before_opening_ends_the_session_at_opening(self) -> None:
        book = make_book()
        book.cancel_lot(L1, 10, "x")
        book.cancel_lot(L2, 10, "x")
        book.drain_events()
        assert book.session(S).state is SessionState.SCHEDULED
        book.advance(OPEN_AT)
        assert book.drain_events() == [
            session_to(SessionState.PREVIEW, OPEN_AT),
            session_to(SessionState.BIDDING, OPEN_AT),
            session_to(SessionState.ENDED, OPEN_AT),
        ]


class TestCloseEarly:
    def test_close_early_sells_to_the_leader(self) -> None:
        book = opened()
        book.place(L1, A, 5000, True, 3000)
        book.place(L1, B, 2000, False, 3001)
        book.drain_events()
        book.close_lot(L1, 4000)
        assert book.drain_events() == [LotClosed(L1, S, LotState.SOLD, A, 2100, 3, 4000, "closed_early")]
        lot = book.lot(L1)
        assert (lot.state, lot.winner, lot.ends_at) == (LotState.SOLD, A, 4000)
        assert book.session(S).state is SessionState.BIDDING
        assert book.place(L1, C, 3000, False, 4001).code is RejectCode.CLOSED
        book.close_lot(L2, 4500, "admin")
        assert book.drain_events() == [
            LotClosed(L2, S, LotState.UNSOLD, NO_USER, 0, 0, 4500, "admin"),
            session_to(SessionState.ENDED, 4500),
        ]

    def test_close_early_below_reserve_is_unsold(self) -> None:
        book = make_book(L1)
        book.put_lot(L1, S, rule(), reserve=5000)
        book.advance(OPEN_AT)
        book.place(L1, A, 4000, False, 3000)
        book.close_lot(L1, 3500)
        assert closed_lots(book.drain_events()) == [
            LotClosed(L1, S, LotState.UNSOLD, NO_USER, 4000, 1, 3500, "closed_early")
        ]

    def test_only_a_bidding_lot_can_be_closed(self) -> None:
        book = make_book()
        with pytest.raises(InvalidCommand):
            book.close_lot(L1, 10)
        book.advance(OPEN_AT)
        book.close_lot(L1, 3000)
        with pytest.raises(InvalidCommand):
            book.close_lot(L1, 3001)
        assert book.lot(L1).state is LotState.UNSOLD


class TestOpenEarly:
    def test_open_one_lot_before_the_session(self) -> None:
        book = make_book()
        book.open_lot(L1, 500)
        assert book.drain_events() == [
            session_to(SessionState.PREVIEW, 500),
            opening(L1),
            session_to(SessionState.BIDDING, 500),
        ]
        assert states(book) == (SessionState.BIDDING, [LotState.BIDDING, LotState.SCHEDULED])
        assert book.place(L1, A, 1000, False, 600) == Decision(True, None, L1, 1000, 1100, A)
        book.advance(END)
        assert book.lot(L1).state is LotState.SOLD

    def test_open_a_previewed_lot(self) -> None:
        book = make_book(L1)
        book.advance(PREVIEW_AT)
        book.drain_events()
        book.open_lot(L1, 1500)
        assert book.drain_events() == [opening(L1), session_to(SessionState.BIDDING, 1500)]
        assert book.place(L1, A, 1000, False, 1500).accepted

    def test_other_lots_still_preview_on_time_after_an_early_opening(self) -> None:
        book = make_book()
        book.open_lot(L1, 500)
        book.drain_events()
        book.advance(PREVIEW_AT - 1)
        assert book.lot(L2).state is LotState.SCHEDULED
        book.advance(PREVIEW_AT)
        assert book.lot(L2).state is LotState.PREVIEW
        assert book.drain_events() == [preview(L2)]
        book.advance(OPEN_AT)
        assert book.drain_events() == [opening(L2)]

    def test_opening_an_open_lot_is_illegal(self) -> None:
        book = opened()
        with pytest.raises(IllegalTransition):
            book.open_lot(L1, 3000)

    def test_other_lots_still_open_on_time_after_an_early_opening(self) -> None:
        book = make_book()
        book.open_lot(L1, 500)
        book.drain_events()
        assert book.place(L2, A, 1000, False, 600).code is RejectCode.NOT_OPEN
        book.advance(OPEN_AT - 1)
        assert book.lot(L2).state is not LotState.BIDDING
        assert book.place(L2, A, 1000, False, OPEN_AT - 1).code is RejectCode.NOT_OPEN
        book.advance(OPEN_AT)
        assert book.drain_events()[-1] == opening(L2)
        assert book.place(L2, A, 1000, False, OPEN_AT).accepted
        book.advance(END)
        assert states(book) == (SessionState.ENDED, [LotState.UNSOLD, LotState.SOLD])

    def test_other_previewed_lots_open_after_an_early_opening(self) -> None:
        book = make_book()
        book.advance(PREVIEW_AT)
        book.open_lot(L1, 1500)
        book.drain_events()
        book.advance(OPEN_AT)
        assert book.drain_events() == [opening(L2)]
        assert states(book) == (SessionState.BIDDING, [LotState.BIDDING] * 2)


# -- bidders --------------------------------------------------------------------------------------
class TestBidders:
    def test_blocked_bidder(self) -> None:
        book = opened()
        book.place(L1, A, 1000, False, 3000)
        book.drain_events()
        book.block(B)
        before = book.to_state()
        assert book.place(L1, B, 1100, False, 3001) == Decision(False, RejectCode.BLOCKED, L1, 1000, 1100, A)
        assert book.place(L1, B, 9000, True, 3001).code is RejectCode.BLOCKED
        assert book.drain_events() == []
        assert book.to_state() == before
        book.unblock(B)
        book.unblock(C)  # unblocking someone never blocked is harmless
        assert book.place(L1, B, 1100, False, 3002).accepted

    def test_blocked_before_lot_state_checks(self) -> None:
        book = make_book()
        book.block(A)
        assert book.place(L1, A, 1000, False, 0).code is RejectCode.BLOCKED

    def test_bad_requests(self) -> None:
        book = opened()
        book.place(L1, A, 1000, False, 3000)
        for bidder, amount in ((0, 1100), (-3, 1100), (B, 0), (B, -100)):
            assert book.place(L1, bidder, amount, False, 3001) == Decision(
                False, RejectCode.BAD_REQUEST, L1, 1000, 1100, A
            )
        assert book.lot(L1).bid_count == 1

    def test_unknown_lot(self) -> None:
        book = opened()
        assert book.place(999, A, 1000, False, 3000) == Decision(
            False, RejectCode.NOT_FOUND, 999, 0, 0, NO_USER
        )

    def test_session_deposit_via_book(self) -> None:
        book = make_book(deposit=10_000)
        book.advance(OPEN_AT)
        assert book.place(L1, A, 1000, False, 3000).code is RejectCode.NO_DEPOSIT
        book.register_deposit(S, None, A)
        assert book.place(L1, A, 1000, False, 3000).accepted
        assert book.place(L2, A, 1000, False, 3000).accepted

    @pytest.mark.parametrize(
        ("session_deposits", "lot_deposits", "gated"),
        [
            ((0, 500), (), True),  # the session starts asking for a deposit
            ((500, 0), (), False),  # ... or stops asking
            ((0,), (300,), True),  # the lot starts asking
            ((0,), (300, 0), False),  # ... or stops asking
            ((500,), (300, 0), True),  # the session still asks
        ],
    )
    def test_deposit_settings_changed_before_opening(
        self, session_deposits: tuple[int, ...], lot_deposits: tuple[int, ...], gated: bool
    ) -> None:
        book = Book()
        for deposit in session_deposits:
            book.put_session(
                S,
                preview_start=PREVIEW_AT,
                preview_end=OPEN_AT,
                bidding_start=OPEN_AT,
                bidding_end=END,
                deposit=deposit,
            )
            if L1 not in book.lots:
                book.put_lot(L1, S, rule())
        for deposit in lot_deposits:
            book.put_lot(L1, S, rule(), deposit=deposit)
        book.advance(OPEN_AT)
        decision = book.place(L1, A, 1000, False, 3000)
        assert decision.code is (RejectCode.NO_DEPOSIT if gated else None)
        book.register_deposit(S, L1, B)
        assert book.place(L1, B, 1100, False, 3001).accepted


class TestOverdue:
    def test_sold_lot_goes_overdue(self) -> None:
        book = opened()
        book.place(L1, A, 1000, False, 3000)
        book.advance(END)
        book.drain_events()
        book.mark_overdue(L1)
        assert book.drain_events() == [LotOverdue(L1, S, A)]
        lot = book.lot(L1)
        assert (lot.state, lot.winner) == (LotState.OVERDUE, A)
        with pytest.raises(IllegalTransition):
            book.mark_overdue(L1)

    def test_only_sold_lots_go_overdue(self) -> None:
        book = make_book()
        with pytest.raises(IllegalTransition):
            book.mark_overdue(L1)
        book.advance(OPEN_AT)
        with pytest.raises(IllegalTransition):
            book.mark_overdue(L1)
        book.advance(END)
        assert book.lot(L2).state is LotState.UNSOLD
        with pytest.raises(IllegalTransition):
            book.mark_overdue(L2)
        with pytest.raises(NotFound):
            book.mark_overdue(999)
        assert book.drain_events()[-1] == session_to(SessionState.ENDED, END)


def test_drain_events_hands_over_once() -> None:
    book = make_book()
    book.advance(PREVIEW_AT)
    assert len(book.events) == 3
    drained = book.drain_events()
    assert drained == [session_to(SessionState.PREVIEW, PREVIEW_AT), preview(L1), preview(L2)]
    assert book.events == []
    assert book.drain_events() == []


def test_a_quiet_book_decides_the_same_and_records_no_bid_events() -> None:
    bids = [(L1, A, 1000, False), (L1, B, 1500, True), (L1, A, 1300, False), (L2, C, 2000, True),
            (L1, A, 1400, True), (L2, A, 2100, False), (L1, B, 900, False)]  # fmt: skip
    loud, quiet = opened(L1, L2, soft=500), opened(L1, L2, soft=500)
    quiet.set_quiet(True)
    quiet.put_session(S2, preview_start=50_000, preview_end=60_000, bidding_start=60_000, bidding_end=70_000)
    quiet.put_lot(L3, S2, rule())  # a lot added while quiet is quiet too
    loud.put_session(S2, preview_start=50_000, preview_end=60_000, bidding_start=60_000, bidding_end=70_000)
    loud.put_lot(L3, S2, rule())
    for n, (lot_id, bidder, amount, is_max) in enumerate(bids):
        at = END - 600 + n
        decided = quiet.place(lot_id, bidder, amount, is_max, at)
        assert decided == loud.place(lot_id, bidder, amount, is_max, at)
    assert quiet.to_state() == loud.to_state()
    assert {type(e) for e in loud.drain_events()} >= {BidPlaced, PriceChanged, Outbid}
    assert not {type(e) for e in quiet.drain_events()} & {BidPlaced, PriceChanged, Outbid}
    assert quiet.lots[L3].quiet
    quiet.set_quiet(False)
    assert quiet.place(L2, B, 5000, False, END - 1).accepted
    assert any(isinstance(e, PriceChanged) for e in quiet.drain_events())


def test_closed_lots_helper() -> None:
    closed = LotClosed(L1, S, LotState.SOLD, A, 1, 1, 1, "ended")
    events: list[Event] = [BidPlaced(L1, S, A, 1, False, 1), closed, session_to(SessionState.ENDED, 1)]
    assert closed_lots(events) == [closed]


# -- snapshots ------------------------------------------------------------------------------------
def busy_book() -> Book:
    """Two sessions, both rule kinds, deposits, blocking, proxies, an extension, a sale and an overdue."""
    book = Book()
    book.put_session(
        S,
        preview_start=PREVIEW_AT,
        preview_end=OPEN_AT,
        bidding_start=OPEN_AT,
        bidding_end=END,
        deposit=0,
        soft_close_ms=1000,
        soft_close_cap_ms=3000,
    )
    book.put_lot(L1, S, rule(), reserve=5000, deposit=200)
    book.put_lot(L2, S, BandedIncrement(50, [(100, 5), (500, 25), (2500, 50), (None, 100)]))
    book.put_lot(12, S, rule())
    book.put_session(S2, preview_start=50_000, preview_end=60_000, bidding_start=60_000, bidding_end=70_000)
    book.put_lot(L3, S2, rule(), deposit=100)
    book.register_deposit(S, L1, A)
    book.register_deposit(S, None, B)
    book.register_deposit(S2, L3, C)
    book.block(99)
    book.advance(OPEN_AT)
    book.place(L1, A, 4000, True, 3000)
    book.place(L1, B, 2000, False, 3001)
    book.place(L2, A, 2000, True, 3002)
    book.place(L2, C, 475, True, 3003)
    book.place(L2, B, 600, False, 9500)  # extends L2 to 10_500
    book.place(12, C, 1000, False, 4000)
    book.close_lot(12, 5000)
    book.mark_overdue(12)
    book.drain_events()
    return book


Step = tuple[Any, ...]

CONTINUATION: list[Step] = [
    ("place", L1, B, 3000, True, 6000),
    ("place", L1, C, 4100, False, 6001),  # no deposit
    ("place", L1, A, 4100, False, 6002),  # self-outbid
    ("place", L1, A, 9000, True, 6003),  # raise: to the reserve
    ("place", L1, 99, 9000, True, 6004),  # blocked
    ("place", L1, B, 5150, False, 6005),  # off increment
    ("place", L1, B, 8000, True, 9800),  # proxy answer, extends to 10_800
    ("place", L2, B, 2100, True, 9900),
    ("place", L2, C, 2600, True, 9950),
    ("advance", END),
    ("place", L2, A, 2700, False, 10_400),
    ("advance", 10_799),
    ("place", L1, B, 9100, True, 10_799),
    ("advance", 20_000),
    ("place", L1, B, 9999, True, 20_001),
    ("place", L3, C, 1000, False, 55_000),  # not open
    ("advance", 60_000),
    ("place", L3, C, 1000, False, 60_001),
    ("place", L3, A, 1100, False, 60_002),  # no deposit
    ("advance", 70_000),
]


def run(book: Book, step: Step) -> object:
    if step[0] == "advance":
        book.advance(step[1])
        return None
    return book.place(*step[1:])


class TestSnapshot:
    def test_round_trip_is_exact(self) -> None:
        book = busy_book()
        state = book.to_state()
        restored = Book.from_state(state)
        assert restored.to_state() == state
        assert restored.events == []
        for lot_id, lot in book.lots.items():
            twin = restored.lot(lot_id)
            assert (twin.bid_count, twin.price, twin.leader, twin.leader_max, twin.ends_at) == (
                lot.bid_count,
                lot.price,
                lot.leader,
                lot.leader_max,
                lot.ends_at,
            )
            assert [twin.bids.line(i) for i in range(len(twin.bids))] == [
                lot.bids.line(i) for i in range(len(lot.bids))
            ]
            assert twin.session.session_id == lot.session.session_id
        assert restored.session(S).lot_ids == [L1, L2, 12]
        assert restored.lot(12).state is LotState.OVERDUE

    def test_restored_timers_match(self) -> None:
        book = busy_book()
        restored = Book.from_state(book.to_state())
        book.advance(9000)
        restored.advance(9000)
        assert restored.next_due() == book.next_due() == 10_000

    def test_restored_next_due_matches_before_any_advance(self) -> None:
        book = busy_book()
        restored = Book.from_state(book.to_state())
        assert restored.next_due() == book.next_due() == 10_000

    def test_state_survives_msgpack(self) -> None:
        state = busy_book().to_state()
        packed = msgpack.packb(state, use_bin_type=True)
        unpacked = msgpack.unpackb(packed, raw=False)
        assert Book.from_state(unpacked).to_state() == state

    def test_restored_book_decides_identically(self) -> None:
        book = busy_book()
        restored = Book.from_state(book.to_state())
        for step in CONTINUATION:
            assert run(restored, step) == run(book, step), step
            assert restored.drain_events() == book.drain_events(), step
            assert restored.to_state() == book.to_state(), step
        assert restored.session(S).state is SessionState.ENDED
        sold = book.lot(L1)
        assert (sold.state, sold.winner, sold.price, sold.ends_at) == (LotState.SOLD, B, 9100, 11_799)

    def test_continuation_does_what_it_says(self) -> None:
        book = busy_book()
        codes = [getattr(run(book, step), "code", "-") for step in CONTINUATION]
        assert codes == [
            None,
            RejectCode.NO_DEPOSIT,
            RejectCode.SELF_OUTBID,
            None,
            RejectCode.BLOCKED,
            RejectCode.OFF_INCREMENT,
            None,
            None,
            None,
            "-",
            None,
            "-",
            None,
            "-",
            RejectCode.CLOSED,
            RejectCode.NOT_OPEN,
            "-",
            None,
            RejectCode.NO_DEPOSIT,
            "-",
        ]

    def test_snapshot_before_any_timer(self) -> None:
        book = make_book(soft=500)
        restored = Book.from_state(book.to_state())
        for now in (PREVIEW_AT, OPEN_AT, END - 100):
            book.advance(now)
            restored.advance(now)
            assert restored.drain_events() == book.drain_events()
        assert restored.place(L1, A, 1000, False, END - 100) == book.place(L1, A, 1000, False, END - 100)
        book.advance(END)
        restored.advance(END)
        assert restored.drain_events() == book.drain_events()
        assert restored.lot(L1).state is LotState.BIDDING  # extended to END + 400
        book.advance(END + 400)
        restored.advance(END + 400)
        assert restored.drain_events() == book.drain_events()
        assert restored.to_state() == book.to_state()
        assert restored.session(S).state is SessionState.ENDED
