"""Tests for engine.book.states / errors / session: state numbers, the transition tables, session settings."""

from __future__ import annotations

import itertools

import pytest

from engine.book.errors import GavelError, IllegalTransition, InvalidCommand, NotFound, RejectCode
from engine.book.events import Event, SessionStateChanged
from engine.book.increments import FixedIncrement
from engine.book.lot import Lot
from engine.book.session import Session
from engine.book.states import (
    CLOSED_LOT_STATES,
    LOT_TRANSITIONS,
    SESSION_TRANSITIONS,
    LotState,
    SessionState,
    check_transition,
)

# The legal moves, written out from the product spec (not copied from the code).
LEGAL_LOT_MOVES = {
    (LotState.SCHEDULED, LotState.PREVIEW),
    (LotState.SCHEDULED, LotState.BIDDING),  # opened early / no preview
    (LotState.SCHEDULED, LotState.UNSOLD),  # cancelled
    (LotState.PREVIEW, LotState.BIDDING),
    (LotState.PREVIEW, LotState.UNSOLD),  # cancelled
    (LotState.BIDDING, LotState.SOLD),
    (LotState.BIDDING, LotState.UNSOLD),
    (LotState.SOLD, LotState.OVERDUE),
}
LEGAL_SESSION_MOVES = {
    (SessionState.SCHEDULED, SessionState.PREVIEW),
    (SessionState.SCHEDULED, SessionState.ENDED),
    (SessionState.PREVIEW, SessionState.BIDDING),
    (SessionState.PREVIEW, SessionState.ENDED),
    (SessionState.BIDDING, SessionState.ENDED),
}


def test_lot_state_numbers() -> None:
    assert [(s.name, s.value) for s in LotState] == [
        ("SCHEDULED", 1),
        ("PREVIEW", 2),
        ("BIDDING", 3),
        ("SOLD", 4),
        ("UNSOLD", 5),
        ("OVERDUE", 6),
    ]


def test_session_state_numbers() -> None:
    assert [(s.name, s.value) for s in SessionState] == [
        ("SCHEDULED", 1),
        ("PREVIEW", 2),
        ("BIDDING", 3),
        ("ENDED", 4),
    ]


def test_closed_lot_states() -> None:
    assert frozenset({LotState.SOLD, LotState.UNSOLD, LotState.OVERDUE}) == CLOSED_LOT_STATES


def test_tables_cover_every_state() -> None:
    assert set(LOT_TRANSITIONS) == set(LotState)
    assert set(SESSION_TRANSITIONS) == set(SessionState)


@pytest.mark.parametrize(("current", "target"), list(itertools.product(LotState, LotState)))
def test_lot_transition_table(current: LotState, target: LotState) -> None:
    if (current, target) in LEGAL_LOT_MOVES:
        assert check_transition(LOT_TRANSITIONS, current, target) is target
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(LOT_TRANSITIONS, current, target)
        assert info.value.code == "ILLEGAL_STATE"
        assert current.name in info.value.message and target.name in info.value.message


