"""Helpers of persistence/mongo.py against the real embedded server."""

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import InvalidOperation, PyMongoError

from persistence.mongo import (
    Client,
    Database,
    IdBlocks,
    TxSession,
    connect,
    next_id,
    run_in_transaction,
    unit_writes,
)


async def test_concurrent_first_allocations_of_a_new_counter_never_repeat(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    for counter in range(10):
        ids = await asyncio.gather(*[next_id(mongo_db, f"fresh-{counter}") for _ in range(10)])
        assert len(set(ids)) == 10, ids
    assert await next_id(mongo_db, "fresh-9") > max(ids)  # and it keeps counting up


async def test_id_blocks_take_one_counter_write_per_block_and_never_overlap(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Two processes' allocators (two `IdBlocks` on one counter), many requests at once: every id
    unique, increasing within each allocator, and the counter moved once per block taken."""
    first, second = IdBlocks(mongo_db, "orders", 5), IdBlocks(mongo_db, "orders", 5)
    from_first = await asyncio.gather(*[first.next() for _ in range(12)])
    from_second = await asyncio.gather(*[second.next() for _ in range(3)])
    assert from_first == sorted(from_first) and from_second == sorted(from_second)
    assert len(set(from_first + from_second)) == 15
    assert from_first == list(range(1, 13)) and from_second == [16, 17, 18]  # blocks 1-15, then 16-20
    counter = await mongo_db.counters.find_one({"_id": "orders"})
    assert counter is not None and counter["seq"] == 20  # four blocks: 13-15 and 19-20 are the gaps
    assert await next_id(mongo_db, "orders") == 21  # a one-by-one caller carries on after them


async def test_a_transaction_that_ran_out_of_time_leaves_no_write_locked(
    mongo_db: AsyncDatabase[dict[str, Any]], mongo_url: str
) -> None:
    """A unit of work past its bound (a stalled process, a slow server) is aborted on the server
    too: a plain write to the document it changed goes through at once instead of waiting for the
    server to reap the transaction (60 s), the unit's own change is gone, and the session the
    driver hands out next runs a transaction again."""
    bounded = connect(mongo_url, timeout_ms=300)
    docs = bounded[mongo_db.name].docs
    await docs.insert_one({"_id": 1, "n": 0})

    async def stalls_after_writing(session: TxSession) -> None:
        await docs.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=session)
        await asyncio.sleep(0.4)  # past the bound: the next command is refused before it is sent
        await docs.find_one({"_id": 1}, session=session)

    try:
        with pytest.raises(PyMongoError) as raised:
            await run_in_transaction(bounded, stalls_after_writing)
        assert raised.value.timeout
        await asyncio.wait_for(mongo_db.docs.update_one({"_id": 1}, {"$inc": {"n": 10}}), 2.0)
        assert (await mongo_db.docs.find_one({"_id": 1})) == {"_id": 1, "n": 10}

        async def adds_one(session: TxSession) -> None:
            await docs.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=session)

        await run_in_transaction(bounded, adds_one)
        assert (await mongo_db.docs.find_one({"_id": 1})) == {"_id": 1, "n": 11}
    finally:
        await bounded.close()


class _Refused(Exception):
    pass


async def _unit_writes_cases(db: AsyncDatabase[dict[str, Any]]) -> None:
    """What a unit's waiting writes (`unit_writes`) must do, however they are sent."""
    client = db.client
    await db.docs.insert_one({"_id": "paid", "status": "pending"})

    async def settles(session: TxSession) -> bool:
        writes = unit_writes(session)
        assert writes is not None
        writes.insert(db.orders, {"_id": 1, "n": "first"})
        writes.update(db.docs, {"_id": "paid", "status": "pending"}, {"$set": {"status": "paid"}}, _Refused)
        assert await db.orders.find_one({"_id": 1}, session=session) is None  # not sent yet
        # The answered write goes with them, after them: it sees them, and its outcome comes back.
        outcome = await writes.update_now(
            db.orders, {"_id": 2}, {"$setOnInsert": {"n": "second"}}, upsert=True
        )
        assert outcome.upserted_id == 2
        assert await db.orders.find_one({"_id": 1}, session=session) == {"_id": 1, "n": "first"}
        writes.insert(db.orders, {"_id": 3, "n": "last"})  # sent at the unit's end, before the commit
        return True

    assert await run_in_transaction(client, settles)
    assert [doc["_id"] async for doc in db.orders.find({}, sort=[("_id", 1)])] == [1, 2, 3]
    assert await db.docs.find_one({"_id": "paid"}) == {"_id": "paid", "status": "paid"}

    async def settles_again(session: TxSession) -> None:
        writes = unit_writes(session)
        assert writes is not None
        writes.insert(db.orders, {"_id": 4})
        writes.update(db.docs, {"_id": "paid", "status": "pending"}, {"$set": {"status": "twice"}}, _Refused)

    with pytest.raises(_Refused):  # the update matched nothing: the unit aborts, the insert too
        await run_in_transaction(client, settles_again)
    assert await db.orders.find_one({"_id": 4}) is None

    async def duplicates(session: TxSession) -> None:
        writes = unit_writes(session)
        assert writes is not None
        writes.insert(db.orders, {"_id": 5})
        writes.insert(db.orders, {"_id": 1}, lambda error: _Refused(str(error.code)))

    with pytest.raises(_Refused, match="11000"):  # the caller's error for its duplicate key
        await run_in_transaction(client, duplicates)
    assert await db.orders.find_one({"_id": 5}) is None
    assert unit_writes(None) is None


async def test_a_units_waiting_writes_go_in_one_command_and_fail_inside_the_unit(
    mongo_db: AsyncDatabase[dict[str, Any]], mongo_url: str
) -> None:
    sent: list[str] = []

    class Commands(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            sent.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, event_listeners=[Commands()])
    try:
        await _unit_writes_cases(client[mongo_db.name])
        # After the set-up's insert: a read, the three writes in one command, a read, the last write
        # alone (one command either way), the commit.
        first_unit = sent[1 : sent.index("commitTransaction") + 1]
        assert first_unit == ["find", "bulkWrite", "find", "insert", "commitTransaction"], sent
    finally:
        await client.close()


async def test_without_bulk_write_a_units_writes_go_one_by_one_with_the_same_outcomes(
    mongo_db: AsyncDatabase[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server older than MongoDB 8.0 has no `bulkWrite`: the driver refuses it before sending."""

    async def refused(*_args: Any, **_kwargs: Any) -> None:
        raise InvalidOperation("MongoClient.bulk_write requires MongoDB server version 8.0+.")

    monkeypatch.setattr(AsyncMongoClient, "bulk_write", refused)
    await _unit_writes_cases(mongo_db)


def pooled_connections(client: Client) -> int:
    """Connections in the client's pools, idle and in use (pymongo has no public count)."""
    return sum(
        len(server.pool.conns) + server.pool.active_sockets for server in client._topology._servers.values()
    )


async def test_connections_opened_by_a_burst_are_closed_once_idle(mongo_db: Database, mongo_url: str) -> None:
    """MONGODB_MAX_IDLE: the connections a burst of concurrent operations opened (a session's close)
    are closed once idle that long, so the pool shrinks back instead of keeping its high-water
    mark for the process's life; a client without the bound (pymongo's default) keeps them."""
    idle_closing = connect(mongo_url, timeout_ms=3_000, max_idle_ms=200)
    keeping = connect(mongo_url, timeout_ms=3_000)
    try:
        assert idle_closing.options.pool_options.max_idle_time_seconds == 0.2
        for client in (idle_closing, keeping):
            docs = client[mongo_db.name].docs
            await asyncio.gather(*[docs.find_one({"_id": n}) for n in range(40)])
            assert pooled_connections(client) > 1  # the burst did open several
        # pymongo closes idle connections in its once-a-second background round.
        for _ in range(40):  # at most 4 s
            if pooled_connections(idle_closing) == 0:
                break
            await asyncio.sleep(0.1)
        assert pooled_connections(idle_closing) == 0
        assert pooled_connections(keeping) > 1
        assert await idle_closing[mongo_db.name].docs.find_one({"_id": 1}) is None  # and it reconnects
    finally:
        await idle_closing.close()
        await keeping.close()
