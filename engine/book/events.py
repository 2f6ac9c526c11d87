"""Immutable domain events recorded by the book. NamedTuples: cheap to build on the hot path."""

from typing import NamedTuple, TypeAlias

from engine.book.states import LotState, SessionState
from engine.book.types import Fen, LotId, Millis, SessionId, UserId


class BidPlaced(NamedTuple):
    """One line of a lot's bid history; `auto` marks a bid the engine placed for a maximum."""

    lot_id: LotId
    session_id: SessionId
    bidder: UserId
    price: Fen
    auto: bool
    at: Millis


class PriceChanged(NamedTuple):
    lot_id: LotId
    session_id: SessionId
    price: Fen
    leader: UserId
    bid_count: int
    next_min: Fen
    ends_at: Millis
    at: Millis


class Outbid(NamedTuple):
    """`bidder` no longer leads `lot_id`; `price` is the new visible price."""

    lot_id: LotId
    session_id: SessionId
    bidder: UserId
    price: Fen


class LotExtended(NamedTuple):
    lot_id: LotId
    session_id: SessionId
    ends_at: Millis


class LotStateChanged(NamedTuple):
    """A lot moved to preview or bidding (opening); closing is `LotClosed`."""

    lot_id: LotId
    session_id: SessionId
    state: LotState
    ends_at: Millis


class LotClosed(NamedTuple):
    lot_id: LotId
    session_id: SessionId
    result: LotState  # SOLD or UNSOLD
    winner: UserId  # NO_USER when unsold
    price: Fen  # deal price when sold, last visible price (or 0) when unsold
    bid_count: int
    at: Millis
    reason: str  # "ended", "closed_early", "cancelled: <reason>"


class SessionStateChanged(NamedTuple):
    session_id: SessionId
    state: SessionState
    at: Millis


class LotOverdue(NamedTuple):
    lot_id: LotId
    session_id: SessionId
    winner: UserId


class LotPaused(NamedTuple):
    """An admin paused (`paused` True) or resumed a lot; a resume carries the lot's later end."""

    lot_id: LotId
    session_id: SessionId
    paused: bool
    ends_at: Millis
    at: Millis
    reason: str


class BidVoided(NamedTuple):
    """An admin voided the lot's `bid_index`-th accepted bid input (by `bidder`); the lot's state was
    rebuilt by replaying the other inputs. `old_leader` led before the void, `leader` leads now."""

    lot_id: LotId
    session_id: SessionId
    bid_index: int
    bidder: UserId
    old_leader: UserId
    price: Fen
    leader: UserId
    bid_count: int
    next_min: Fen
    ends_at: Millis
    at: Millis
    reason: str


Event: TypeAlias = (
    BidPlaced
    | PriceChanged
    | Outbid
    | LotExtended
    | LotStateChanged
    | LotClosed
    | SessionStateChanged
    | LotOverdue
    | LotPaused
    | BidVoided
)
