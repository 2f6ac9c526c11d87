"""Commands the engine accepts. Immutable; each has a stable journal tag.

A journal record is msgpack `[tag, at, *fields]`: `at` is the clock reading the engine applied
the command with, so a replay applies it with the very same time.
"""

from typing import NamedTuple, TypeAlias

from engine.book.lot import Decision
from engine.book.types import Fen, LotId, Millis, SessionId, UserId


class PutSession(NamedTuple):
    session_id: SessionId
    preview_start: Millis
    preview_end: Millis
    bidding_start: Millis
    bidding_end: Millis
    deposit: Fen = 0
    soft_close_ms: Millis = 0
    soft_close_cap_ms: Millis = 0


class PutLot(NamedTuple):
    lot_id: LotId
    session_id: SessionId
    rule: list[object]  # an increment rule spec, e.g. ["fixed", start, unit]
    reserve: Fen = 0
    deposit: Fen = 0


class RegisterDeposit(NamedTuple):
    session_id: SessionId
    lot_id: LotId | None
    user_id: UserId


class PlaceBid(NamedTuple):
    lot_id: LotId
    user_id: UserId
    price: Fen
    ref: str = ""


class SetMaxBid(NamedTuple):
    lot_id: LotId
    user_id: UserId
    max: Fen
    ref: str = ""


class OpenLot(NamedTuple):
    lot_id: LotId


class CloseLot(NamedTuple):
    lot_id: LotId


class CancelLot(NamedTuple):
    lot_id: LotId
    reason: str


class MarkOverdue(NamedTuple):
    lot_id: LotId


class BlockBidder(NamedTuple):
    user_id: UserId


class UnblockBidder(NamedTuple):
    user_id: UserId


class PauseLot(NamedTuple):
    """Hold a bidding lot: bids are refused with PAUSED and its end does not come while held."""

    lot_id: LotId
    reason: str


class ResumeLot(NamedTuple):
    """Release a paused lot; its end moves later by the time it was held."""

    lot_id: LotId


class PauseSession(NamedTuple):
    """Pause every lot of the session that is bidding (and not paused) now."""

    session_id: SessionId
    reason: str


class ResumeSession(NamedTuple):
    """Resume every paused lot of the session."""

    session_id: SessionId


class ExtendLot(NamedTuple):
    """Move an open (or not yet open) lot's end later, to `ends_at_ms`."""

    lot_id: LotId
    ends_at_ms: Millis


class VoidBid(NamedTuple):
    """Void the lot's `bid_index`-th accepted bid input; the rest are replayed in order."""

    lot_id: LotId
    bid_index: int
    reason: str


class CompactLots(NamedTuple):
    """Drop the bid history of closed lots whose bids are archived and whose outcome is settled
    (`engine.compaction` decides which); journaled, so a replay compacts at the same point."""

    lot_ids: list[LotId]


class Tick(NamedTuple):
    """Time moved on: fire due timers. Issued by the engine's scheduler, journaled like any other."""


Command: TypeAlias = (
    PutSession
    | PutLot
    | RegisterDeposit
    | PlaceBid
    | SetMaxBid
    | OpenLot
    | CloseLot
    | CancelLot
    | MarkOverdue
    | BlockBidder
    | UnblockBidder
    | PauseLot
    | ResumeLot
    | PauseSession
    | ResumeSession
    | ExtendLot
    | VoidBid
    | CompactLots
    | Tick
)

# Journal tags: never renumber (old journals must replay).
TAGS: dict[type[Command], int] = {
    PlaceBid: 1,
    SetMaxBid: 2,
    Tick: 3,
    RegisterDeposit: 4,
    PutSession: 10,
    PutLot: 11,
    OpenLot: 12,
    CloseLot: 13,
    CancelLot: 14,
    MarkOverdue: 15,
    BlockBidder: 16,
    UnblockBidder: 17,
    PauseLot: 18,
    ResumeLot: 19,
    PauseSession: 20,
    ResumeSession: 21,
    ExtendLot: 22,
    VoidBid: 23,
    CompactLots: 24,
}
BY_TAG: dict[int, type[Command]] = {tag: kind for kind, tag in TAGS.items()}


class Outcome(NamedTuple):
    """The engine's answer to one command, released only once its journal record is durable."""

    ok: bool
    code: str | None  # a RejectCode or GavelError code when not ok
    message: str
    seq: int  # the journal sequence of the command's record; 0 when nothing was journaled
    decision: Decision | None  # for bids
