"""Which admin controls are legal for a lot or a session right now (pure; what the monitor offers).

The engine refuses anything else anyway (`IllegalTransition`); these say so before anyone asks.
"""

from collections.abc import Iterable

from engine.book.lot import Lot
from engine.book.session import Session
from engine.book.states import CLOSED_LOT_STATES, LotState

LOT_CONTROLS = frozenset({"pause", "resume", "extend", "withdraw", "void"})
SESSION_CONTROLS = frozenset({"pause", "resume"})


def legal_lot_controls(lot: Lot, now: int | None = None) -> frozenset[str]:
    """A subset of LOT_CONTROLS. A closed lot has none; a lot not yet open may be extended or
    withdrawn; a bidding lot also pauses (or, paused, resumes) and has bids to void when any input
    is not voided yet. `now`, when given, makes a bidding lot whose end has passed (its close is
    due) offer nothing but what its close will not undo."""
    if lot.state in CLOSED_LOT_STATES:
        return frozenset()
    if lot.state is not LotState.BIDDING:
        return frozenset({"extend", "withdraw"})
    legal = {"extend", "withdraw"}
    if lot.paused_since:
        legal.add("resume")
    elif now is None or now < lot.ends_at:
        legal.add("pause")
    if lot.replayable and len(lot.voided) < len(lot.input_log):
        legal.add("void")
    return frozenset(legal)


def legal_session_controls(session: Session, lots: Iterable[Lot], now: int | None = None) -> frozenset[str]:
    """ "pause" when a lot of the session is bidding and not paused, "resume" when one is paused."""
    legal: set[str] = set()
    for lot in lots:
        if lot.session_id != session.session_id or lot.state is not LotState.BIDDING:
            continue
        if lot.paused_since:
            legal.add("resume")
        elif now is None or now < lot.ends_at:
            legal.add("pause")
    return frozenset(legal)
