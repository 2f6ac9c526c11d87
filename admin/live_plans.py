"""What each of the live monitor's controls will do, in numbers (pure: no I/O, no clock).

The monitor offers only the controls the engine calls legal (`engine.book.controls`), and every
control first shows a confirmation that says what will happen: how many bidders, how many deposits
and how much money, the price before and after a void. These functions compute that from plain
values the handlers read (admin/live.py), so they are tested without a server
(tests/admin/test_live_plans.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from admin.base import money
from engine.book.increments import IncrementRule
from engine.book.lot import Lot
from engine.book.session import Session
from engine.book.states import LotState

_FAR_FUTURE = 1 << 62


# -- replaying the bids without one (the price a void leaves) ------------------------------------------
class BidInputLike(Protocol):
    """An accepted bid as the engine keeps it for replay (`engine.book.lot.Lot.inputs()`)."""

    @property
    def bid_index(self) -> int: ...
    @property
    def bidder(self) -> int: ...
    @property
    def amount(self) -> int: ...
    @property
    def is_max(self) -> bool: ...
    @property
    def at(self) -> int: ...
    @property
    def voided(self) -> bool: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Replayed:
    price: int
    leader: int  # 0: no bid left
    bid_count: int
    dropped: int  # later bids that are no longer valid without the voided one


def replay_without(
    rule: IncrementRule, reserve: int, inputs: Sequence[BidInputLike], skip_index: int
) -> Replayed:
    """The lot's price, leader and bid count if the bid `skip_index` had never been placed: the other
    (non-voided) accepted bids placed again, in order, on a scratch lot with the same increment rule
    and reserve. Time, deposits and soft close play no part in the price, so they are left out."""
    events: list[Any] = []
    scratch_session = Session(
        0,
        preview_start=0,
        preview_end=0,
        bidding_start=0,
        bidding_end=_FAR_FUTURE,
        deposit=0,
        soft_close_ms=0,
        soft_close_cap_ms=0,
        events=events,
    )
    lot = Lot(0, scratch_session, rule, reserve=reserve, deposit=0, events=events)
    lot.quiet = True
    lot.state = LotState.BIDDING
    lot.ends_at = _FAR_FUTURE
    dropped = 0
    for bid in inputs:
        if bid.voided or bid.bid_index == skip_index:
            continue
        decision = lot.place(bid.bidder, bid.amount, bid.is_max, min(bid.at, _FAR_FUTURE - 1))
        if not decision.accepted:
            dropped += 1
    return Replayed(lot.price if lot.leader else 0, lot.leader, lot.bid_count, dropped)


# -- the confirmations -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """A confirmation: a headline ("Pause lot A-12") and what will happen, one consequence a line."""

    title: str
    lines: tuple[str, ...]
    danger: bool = False


def _bidders(count: int) -> str:
    return f"{count} bidder" if count == 1 else f"{count} bidders"


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _deposits(count: int, total: int) -> str:
    return f"{count} deposit {money(total)}" if count == 1 else f"{count} deposits {money(total)}"


def duration_text(ms: int) -> str:
    """A length of time for people: "45 s", "12 min", "2 h 05 min"."""
    seconds = max(0, ms) // 1000
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def pause_lot_plan(
    lot_label: str, bidders: int, deposits: int, held: int, price: int, bid_count: int
) -> Plan:
    return Plan(
        f"Pause lot {lot_label}",
        (
            f"{_bidders(bidders)}, {_deposits(deposits, held)} held",
            "Bidding stops until resumed; the end moves by the pause",
            f"The price stays {money(price)}" if bid_count else "No bid yet",
        ),
    )


def resume_lot_plan(lot_label: str, paused_for_ms: int, bidders: int) -> Plan:
    return Plan(
        f"Resume lot {lot_label}",
        (
            f"Paused for {duration_text(paused_for_ms)}; bidding reopens for {_bidders(bidders)}",
            f"The end moves later by the time paused ({duration_text(paused_for_ms)})",
        ),
    )


def withdraw_lot_plan(
    lot_label: str, deposits: int, held: int, depositors: int, bidders: int, bid_count: int, price: int
) -> Plan:
    lines = [
        f"{_count(deposits, 'deposit')} ({money(held)}) refunded to {_bidders(depositors)}",
        "The lot closes unsold",
    ]
    if bid_count:
        lines.append(
            f"{bid_count} bids from {_bidders(bidders)} are set aside (current price {money(price)})"
        )
    return Plan(f"Withdraw lot {lot_label}", tuple(lines), danger=True)


def void_bid_plan(
    number: int,
    who: str,
    amount: int,
    price_before: int,
    leader_before: str,
    after: Replayed,
    leader_after: str,
) -> Plan:
    if after.leader:
        change = (
            f"Price falls from {money(price_before)} to {money(after.price)}, leader becomes {leader_after}"
        )
        if after.price == price_before:
            change = f"Price stays {money(price_before)}, leader becomes {leader_after}"
        if leader_after == leader_before:
            change = change.replace("leader becomes", "leader stays")
    else:
        change = f"Price falls from {money(price_before)} to no bid; the lot has no leader"
    lines = [change, f"Bids left: {after.bid_count}; bidders are notified"]
    if after.dropped:
        lines.append(f"{after.dropped} later bid(s) are no longer valid without it and drop out")
    return Plan(f"Void bid #{number} ({who}, {money(amount)})", tuple(lines), danger=True)


def extend_lot_plan(
    lot_label: str, current_end_ms: int, new_end_ms: int, new_end_text: str, zone: str
) -> Plan:
    delta = new_end_ms - current_end_ms
    sign = "+" if delta >= 0 else "-"
    return Plan(
        f"Extend lot {lot_label} to {new_end_text} ({zone})",
        (f"{sign}{duration_text(abs(delta))} from the current end", "Bidders see the new end at once"),
    )


def block_plan(who: str, leading: int) -> Plan:
    lines = ["They cannot bid in any session until unblocked"]
    if leading:
        lines.append(f"Their leading bids on {leading} lot(s) stand; void them one by one if needed")
    return Plan(f"Block bidder {who}", tuple(lines), danger=True)


def unblock_plan(who: str, *, non_payer: bool = False) -> Plan:
    if non_payer:
        # Settlement's rule: only clearing the non-payer flag (on the user's page) lets them bid.
        return Plan(
            f"Unblock bidder {who}",
            ("They are flagged as a non-payer: the engine will refuse; clear the flag on their page",),
            danger=True,
        )
    return Plan(f"Unblock bidder {who}", ("They can bid again in every session",))


def pause_session_plan(title: str, running: int, bidders: int, deposits: int, held: int) -> Plan:
    return Plan(
        f"Pause session {title}",
        (
            f"{running} lot{'s' if running != 1 else ''} bidding stop; {_bidders(bidders)}, "
            f"{_deposits(deposits, held)} held",
            "Every end moves by the pause",
        ),
    )


def resume_session_plan(title: str, paused: int) -> Plan:
    return Plan(
        f"Resume session {title}",
        (f"{paused} paused lot{'s' if paused != 1 else ''} reopen; their ends move by the pause",),
    )
