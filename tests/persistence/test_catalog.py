"""The catalogue against a real MongoDB and a real engine: two-step writes, repair, and the read model."""

import asyncio
import dataclasses
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.errors import GavelError, NotFound
from engine.book.states import LotState, SessionState
from engine.clock import FakeClock
from engine.commands import OpenLot, PlaceBid
from engine.engine import Engine
from persistence.accounts import InvalidInput
from persistence.catalog import AlreadyStarted, Catalog, CatalogueNoTaken, LotSpec, SessionSpec, Spec
from persistence.mongo import Database, connect, ensure_indexes, from_ms

START = 1_800_000_000_000
HOUR = 3_600_000


@pytest.fixture
async def db(mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Database]:
    client = connect(mongo_url)
    database = client[mongo_db.name]
    await ensure_indexes(database)
    try:
        yield database
    finally:
        await client.close()


@pytest.fixture
async def engine(tmp_path: pathlib.Path) -> AsyncIterator[Engine]:
    running = Engine(FakeClock(START), tmp_path / "journal", None, sync=False)
    await running.start()
    try:
        yield running
    finally:
        await running.stop(snapshot=False)


@pytest.fixture
def catalog(db: Database, engine: Engine) -> Catalog:
    return Catalog(db, engine, lambda session_id, user_id: f"P{session_id}-{user_id}" if user_id else "")


def session_spec(**overrides: Any) -> SessionSpec:
    spec = SessionSpec(
        title="Porcelain",
        preview_start=from_ms(START + HOUR),
        preview_end=from_ms(START + 2 * HOUR),
        bidding_start=from_ms(START + 2 * HOUR),
        bidding_end=from_ms(START + 3 * HOUR),
        deposit=1_000,
        soft_close_seconds=30,
        soft_close_cap_seconds=300,
    )
    return dataclasses.replace(spec, **overrides)


def lot_spec(**overrides: Any) -> LotSpec:
    spec = LotSpec(
        catalogue_no="A1", title="Vase", start_price=1_000, unit=100, deposit=200, highest_price=9_000
    )
    return dataclasses.replace(spec, **overrides)


async def test_writes_reach_the_engine(catalog: Catalog, engine: Engine, db: Database) -> None:
    session = await catalog.create_session(session_spec())
    session_id = session["_id"]
    live = engine.book.sessions[session_id]
    assert (live.bidding_start, live.deposit, live.soft_close_ms) == (START + 2 * HOUR, 1_000, 30_000)
    lot = await catalog.create_lot(session_id, lot_spec(specs=(Spec("材质", "瓷"),)))
    assert engine.book.lots[lot["_id"]].deposit == 200
    stored = await db.lots.find_one({"_id": lot["_id"]})
    assert (
        stored is not None and stored["engine_synced"] and stored["specs"] == [{"key": "材质", "value": "瓷"}]
    )
    with pytest.raises(CatalogueNoTaken):
        await catalog.create_lot(session_id, lot_spec())
    with pytest.raises(NotFound):
        await catalog.create_lot(999, lot_spec(catalogue_no="B"))
    with pytest.raises(InvalidInput):
        await catalog.create_lot(session_id, lot_spec(catalogue_no="C", unit=None))
    with pytest.raises(InvalidInput):
        await catalog.create_session(session_spec(bidding_end=from_ms(START - 1)))

    updated = await catalog.update_lot(lot["_id"], {"increment_bands": ((5_000, 100), (None, 500))})
    assert updated["increment_bands"] == [[5_000, 100], [None, 500]]
    assert engine.book.lots[lot["_id"]].rule.spec() == ["banded", 1_000, [[5_000, 100], [None, 500]]]


async def test_a_refusing_engine_leaves_no_metadata(catalog: Catalog, engine: Engine, db: Database) -> None:
    session = await catalog.create_session(session_spec())
    await engine.stop(snapshot=False)
    with pytest.raises(GavelError) as refused:
        await catalog.create_session(session_spec(title="Never"))
    assert refused.value.code == "UNAVAILABLE"
    assert await db.sessions.count_documents({"title": "Never"}) == 0
    with pytest.raises(GavelError):
        await catalog.update_session(session["_id"], {"title": "Changed"})
    stored = await db.sessions.find_one({"_id": session["_id"]})
    assert stored is not None and stored["title"] == "Porcelain" and stored["engine_synced"]


