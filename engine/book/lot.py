"""A lot (拍品) and its bid ladder: the pure decision of every bid.

Proxy bidding follows the second-price rule of the best auction sites: the visible price is the
lowest ladder price that beats the second-highest maximum, capped at the leader's maximum; equal
maxima go to the earlier one. Only the leader's maximum needs keeping, because every other
bidder's maximum has already been beaten by the visible price.
"""

from array import array
from typing import NamedTuple

from engine.book.errors import RejectCode
from engine.book.events import (
    BidPlaced,
    Event,
    LotClosed,
    LotExtended,
    LotOverdue,
    LotStateChanged,
    Outbid,
    PriceChanged,
)
from engine.book.increments import IncrementRule
from engine.book.session import Session
from engine.book.states import LOT_TRANSITIONS, LotState, check_transition
from engine.book.types import NO_USER, Fen, LotId, Millis, UserId


class Decision(NamedTuple):
    """The book's answer to one bid: accepted, or rejected with a code and the price to beat."""

    accepted: bool
    code: RejectCode | None
    lot_id: LotId
    price: Fen  # visible price after the decision
    next_min: Fen  # lowest price a (non-leading) bidder could now name
    leader: UserId


class BidHistory:
    """Bid lines in typed arrays (~25 bytes a bid) instead of one object each."""

    __slots__ = ("auto", "bidders", "prices", "times")

    def __init__(self) -> None:
        self.prices = array("q")
        self.bidders = array("q")
        self.times = array("q")
        self.auto = array("B")

    def add(self, bidder: UserId, price: Fen, at: Millis, auto: bool) -> None:
        self.prices.append(price)
        self.bidders.append(bidder)
        self.times.append(at)
        self.auto.append(auto)

    def __len__(self) -> int:
        return len(self.prices)

    def to_bytes(self) -> list[bytes]:
        return [self.prices.tobytes(), self.bidders.tobytes(), self.times.tobytes(), self.auto.tobytes()]

    @classmethod
    def from_bytes(cls, parts: list[bytes]) -> "BidHistory":
        history = cls()
        history.prices.frombytes(parts[0])
        history.bidders.frombytes(parts[1])
        history.times.frombytes(parts[2])
        history.auto.frombytes(parts[3])
        return history


