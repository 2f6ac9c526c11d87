"""Tests for engine.book.lot: the decision of every bid, with exact prices and the exact events emitted."""

from __future__ import annotations

import pytest

from engine.book.book import Book
from engine.book.errors import InvalidCommand, NotFound, RejectCode
from engine.book.events import (
    BidPlaced,
    Event,
    LotClosed,
    LotExtended,
    Outbid,
    PriceChanged,
    SessionStateChanged,
)
from engine.book.increments import BandedIncrement, FixedIncrement, IncrementRule
from engine.book.lot import BidHistory, Decision, Lot
from engine.book.session import Session
from engine.book.states import LotState, SessionState
from engine.book.types import NO_USER

S, L = 1, 10
START, UNIT = 1000, 100
OPEN_AT, END = 1000, 10_000
A, B, C, D = 1, 2, 3, 4


def open_book(
    *,
    reserve: int = 0,
    deposit: int = 0,
    session_deposit: int = 0,
    soft: int = 0,
    cap: int = 0,
    rule: IncrementRule | None = None,
    extra_lots: tuple[int, ...] = (),
) -> Book:
    """One session with lot L, opened for bidding at OPEN_AT and ending at END; events drained."""
    book = Book()
    book.put_session(
        S,
        preview_start=0,
        preview_end=OPEN_AT,
        bidding_start=OPEN_AT,
        bidding_end=END,
        deposit=session_deposit,
        soft_close_ms=soft,
        soft_close_cap_ms=cap,
    )
    book.put_lot(L, S, rule or FixedIncrement(START, UNIT), reserve=reserve, deposit=deposit)
    for lot_id in extra_lots:
        book.put_lot(lot_id, S, FixedIncrement(START, UNIT), reserve=reserve, deposit=deposit)
    book.advance(OPEN_AT)
    assert book.lot(L).state is LotState.BIDDING
    book.drain_events()
    return book


def bid(bidder: int, price: int, auto: bool, at: int) -> BidPlaced:
    return BidPlaced(L, S, bidder, price, auto, at)


def changed(price: int, leader: int, count: int, next_min: int, at: int, ends_at: int = END) -> PriceChanged:
    return PriceChanged(L, S, price, leader, count, next_min, ends_at, at)


def outbid(bidder: int, price: int) -> Outbid:
    return Outbid(L, S, bidder, price)


def ok(price: int, next_min: int, leader: int) -> Decision:
    return Decision(True, None, L, price, next_min, leader)


def no(code: RejectCode, price: int, next_min: int, leader: int) -> Decision:
    return Decision(False, code, L, price, next_min, leader)


def place(book: Book, bidder: int, amount: int, is_max: bool, at: int) -> tuple[Decision, list[Event]]:
    decision = book.place(L, bidder, amount, is_max, at)
    return decision, book.drain_events()


def assert_unchanged_by(book: Book, bidder: int, amount: int, is_max: bool, at: int) -> Decision:
    """Place a bid that must be rejected and check it changed nothing."""
    before = book.to_state()
    decision, events = place(book, bidder, amount, is_max, at)
    assert not decision.accepted
    assert events == []
    assert book.to_state() == before
    return decision