@pytest.mark.parametrize(("current", "target"), list(itertools.product(SessionState, SessionState)))
def test_session_transition_table(current: SessionState, target: SessionState) -> None:
    if (current, target) in LEGAL_SESSION_MOVES:
        assert check_transition(SESSION_TRANSITIONS, current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            check_transition(SESSION_TRANSITIONS, current, target)


def test_closed_lots_are_terminal_except_sold_to_overdue() -> None:
    for state in CLOSED_LOT_STATES:
        allowed = LOT_TRANSITIONS[state]
        assert allowed == (frozenset({LotState.OVERDUE}) if state is LotState.SOLD else frozenset())


# -- errors ---------------------------------------------------------------------------------------
def test_reject_codes_are_stable_strings() -> None:
    assert {code.name: str(code) for code in RejectCode} == {
        name: name
        for name in (
            "NOT_OPEN",
            "CLOSED",
            "NO_DEPOSIT",
            "TOO_LOW",
            "OFF_INCREMENT",
            "SELF_OUTBID",
            "BAD_REQUEST",
            "NOT_FOUND",
            "BLOCKED",
            "PAUSED",
        )
    }


def test_error_codes_and_messages() -> None:
    assert GavelError("x").code == "ERROR"
    assert GavelError("x", code="CUSTOM").code == "CUSTOM"
    assert GavelError("boom").message == "boom"
    assert IllegalTransition("x").code == "ILLEGAL_STATE"
    assert NotFound("x").code == "NOT_FOUND"
    assert InvalidCommand("x").code == "BAD_REQUEST"
    for cls in (IllegalTransition, NotFound, InvalidCommand):
        assert issubclass(cls, GavelError)


# -- sessions -------------------------------------------------------------------------------------
def make_session(*, events: list[Event] | None = None, **overrides: int) -> Session:
    settings = {
        "preview_start": 100,
        "preview_end": 200,
        "bidding_start": 200,
        "bidding_end": 1000,
        "deposit": 0,
        "soft_close_ms": 0,
        "soft_close_cap_ms": 0,
    }
    settings.update(overrides)
    return Session(7, events=[] if events is None else events, **settings)


@pytest.mark.parametrize(
    "overrides",
    [
        {"preview_end": 99},  # preview ends before it starts
        {"bidding_start": 150},  # bidding before preview ends
        {"bidding_end": 200},  # empty bidding window
        {"bidding_end": 150},
        {"deposit": -1},
        {"soft_close_ms": -1},
        {"soft_close_cap_ms": -1},
    ],
)
def test_session_rejects_bad_settings(overrides: dict[str, int]) -> None:
    with pytest.raises(InvalidCommand):
        make_session(events=None, **overrides)


def test_session_accepts_touching_windows() -> None:
    session = make_session(preview_start=200, preview_end=200, bidding_start=200, bidding_end=201)
    assert (session.preview_start, session.bidding_end, session.state) == (200, 201, SessionState.SCHEDULED)


def test_hard_end() -> None:
    assert make_session().hard_end == 0
    assert make_session(soft_close_ms=300, soft_close_cap_ms=500).hard_end == 1500


def test_session_move_records_event() -> None:
    events: list[Event] = []
    session = make_session(events=events)
    session.move_to(SessionState.PREVIEW, 150)
    session.move_to(SessionState.BIDDING, 200)
    assert events == [
        SessionStateChanged(7, SessionState.PREVIEW, 150),
        SessionStateChanged(7, SessionState.BIDDING, 200),
    ]
    with pytest.raises(IllegalTransition):
        session.move_to(SessionState.PREVIEW, 300)
    assert session.state is SessionState.BIDDING
    assert len(events) == 2


def test_session_configurable_until_bidding() -> None:
    session = make_session()
    session.move_to(SessionState.PREVIEW, 100)
    session.configure(
        preview_start=100,
        preview_end=300,
        bidding_start=300,
        bidding_end=900,
        deposit=5,
        soft_close_ms=10,
        soft_close_cap_ms=20,
    )
    assert (session.bidding_start, session.bidding_end, session.deposit) == (300, 900, 5)
    session.move_to(SessionState.BIDDING, 300)
    with pytest.raises(InvalidCommand):
        session.configure(
            preview_start=100,
            preview_end=300,
            bidding_start=300,
            bidding_end=5000,
            deposit=5,
            soft_close_ms=10,
            soft_close_cap_ms=20,
        )
    assert session.bidding_end == 900


def test_lot_move_to_checks_the_table() -> None:
    session = make_session()
    lot = Lot(1, session, FixedIncrement(100, 10), reserve=0, deposit=0, events=[])
    assert lot.state is LotState.SCHEDULED
    with pytest.raises(IllegalTransition):
        lot.move_to(LotState.SOLD)
    assert lot.state is LotState.SCHEDULED
    lot.move_to(LotState.BIDDING)
    lot.move_to(LotState.SOLD)
    lot.move_to(LotState.OVERDUE)
    with pytest.raises(IllegalTransition):
        lot.move_to(LotState.UNSOLD)
    assert lot.state.name == "OVERDUE"
