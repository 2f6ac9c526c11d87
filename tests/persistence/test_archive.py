"""The write-behind archiver with a real engine and the real embedded MongoDB (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pathlib
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.events import BidPlaced, LotClosed, PriceChanged, SessionStateChanged
from engine.book.states import LotState, SessionState
from engine.clock import FakeClock
from engine.commands import (
    CloseLot,
    PauseLot,
    PlaceBid,
    PutLot,
    PutSession,
    RegisterDeposit,
    ResumeLot,
    SetMaxBid,
    VoidBid,
)
from engine.compaction import Compactor
from engine.engine import CommittedBatch, Engine
from persistence import archive as archive_module
from persistence.archive import BUCKETS, BidArchiver, archived_bids, bidders_of_lot
from persistence.compaction import MongoSettledCloses
from persistence.embedded import start_mongo

Db = AsyncDatabase[dict[str, Any]]
T0 = 1_700_000_000_000
MINUTE = 60_000
SESSION, LOT_A, LOT_B = 1, 10, 11


@dataclass
class Rig:
    engine: Engine
    clock: FakeClock
    archiver: BidArchiver
    batches: list[CommittedBatch]


@contextlib.asynccontextmanager
async def rig(tmp_path: pathlib.Path, db: Db, **archiver_options: Any) -> AsyncIterator[Rig]:
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", None, sync=False)
    archiver = BidArchiver(db, **archiver_options)
    batches: list[CommittedBatch] = []
    engine.listeners.append(batches.append)
    engine.listeners.append(archiver.on_batch)
    await engine.start()
    archiver.start()
    try:
        yield Rig(engine, clock, archiver, batches)
    finally:
        await engine.stop(snapshot=False)
        await archiver.stop(flush_timeout=10)


async def open_session(r: Rig, db: Db) -> None:
    """Metadata first (as the admin does), then the engine commands; leaves both lots bidding."""
    await db.sessions.insert_one({"_id": SESSION, "title": "Spring sale"})
    await db.lots.insert_many(
        [{"_id": LOT_A, "session_id": SESSION, "title": "Vase"}, {"_id": LOT_B, "session_id": SESSION}]
    )
    engine = r.engine
    assert (await engine.execute(PutSession(SESSION, T0, T0, T0 + MINUTE, T0 + 60 * MINUTE, 0, 30_000))).ok
    assert (await engine.execute(PutLot(LOT_A, SESSION, ["fixed", 1000, 100], 2000))).ok
    assert (await engine.execute(PutLot(LOT_B, SESSION, ["fixed", 500, 50]))).ok
    r.clock.set(T0 + MINUTE)
    engine.poke()
    assert (await engine.execute(RegisterDeposit(SESSION, None, 999))).ok  # waits for the tick


BidRow = tuple[int, int, int, int, int, bool, int]  # seq, lot, session, bidder, price, auto, at


def expected_bids(batches: list[CommittedBatch]) -> list[BidRow]:
    """The bids the archive should hold, derived independently from the batches, in seq order."""
    return [
        (seq, event.lot_id, event.session_id, event.bidder, event.price, event.auto, event.at)
        for batch in batches
        for event, seq in zip(batch.events, batch.seqs, strict=True)
        if isinstance(event, BidPlaced)
    ]


async def bids_in(db: Db) -> list[BidRow]:
    """Every archived bid, unrolled from its bucket (each bucket's columns line up)."""
    rows: list[BidRow] = []
    async for doc in db[BUCKETS].find({}, sort=[("first_seq", 1), ("lot_id", 1)]):
        assert doc["_id"] == f"{doc['lot_id']}:{doc['first_seq']}"
        assert doc["count"] == len(doc["seq"]) and doc["seq"][0] == doc["first_seq"]
        assert doc["seq"][-1] == doc["last_seq"] and doc["seq"] == sorted(doc["seq"])
        columns = zip(doc["seq"], doc["bidder"], doc["price"], doc["auto"], doc["at"], strict=True)
        rows += [(q, doc["lot_id"], doc["session_id"], b, p, a, t) for q, b, p, a, t in columns]
    return sorted(rows, key=lambda row: row[0])  # stable: one seq's bids keep their order


async def assert_mirror_matches_book(db: Db, engine: Engine, lot_id: int) -> dict[str, Any]:
    lot = engine.book.lots[lot_id]
    doc = await db.lots.find_one({"_id": lot_id})
    assert doc is not None
    assert doc["state"] == int(lot.state)
    assert doc["price"] == lot.price
    assert doc["leader_id"] == (lot.leader or None)
    assert doc["bid_count"] == lot.bid_count
    if lot.state is LotState.BIDDING:
        assert doc["ends_at_ms"] == lot.ends_at
    return doc


async def bid_burst(engine: Engine) -> None:
    """Plain bids, a maximum that answers automatically, and bids on a second lot."""
    outcomes = [
        await engine.execute(PlaceBid(LOT_A, 7, 1000, "a1")),
        await engine.execute(PlaceBid(LOT_A, 8, 1200, "b1")),
        await engine.execute(SetMaxBid(LOT_A, 7, 3000, "a2")),
        await engine.execute(PlaceBid(LOT_A, 9, 2100, "c1")),  # beaten at once: two BidPlaced
        await engine.execute(PlaceBid(LOT_B, 8, 500, "b2")),
    ]
    # A group commit of several bids in one loop turn: one batch, several seqs.
    futures = [engine.execute(PlaceBid(LOT_B, user, 500 + 50 * user, f"g{user}")) for user in range(1, 6)]
    outcomes += await asyncio.gather(*futures)
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]


