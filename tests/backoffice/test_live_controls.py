"""The live controls of AdminActions on a real engine: reason required and cleaned, one audit entry
each with the reason and the live lot before and after, refusals as 409 ILLEGAL_STATE."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from backoffice.actions import (
    Actor,
    AdminActions,
    BadTime,
    EngineRefused,
    NonPayer,
    NotAuthorized,
    ReasonRequired,
    control_reason,
)
from engine.book.errors import InvalidInput, NotFound
from engine.book.states import LotState
from engine.clock import FakeClock
from engine.commands import PlaceBid
from engine.engine import Engine
from tests.engine.test_engine import MINUTE, T0, open_session

ADMIN = Actor(1, "root", True, "10.0.0.1", "ui")
BIDDER = Actor(2, "bob", False, "10.0.0.2", "rest")


class Ports:
    def __init__(self) -> None:
        self.audit: list[dict[str, Any]] = []
        self.non_payers: set[int] = set()

    async def record(self, **entry: Any) -> dict[str, Any]:
        self.audit.append(entry)
        return entry

    async def non_payer_state(self, user_id: int) -> dict[str, Any]:
        return {"non_payer": True} if user_id in self.non_payers else {}


@pytest.fixture
async def desk(tmp_path: pathlib.Path) -> AsyncIterator[tuple[AdminActions, Engine, FakeClock, Ports]]:
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", None, sync=False)
    await engine.start()
    await open_session(engine, clock, lots=2)
    ports = Ports()
    port: Any = ports
    actions = AdminActions(
        audit=port,
        catalog=port,
        balances=port,
        engine=engine,
        office=port,
        second_factor=port,
        session_view=dict,
        lot_view=dict,
    )
    yield actions, engine, clock, ports
    await engine.stop(snapshot=False)


def test_a_reason_is_required_cleaned_and_bounded() -> None:
    for empty in (None, "", "   ", "\u200b"):
        with pytest.raises(ReasonRequired):
            control_reason(empty)
    assert control_reason("  wrong\u202e reserve ") == "wrong reserve"
    assert len(control_reason("x" * 500)) == 500
    with pytest.raises(InvalidInput):
        control_reason("x" * 501)
    with pytest.raises(InvalidInput):
        control_reason(42)


async def test_pause_and_resume_audit_once_each_with_the_reason(desk) -> None:
    actions, _engine, clock, ports = desk
    after = await actions.lot_pause(ADMIN, 1, " consignor on the phone ")
    assert after["paused"] is True and after["paused_since"] == T0 + MINUTE
    [entry] = ports.audit
    assert (entry["action"], entry["target"], entry["reason"], entry["surface"]) == (
        "lot.pause",
        "lot:1",
        "consignor on the phone",
        "ui",
    )
    assert entry["before"]["paused"] is False and entry["after"]["paused"] is True
    with pytest.raises(EngineRefused) as refused:
        await actions.lot_pause(ADMIN, 1, "again")
    assert refused.value.code == "ILLEGAL_STATE"
    assert len(ports.audit) == 1  # a refusal records nothing
    clock.advance(60_000)
    resumed = await actions.lot_resume(ADMIN, 1, "cleared")
    assert resumed["paused"] is False and resumed["ends_at"] == T0 + 60 * MINUTE + 60_000
    assert [e["action"] for e in ports.audit] == ["lot.pause", "lot.resume"]


async def test_every_control_needs_an_admin_and_a_reason(desk) -> None:
    actions, _engine, _clock, ports = desk
    with pytest.raises(NotAuthorized):
        await actions.lot_pause(BIDDER, 1, "x")
    with pytest.raises(ReasonRequired):
        await actions.lot_withdraw(ADMIN, 1, "")
    with pytest.raises(ReasonRequired):
        await actions.session_pause(ADMIN, 1, " ")
    with pytest.raises(NotFound):
        await actions.lot_pause(ADMIN, 99, "x")
    assert ports.audit == []


async def test_extend_checks_the_time_and_counts(desk) -> None:
    actions, engine, _clock, ports = desk
    end = engine.book.lots[1].ends_at
    with pytest.raises(BadTime):
        await actions.lot_extend(ADMIN, 1, end, "same end")
    after = await actions.lot_extend(ADMIN, 1, end + 10 * MINUTE, "more time")
    assert (after["ends_at"], after["extensions"]) == (end + 10 * MINUTE, 1)
    assert [(e["action"], e["before"]["ends_at"]) for e in ports.audit] == [("lot.extend", end)]


async def test_withdraw_closes_unsold_and_a_second_withdraw_is_refused(desk) -> None:
    actions, engine, _clock, ports = desk
    assert (await engine.execute(PlaceBid(1, 10, 2500, "a"))).ok
    after = await actions.lot_withdraw(ADMIN, 1, "consignor withdrew")
    assert after["state"] == int(LotState.UNSOLD) and engine.book.lots[1].winner == 0
    with pytest.raises(EngineRefused):
        await actions.lot_withdraw(ADMIN, 1, "again")
    assert [e["action"] for e in ports.audit] == ["lot.withdraw"]


async def test_void_replays_and_records_what_was_voided(desk) -> None:
    actions, engine, _clock, ports = desk
    assert (await engine.execute(PlaceBid(1, 10, 1000, "a"))).ok
    assert (await engine.execute(PlaceBid(1, 11, 9000, "b"))).ok
    after = await actions.bid_void(ADMIN, 1, 1, "meant 1100")
    assert (after["price"], after["leader"], after["bid_count"]) == (1000, 10, 1)
    [entry] = ports.audit
    assert entry["before"]["leader"] == 11
    assert entry["after"]["voided"] == {
        "bid_index": 1,
        "bidder": 11,
        "amount": 9000,
        "is_max": False,
        "at": T0 + MINUTE,
    }
    with pytest.raises(NotFound):
        await actions.bid_void(ADMIN, 1, 5, "none")
    with pytest.raises(EngineRefused):
        await actions.bid_void(ADMIN, 1, 1, "twice")


async def test_session_pause_and_resume_show_every_lot(desk) -> None:
    actions, _engine, _clock, ports = desk
    paused = await actions.session_pause(ADMIN, 1, "fire alarm")
    assert paused["session_id"] == 1 and [lot["paused"] for lot in paused["lots"]] == [True, True]
    with pytest.raises(EngineRefused):
        await actions.session_pause(ADMIN, 1, "again")
    resumed = await actions.session_resume(ADMIN, 1, "all clear")
    assert [lot["paused"] for lot in resumed["lots"]] == [False, False]
    assert [(e["action"], e["target"]) for e in ports.audit] == [
        ("session.pause", "session:1"),
        ("session.resume", "session:1"),
    ]
    with pytest.raises(NotFound):
        await actions.session_pause(ADMIN, 9, "none")


async def test_block_and_unblock_a_bidder_but_not_a_non_payer(desk) -> None:
    actions, engine, _clock, ports = desk
    assert await actions.bidder_block(ADMIN, 10, "shill bidding") == {"user_id": 10, "blocked": True}
    assert (await engine.execute(PlaceBid(1, 10, 1000, "a"))).code == "BLOCKED"
    assert await actions.bidder_unblock(ADMIN, 10, "cleared") == {"user_id": 10, "blocked": False}
    assert (await engine.execute(PlaceBid(1, 10, 1000, "b"))).ok
    ports.non_payers.add(12)
    await actions.bidder_block(ADMIN, 12, "also shilling")
    with pytest.raises(NonPayer):
        await actions.bidder_unblock(ADMIN, 12, "try")
    assert 12 in engine.book.blocked
    assert [(e["action"], e["before"]["blocked"]) for e in ports.audit] == [
        ("bidder.block", False),
        ("bidder.unblock", True),
        ("bidder.block", False),
    ]
    assert cast(str, ports.audit[0]["reason"]) == "shill bidding"