class Lot:
    __slots__ = (
        "bids",
        "deposit",
        "depositors",
        "ends_at",
        "events",
        "leader",
        "leader_max",
        "lot_id",
        "price",
        "reserve",
        "rule",
        "session",
        "state",
        "winner",
    )

    def __init__(
        self,
        lot_id: LotId,
        session: Session,
        rule: IncrementRule,
        *,
        reserve: Fen,
        deposit: Fen,
        events: list[Event],
    ) -> None:
        self.lot_id = lot_id
        self.session = session
        self.rule = rule
        self.reserve = reserve
        self.deposit = deposit
        self.events = events
        self.state = LotState.SCHEDULED
        self.ends_at: Millis = session.bidding_end
        self.price: Fen = 0
        self.leader: UserId = NO_USER
        self.leader_max: Fen = 0
        self.winner: UserId = NO_USER
        self.depositors: set[UserId] = set()
        self.bids = BidHistory()

    # -- reading -------------------------------------------------------------------------------
    @property
    def bid_count(self) -> int:
        return len(self.bids.prices)

    def next_min(self) -> Fen:
        """The lowest price a new challenger may name now."""
        return self.rule.next_up(self.price) if self.leader else self.rule.start

    def may_bid(self, bidder: UserId) -> bool:
        """Deposit gating: a paid per-lot deposit or the session deposit, when any is required."""
        if bidder in self.depositors or bidder in self.session.depositors:
            return True
        return self.deposit == 0 and self.session.deposit == 0

    # -- deciding ------------------------------------------------------------------------------
    def _reject(self, code: RejectCode, next_min: Fen | None = None) -> Decision:
        return Decision(
            False,
            code,
            self.lot_id,
            self.price,
            self.next_min() if next_min is None else next_min,
            self.leader,
        )

    def place(self, bidder: UserId, amount: Fen, is_max: bool, now: Millis) -> Decision:
        """Decide a plain bid (`is_max` False) at `amount`, or a maximum (proxy) bid up to it."""
        if self.state is not LotState.BIDDING:
            if self.state in (LotState.SCHEDULED, LotState.PREVIEW):
                return self._reject(RejectCode.NOT_OPEN)
            return self._reject(RejectCode.CLOSED)
        if now >= self.ends_at:
            return self._reject(RejectCode.CLOSED)
        if not self.may_bid(bidder):
            return self._reject(RejectCode.NO_DEPOSIT)
        rule = self.rule
        leader = self.leader
        if bidder == leader:
            if not is_max:
                return self._reject(RejectCode.SELF_OUTBID)
            raise_floor = rule.next_up(self.leader_max)
            if amount < raise_floor:
                return self._reject(RejectCode.TOO_LOW, raise_floor)
            if not rule.on_ladder(amount):
                return self._reject(RejectCode.OFF_INCREMENT, raise_floor)
            self.leader_max = amount
            reserve_price = self._reserve_jump(amount)
            if reserve_price > self.price:
                self._visible_bid(bidder, reserve_price, True, now)
                self._extend_if_closing(now)
                self._price_changed(now)
            return Decision(True, None, self.lot_id, self.price, self.next_min(), bidder)

        floor = rule.next_up(self.price) if leader else rule.start
        if amount < floor:
            return self._reject(RejectCode.TOO_LOW, floor)
        if not rule.on_ladder(amount):
            return self._reject(RejectCode.OFF_INCREMENT, floor)

        if not leader:
            price = max(floor, self._reserve_jump(amount)) if is_max else amount
            self.leader, self.leader_max = bidder, amount
            self._visible_bid(bidder, price, is_max, now)
        elif amount > self.leader_max:
            old_leader, old_max = leader, self.leader_max
            if old_max > self.price:
                # The old leader's proxy bid up to its maximum before being beaten.
                self._visible_bid(old_leader, old_max, True, now)
            if is_max:
                price = max(min(amount, rule.next_up(old_max)), self._reserve_jump(amount))
            else:
                price = amount
            self.leader, self.leader_max = bidder, amount
            self._visible_bid(bidder, price, is_max, now)
            self.events.append(Outbid(self.lot_id, self.session.session_id, old_leader, price))
        else:
            # The challenger is beaten at once by the leader's hidden maximum (ties go to the leader).
            self._visible_bid(bidder, amount, is_max, now)
            answer = (
                self.leader_max if amount >= self.leader_max else min(self.leader_max, rule.next_up(amount))
            )
            self._visible_bid(leader, answer, True, now)
            self.events.append(Outbid(self.lot_id, self.session.session_id, bidder, answer))
        self._extend_if_closing(now)
        self._price_changed(now)
        return Decision(True, None, self.lot_id, self.price, self.next_min(), self.leader)

    def _reserve_jump(self, maximum: Fen) -> Fen:
        """A maximum at or above the reserve lifts the price straight to the reserve."""
        if self.reserve and maximum >= self.reserve:
            return min(maximum, self.rule.at_or_above(self.reserve))
        return 0

    def _visible_bid(self, bidder: UserId, price: Fen, auto: bool, now: Millis) -> None:
        self.price = price
        self.bids.add(bidder, price, now, auto)
        self.events.append(BidPlaced(self.lot_id, self.session.session_id, bidder, price, auto, now))

    def _price_changed(self, now: Millis) -> None:
        self.events.append(
            PriceChanged(
                self.lot_id,
                self.session.session_id,
                self.price,
                self.leader,
                len(self.bids.prices),
                self.next_min(),
                self.ends_at,
                now,
            )
        )

    def _extend_if_closing(self, now: Millis) -> None:
        window = self.session.soft_close_ms
        if not window or self.ends_at - now >= window:
            return
        new_end = now + window
        hard_end = self.session.hard_end
        if hard_end and new_end > hard_end:
            new_end = hard_end
        if new_end > self.ends_at:
            self.ends_at = new_end
            self.events.append(LotExtended(self.lot_id, self.session.session_id, new_end))

    # -- lifecycle -----------------------------------------------------------------------------
    def move_to(self, target: LotState) -> None:
        self.state = check_transition(LOT_TRANSITIONS, self.state, target)

    def preview(self) -> None:
        self.move_to(LotState.PREVIEW)
        self.events.append(
            LotStateChanged(self.lot_id, self.session.session_id, LotState.PREVIEW, self.ends_at)
        )

    def open(self, now: Millis) -> None:
        self.move_to(LotState.BIDDING)
        if self.ends_at <= now:
            self.ends_at = max(self.session.bidding_end, now + max(self.session.soft_close_ms, 1))
        self.events.append(
            LotStateChanged(self.lot_id, self.session.session_id, LotState.BIDDING, self.ends_at)
        )

    def close(self, now: Millis, reason: str, *, force_unsold: bool = False) -> None:
        sold = (
            not force_unsold
            and self.leader != NO_USER
            and self.state is LotState.BIDDING
            and self.price >= self.reserve
        )
        self.move_to(LotState.SOLD if sold else LotState.UNSOLD)
        self.winner = self.leader if sold else NO_USER
        if now < self.ends_at:
            self.ends_at = now
        self.events.append(
            LotClosed(
                self.lot_id,
                self.session.session_id,
                self.state,
                self.winner,
                self.price,
                len(self.bids.prices),
                now,
                reason,
            )
        )

    def mark_overdue(self) -> None:
        self.move_to(LotState.OVERDUE)
        self.events.append(LotOverdue(self.lot_id, self.session.session_id, self.winner))