# ------------------------------------------------------------------------------------- the hot path


async def test_on_batch_is_cheap(mongo_db: Db) -> None:
    archiver = BidArchiver(mongo_db)  # not started: measures the enqueue alone
    event = BidPlaced(1, 1, 7, 1000, False, T0)
    batches = [CommittedBatch([event] * 10, [n] * 10) for n in range(1, 10_001)]  # 100k events
    started = time.perf_counter()
    for batch in batches:
        archiver.on_batch(batch)
    elapsed = time.perf_counter() - started
    assert archiver.lag == 100_000
    assert elapsed < 0.05, f"100k events in 10k batches took {elapsed * 1000:.1f} ms"

    one = BidArchiver(mongo_db)
    big = CommittedBatch([event] * 100_000, list(range(100_000)))
    started = time.perf_counter()
    one.on_batch(big)
    assert time.perf_counter() - started < 0.001  # O(1) per batch whatever its size
    assert one.lag == 100_000


# ------------------------------------------------------------------------------------- with an engine


async def test_bids_mirror_and_archived_seq(tmp_path: pathlib.Path, mongo_db: Db) -> None:
    async with rig(tmp_path, mongo_db) as r:
        await open_session(r, mongo_db)
        await bid_burst(r.engine)
        assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=10)

        expected = expected_bids(r.batches)
        assert len(expected) == r.engine.book.lots[LOT_A].bid_count + r.engine.book.lots[LOT_B].bid_count
        assert await bids_in(mongo_db) == expected
        assert any(row[5] for row in expected)  # a proxy's automatic bid is archived too
        by_lot = [(b.seq, b.bidder, b.price, b.auto) for b in await archived_bids(mongo_db, LOT_A)]
        assert by_lot == [(q, b, p, a) for q, lot, _, b, p, a, _ in expected if lot == LOT_A]

        doc = await assert_mirror_matches_book(mongo_db, r.engine, LOT_A)
        assert doc["title"] == "Vase" and doc["state"] == LotState.BIDDING  # metadata untouched
        await assert_mirror_matches_book(mongo_db, r.engine, LOT_B)
        session = await mongo_db.sessions.find_one({"_id": SESSION})
        assert session is not None and session["state"] == SessionState.BIDDING
        assert session["title"] == "Spring sale"

        assert r.archiver.archived_seq == r.engine.last_seq
        meta = await mongo_db.meta.find_one({"_id": "archive"})
        assert meta is not None and meta["archived_seq"] == r.engine.last_seq
        assert r.archiver.lag == 0

        # Closing: the mirror gets the result and the settlement outbox one pending row.
        closed = await r.engine.execute(CloseLot(LOT_A))
        assert closed.ok
        assert (await r.engine.execute(CloseLot(LOT_B))).ok
        assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=10)
        lot_a = r.engine.book.lots[LOT_A]
        assert lot_a.state is LotState.SOLD
        doc = await assert_mirror_matches_book(mongo_db, r.engine, LOT_A)
        assert doc["result"] == LotState.SOLD and doc["winner_id"] == lot_a.winner
        assert doc["deal_price"] == lot_a.price and doc["closed_at_ms"] == r.clock.now
        outbox = await mongo_db.settlement_outbox.find_one({"_id": LOT_A})
        assert outbox == {
            "_id": LOT_A,
            "session_id": SESSION,
            "result": int(LotState.SOLD),
            "winner_id": lot_a.winner,
            "price": lot_a.price,
            "bid_count": lot_a.bid_count,
            "closed_at_ms": r.clock.now,
            "seq": closed.seq,
            "status": "pending",
        }
        assert await mongo_db.settlement_outbox.count_documents({}) == 2
        session = await mongo_db.sessions.find_one({"_id": SESSION})
        assert session is not None and session["state"] == SessionState.ENDED


