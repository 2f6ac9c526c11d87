"""Snapshot sinks against a real directory and the real embedded MongoDB."""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from engine.clock import FakeClock
from engine.commands import PlaceBid, PutLot, PutSession
from engine.engine import Engine
from persistence.snapshots import CHUNK_SIZE, FileSnapshotSink, LocalFirstSnapshotSink, MongoSnapshotSink

Db = AsyncDatabase[dict[str, Any]]
T0 = 1_700_000_000_000


def blob_for(seq: int, size: int = 64) -> bytes:
    return seq.to_bytes(8, "big") + hashlib.sha256(str(seq).encode()).digest() * (size // 32 + 1)


# ----------------------------------------------------------------------------------------- files


def listing(directory: pathlib.Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


async def test_file_round_trip(tmp_path: pathlib.Path) -> None:
    sink = FileSnapshotSink(tmp_path / "snaps")
    assert await sink.latest() is None  # the directory does not even exist yet
    await sink.save(42, b"\x81\xa3seq\x2a")
    assert await sink.latest() == (42, b"\x81\xa3seq\x2a")
    assert (tmp_path / "snaps" / f"snapshot-{42:020d}.msgpack").read_bytes() == b"\x81\xa3seq\x2a"


async def test_file_newest_of_many_and_retention(tmp_path: pathlib.Path) -> None:
    sink = FileSnapshotSink(tmp_path)
    for seq in (5, 30, 7, 100, 12):  # saved out of order: newest means highest seq
        await sink.save(seq, blob_for(seq))
    assert await sink.latest() == (100, blob_for(100))
    assert await sink.seqs() == [12, 30, 100]
    assert listing(tmp_path) == [f"snapshot-{seq:020d}.msgpack" for seq in (12, 30, 100)]


async def test_file_crash_mid_save_leaves_the_previous_snapshot(tmp_path: pathlib.Path) -> None:
    sink = FileSnapshotSink(tmp_path)
    await sink.save(10, blob_for(10))
    # What a crash before the rename leaves behind: a half-written temp file.
    stray = tmp_path / f".snapshot-{20:020d}.msgpack.deadbeef.tmp"
    stray.write_bytes(blob_for(20)[:7])
    assert await sink.latest() == (10, blob_for(10))
    await sink.save(30, blob_for(30))
    assert not stray.exists()  # swept by the next save
    assert await sink.latest() == (30, blob_for(30))


async def test_file_resave_same_seq_replaces(tmp_path: pathlib.Path) -> None:
    sink = FileSnapshotSink(tmp_path)
    await sink.save(10, b"first")
    await sink.save(10, b"second")
    assert await sink.latest() == (10, b"second")
    assert len(listing(tmp_path)) == 1


# ----------------------------------------------------------------------------------------- MongoDB


async def test_mongo_round_trip_inline(mongo_db: Db) -> None:
    sink = MongoSnapshotSink(mongo_db)
    assert await sink.latest() is None
    await sink.save(42, b"\x81\xa3seq\x2a")
    assert await sink.latest() == (42, b"\x81\xa3seq\x2a")
    head = await mongo_db.snapshots.find_one({"_id": 42})
    assert head is not None and head["complete"] is True and head["chunks"] == 0
    assert head["sha256"] == hashlib.sha256(b"\x81\xa3seq\x2a").hexdigest()
    assert await mongo_db.snapshot_chunks.count_documents({}) == 0


async def test_mongo_newest_of_many_and_retention(mongo_db: Db) -> None:
    sink = MongoSnapshotSink(mongo_db, chunk_size=100)  # small chunks: exercise chunk pruning too
    for seq in (5, 30, 7, 100, 12):
        await sink.save(seq, blob_for(seq, size=250))
    assert await sink.latest() == (100, blob_for(100, size=250))
    assert await sink.seqs() == [12, 30, 100]
    kept = {doc["snapshot_seq"] async for doc in mongo_db.snapshot_chunks.find({}, {"snapshot_seq": 1})}
    assert kept == {12, 30, 100}
    assert await mongo_db.snapshot_chunks.count_documents({}) == 3 * 3  # 250+ bytes in 100-byte chunks


async def test_mongo_chunked_blob_over_8_mib(mongo_db: Db) -> None:
    sink = MongoSnapshotSink(mongo_db)
    blob = os.urandom(2 * CHUNK_SIZE + 12345)
    await sink.save(7, blob)
    head = await mongo_db.snapshots.find_one({"_id": 7})
    assert head is not None and head["chunks"] == 3 and "blob" not in head and head["size"] == len(blob)
    sizes = [len(c["data"]) async for c in mongo_db.snapshot_chunks.find({"snapshot_seq": 7}).sort("n", 1)]
    assert sizes == [CHUNK_SIZE, CHUNK_SIZE, 12345]
    assert await sink.latest() == (7, blob)


async def test_mongo_crash_mid_save_yields_the_previous_snapshot(
    mongo_db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = MongoSnapshotSink(mongo_db, chunk_size=1024)
    await sink.save(10, blob_for(10, size=5000))

    async def crash(seq: int, head: dict[str, Any]) -> None:
        raise RuntimeError("power cut before the head was written")

    monkeypatch.setattr(sink, "_write_head", crash)
    with pytest.raises(RuntimeError):
        await sink.save(20, blob_for(20, size=5000))
    assert await mongo_db.snapshot_chunks.count_documents({"snapshot_seq": 20}) == 5  # the debris
    assert await sink.latest() == (10, blob_for(10, size=5000))

    monkeypatch.undo()
    # A re-save of the same seq after the crash works and the debris goes with the next prune.
    await sink.save(20, blob_for(20, size=5000))
    assert await sink.latest() == (20, blob_for(20, size=5000))
    assert await mongo_db.snapshot_chunks.count_documents({"snapshot_seq": 20}) == 5


async def test_mongo_corrupt_snapshot_falls_back(mongo_db: Db) -> None:
    sink = MongoSnapshotSink(mongo_db, chunk_size=1024)
    await sink.save(10, blob_for(10, size=3000))
    await sink.save(20, blob_for(20, size=3000))
    await mongo_db.snapshot_chunks.update_one({"snapshot_seq": 20, "n": 1}, {"$set": {"data": b"rot"}})
    assert await sink.latest() == (10, blob_for(10, size=3000))
    await mongo_db.snapshot_chunks.delete_many({"snapshot_seq": 10})
    assert await sink.latest() is None


async def test_mongo_resave_same_seq_replaces_atomically(mongo_db: Db) -> None:
    sink = MongoSnapshotSink(mongo_db, chunk_size=1024)
    await sink.save(10, b"a" * 4000)
    await sink.save(10, b"b" * 3000)
    assert await sink.latest() == (10, b"b" * 3000)
    assert await mongo_db.snapshot_chunks.count_documents({}) == 3  # the first save's 4 chunks are gone


# ----------------------------------------------------------------------------------------- engine


@pytest.mark.parametrize("kind", ["file", "mongo"])
async def test_engine_recovers_from_the_sink(kind: str, tmp_path: pathlib.Path, mongo_db: Db) -> None:
    def make_sink() -> FileSnapshotSink | MongoSnapshotSink:
        return FileSnapshotSink(tmp_path / "snaps") if kind == "file" else MongoSnapshotSink(mongo_db)

    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", make_sink(), sync=False)
    await engine.start()
    try:
        assert (await engine.execute(PutSession(1, T0, T0, T0 + 1000, T0 + 3_600_000))).ok
        assert (await engine.execute(PutLot(5, 1, ["fixed", 100, 10]))).ok
        clock.advance(1000)
        engine.poke()
        assert (await engine.execute(PlaceBid(5, 7, 100))).ok
        covered = await engine.snapshot()
        assert covered == engine.last_seq
        assert (await engine.execute(PlaceBid(5, 8, 150))).ok
    finally:
        await engine.stop(snapshot=False)

    again = Engine(clock, tmp_path / "journal", make_sink(), sync=False)
    await again.start()
    try:
        assert again.snapshot_seq == covered  # loaded from the sink, then the journal tail replayed
        lot = again.book.lots[5]
        assert (lot.price, lot.leader, lot.bid_count) == (150, 8, 2)
    finally:
        await again.stop(snapshot=False)


# ----------------------------------------------------------------------------------- local first


async def test_local_first_saves_both_and_reads_the_local_copy(tmp_path: pathlib.Path, mongo_db: Db) -> None:
    shared = MongoSnapshotSink(mongo_db)
    sink = LocalFirstSnapshotSink(FileSnapshotSink(tmp_path / "snaps", keep=2), shared)
    await sink.save(5, blob_for(5))
    await sink.save(9, blob_for(9))
    assert await shared.latest() == (9, blob_for(9))
    assert listing(tmp_path / "snaps") == [f"snapshot-{5:020d}.msgpack", f"snapshot-{9:020d}.msgpack"]
    # The restart does not read MongoDB's blob when the local copy is as new: break MongoDB's.
    await mongo_db.snapshots.update_one({"_id": 9}, {"$set": {"sha256": "0" * 64}})
    assert await sink.latest() == (9, blob_for(9))


async def test_local_first_falls_back_to_mongodb_when_the_local_copy_is_older_or_gone(
    tmp_path: pathlib.Path, mongo_db: Db
) -> None:
    shared = MongoSnapshotSink(mongo_db)
    local = FileSnapshotSink(tmp_path / "snaps", keep=2)
    sink = LocalFirstSnapshotSink(local, shared)
    await sink.save(5, blob_for(5))
    await shared.save(9, blob_for(9))  # e.g. saved by this engine on another host
    assert await sink.latest() == (9, blob_for(9))
    fresh_disk = LocalFirstSnapshotSink(FileSnapshotSink(tmp_path / "new-disk"), shared)
    assert await fresh_disk.latest() == (9, blob_for(9))
