"""Helpers of persistence/mongo.py against the real embedded server."""

import asyncio
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from persistence.mongo import Client, Database, IdBlocks, TxSession, connect, next_id, run_in_transaction


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
