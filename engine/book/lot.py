"""A lot (拍品) and its bid ladder: the pure decision of every bid.

Proxy bidding follows the second-price rule of the best auction sites: the visible price is the
lowest ladder price that beats the second-highest maximum, capped at the leader's maximum; equal
maxima go to the earlier one. Only the leader's maximum needs keeping, because every other
bidder's maximum has already been beaten by the visible price.
"""

import heapq
import struct
from typing import Final, NamedTuple

from engine.book.errors import IllegalTransition, InvalidCommand, RejectCode
from engine.book.events import (
    BidPlaced,
    BidVoided,
    Event,
    LotClosed,
    LotExtended,
    LotOverdue,
    LotPaused,
    LotStateChanged,
    Outbid,
    PriceChanged,
)
from engine.book.increments import FixedIncrement, IncrementRule
from engine.book.session import NO_DEPOSITORS, Session
from engine.book.states import CLOSED_LOT_STATES, LOT_TRANSITIONS, LotState, check_transition
from engine.book.types import NO_USER, Fen, LotId, Millis, UserId


class Decision(NamedTuple):
    """The book's answer to one bid: accepted, or rejected with a code and the price to beat."""

    accepted: bool
    code: RejectCode | None
    lot_id: LotId
    price: Fen  # visible price after the decision
    next_min: Fen  # lowest price a (non-leading) bidder could now name
    leader: UserId


class BidInput(NamedTuple):
    """One accepted bid as the bidder sent it (what a void replays): `bid_index` is its place in
    the order of acceptance (`index` would shadow tuple.index); a voided one stays, `voided` True."""

    bid_index: int
    bidder: UserId
    amount: Fen
    is_max: bool
    at: Millis
    voided: bool


_LINE: Final = struct.Struct("<qqq")
pack_line: Final = _LINE.pack