async def test_replaying_batches_creates_no_duplicates(tmp_path: pathlib.Path, mongo_db: Db) -> None:
    async with rig(tmp_path, mongo_db) as r:
        await open_session(r, mongo_db)
        await bid_burst(r.engine)
        assert (await r.engine.execute(CloseLot(LOT_B))).ok
        assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=10)
        batches, last_seq = list(r.batches), r.engine.last_seq
        lot_a_before = await mongo_db.lots.find_one({"_id": LOT_A})

    # Settlement already took the outbox row; a replay must not reset it.
    await mongo_db.settlement_outbox.update_one({"_id": LOT_B}, {"$set": {"status": "done"}})
    bids_before = await bids_in(mongo_db)

    again = BidArchiver(mongo_db, batch_events=3)  # small chunks: many cuts between seqs
    assert await again.load_archived_seq() == last_seq
    again.start()
    for batch in batches + batches[: len(batches) // 2]:  # all of it, then an older prefix again
        again.on_batch(batch)
    await again.stop(flush=True, flush_timeout=10)
    assert again.lag == 0 and again.archived_seq == last_seq

    assert await bids_in(mongo_db) == bids_before == expected_bids(batches)
    assert await mongo_db.lots.find_one({"_id": LOT_A}) == lot_a_before  # no roll-back by old events
    outbox = await mongo_db.settlement_outbox.find({}).to_list()
    assert [(d["_id"], d["status"]) for d in outbox] == [(LOT_B, "done")]
    meta = await mongo_db.meta.find_one({"_id": "archive"})
    assert meta is not None and meta["archived_seq"] == last_seq


async def test_a_chunk_cut_off_by_a_crash_is_cut_again_at_the_same_seqs(mongo_db: Db) -> None:
    """Buckets are keyed by where their chunk starts: the replay must cut where the crash did."""
    await mongo_db.lots.insert_many([{"_id": lot} for lot in (1, 2)])
    batches = [
        CommittedBatch([BidPlaced(1 + seq % 2, 1, 100 + seq, 1000 + 10 * seq, False, T0 + seq)], [seq])
        for seq in range(1, 11)
    ]
    crashed = BidArchiver(mongo_db, batch_events=6)
    for batch in batches:
        crashed.on_batch(batch)
    first = crashed._take()
    assert (first.first_seq, first.last_seq) == (1, 6)
    await crashed._write(first)  # seqs 1..6 fully written
    cut_off = crashed._take()
    assert (cut_off.first_seq, cut_off.last_seq) == (7, 10)
    # The process dies after the announcement and the buckets, before the chunk is marked done.
    await archive_module._announce(mongo_db.meta, "archive", cut_off)
    await archive_module._insert_ignoring_duplicates(mongo_db[BUCKETS], cut_off.bids)

    restarted = BidArchiver(mongo_db, batch_events=3)  # would cut 7..9 and 10 on its own
    assert await restarted.load_archived_seq() == 6
    for batch in batches[6:]:  # the engine re-delivers what follows archived_seq
        restarted.on_batch(batch)
    restarted.start()
    assert await restarted.wait_caught_up(10, timeout=10)
    await restarted.stop()
    assert restarted.stats["chunks"] == 1  # 7..10 in one chunk, as before the crash
    assert await bids_in(mongo_db) == expected_bids(batches)  # nothing twice, nothing lost
    meta = await mongo_db.meta.find_one({"_id": "archive"})
    assert meta is not None and meta["archived_seq"] == 10 and "writing" not in meta


async def test_chunks_never_split_a_seq(mongo_db: Db) -> None:
    """Synthetic batches: one command with many events must land whole, numbered across cuts."""
    await mongo_db.lots.insert_many([{"_id": lot} for lot in range(1, 4)])
    events: list[Any] = []
    seqs: list[int] = []
    for seq in range(1, 6):  # seq 3 is a burst of 7 bids (as a proxy war would produce)
        for k in range(7 if seq == 3 else 2):
            events.append(BidPlaced(1 + seq % 3, 1, 100 + k, 1000 + 10 * seq + k, k % 2 == 1, T0 + seq))
            seqs.append(seq)
        events.append(PriceChanged(1 + seq % 3, 1, 1000 + 10 * seq, 100, seq, 0, T0 + MINUTE, T0 + seq))
        seqs.append(seq)
    batch = CommittedBatch(events, seqs)

    cutter = BidArchiver(mongo_db, batch_events=4)
    cutter.on_batch(batch)
    chunks = []
    while cutter.lag > sum(c.events for c in chunks):
        chunks.append(cutter._take())
    assert [(c.first_seq, c.last_seq) for c in chunks] == [(1, 2), (3, 3), (4, 5)]
    assert [c.bid_count for c in chunks] == [4, 7, 4]

    archiver = BidArchiver(mongo_db, batch_events=4, interval=0.001)
    archiver.on_batch(batch)
    archiver.start()
    assert await archiver.wait_caught_up(5, timeout=10)
    await archiver.stop()
    assert archiver.stats["chunks"] == 3 and archiver.archived_seq == 5
    assert await bids_in(mongo_db) == expected_bids([batch])
    burst = await mongo_db[BUCKETS].find_one({"_id": "1:3"})  # seq 3's seven bids, one bucket
    assert burst is not None and burst["seq"] == [3] * 7 and burst["bidder"] == list(range(100, 107))


async def test_wait_caught_up_times_out_and_counts_eventless_seqs(mongo_db: Db) -> None:
    archiver = BidArchiver(mongo_db)
    archiver.on_batch(CommittedBatch([SessionStateChanged(1, SessionState.PREVIEW, T0)], [5]))
    assert not await archiver.wait_caught_up(5, timeout=0.05)  # not started: nothing is written
    assert archiver.caught_up(4)  # nothing at or before seq 4 was handed over
    archiver.start()
    assert await archiver.wait_caught_up(9, timeout=10)  # 6..9 produced no events
    assert archiver.archived_seq == 5
    await archiver.stop()


# ------------------------------------------------------------------------------------- an outage


def _outage_client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    # Short timeouts so the outage surfaces as errors (and backoff) rather than one long wait.
    return AsyncMongoClient(url, serverSelectionTimeoutMS=300, connectTimeoutMS=300, socketTimeoutMS=3000)


async def test_outage_queues_and_catches_up_exactly_once(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "mongo-outage"
    # Started from the main thread (the loop's), as persistence.embedded requires.
    server = start_mongo(data_dir)
    client = _outage_client(server.url)
    db: Db = client["gavel"]
    try:
        async with rig(tmp_path, db, interval=0.01) as r:
            await open_session(r, db)
            assert (await r.engine.execute(PlaceBid(LOT_A, 7, 1000))).ok
            assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=10)
            before_outage = r.archiver.archived_seq

            await asyncio.to_thread(server.stop)
            for n in range(40):  # bidding goes on while MongoDB is down
                started = time.perf_counter()
                outcome = await r.engine.execute(PlaceBid(LOT_B, 1 + n % 4, 500 + 50 * n))
                assert outcome.ok
                assert time.perf_counter() - started < 0.5  # the engine never waits on the archive
            assert (await r.engine.execute(SetMaxBid(LOT_A, 8, 5000))).ok
            # Wait (bounded) until the archiver has failed and retried at least once.
            for _ in range(100):
                if r.archiver.stats["retries"] > 0:
                    break
                await asyncio.sleep(0.05)
            assert r.archiver.lag > 0 and r.archiver.stats["retries"] > 0
            assert r.archiver.archived_seq == before_outage

            server = start_mongo(data_dir, port=server.port)  # same data, same URL
            assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=30)
            assert r.archiver.lag == 0 and r.archiver.archived_seq == r.engine.last_seq

            assert await bids_in(db) == expected_bids(r.batches)  # every bid, exactly once
            await assert_mirror_matches_book(db, r.engine, LOT_A)
            await assert_mirror_matches_book(db, r.engine, LOT_B)
            meta = await db.meta.find_one({"_id": "archive"})
            assert meta is not None and meta["archived_seq"] == r.engine.last_seq
    finally:
        await client.close()
        await asyncio.to_thread(server.stop)


