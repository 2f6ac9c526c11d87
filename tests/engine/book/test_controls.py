"""The admin controls in the book: pause and resume (lot and session), extend, withdraw, void with
replay, their snapshots, and which controls are legal in which state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book.book import Book
from engine.book.controls import legal_lot_controls, legal_session_controls
from engine.book.errors import IllegalTransition, InvalidCommand, RejectCode
from engine.book.events import BidVoided, LotClosed, LotExtended, LotPaused, PriceChanged
from engine.book.increments import FixedIncrement
from engine.book.lot import BidInput
from engine.book.states import LotState
from engine.book.types import NO_USER
from tests.engine.book.test_lot import END, OPEN_AT, START, UNIT, A, B, C, L, S, open_book

T = OPEN_AT + 100


def test_a_paused_lot_refuses_bids_and_its_end_waits_for_the_resume() -> None:
    book = open_book()
    assert book.place(L, A, START, False, T).accepted
    book.drain_events()
    book.pause_lot(L, T + 100, "wrong reserve")
    assert book.drain_events() == [LotPaused(L, S, True, END, T + 100, "wrong reserve")]
    refused = book.place(L, B, START + UNIT, False, T + 200)
    assert (refused.accepted, refused.code, refused.price) == (False, RejectCode.PAUSED, START)

    book.advance(END + 5_000)  # the close timer fires but a paused lot waits
    assert book.lot(L).state is LotState.BIDDING
    book.drain_events()

    book.resume_lot(L, END + 5_000)  # held for END + 4_900 - T ms: all of it given back
    held = END + 5_000 - (T + 100)
    assert book.lot(L).ends_at == END + held
    assert book.drain_events() == [LotPaused(L, S, False, END + held, END + 5_000, "")]
    assert book.place(L, B, START + UNIT, False, END + 5_001).accepted
    book.advance(END + held)
    assert book.lot(L).state is LotState.SOLD and book.lot(L).winner == B


def test_pause_and_resume_are_refused_where_they_mean_nothing() -> None:
    book = open_book()
    with pytest.raises(IllegalTransition):
        book.resume_lot(L, T)
    book.pause_lot(L, T, "x")
    with pytest.raises(IllegalTransition):
        book.pause_lot(L, T + 1, "again")
    book.cancel_lot(L, T + 2, "withdrawn")
    assert book.lot(L).paused_since == 0  # a closed lot is not paused
    with pytest.raises(IllegalTransition):
        book.resume_lot(L, T + 3)
    scheduled = Book()
    scheduled.put_session(S, preview_start=0, preview_end=10, bidding_start=10, bidding_end=END)
    scheduled.put_lot(L, S, FixedIncrement(START, UNIT))
    with pytest.raises(IllegalTransition):
        scheduled.pause_lot(L, 1, "not open yet")


def test_the_soft_close_cap_moves_with_the_time_a_pause_held() -> None:
    book = open_book(soft=1_000, cap=2_000)
    book.pause_lot(L, T, "x")
    book.resume_lot(L, T + 3_000)
    lot = book.lot(L)
    assert lot.ends_at == END + 3_000
    assert book.place(L, A, START, False, END + 2_500).accepted  # inside the window
    assert lot.ends_at == END + 3_500 and lot.extensions == 1
    assert book.place(L, B, START + UNIT, False, END + 3_400).accepted
    assert lot.ends_at == END + 4_400 and lot.extensions == 2
    assert book.place(L, A, START + 2 * UNIT, False, END + 4_300).accepted
    assert lot.ends_at == END + 5_000  # capped at bidding_end + cap + the 3_000 held
    assert lot.extensions == 3


def test_a_session_pause_holds_every_bidding_lot_and_its_resume_releases_them() -> None:
    book = open_book(extra_lots=(11, 12))
    book.cancel_lot(12, T, "withdrawn")
    assert legal_session_controls(book.session(S), book.lots.values()) == {"pause"}
    assert book.pause_session(S, T + 10, "fire alarm") == [L, 11]
    assert legal_session_controls(book.session(S), book.lots.values()) == {"resume"}
    assert book.place(11, A, START, False, T + 20).code is RejectCode.PAUSED
    with pytest.raises(IllegalTransition):
        book.pause_session(S, T + 30, "again")
    assert book.resume_session(S, T + 1_010) == [L, 11]
    assert book.lot(L).ends_at == book.lot(11).ends_at == END + 1_000
    with pytest.raises(IllegalTransition):
        book.resume_session(S, T + 2_000)


def test_an_extension_moves_the_end_later_and_counts() -> None:
    book = open_book()
    book.extend_lot(L, END + 60_000, T)
    lot = book.lot(L)
    assert (lot.ends_at, lot.extensions) == (END + 60_000, 1)
    assert book.drain_events() == [LotExtended(L, S, END + 60_000)]
    with pytest.raises(InvalidCommand):
        book.extend_lot(L, END + 60_000, T)  # not later
    book.advance(END + 1)
    assert lot.state is LotState.BIDDING  # the old end's timer is stale
    book.advance(END + 60_000)
    assert lot.state is LotState.UNSOLD
    with pytest.raises(IllegalTransition):
        book.extend_lot(L, END + 120_000, END + 60_001)


def test_an_extension_must_end_in_the_future() -> None:
    book = open_book()
    with pytest.raises(InvalidCommand):
        book.extend_lot(L, END + 10, END + 20)


def test_withdrawing_a_bidding_lot_with_a_leader_closes_it_unsold_with_no_winner() -> None:
    book = open_book()
    assert book.place(L, A, START + 5 * UNIT, True, T).accepted
    book.cancel_lot(L, T + 1, "consignor withdrew")
    closed = [event for event in book.drain_events() if isinstance(event, LotClosed)]
    assert closed == [
        LotClosed(L, S, LotState.UNSOLD, NO_USER, START, 1, T + 1, "cancelled: consignor withdrew")
    ]


def test_voiding_the_leading_bid_gives_the_lead_back_and_tells_who_was_voided() -> None:
    book = open_book()
    assert book.place(L, A, START, False, T).accepted
    assert book.place(L, B, START + 3 * UNIT, True, T + 1).accepted  # B leads at START + UNIT
    assert book.place(L, C, START + 10 * UNIT, False, T + 2).accepted  # fat finger: 10 steps
    book.drain_events()
    lot = book.lot(L)
    assert [i.bidder for i in lot.inputs()] == [A, B, C]

    book.void_bid(L, 2, T + 50, "typo")
    assert (lot.price, lot.leader, lot.leader_max, lot.bid_count) == (START + UNIT, B, START + 3 * UNIT, 2)
    assert lot.ends_at == END
    next_min = START + 2 * UNIT
    assert book.drain_events() == [
        BidVoided(L, S, 2, C, C, START + UNIT, B, 2, next_min, END, T + 50, "typo"),
        PriceChanged(L, S, START + UNIT, B, 2, next_min, END, T + 50),
    ]
    assert lot.inputs()[2] == BidInput(2, C, START + 10 * UNIT, False, T + 2, True)
    with pytest.raises(IllegalTransition):
        book.void_bid(L, 2, T + 60, "twice")
    with pytest.raises(InvalidCommand):
        book.void_bid(L, 3, T + 60, "no such bid")


def test_a_paused_lot_can_be_voided_and_stays_paused() -> None:
    book = open_book()
    assert book.place(L, A, START, False, T).accepted
    book.pause_lot(L, T + 1, "check")
    book.void_bid(L, 0, T + 2, "test account")
    lot = book.lot(L)
    assert (lot.price, lot.leader, lot.bid_count, lot.paused_since) == (0, NO_USER, 0, T + 1)
    assert legal_lot_controls(lot) == {"extend", "withdraw", "resume"}


def test_legal_lot_controls_follow_the_state() -> None:
    book = Book()
    book.put_session(S, preview_start=0, preview_end=OPEN_AT, bidding_start=OPEN_AT, bidding_end=END)
    book.put_lot(L, S, FixedIncrement(START, UNIT))
    lot = book.lot(L)
    assert legal_lot_controls(lot) == {"extend", "withdraw"}
    book.advance(OPEN_AT)
    assert legal_lot_controls(lot) == {"extend", "withdraw", "pause"}
    assert legal_lot_controls(lot, END) == {"extend", "withdraw"}  # its close is due
    book.place(L, A, START, False, T)
    assert legal_lot_controls(lot) == {"extend", "withdraw", "pause", "void"}
    book.advance(END)
    assert legal_lot_controls(lot) == frozenset()


def test_snapshots_keep_the_controls_and_old_snapshots_still_load() -> None:
    book = open_book()
    book.place(L, A, START, False, T)
    book.place(L, B, START + UNIT, False, T + 1)
    book.void_bid(L, 0, T + 2, "x")
    book.extend_lot(L, END + 500, T + 3)
    book.pause_lot(L, T + 4, "y")
    again = Book.from_state(book.to_state())
    lot, copy = book.lot(L), again.lot(L)
    assert (copy.paused_since, copy.extensions, copy.voided, copy.inputs()) == (
        lot.paused_since,
        lot.extensions,
        lot.voided,
        lot.inputs(),
    )
    assert again.to_state() == book.to_state()

    old = book.to_state()
    old["lots"] = [row[:13] for row in old["lots"]]  # the shape written before the controls
    loaded = Book.from_state(old)
    old_lot = loaded.lot(L)
    assert (old_lot.paused_since, old_lot.extensions, old_lot.inputs()) == (0, 0, [])
    assert (old_lot.price, old_lot.leader, old_lot.bid_count) == (lot.price, lot.leader, lot.bid_count)
    with pytest.raises(IllegalTransition):  # its bids were never logged as inputs
        loaded.void_bid(L, 0, T + 5, "z")
    assert "void" not in legal_lot_controls(old_lot)
    assert loaded.place(L, C, START + 2 * UNIT, False, T + 6).accepted


# -- the replay rule: voiding input k is the lot that never saw it -------------------------------------
bids = st.lists(
    st.tuples(st.sampled_from([A, B, C, 4]), st.integers(min_value=0, max_value=30), st.booleans()),
    min_size=1,
    max_size=25,
)


def feed(book: Book, sequence: list[tuple[int, int, bool]], skip: int | None = None) -> None:
    for n, (bidder, steps, is_max) in enumerate(sequence):
        if n != skip:
            book.place(L, bidder, START + steps * UNIT, is_max, T + n)


@settings(max_examples=300, deadline=None)
@given(sequence=bids, pick=st.integers(min_value=0), reserve_steps=st.sampled_from([0, 7, 15]))
def test_voiding_input_k_gives_the_state_of_a_lot_that_never_saw_it(
    sequence: list[tuple[int, int, bool]], pick: int, reserve_steps: int
) -> None:
    reserve = START + reserve_steps * UNIT if reserve_steps else 0
    book = open_book(reserve=reserve)
    feed(book, sequence)
    lot = book.lot(L)
    accepted = lot.inputs()
    if not accepted:
        return
    k = pick % len(accepted)
    book.void_bid(L, k, T + 1_000, "property")

    fresh = open_book(reserve=reserve)
    for given_input in accepted:
        if given_input.bid_index != k:
            fresh.place(L, given_input.bidder, given_input.amount, given_input.is_max, given_input.at)
    want = fresh.lot(L)
    assert (lot.price, lot.leader, lot.leader_max, lot.bid_count, lot.next_min()) == (
        want.price,
        want.leader,
        want.leader_max,
        want.bid_count,
        want.next_min(),
    )
    assert lot.bids.to_bytes() == want.bids.to_bytes()
    assert lot.ends_at == END
    assert [i for i in lot.inputs() if i.bid_index != k] == [i for i in accepted if i.bid_index != k]
