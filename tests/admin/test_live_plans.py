"""The live controls' confirmations without a server: what a void leaves, and the numbers each
confirmation states (admin/live_plans.py). Which controls are legal is the engine's
(tests/engine/book/test_controls.py)."""

from __future__ import annotations

from typing import NamedTuple

from admin.live_plans import (
    Replayed,
    block_plan,
    duration_text,
    extend_lot_plan,
    pause_lot_plan,
    pause_session_plan,
    replay_without,
    resume_lot_plan,
    unblock_plan,
    void_bid_plan,
    withdraw_lot_plan,
)
from engine.book.increments import FixedIncrement


class Bid(NamedTuple):
    bid_index: int
    bidder: int
    amount: int
    is_max: bool
    at: int
    voided: bool = False


def test_replay_without_a_plain_bid_gives_the_price_back() -> None:
    rule = FixedIncrement(10_000, 1_000)
    bids = [Bid(0, 1, 10_000, False, 1), Bid(1, 2, 11_000, False, 2), Bid(2, 1, 12_000, False, 3)]
    assert replay_without(rule, 0, bids, 2) == Replayed(11_000, 2, 2, 0)
    # Without bob's bid, alice's second bid outbids herself: it drops out.
    assert replay_without(rule, 0, bids, 1) == Replayed(10_000, 1, 1, 1)
    assert replay_without(rule, 0, bids[:1], 0) == Replayed(0, 0, 0, 0)


def test_replay_keeps_maximums_and_the_reserve() -> None:
    rule = FixedIncrement(10_000, 1_000)
    bids = [Bid(0, 1, 30_000, True, 1), Bid(1, 2, 15_000, False, 2), Bid(2, 3, 40_000, True, 3)]
    # Without carol's maximum, alice's maximum holds at one step above bob.
    after = replay_without(rule, 0, bids, 2)
    assert (after.price, after.leader) == (16_000, 1)
    # A reserve of 25,000 lifts a maximum at or above it straight to the reserve.
    after = replay_without(rule, 25_000, bids, 1)
    assert (after.price, after.leader) == (31_000, 3)
    # Voided bids stay out of every replay.
    voided = [bids[0], bids[1]._replace(voided=True), bids[2]]
    assert replay_without(rule, 0, voided, 0) == Replayed(10_000, 3, 1, 0)


def test_confirmations_say_what_happens_in_numbers() -> None:
    pause = pause_lot_plan("A-12", 5, 3, 150_000, 230_000, 7)
    assert pause.title == "Pause lot A-12"
    assert "5 bidders, 3 deposits ¥1,500.00 held" in pause.lines
    assert any("the end moves by the pause" in line for line in pause.lines)
    withdraw = withdraw_lot_plan("A-12", 3, 150_000, 3, 5, 7, 230_000)
    assert withdraw.danger and "3 deposits (¥1,500.00) refunded to 3 bidders" in withdraw.lines
    assert "The lot closes unsold" in withdraw.lines
    assert "7 bids from 5 bidders are set aside (current price ¥2,300.00)" in withdraw.lines
    void = void_bid_plan(7, "alice", 230_000, 230_000, "alice", Replayed(220_000, 2, 6, 0), "bob")
    assert void.title == "Void bid #7 (alice, ¥2,300.00)"
    assert void.lines[0] == "Price falls from ¥2,300.00 to ¥2,200.00, leader becomes bob"
    extend = extend_lot_plan("A-12", 0, 600_000, "2026-12-06 21:30", "Asia/Shanghai")
    assert extend.title == "Extend lot A-12 to 2026-12-06 21:30 (Asia/Shanghai)"
    assert extend.lines[0] == "+10 min from the current end"
    block = block_plan("bob", 2)
    assert block.title == "Block bidder bob"
    assert "They cannot bid in any session until unblocked" in block.lines
    assert "clear the flag on their page" in unblock_plan("bob", non_payer=True).lines[0]
    assert unblock_plan("bob").lines == ("They can bid again in every session",)
    assert resume_lot_plan("A-12", 125_000, 1).lines[0] == "Paused for 2 min; bidding reopens for 1 bidder"
    session = pause_session_plan("Spring", 4, 9, 1, 50_000)
    assert session.lines[0] == "4 lots bidding stop; 9 bidders, 1 deposit ¥500.00 held"


def test_durations_read_as_people_say_them() -> None:
    assert duration_text(45_000) == "45 s"
    assert duration_text(12 * 60_000) == "12 min"
    assert duration_text(2 * 3_600_000 + 5 * 60_000) == "2 h 05 min"
    assert duration_text(-5) == "0 s"