@pytest.mark.parametrize("flush", [True, False])
async def test_stop_never_hangs_on_a_dead_server(flush: bool) -> None:
    client = _outage_client("mongodb://127.0.0.1:9/?directConnection=true")  # nothing listens there
    archiver = BidArchiver(client["gavel"], interval=0.01, max_backoff=0.1)
    archiver.start()
    archiver.on_batch(CommittedBatch([BidPlaced(1, 1, 7, 1000, False, T0)], [1]))
    await asyncio.sleep(0.8)
    assert archiver.stats["retries"] >= 1 and archiver.lag == 1
    started = time.perf_counter()
    await archiver.stop(flush=flush, flush_timeout=0.2)
    assert time.perf_counter() - started < 2
    assert archiver.lag == 1  # kept, not dropped (the journal still has it)
    await client.close()


async def test_restart_after_stop_without_flush_loses_nothing(mongo_db: Db) -> None:
    archiver = BidArchiver(mongo_db, interval=0.001)
    batches = [CommittedBatch([BidPlaced(1, 1, 7, 1000 + n, False, T0)], [n]) for n in range(1, 4)]
    archiver.on_batch(batches[0])
    archiver.start()
    async with asyncio.timeout(5):
        while archiver._in_flight is None:  # noqa: ASYNC110 - polling for an internal state
            await asyncio.sleep(0)
    await archiver.stop(flush=False)  # cut off mid-write
    assert archiver.lag == 1
    for batch in batches[1:]:
        archiver.on_batch(batch)
    archiver.start()
    assert await archiver.wait_caught_up(3, timeout=10)
    await archiver.stop()
    assert await bids_in(mongo_db) == expected_bids(batches)


