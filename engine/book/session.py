"""An auction session (专场): its timetable, whole-session deposit holders and soft-close rule."""

from typing import Final

from engine.book.errors import InvalidCommand
from engine.book.events import Event, SessionStateChanged
from engine.book.states import SESSION_TRANSITIONS, SessionState, check_transition
from engine.book.types import Fen, LotId, Millis, SessionId, UserId

# The empty depositors' set shared by every session and lot that holds none (most lots take no
# per-lot deposit; an ended, compacted session has let its depositors go). Never added to in place:
# `Book.register_deposit` gives a session or lot its own set before the first depositor.
NO_DEPOSITORS: Final[set[UserId]] = set()


class Session:
    __slots__ = (
        "bidding_end",
        "bidding_start",
        "deposit",
        "depositors",
        "events",
        "lot_ids",
        "preview_end",
        "preview_start",
        "session_id",
        "soft_close_cap_ms",
        "soft_close_ms",
        "state",
    )

    def __init__(
        self,
        session_id: SessionId,
        *,
        preview_start: Millis,
        preview_end: Millis,
        bidding_start: Millis,
        bidding_end: Millis,
        deposit: Fen,
        soft_close_ms: Millis,
        soft_close_cap_ms: Millis,
        events: list[Event],
    ) -> None:
        self.session_id = session_id
        self.state = SessionState.SCHEDULED
        self.depositors: set[UserId] = NO_DEPOSITORS
        self.lot_ids: list[LotId] = []
        self.events = events
        self.preview_start = self.preview_end = self.bidding_start = self.bidding_end = 0
        self.deposit = self.soft_close_ms = self.soft_close_cap_ms = 0
        self.configure(
            preview_start=preview_start,
            preview_end=preview_end,
            bidding_start=bidding_start,
            bidding_end=bidding_end,
            deposit=deposit,
            soft_close_ms=soft_close_ms,
            soft_close_cap_ms=soft_close_cap_ms,
        )

    def configure(
        self,
        *,
        preview_start: Millis,
        preview_end: Millis,
        bidding_start: Millis,
        bidding_end: Millis,
        deposit: Fen,
        soft_close_ms: Millis,
        soft_close_cap_ms: Millis,
    ) -> None:
        if self.state not in (SessionState.SCHEDULED, SessionState.PREVIEW):
            raise InvalidCommand("a session can be changed only before bidding starts")
        if not preview_start <= preview_end <= bidding_start < bidding_end:
            raise InvalidCommand(
                "times must satisfy preview_start <= preview_end <= bidding_start < bidding_end"
            )
        if deposit < 0 or soft_close_ms < 0 or soft_close_cap_ms < 0:
            raise InvalidCommand("deposit and soft-close settings must not be negative")
        self.preview_start = preview_start
        self.preview_end = preview_end
        self.bidding_start = bidding_start
        self.bidding_end = bidding_end
        self.deposit = deposit
        self.soft_close_ms = soft_close_ms
        self.soft_close_cap_ms = soft_close_cap_ms

    @property
    def hard_end(self) -> Millis:
        """The latest a lot may be extended to; 0 when extensions are uncapped."""
        return self.bidding_end + self.soft_close_cap_ms if self.soft_close_cap_ms else 0

    def move_to(self, target: SessionState, now: Millis) -> None:
        self.state = check_transition(SESSION_TRANSITIONS, self.state, target)
        self.events.append(SessionStateChanged(self.session_id, target, now))