class BidHistory:
    """Bid lines packed in one bytearray, three little-endian int64 a bid: price, bidder, time.

    An automatic (proxy) bid stores the bidder negated. 24 bytes a bid instead of an object
    each, and appending is one `+=` of a packed struct on the hot path.
    """

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, bidder: UserId, price: Fen, at: Millis, auto: bool) -> None:
        self.data += pack_line(price, -bidder if auto else bidder, at)

    def __len__(self) -> int:
        return len(self.data) // 24

    def line(self, index: int) -> tuple[UserId, Fen, Millis, bool]:
        """(bidder, price, at, auto) of the index-th bid, oldest first."""
        price, bidder, at = _LINE.unpack_from(self.data, 24 * index)
        return abs(bidder), price, at, bidder < 0

    def lines(self) -> list[tuple[UserId, Fen, Millis, bool]]:
        return [(abs(b), p, t, b < 0) for p, b, t in _LINE.iter_unpack(self.data)]

    @property
    def prices(self) -> list[Fen]:
        return [price for price, _bidder, _at in _LINE.iter_unpack(self.data)]

    def to_bytes(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def from_bytes(cls, data: bytes) -> "BidHistory":
        history = cls()
        history.data += data
        return history


# Shared by every compacted lot, never written through: a compacted lot is closed for good, so
# nothing appends to its (dropped) lines, inputs or voids (only a bidding lot does). With the shared
# `NO_DEPOSITORS` (session.py), a compacted lot holds only its summary: an empty set is 216 bytes,
# an empty history ~90 (docs/engine.md, "Compacting closed lots").
EMPTY_HISTORY: Final = BidHistory()
NO_VOIDS: Final[list[int]] = []

CLOSE_LOT_TIMER: Final = 2  # the book's timer kind for a lot's end (see book.py)
_new: Final = tuple.__new__  # builds a NamedTuple without its Python-level __new__: the hot path's main cost
# What the hot path refers to, as Final module constants: compiled (mypyc) they live in C statics
# instead of being looked up in the module's dict at every use; interpreted, Final costs nothing.
_BIDDING: Final = LotState.BIDDING
_SCHEDULED: Final = LotState.SCHEDULED
_PREVIEW: Final = LotState.PREVIEW
_DECISION: Final = Decision
_BID_PLACED: Final = BidPlaced
_OUTBID: Final = Outbid
_PRICE_CHANGED: Final = PriceChanged
_TOO_LOW: Final = RejectCode.TOO_LOW
_OFF_INCREMENT: Final = RejectCode.OFF_INCREMENT
_NOT_OPEN: Final = RejectCode.NOT_OPEN
_CLOSED: Final = RejectCode.CLOSED
_NO_DEPOSIT: Final = RejectCode.NO_DEPOSIT
_SELF_OUTBID: Final = RejectCode.SELF_OUTBID
_PAUSED: Final = RejectCode.PAUSED


class Lot:
    __slots__ = (
        "bid_count",
        "bids",
        "compacted",
        "deposit",
        "depositors",
        "ends_at",
        "events",
        "extensions",
        "gated",
        "input_log",
        "leader",
        "leader_max",
        "lot_id",
        "lot_key",
        "paused_since",
        "paused_total",
        "price",
        "quiet",
        "replayable",
        "reserve",
        "rule",
        "session",
        "session_id",
        "session_key",
        "state",
        "timers",
        "unit",
        "voided",
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
        self.session_id = session.session_id
        # lot_id and session_id as objects, for the events the hot path builds (see `place`).
        self.lot_key: object = lot_id
        self.session_key: object = session.session_id
        self.rule = rule
        self.unit: Fen = 0
        self.set_rule(rule)
        self.reserve = reserve
        self.deposit = deposit
        self.events = events
        # Replay of records whose events nobody will read sets this: `place` then builds none.
        self.quiet = False
        self.state = LotState.SCHEDULED
        self.ends_at: Millis = session.bidding_end
        self.price: Fen = 0
        self.leader: UserId = NO_USER
        self.leader_max: Fen = 0
        self.winner: UserId = NO_USER
        self.bid_count = 0
        # Most lots take no per-lot deposit: they share the empty set until one is registered.
        self.depositors: set[UserId] = NO_DEPOSITORS
        self.bids = BidHistory()
        # Every accepted bid input as sent (amount, bidder negated for a maximum, time), in the
        # same packed form as `bids`: what a void replays. `voided`: indexes voided, ascending.
        self.input_log = BidHistory()
        self.voided: list[int] = []
        # Admin controls: when the lot was paused (0: it is not), the time held by earlier pauses
        # (the soft-close cap moves by it too), and extensions so far (soft close and admin).
        self.paused_since: Millis = 0
        self.paused_total: Millis = 0
        self.extensions = 0
        # False for a lot loaded from a snapshot older than `input_log` with bids in it: those
        # bids were never logged as inputs, so no void can replay them.
        self.replayable = True
        # True once the lot is closed and its history handed to the archive (`compact`).
        self.compacted = False
        # The book's timer heap: an extension pushes the lot's new end itself.
        self.timers: list[tuple[Millis, int, int]] = []
        self.gated = False
        self.refresh_gating()

    def refresh_gating(self) -> None:
        """Whether bidding needs a deposit (per lot or per session); cached for the hot path."""
        self.gated = bool(self.deposit or self.session.deposit)

    def set_rule(self, rule: IncrementRule) -> None:
        self.rule = rule
        # A fixed unit is inlined on the hot path; other rules go through their methods.
        self.unit = rule.unit if isinstance(rule, FixedIncrement) else 0

    # -- reading -------------------------------------------------------------------------------
    def next_min(self) -> Fen:
        """The lowest price a new challenger may name now."""
        if not self.leader:
            return self.rule.start
        return self.price + self.unit if self.unit else self.rule.next_up(self.price)

    def may_bid(self, bidder: UserId) -> bool:
        """Deposit gating: a paid per-lot deposit or the session deposit, when any is required."""
        if bidder in self.depositors or bidder in self.session.depositors:
            return True
        return self.deposit == 0 and self.session.deposit == 0

    # -- deciding ------------------------------------------------------------------------------
    def _reject(self, code: RejectCode, next_min: Fen | None = None) -> Decision:
        return _new(
            _DECISION,
            (
                False,
                code,
                self.lot_key,
                self.price,
                self.next_min() if next_min is None else next_min,
                self.leader,
            ),
        )

    def place(self, bidder: UserId, amount: Fen, is_max: bool, now: Millis) -> Decision:
        """Decide a plain bid (`is_max` False) at `amount`, or a maximum (proxy) bid up to it.

        Written flat on purpose: it runs for every bid, and each call or object costs here.
        """
        if self.state is not _BIDDING or self.paused_since:
            if self.state in (_SCHEDULED, _PREVIEW):
                return self._reject(_NOT_OPEN)
            if self.state is _BIDDING:
                return self._reject(_PAUSED)
            return self._reject(_CLOSED)
        if now >= self.ends_at:
            return self._reject(_CLOSED)
        if self.gated and not (bidder in self.depositors or bidder in self.session.depositors):
            return self._reject(_NO_DEPOSIT)
        unit = self.unit
        rule = self.rule
        leader = self.leader
        price = self.price
        if bidder == leader:
            if not is_max:
                return self._reject(_SELF_OUTBID)
            raise_floor = self.leader_max + unit if unit else rule.next_up(self.leader_max)
            if amount < raise_floor:
                return self._reject(_TOO_LOW, raise_floor)
            if not rule.on_ladder(amount):
                return self._reject(_OFF_INCREMENT, raise_floor)
            self.leader_max = amount
            self.input_log.data += pack_line(amount, -bidder, now)
            reserve_price = self._reserve_jump(amount)
            if reserve_price > price:
                self._visible_bid(bidder, reserve_price, True, now)
                self._extend_if_closing(now)
                self._price_changed(now)
            return _new(_DECISION, (True, None, self.lot_id, self.price, self.next_min(), bidder))

        if leader:
            floor = price + unit if unit else rule.next_up(price)
        else:
            floor = rule.start
        if amount < floor:
            return self._reject(_TOO_LOW, floor)
        if unit:
            if (amount - floor) % unit:
                return self._reject(_OFF_INCREMENT, floor)
        elif not rule.on_ladder(amount):
            return self._reject(_OFF_INCREMENT, floor)

        events = self.events
        record = not self.quiet
        bids = self.bids
        # The values that go into several events, as objects once: compiled (mypyc), every use of
        # an `int` as an object (in a tuple, as an argument) boxes it into a new Python int.
        lot_id: object = self.lot_key
        session_id: object = self.session_key
        at: object = now
        who: object = bidder
        named: object = amount
        # The input as sent; for a plain bid (and a challenger beaten at once) it is also the
        # bidder's own history line, so it is packed once and appended to both.
        entry = pack_line(named, -bidder if is_max else who, at)
        self.input_log.data += entry
        if not leader:
            price = max(floor, self._reserve_jump(amount)) if is_max else amount
            self.leader = leader = bidder
            self.leader_max = amount
            shown: object = price
            bids.data += pack_line(shown, -bidder, at) if is_max else entry
            if record:
                events.append(_new(_BID_PLACED, (lot_id, session_id, who, shown, is_max, at)))
            count = 1
            lead = who
        elif amount > self.leader_max:
            old_max = self.leader_max
            count = 1
            if old_max > price:
                # The old leader's proxy bid up to its maximum before being beaten.
                beaten: object = old_max
                bids.data += pack_line(beaten, -leader, at)
                if record:
                    events.append(_new(_BID_PLACED, (lot_id, session_id, leader, beaten, True, at)))
                count = 2
            if is_max:
                price = min(amount, old_max + unit if unit else rule.next_up(old_max))
                if self.reserve:
                    price = max(price, self._reserve_jump(amount))
            else:
                price = amount
            shown = price
            bids.data += pack_line(shown, -bidder, at) if is_max else entry
            if record:
                events.append(_new(_BID_PLACED, (lot_id, session_id, who, shown, is_max, at)))
                events.append(_new(_OUTBID, (lot_id, session_id, leader, shown)))
            self.leader = leader = bidder
            self.leader_max = amount
            lead = who
        else:
            # The challenger is beaten at once by the leader's hidden maximum (ties go to the leader).
            leader_max = self.leader_max
            if amount >= leader_max:
                price = leader_max
            else:
                price = min(leader_max, amount + unit if unit else rule.next_up(amount))
            shown = price
            lead = leader
            bids.data += entry
            bids.data += pack_line(shown, -leader, at)
            if record:
                events.append(_new(_BID_PLACED, (lot_id, session_id, who, named, is_max, at)))
                events.append(_new(_BID_PLACED, (lot_id, session_id, lead, shown, True, at)))
                events.append(_new(_OUTBID, (lot_id, session_id, who, shown)))
            count = 2
        self.price = price
        self.bid_count = bid_count = self.bid_count + count
        window = self.session.soft_close_ms
        if window and self.ends_at - now < window:
            self._extend(now + window)
        next_min: object = price + unit if unit else rule.next_up(price)
        if record:
            events.append(
                _new(_PRICE_CHANGED, (lot_id, session_id, shown, lead, bid_count, next_min, self.ends_at, at))
            )
        return _new(_DECISION, (True, None, lot_id, shown, next_min, lead))

    def _reserve_jump(self, maximum: Fen) -> Fen:
        """A maximum at or above the reserve lifts the price straight to the reserve."""
        if self.reserve and maximum >= self.reserve:
            return min(maximum, self.rule.at_or_above(self.reserve))
        return 0

    def _visible_bid(self, bidder: UserId, price: Fen, auto: bool, now: Millis) -> None:
        self.price = price
        self.bid_count += 1
        self.bids.add(bidder, price, now, auto)
        if not self.quiet:
            self.events.append(BidPlaced(self.lot_id, self.session_id, bidder, price, auto, now))

    def _price_changed(self, now: Millis) -> None:
        if self.quiet:
            return
        self.events.append(
            PriceChanged(
                self.lot_id,
                self.session_id,
                self.price,
                self.leader,
                self.bid_count,
                self.next_min(),
                self.ends_at,
                now,
            )
        )

    def _extend_if_closing(self, now: Millis) -> None:
        window = self.session.soft_close_ms
        if window and self.ends_at - now < window:
            self._extend(now + window)

    def _extend(self, new_end: Millis) -> None:
        hard_end = self.session.hard_end
        if hard_end:
            hard_end += self.paused_total  # a pause gives the time back, up to the cap too
            if new_end > hard_end:
                new_end = hard_end
        if new_end > self.ends_at:
            self.ends_at = new_end
            self.extensions += 1
            heapq.heappush(self.timers, (new_end, CLOSE_LOT_TIMER, self.lot_id))
            self.events.append(LotExtended(self.lot_id, self.session_id, new_end))

    # -- lifecycle -----------------------------------------------------------------------------
    def move_to(self, target: LotState) -> None:
        self.state = check_transition(LOT_TRANSITIONS, self.state, target)

    def preview(self) -> None:
        self.move_to(LotState.PREVIEW)
        self.events.append(LotStateChanged(self.lot_id, self.session_id, LotState.PREVIEW, self.ends_at))

    def open(self, now: Millis) -> None:
        # A lot opened late (after a recovery) keeps its end: if that has passed, it closes at once.
        self.move_to(LotState.BIDDING)
        self.events.append(LotStateChanged(self.lot_id, self.session_id, LotState.BIDDING, self.ends_at))

    def close(self, now: Millis, reason: str, *, force_unsold: bool = False) -> None:
        sold = (
            not force_unsold
            and self.leader != NO_USER
            and self.state is LotState.BIDDING
            and self.price >= self.reserve
        )
        self.move_to(LotState.SOLD if sold else LotState.UNSOLD)
        self.paused_since = 0
        self.winner = self.leader if sold else NO_USER
        if now < self.ends_at:
            self.ends_at = now
        self.events.append(
            LotClosed(
                self.lot_id,
                self.session_id,
                self.state,
                self.winner,
                self.price,
                self.bid_count,
                now,
                reason,
            )
        )

    def mark_overdue(self) -> None:
        self.move_to(LotState.OVERDUE)
        self.events.append(LotOverdue(self.lot_id, self.session_id, self.winner))

    # -- admin controls ------------------------------------------------------------------------
    def pause(self, now: Millis, reason: str) -> None:
        """Hold a bidding lot: bids get PAUSED and its close timer does not close it."""
        if self.state is not LotState.BIDDING or now >= self.ends_at:
            raise IllegalTransition(f"lot {self.lot_id} is not bidding: only a bidding lot can be paused")
        if self.paused_since:
            raise IllegalTransition(f"lot {self.lot_id} is paused already")
        self.paused_since = max(now, 1)  # 0 means running
        self.events.append(LotPaused(self.lot_id, self.session_id, True, self.ends_at, now, reason))

    def resume(self, now: Millis) -> None:
        """Release a paused lot: its end moves later by the time it was held, so bidders get back
        the time they lost, and a new close timer is pushed for it."""
        if self.state is not LotState.BIDDING or not self.paused_since:
            raise IllegalTransition(f"lot {self.lot_id} is not paused")
        held = max(now - self.paused_since, 0)
        self.paused_since = 0
        if held:
            self.paused_total += held
            self.ends_at += held
            heapq.heappush(self.timers, (self.ends_at, CLOSE_LOT_TIMER, self.lot_id))
        self.events.append(LotPaused(self.lot_id, self.session_id, False, self.ends_at, now, ""))

    def extend_to(self, new_end: Millis, now: Millis) -> None:
        """An admin's extension: a later end, in the future, for a lot that has not closed."""
        if self.state in CLOSED_LOT_STATES:
            raise IllegalTransition(f"lot {self.lot_id} has closed: it cannot be extended")
        if new_end <= self.ends_at or new_end <= now:
            raise InvalidCommand("the new end must be later than the lot's current end and in the future")
        self.ends_at = new_end
        self.extensions += 1
        heapq.heappush(self.timers, (new_end, CLOSE_LOT_TIMER, self.lot_id))
        self.events.append(LotExtended(self.lot_id, self.session_id, new_end))

    def compact(self) -> None:
        """Drop what only the lot's past needs: its bid lines, its inputs and its depositors.

        Only a closed lot is compacted (docs/engine.md, "Compacting closed lots"): what decides anything
        later (state, price, winner, count, end) stays, so a bid is still refused CLOSED, a late
        MarkOverdue still moves it, and readers find the history in the archive in MongoDB. What is
        dropped is replaced by the shared empty objects, so a compacted lot holds only its summary.
        """
        if self.state not in CLOSED_LOT_STATES:
            raise IllegalTransition(f"lot {self.lot_id} is not closed: it cannot be compacted")
        self.bids = EMPTY_HISTORY
        self.input_log = EMPTY_HISTORY
        self.voided = NO_VOIDS
        self.depositors = NO_DEPOSITORS
        self.replayable = False
        self.compacted = True

    def inputs(self) -> list[BidInput]:
        """Every accepted bid input, oldest first, the voided ones marked."""
        voided = set(self.voided)
        return [
            BidInput(index, bidder, amount, auto, at, index in voided)
            for index, (bidder, amount, at, auto) in enumerate(self.input_log.lines())
        ]

    def void(self, index: int, now: Millis, reason: str) -> None:
        """Void the `index`-th accepted input of a bidding (or paused) lot: price, leader, maximum,
        count and history become what the other inputs give replayed in order at their original
        times; the end does not move. Then `BidVoided` and `PriceChanged` tell the bidders."""
        if self.state is not LotState.BIDDING:
            raise IllegalTransition(f"lot {self.lot_id} is not bidding: its bids can no longer be voided")
        if not self.replayable:
            raise IllegalTransition(f"lot {self.lot_id} holds bids from before bid inputs were kept")
        if not 0 <= index < len(self.input_log):
            raise InvalidCommand(f"lot {self.lot_id} has no bid {index}")
        if index in self.voided:
            raise IllegalTransition(f"bid {index} of lot {self.lot_id} is voided already")
        bidder = self.input_log.line(index)[0]
        old_leader = self.leader
        self.voided.append(index)
        self.voided.sort()
        self.replay_inputs()
        next_min = self.next_min()
        self.events.append(
            BidVoided(
                self.lot_id,
                self.session_id,
                index,
                bidder,
                old_leader,
                self.price,
                self.leader,
                self.bid_count,
                next_min,
                self.ends_at,
                now,
                reason,
            )
        )
        self.events.append(
            PriceChanged(
                self.lot_id,
                self.session_id,
                self.price,
                self.leader,
                self.bid_count,
                next_min,
                self.ends_at,
                now,
            )
        )

    def replay_inputs(self) -> None:
        """Rebuild the bidding state from the inputs not voided, quietly (no events, no move of
        the end, no extension counted): exactly what a fresh lot given those inputs would hold."""
        log = self.input_log
        ends_at, extensions, paused_since, quiet = (
            self.ends_at,
            self.extensions,
            self.paused_since,
            self.quiet,
        )
        mark = len(self.events)
        voided = set(self.voided)
        self.input_log = BidHistory()
        self.bids = BidHistory()
        self.price = 0
        self.leader = NO_USER
        self.leader_max = 0
        self.bid_count = 0
        self.paused_since = 0
        self.quiet = True
        try:
            for index, (bidder, amount, at, is_max) in enumerate(log.lines()):
                if index not in voided:
                    self.place(bidder, amount, is_max, at)
        finally:
            self.input_log = log
            self.ends_at, self.extensions, self.paused_since, self.quiet = (
                ends_at,
                extensions,
                paused_since,
                quiet,
            )
            del self.events[mark:]