async def test_a_large_chunk_is_prepared_in_slices_and_survives_a_stop(mongo_db: Db) -> None:
    """The loop runs between slices; stopping then keeps every event taken off the queue."""
    batch = CommittedBatch(
        [BidPlaced(1 + n % 50, 1, 7, 1000 + n, False, T0 + n) for n in range(1, 5001)], list(range(1, 5001))
    )
    archiver = BidArchiver(mongo_db, interval=0.001)
    archiver.on_batch(batch)
    archiver.start()
    async with asyncio.timeout(5):
        while archiver._preparing is None:  # noqa: ASYNC110 - polling for an internal state
            await asyncio.sleep(0)
    assert not archiver.caught_up(1)  # taken off the queue, not written: still pending
    await archiver.stop(flush=False)
    assert archiver.lag == 5000 and archiver._in_flight is not None
    archiver.start()
    assert await archiver.wait_caught_up(5000, timeout=30)
    await archiver.stop()
    assert await bids_in(mongo_db) == expected_bids([batch])


async def test_the_loop_runs_between_the_pieces_of_a_chunk(
    mongo_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pause, other work gets whole loop turns between two slices (bids need several)."""
    log: list[str] = []
    add = archive_module._ChunkBuilder.add

    def logged_add(self: Any, events: Any, seqs: Any) -> None:
        log.append("add")
        add(self, events, seqs)

    monkeypatch.setattr(archive_module._ChunkBuilder, "add", logged_add)
    batch = CommittedBatch(
        [BidPlaced(1 + n % 50, 1, 7, 1000 + n, False, T0 + n) for n in range(1, 5001)], list(range(1, 5001))
    )
    archiver = BidArchiver(mongo_db, interval=0.001, pause=0.02)
    archiver.on_batch(batch)

    async def ticker() -> None:
        while True:
            log.append("tick")
            await asyncio.sleep(0.001)

    ticking = asyncio.create_task(ticker())
    archiver.start()
    try:
        assert await archiver.wait_caught_up(5000, timeout=30)
    finally:
        ticking.cancel()
        await archiver.stop()
    adds = [i for i, entry in enumerate(log) if entry == "add"]
    assert len(adds) == 5000 // archive_module._SLICE
    gaps = [later - earlier - 1 for earlier, later in itertools.pairwise(adds)]
    # A 20 ms pause holds several 1 ms ticks, a bare yield one at most; on a loaded machine one
    # pause can hold fewer (the process descheduled), so the typical gap decides.
    assert min(gaps) >= 1 and statistics.median(gaps) >= 3, gaps
    assert await bids_in(mongo_db) == expected_bids([batch])


async def test_no_pause_while_catching_up(mongo_db: Db) -> None:
    archiver = BidArchiver(mongo_db, batch_events=100, pause=0.005)  # not started: decisions only
    archiver.on_batch(CommittedBatch([BidPlaced(1, 1, 7, 1000, False, T0)] * 100, list(range(1, 101))))
    assert archiver._pause_between_pieces() == 0.005  # a normal chunk's worth waiting
    archiver.on_batch(CommittedBatch([BidPlaced(1, 1, 7, 1001, False, T0)], [101]))
    assert archiver._pause_between_pieces() == 0.0  # a backlog: finish sooner instead


async def test_hurry_writes_a_close_without_waiting_for_the_interval(mongo_db: Db) -> None:
    # A closed lot's outbox item is what settlement (the winner's order, the `result` frame) waits
    # for: `hurry` writes the queue at once instead of after `interval` (an hour here).
    archiver = BidArchiver(mongo_db, interval=3600)
    archiver.start()
    closed = LotClosed(LOT_A, SESSION, LotState.SOLD, 7, 1_500, 3, T0, "ended")
    archiver.on_batch(CommittedBatch([closed], [1]))
    assert not await archiver.wait_caught_up(1, timeout=0.2)  # waiting for the interval
    archiver.hurry()
    assert await archiver.wait_caught_up(1, timeout=10)
    item = await mongo_db.settlement_outbox.find_one({"_id": LOT_A})
    assert item is not None and item["status"] == "pending"
    # The next batch waits for the interval again.
    archiver.on_batch(CommittedBatch([SessionStateChanged(SESSION, SessionState.ENDED, T0)], [2]))
    assert not await archiver.wait_caught_up(2, timeout=0.2)
    await archiver.stop()


async def test_pause_resume_and_void_keep_the_lot_mirror_current(
    tmp_path: pathlib.Path, mongo_db: Db
) -> None:
    async with rig(tmp_path, mongo_db) as r:
        await open_session(r, mongo_db)
        await bid_burst(r.engine)
        assert (await r.engine.execute(PauseLot(LOT_A, "photo"))).ok
        assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=10)
        paused = await assert_mirror_matches_book(mongo_db, r.engine, LOT_A)
        assert paused["paused"] is True
        r.clock.advance(30_000)
        assert (await r.engine.execute(ResumeLot(LOT_A))).ok
        assert (await r.engine.execute(VoidBid(LOT_A, 3, "test account"))).ok
        assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=10)
        resumed = await assert_mirror_matches_book(mongo_db, r.engine, LOT_A)
        assert resumed["paused"] is False and resumed["ends_at_ms"] == T0 + 60 * MINUTE + 30_000


# ------------------------------------------------------------------------------------- compaction


async def test_a_compacted_lot_is_read_back_from_the_archive(tmp_path: pathlib.Path, mongo_db: Db) -> None:
    """The product's compactor over the real ports: a closed lot is compacted once its close is
    archived and the settlement's outbox row is done; its bidders and lines come from the archive."""
    async with rig(tmp_path, mongo_db, interval=0.05) as r:
        await open_session(r, mongo_db)
        await bid_burst(r.engine)
        lot = r.engine.book.lots[LOT_A]
        lines = lot.bids.lines()
        compactor = Compactor(
            lambda: r.engine.book,
            lambda: r.engine.last_seq,
            r.engine.execute,
            r.archiver,
            MongoSettledCloses(mongo_db),
        )
        r.engine.listeners.append(compactor.on_batch)
        closed = await r.engine.execute(CloseLot(LOT_A))
        assert await r.archiver.wait_caught_up(closed.seq, timeout=10)
        assert await compactor.run_once() == 0  # archived, its outbox row still pending
        await mongo_db.settlement_outbox.update_one({"_id": LOT_A}, {"$set": {"status": "recorded"}})
        assert await MongoSettledCloses(mongo_db).settled([LOT_A, LOT_B]) == set()
        await mongo_db.settlement_outbox.update_one({"_id": LOT_A}, {"$set": {"status": "done"}})
        assert await compactor.run_once() == 1
        assert lot.compacted and lot.bids.lines() == []
        archived = await archived_bids(mongo_db, LOT_A)
        assert [(b.bidder, b.price, b.at, b.auto) for b in archived] == lines
        assert await bidders_of_lot(mongo_db, LOT_A) == {7, 8, 9}
        assert (await r.engine.execute(PlaceBid(LOT_A, 8, 9_000))).code == "CLOSED"