async def test_unsynced_writes_are_replayed_at_start(catalog: Catalog, engine: Engine, db: Database) -> None:
    # As if the process died between the metadata insert and the engine command.
    doc = {"_id": 41, **session_spec().document(), "engine_synced": False}
    await db.sessions.insert_one(doc)
    await db.lots.insert_one({"_id": 42, "session_id": 41, **lot_spec().document(), "engine_synced": False})
    assert 41 not in engine.book.sessions
    assert await catalog.resubmit_unsynced() == 2
    assert engine.book.lots[42].session.session_id == 41
    assert await db.sessions.count_documents({"engine_synced": False}) == 0
    assert await db.lots.count_documents({"engine_synced": False}) == 0
    assert await catalog.resubmit_unsynced() == 0


async def test_no_changes_once_started(catalog: Catalog, engine: Engine) -> None:
    session_id = (await catalog.create_session(session_spec()))["_id"]
    lot_id = (await catalog.create_lot(session_id, lot_spec()))["_id"]
    assert (await engine.execute(OpenLot(lot_id))).ok
    with pytest.raises(AlreadyStarted):
        await catalog.update_session(session_id, {"deposit": 5})
    with pytest.raises(AlreadyStarted):
        await catalog.update_lot(lot_id, {"deposit": 5})
    assert engine.book.sessions[session_id].deposit == 1_000


async def test_read_model(catalog: Catalog, engine: Engine, db: Database) -> None:
    session_id = (await catalog.create_session(session_spec(deposit=0)))["_id"]
    lot_id = (await catalog.create_lot(session_id, lot_spec(deposit=0, reserve_price=1_500)))["_id"]
    assert (await engine.execute(OpenLot(lot_id))).ok
    assert (await engine.execute(PlaceBid(lot_id, 7, 1_000))).ok
    assert (await engine.execute(PlaceBid(lot_id, 8, 1_200))).ok

    items, total = await catalog.list_sessions(SessionState.BIDDING, 0, 10)
    assert total == 1 and items[0]["id"] == session_id and items[0]["lot_count"] == 1
    assert (await catalog.list_sessions(SessionState.ENDED, 0, 10)) == ([], 0)

    view = await catalog.session_view(session_id)
    [lot] = view["lots"]
    assert (lot["state"], lot["price"], lot["leader"], lot["bid_count"], lot["next_min"]) == (
        int(LotState.BIDDING),
        1_200,
        f"P{session_id}-8",
        2,
        1_300,
    )
    detail = await catalog.lot_view(lot_id, viewer="u:8")
    assert detail["watchers"] == 1 and detail["reserve_met"] is False and detail["highest_price"] == 9_000
    assert (await catalog.lot_view(lot_id))["watchers"] == 1
    # the same viewer again (a reload, a reconnect) is not a new watcher; another one is
    assert (await catalog.lot_view(lot_id, viewer="u:8"))["watchers"] == 1
    assert (await catalog.lot_view(lot_id, viewer="a:0f"))["watchers"] == 2
    stored = await db.lots.find_one({"_id": lot_id})
    assert stored is not None and stored["watchers"] == 2

    bids, count = await catalog.bids_view(lot_id, 0, 1)
    assert count == 2 and bids == [
        {
            "price": 1_200,
            "bidder": f"P{session_id}-8",
            "at": "2027-01-15T08:00:00.000Z",
            "at_ms": START,
            "auto": False,
        }
    ]
    older, _ = await catalog.bids_view(lot_id, 1, 5)
    assert [b["price"] for b in older] == [1_000]
    with pytest.raises(NotFound):
        await catalog.bids_view(999, 0, 5)


async def test_watchers_equal_distinct_viewers_under_concurrency_and_recount_mends_old_counts(
    catalog: Catalog, db: Database
) -> None:
    session_id = (await catalog.create_session(session_spec(deposit=0)))["_id"]
    lot_id = (await catalog.create_lot(session_id, lot_spec(deposit=0)))["_id"]
    # 200 concurrent page loads by 20 viewers (each reloads 10 times) count 20 watchers
    views = [catalog.lot_view(lot_id, viewer=f"u:{n % 20 + 1}") for n in range(200)]
    await asyncio.gather(*views)
    stored = await db.lots.find_one({"_id": lot_id})
    assert stored is not None and stored["watchers"] == 20
    assert await db.lot_viewers.count_documents({"lot_id": lot_id}) == 20
    # a count kept before viewers were recorded (page loads) is set to its records
    await db.lots.update_one({"_id": lot_id}, {"$set": {"watchers": 977}})
    assert await catalog.recount_watchers() == 1
    assert (await catalog.lot_view(lot_id))["watchers"] == 20
    assert await catalog.recount_watchers() == 0