# -- plain bids and the increment rule ------------------------------------------------------------
class TestPlainBids:
    def test_first_bid_at_start(self) -> None:
        book = open_book()
        decision, events = place(book, A, 1000, False, 2000)
        assert decision == ok(1000, 1100, A)
        assert events == [bid(A, 1000, False, 2000), changed(1000, A, 1, 1100, 2000)]
        lot = book.lot(L)
        assert (lot.price, lot.leader, lot.leader_max, lot.bid_count) == (1000, A, 1000, 1)

    def test_first_bid_above_start_on_the_grid(self) -> None:
        book = open_book()
        decision, events = place(book, A, 3000, False, 2000)
        assert decision == ok(3000, 3100, A)
        assert events == [bid(A, 3000, False, 2000), changed(3000, A, 1, 3100, 2000)]

    def test_first_bid_below_start_is_too_low(self) -> None:
        book = open_book()
        assert assert_unchanged_by(book, A, 900, False, 2000) == no(RejectCode.TOO_LOW, 0, 1000, NO_USER)
        assert assert_unchanged_by(book, A, 999, True, 2000) == no(RejectCode.TOO_LOW, 0, 1000, NO_USER)

    def test_first_bid_off_the_grid(self) -> None:
        book = open_book()
        assert assert_unchanged_by(book, A, 1050, False, 2000) == no(
            RejectCode.OFF_INCREMENT, 0, 1000, NO_USER
        )

    def test_later_bids_need_one_unit_more_and_the_grid(self) -> None:
        book = open_book()
        place(book, A, 1000, False, 2000)
        assert assert_unchanged_by(book, B, 1000, False, 2001) == no(RejectCode.TOO_LOW, 1000, 1100, A)
        assert assert_unchanged_by(book, B, 1050, False, 2001) == no(RejectCode.TOO_LOW, 1000, 1100, A)
        assert assert_unchanged_by(book, B, 1150, False, 2001) == no(RejectCode.OFF_INCREMENT, 1000, 1100, A)
        decision, events = place(book, B, 1100, False, 2002)
        assert decision == ok(1100, 1200, B)
        assert events == [bid(B, 1100, False, 2002), outbid(A, 1100), changed(1100, B, 2, 1200, 2002)]

    def test_jump_bid(self) -> None:
        book = open_book()
        place(book, A, 1000, False, 2000)
        decision, events = place(book, B, 2500, False, 2001)
        assert decision == ok(2500, 2600, B)
        assert events == [bid(B, 2500, False, 2001), outbid(A, 2500), changed(2500, B, 2, 2600, 2001)]

    def test_leader_cannot_outbid_themselves(self) -> None:
        book = open_book()
        place(book, A, 1000, False, 2000)
        assert assert_unchanged_by(book, A, 1100, False, 2001) == no(RejectCode.SELF_OUTBID, 1000, 1100, A)
        assert assert_unchanged_by(book, A, 5000, False, 2001) == no(RejectCode.SELF_OUTBID, 1000, 1100, A)

    def test_leader_by_proxy_answer_cannot_plain_bid(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        place(book, B, 2000, False, 2001)
        assert book.lot(L).leader == A
        assert assert_unchanged_by(book, A, 2200, False, 2002) == no(RejectCode.SELF_OUTBID, 2100, 2200, A)

    def test_outbid_bidder_may_bid_again(self) -> None:
        book = open_book()
        place(book, A, 1000, False, 2000)
        place(book, B, 1100, False, 2001)
        decision, events = place(book, A, 1200, False, 2002)
        assert decision == ok(1200, 1300, A)
        assert events == [bid(A, 1200, False, 2002), outbid(B, 1200), changed(1200, A, 3, 1300, 2002)]


# -- proxy (maximum) bids -------------------------------------------------------------------------
class TestProxyBids:
    def test_first_maximum_shows_only_the_start(self) -> None:
        book = open_book()
        decision, events = place(book, A, 5000, True, 2000)
        assert decision == ok(1000, 1100, A)
        assert events == [bid(A, 1000, True, 2000), changed(1000, A, 1, 1100, 2000)]
        assert book.lot(L).leader_max == 5000

    def test_lower_challenger_is_answered_one_step_above(self) -> None:
        book = open_book()
        place(book, A, 5000, True, 2000)
        decision, events = place(book, B, 3000, True, 3000)
        assert decision == ok(3100, 3200, A)
        assert events == [
            bid(B, 3000, True, 3000),
            bid(A, 3100, True, 3000),
            outbid(B, 3100),
            changed(3100, A, 3, 3200, 3000),
        ]

    def test_lower_plain_challenger_is_answered_one_step_above(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        decision, events = place(book, B, 2000, False, 3000)
        assert decision == ok(2100, 2200, A)
        assert events == [
            bid(B, 2000, False, 3000),
            bid(A, 2100, True, 3000),
            outbid(B, 2100),
            changed(2100, A, 3, 2200, 3000),
        ]
        # One step below the maximum: the answer is capped at the maximum.
        decision, events = place(book, C, 2900, False, 3001)
        assert decision == ok(3000, 3100, A)
        assert events == [
            bid(C, 2900, False, 3001),
            bid(A, 3000, True, 3001),
            outbid(C, 3000),
            changed(3000, A, 5, 3100, 3001),
        ]

    def test_higher_maximum_takes_the_lead_one_step_above_the_old_maximum(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        decision, events = place(book, B, 5000, True, 3000)
        assert decision == ok(3100, 3200, B)
        assert events == [
            bid(A, 3000, True, 3000),  # A's proxy bids up to its maximum first
            bid(B, 3100, True, 3000),
            outbid(A, 3100),
            changed(3100, B, 3, 3200, 3000),
        ]
        assert book.lot(L).leader_max == 5000

    def test_higher_maximum_over_a_plain_leader(self) -> None:
        book = open_book()
        place(book, A, 1000, False, 2000)
        decision, events = place(book, B, 5000, True, 3000)
        assert decision == ok(1100, 1200, B)
        assert events == [bid(B, 1100, True, 3000), outbid(A, 1100), changed(1100, B, 2, 1200, 3000)]

    def test_maximum_just_one_step_above_the_leaders(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        decision, _ = place(book, B, 3100, True, 3000)
        assert decision == ok(3100, 3200, B)

    def test_plain_bid_above_the_leaders_maximum(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        decision, events = place(book, B, 4000, False, 3000)
        assert decision == ok(4000, 4100, B)
        assert events == [
            bid(A, 3000, True, 3000),
            bid(B, 4000, False, 3000),
            outbid(A, 4000),
            changed(4000, B, 3, 4100, 3000),
        ]

    def test_equal_maxima_go_to_the_earlier(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        decision, events = place(book, B, 3000, True, 3000)
        assert decision == ok(3000, 3100, A)
        assert events == [
            bid(B, 3000, True, 3000),
            bid(A, 3000, True, 3000),
            outbid(B, 3000),
            changed(3000, A, 3, 3100, 3000),
        ]
        # B cannot repeat the tie now that it is the visible price.
        assert assert_unchanged_by(book, B, 3000, True, 3001) == no(RejectCode.TOO_LOW, 3000, 3100, A)

    def test_plain_bid_equal_to_the_maximum_loses_to_it(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        decision, events = place(book, B, 3000, False, 3000)
        assert decision == ok(3000, 3100, A)
        assert events == [
            bid(B, 3000, False, 3000),
            bid(A, 3000, True, 3000),
            outbid(B, 3000),
            changed(3000, A, 3, 3100, 3000),
        ]

    def test_leader_raising_the_maximum_does_not_raise_the_price(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        decision, events = place(book, A, 6000, True, 3000)
        assert decision == ok(1000, 1100, A)
        assert events == []
        lot = book.lot(L)
        assert (lot.price, lot.leader_max, lot.bid_count) == (1000, 6000, 1)
        # The raised maximum now defends: a challenge at 5000 is answered at 5100.
        decision, _ = place(book, B, 5000, True, 3001)
        assert decision == ok(5100, 5200, A)

    def test_leader_raise_must_exceed_the_old_maximum_on_the_ladder(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        assert assert_unchanged_by(book, A, 3000, True, 2001) == no(RejectCode.TOO_LOW, 1000, 3100, A)
        assert assert_unchanged_by(book, A, 2000, True, 2001) == no(RejectCode.TOO_LOW, 1000, 3100, A)
        assert assert_unchanged_by(book, A, 3150, True, 2001) == no(RejectCode.OFF_INCREMENT, 1000, 3100, A)
        assert book.lot(L).leader_max == 3000

    def test_outbid_maximum_comes_back_higher(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        place(book, B, 5000, True, 2001)
        decision, events = place(book, A, 7000, True, 2002)
        assert decision == ok(5100, 5200, A)
        assert events == [
            bid(B, 5000, True, 2002),
            bid(A, 5100, True, 2002),
            outbid(B, 5100),
            changed(5100, A, 5, 5200, 2002),
        ]

    def test_three_bidders(self) -> None:
        book = open_book()
        place(book, A, 4000, True, 2000)
        place(book, B, 2500, True, 2001)  # A answers 2600
        assert book.lot(L).price == 2600
        decision, events = place(book, C, 9000, True, 2002)
        assert decision == ok(4100, 4200, C)
        assert events == [
            bid(A, 4000, True, 2002),
            bid(C, 4100, True, 2002),
            outbid(A, 4100),
            changed(4100, C, 5, 4200, 2002),
        ]
        # B's old maximum (2500) is far below; it must now beat 4100.
        assert assert_unchanged_by(book, B, 4100, True, 2003) == no(RejectCode.TOO_LOW, 4100, 4200, C)

    def test_banded_rule_proxy_across_bands(self) -> None:
        book = open_book(rule=BandedIncrement(50, [(100, 5), (500, 25), (2500, 50), (None, 100)]))
        decision, _ = place(book, A, 2000, True, 2000)
        assert decision == ok(50, 55, A)
        assert assert_unchanged_by(book, B, 480, True, 2001) == no(RejectCode.OFF_INCREMENT, 50, 55, A)
        decision, events = place(book, B, 475, True, 2001)
        assert decision == ok(500, 550, A)
        assert events[:2] == [bid(B, 475, True, 2001), bid(A, 500, True, 2001)]
        decision, events = place(book, C, 2600, True, 2002)
        assert decision == ok(2050, 2100, C)
        assert events[:2] == [bid(A, 2000, True, 2002), bid(C, 2050, True, 2002)]
        decision, _ = place(book, D, 2500, True, 2003)
        assert decision == ok(2600, 2700, C)

    def test_bid_history_lines(self) -> None:
        book = open_book()
        place(book, A, 3000, True, 2000)
        place(book, B, 2000, False, 2500)
        place(book, C, 5000, False, 2600)  # A's proxy bids its maximum, C leads
        bids = book.lot(L).bids
        lines = [
            (A, 1000, 2000, True),
            (B, 2000, 2500, False),
            (A, 2100, 2500, True),
            (A, 3000, 2600, True),
            (C, 5000, 2600, False),
        ]
        assert len(bids) == 5 == book.lot(L).bid_count
        assert [bids.line(index) for index in range(5)] == lines
        assert list(bids.prices) == [1000, 2000, 2100, 3000, 5000]
        copy = BidHistory.from_bytes(bids.to_bytes())
        assert [copy.line(index) for index in range(len(copy))] == lines


# -- reserve --------------------------------------------------------------------------------------
class TestReserve:
    def test_maximum_above_reserve_jumps_to_it(self) -> None:
        book = open_book(reserve=5000)
        decision, events = place(book, A, 8000, True, 2000)
        assert decision == ok(5000, 5100, A)
        assert events == [bid(A, 5000, True, 2000), changed(5000, A, 1, 5100, 2000)]

    def test_maximum_equal_to_reserve(self) -> None:
        book = open_book(reserve=5000)
        decision, _ = place(book, A, 5000, True, 2000)
        assert decision == ok(5000, 5100, A)

    def test_maximum_below_reserve_does_not_jump(self) -> None:
        book = open_book(reserve=5000)
        decision, _ = place(book, A, 4900, True, 2000)
        assert decision == ok(1000, 1100, A)

    def test_reserve_off_the_ladder_jumps_to_the_next_ladder_price(self) -> None:
        book = open_book(reserve=4550)
        decision, _ = place(book, A, 8000, True, 2000)
        assert decision == ok(4600, 4700, A)
        book = open_book(reserve=4550)
        decision, _ = place(book, A, 4600, True, 2000)
        assert decision == ok(4600, 4700, A)
        book = open_book(reserve=4550)
        decision, _ = place(book, A, 4500, True, 2000)
        assert decision == ok(1000, 1100, A)

    def test_challenger_reaching_the_reserve(self) -> None:
        book = open_book(reserve=5000)
        place(book, A, 4900, True, 2000)
        decision, events = place(book, B, 6000, True, 3000)
        assert decision == ok(5000, 5100, B)
        assert events == [
            bid(A, 4900, True, 3000),
            bid(B, 5000, True, 3000),
            outbid(A, 5000),
            changed(5000, B, 3, 5100, 3000),
        ]

    def test_second_price_above_the_reserve(self) -> None:
        book = open_book(reserve=5000)
        place(book, A, 8000, True, 2000)
        decision, events = place(book, B, 6000, True, 3000)
        assert decision == ok(6100, 6200, A)
        assert events[:3] == [bid(B, 6000, True, 3000), bid(A, 6100, True, 3000), outbid(B, 6100)]

    def test_leader_raise_reaches_the_reserve(self) -> None:
        book = open_book(reserve=5000)
        place(book, A, 3000, True, 2000)
        decision, events = place(book, A, 6000, True, 3000)
        assert decision == ok(5000, 5100, A)
        assert events == [bid(A, 5000, True, 3000), changed(5000, A, 2, 5100, 3000)]
        # Once at the reserve, a further raise shows nothing.
        decision, events = place(book, A, 9000, True, 3001)
        assert decision == ok(5000, 5100, A)
        assert events == []

    def test_below_reserve_closes_unsold(self) -> None:
        book = open_book(reserve=5000)
        place(book, A, 4900, True, 2000)
        place(book, B, 3000, False, 2001)  # A answers 3100
        book.advance(END)
        assert book.drain_events() == [
            LotClosed(L, S, LotState.UNSOLD, NO_USER, 3100, 3, END, "ended"),
            SessionStateChanged(S, SessionState.ENDED, END),
        ]
        lot = book.lot(L)
        assert (lot.state, lot.winner) == (LotState.UNSOLD, NO_USER)

    def test_plain_bid_at_reserve_sells(self) -> None:
        book = open_book(reserve=5000)
        place(book, A, 5000, False, 2000)
        book.advance(END)
        assert book.drain_events()[0] == LotClosed(L, S, LotState.SOLD, A, 5000, 1, END, "ended")

    def test_reached_reserve_sells(self) -> None:
        book = open_book(reserve=5000)
        place(book, A, 8000, True, 2000)
        book.advance(END + 5)
        assert book.drain_events()[0] == LotClosed(L, S, LotState.SOLD, A, 5000, 1, END + 5, "ended")
        assert book.lot(L).winner == A


# -- deposits -------------------------------------------------------------------------------------
class TestDeposits:
    def test_no_deposit_required(self) -> None:
        book = open_book()
        assert place(book, A, 1000, False, 2000)[0].accepted

    def test_lot_deposit_gates(self) -> None:
        book = open_book(deposit=500)
        assert assert_unchanged_by(book, A, 1000, False, 2000) == no(RejectCode.NO_DEPOSIT, 0, 1000, NO_USER)
        assert assert_unchanged_by(book, A, 5000, True, 2000).code is RejectCode.NO_DEPOSIT
        book.register_deposit(S, L, A)
        assert place(book, A, 1000, False, 2001)[0] == ok(1000, 1100, A)

    def test_session_deposit_holder_may_bid_on_a_lot_with_a_deposit(self) -> None:
        book = open_book(deposit=500)
        book.register_deposit(S, None, B)
        assert place(book, B, 1000, False, 2000)[0] == ok(1000, 1100, B)

    def test_session_deposit_gates(self) -> None:
        book = open_book(session_deposit=10_000)
        assert assert_unchanged_by(book, A, 1000, False, 2000).code is RejectCode.NO_DEPOSIT
        book.register_deposit(S, None, A)
        book.register_deposit(S, L, B)
        assert place(book, A, 1000, False, 2001)[0].accepted
        assert place(book, B, 1100, False, 2002)[0].accepted
        assert assert_unchanged_by(book, C, 1200, False, 2003) == no(RejectCode.NO_DEPOSIT, 1100, 1200, B)

    def test_deposit_for_another_lot_does_not_count(self) -> None:
        book = open_book(deposit=500, extra_lots=(11,))
        book.register_deposit(S, 11, A)
        assert assert_unchanged_by(book, A, 1000, False, 2000).code is RejectCode.NO_DEPOSIT
        assert book.place(11, A, 1000, False, 2000).accepted

    def test_register_deposit_errors(self) -> None:
        book = open_book(deposit=500)
        book.put_session(2, preview_start=0, preview_end=1, bidding_start=1, bidding_end=2)
        with pytest.raises(InvalidCommand):
            book.register_deposit(2, L, A)
        with pytest.raises(NotFound):
            book.register_deposit(S, 999, A)
        with pytest.raises(NotFound):
            book.register_deposit(999, None, A)
        assert book.lot(L).depositors == set()
        assert book.session(S).depositors == set()

    def test_deposit_checked_before_self_outbid(self) -> None:
        book = open_book(deposit=500)
        book.register_deposit(S, L, A)
        place(book, A, 1000, False, 2000)
        assert place(book, A, 1100, False, 2001)[0].code is RejectCode.SELF_OUTBID
        assert place(book, B, 1100, False, 2001)[0].code is RejectCode.NO_DEPOSIT


# -- soft close -----------------------------------------------------------------------------------
class TestSoftClose:
    def test_bid_before_the_window_does_not_extend(self) -> None:
        book = open_book(soft=1000)
        _, events = place(book, A, 1000, False, 8999)
        assert events == [bid(A, 1000, False, 8999), changed(1000, A, 1, 1100, 8999)]
        _, events = place(book, B, 1100, False, 9000)  # exactly W before the end: not inside
        assert not any(isinstance(event, LotExtended) for event in events)
        assert book.lot(L).ends_at == END

    def test_bid_inside_the_window_extends_to_now_plus_window(self) -> None:
        book = open_book(soft=1000)
        decision, events = place(book, A, 1000, False, 9001)
        assert decision == ok(1000, 1100, A)
        assert events == [
            bid(A, 1000, False, 9001),
            LotExtended(L, S, 10_001),
            changed(1000, A, 1, 1100, 9001, ends_at=10_001),
        ]
        assert book.lot(L).ends_at == 10_001

    def test_extended_lot_takes_bids_after_the_old_end_and_closes_at_the_new(self) -> None:
        book = open_book(soft=1000)
        place(book, A, 1000, False, 9500)  # -> 10_500
        book.advance(END)
        assert book.lot(L).state is LotState.BIDDING
        assert book.drain_events() == []
        decision, events = place(book, B, 1100, False, 10_200)  # -> 11_200
        assert decision.accepted
        assert LotExtended(L, S, 11_200) in events
        book.advance(11_199)
        assert book.lot(L).state is LotState.BIDDING
        assert assert_unchanged_by(book, A, 1200, False, 11_200) == no(RejectCode.CLOSED, 1100, 1200, B)
        book.advance(11_200)
        assert book.drain_events() == [
            LotClosed(L, S, LotState.SOLD, B, 1100, 2, 11_200, "ended"),
            SessionStateChanged(S, SessionState.ENDED, 11_200),
        ]

    def test_extensions_are_capped(self) -> None:
        book = open_book(soft=1000, cap=1500)  # hard end 11_500
        place(book, A, 1000, False, 9500)
        assert book.lot(L).ends_at == 10_500
        place(book, B, 1100, False, 10_400)
        assert book.lot(L).ends_at == 11_400
        _, events = place(book, A, 1200, False, 11_000)
        assert LotExtended(L, S, 11_500) in events
        assert book.lot(L).ends_at == 11_500
        _, events = place(book, B, 1300, False, 11_499)
        assert not any(isinstance(event, LotExtended) for event in events)
        assert book.lot(L).ends_at == 11_500
        assert place(book, A, 1400, False, 11_500)[0].code is RejectCode.CLOSED

    def test_rejected_bid_never_extends(self) -> None:
        book = open_book(soft=1000)
        place(book, A, 1000, False, 2000)
        for amount, is_max in ((1000, False), (1050, False), (500, True)):
            assert_unchanged_by(book, B, amount, is_max, 9500)
        assert_unchanged_by(book, A, 1100, False, 9500)  # self-outbid
        assert book.lot(L).ends_at == END

    def test_proxy_answer_extends(self) -> None:
        book = open_book(soft=1000)
        place(book, A, 5000, True, 2000)
        decision, events = place(book, B, 3000, True, 9600)
        assert decision == ok(3100, 3200, A)
        assert events == [
            bid(B, 3000, True, 9600),
            bid(A, 3100, True, 9600),
            outbid(B, 3100),
            LotExtended(L, S, 10_600),
            changed(3100, A, 3, 3200, 9600, ends_at=10_600),
        ]

    def test_invisible_leader_raise_does_not_extend(self) -> None:
        book = open_book(soft=1000)
        place(book, A, 3000, True, 2000)
        decision, events = place(book, A, 6000, True, 9600)
        assert decision.accepted
        assert events == []
        assert book.lot(L).ends_at == END

    def test_leader_raise_to_the_reserve_extends(self) -> None:
        book = open_book(soft=1000, reserve=5000)
        place(book, A, 3000, True, 2000)
        _, events = place(book, A, 6000, True, 9600)
        assert events == [
            bid(A, 5000, True, 9600),
            LotExtended(L, S, 10_600),
            changed(5000, A, 2, 5100, 9600, ends_at=10_600),
        ]

    def test_no_window_no_extension(self) -> None:
        book = open_book(soft=0)
        _, events = place(book, A, 1000, False, 9999)
        assert not any(isinstance(event, LotExtended) for event in events)
        assert book.lot(L).ends_at == END


# -- open / closed --------------------------------------------------------------------------------
class TestOpenAndClosed:
    def test_not_open_before_bidding(self) -> None:
        book = Book()
        book.put_session(S, preview_start=100, preview_end=200, bidding_start=200, bidding_end=END)
        book.put_lot(L, S, FixedIncrement(START, UNIT))
        assert book.place(L, A, 1000, False, 50) == no(RejectCode.NOT_OPEN, 0, 1000, NO_USER)
        book.advance(100)
        assert book.lot(L).state is LotState.PREVIEW
        assert book.place(L, A, 1000, False, 150) == no(RejectCode.NOT_OPEN, 0, 1000, NO_USER)
        # The clock passing bidding_start is not enough: the book opens lots in advance().
        assert book.place(L, A, 1000, False, 250).code is RejectCode.NOT_OPEN
        book.advance(250)
        assert book.place(L, A, 1000, False, 250).accepted

    def test_closed_at_ends_at_even_before_advance(self) -> None:
        book = open_book()
        place(book, A, 1000, False, 2000)
        assert assert_unchanged_by(book, B, 1100, False, END) == no(RejectCode.CLOSED, 1000, 1100, A)
        assert assert_unchanged_by(book, B, 1100, False, END + 1000).code is RejectCode.CLOSED
        assert place(book, B, 1100, False, END - 1)[0].accepted

    def test_closed_after_sold_and_unsold(self) -> None:
        book = open_book()
        place(book, A, 1000, False, 2000)
        book.advance(END)
        assert book.lot(L).state is LotState.SOLD
        assert book.place(L, B, 1100, False, 500).code is RejectCode.CLOSED
        book = open_book()
        book.advance(END)
        assert book.lot(L).state is LotState.UNSOLD
        assert book.place(L, B, 1000, False, 2000).code is RejectCode.CLOSED


# -- closing --------------------------------------------------------------------------------------
class TestClosing:
    def test_sold_to_the_leader_at_the_visible_price(self) -> None:
        book = open_book()
        place(book, A, 5000, True, 2000)
        place(book, B, 3000, True, 3000)
        book.advance(END)
        assert book.drain_events() == [
            LotClosed(L, S, LotState.SOLD, A, 3100, 3, END, "ended"),
            SessionStateChanged(S, SessionState.ENDED, END),
        ]
        lot = book.lot(L)
        assert (lot.state, lot.winner, lot.price) == (LotState.SOLD, A, 3100)

    def test_no_bids_closes_unsold_at_zero(self) -> None:
        book = open_book()
        book.advance(END)
        assert book.drain_events() == [
            LotClosed(L, S, LotState.UNSOLD, NO_USER, 0, 0, END, "ended"),
            SessionStateChanged(S, SessionState.ENDED, END),
        ]

    def test_lot_close_directly(self) -> None:
        events: list[Event] = []
        session = Session(
            S,
            preview_start=0,
            preview_end=0,
            bidding_start=0,
            bidding_end=END,
            deposit=0,
            soft_close_ms=0,
            soft_close_cap_ms=0,
            events=events,
        )
        lot = Lot(L, session, FixedIncrement(START, UNIT), reserve=0, deposit=0, events=events)
        assert lot.place(A, 1000, False, 1).code is RejectCode.NOT_OPEN
        lot.open(1)
        assert lot.place(A, 1000, False, 2) == ok(1000, 1100, A)
        lot.close(500, "closed_early")
        assert lot.ends_at == 500
        assert events[-1] == LotClosed(L, S, LotState.SOLD, A, 1000, 1, 500, "closed_early")
        lot.mark_overdue()
        assert lot.state is LotState.OVERDUE
