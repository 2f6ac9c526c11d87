"""The write-behind in its own process: a real engine, the real child process, the real MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from engine import journal
from engine.clock import FakeClock
from engine.commands import PlaceBid
from engine.engine import CommittedBatch, Engine
from persistence.archive_process import ArchiverProcess, FramedRecordReader
from persistence.snapshots import MongoSnapshotSink
from tests.persistence.test_archive import (
    LOT_A,
    LOT_B,
    T0,
    Db,
    assert_mirror_matches_book,
    bid_burst,
    bids_in,
    expected_bids,
    open_session,
)

# ------------------------------------------------------------------------ the pipe's framing (unit)


def framed(records: list[tuple[int, bytes]]) -> bytes:
    return b"".join(journal.encode_record(seq, payload) for seq, payload in records)


def test_records_cut_anywhere_come_out_whole_and_once() -> None:
    records = [(seq, bytes([seq]) * (seq * 7)) for seq in range(1, 12)]
    data = framed(records)
    for size in (1, 2, 3, 15, 16, 17, 100, len(data)):
        reader = FramedRecordReader()
        out: list[tuple[int, bytes]] = []
        for start in range(0, len(data), size):
            out += reader.feed(data[start : start + size])
        assert out == records, size
        assert reader.pending == 0


def test_a_damaged_record_is_refused_not_waited_for() -> None:
    data = bytearray(framed([(1, b"one"), (2, b"two")]))
    data[-1] ^= 0xFF  # the second record's payload
    reader = FramedRecordReader()
    with pytest.raises(ValueError, match="damaged"):
        reader.feed(bytes(data))


def test_a_record_in_transit_is_kept_for_later() -> None:
    data = framed([(1, b"one"), (2, b"two-two-two")])
    reader = FramedRecordReader()
    assert reader.feed(data[:-5]) == [(1, b"one")]
    assert reader.pending == len(data) - 5 - len(journal.encode_record(1, b"one"))
    assert reader.feed(data[-5:]) == [(2, b"two-two-two")]


# ------------------------------------------------------------------------ with the child process


@dataclass
class Rig:
    engine: Engine
    clock: FakeClock
    archiver: ArchiverProcess
    batches: list[CommittedBatch]


def new_archiver(db: Db, mongo_url: str, journal_dir: pathlib.Path) -> ArchiverProcess:
    # Short intervals: a test waits for chunks, not for the production 2 s.
    return ArchiverProcess(
        db,
        mongodb_url=mongo_url,
        journal_dir=journal_dir,
        archiver_options={"interval": 0.01, "pause": 0.0},
        min_restart_delay=0.05,
    )


@contextlib.asynccontextmanager
async def rig(tmp_path: pathlib.Path, db: Db, mongo_url: str, *, start: bool = True) -> AsyncIterator[Rig]:
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", MongoSnapshotSink(db), sync=False)
    archiver = new_archiver(db, mongo_url, tmp_path / "journal")
    batches: list[CommittedBatch] = []
    engine.listeners.append(batches.append)
    engine.record_observer = archiver.on_records
    engine.before_snapshot = archiver.wait_caught_up
    await engine.start()
    if start:
        archiver.start(durable_seq=engine.last_seq)
    try:
        yield Rig(engine, clock, archiver, batches)
    finally:
        await engine.stop(snapshot=False)
        await archiver.stop(flush_timeout=10)


async def caught_up(r: Rig) -> None:
    assert await r.archiver.wait_caught_up(r.engine.last_seq, timeout=30)


async def assert_archived_once(r: Rig, db: Db) -> None:
    """Every bid the engine committed is archived exactly once, in seq order."""
    assert await bids_in(db) == expected_bids(r.batches)


@contextlib.asynccontextmanager
async def open_rig(tmp_path: pathlib.Path, db: Db, mongo_url: str) -> AsyncIterator[Rig]:
    """A rig with its child running and the session open and archived."""
    async with rig(tmp_path, db, mongo_url) as r:
        await open_session(r, db)
        await caught_up(r)
        yield r


async def more_bids(engine: Engine, lot_id: int, users: range, price: int) -> None:
    for n, user in enumerate(users):
        outcome = await engine.execute(PlaceBid(lot_id, user, price + 100 * n, f"m{lot_id}-{price}-{n}"))
        assert outcome.ok, outcome


def child_pid(archiver: ArchiverProcess) -> int:
    pid = archiver.pid
    assert pid is not None, "no archiver process is running"
    return pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0: it is gone once its parent has reaped it or it is a Z.
    with contextlib.suppress(OSError):
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return False


async def test_the_child_archives_what_the_engine_commits(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    async with rig(tmp_path, mongo_db, mongo_url) as r:
        await open_session(r, mongo_db)
        await bid_burst(r.engine)
        await caught_up(r)
        assert r.archiver.archived_seq == r.engine.last_seq
        await assert_archived_once(r, mongo_db)
        for lot_id in (LOT_A, LOT_B):
            await assert_mirror_matches_book(mongo_db, r.engine, lot_id)
        assert r.archiver.lag == 0
        assert r.archiver.stats["records_bytes"] > 0  # fed through the pipe, not only the files


async def test_a_new_child_reads_what_it_missed_from_snapshot_and_journal(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    async with rig(tmp_path, mongo_db, mongo_url, start=False) as r:
        # Committed before any child runs: only the journal files hold these.
        await open_session(r, mongo_db)
        await bid_burst(r.engine)
        assert r.archiver.stats["dropped_while_down"] > 0
        r.archiver.start(durable_seq=r.engine.last_seq)
        await more_bids(r.engine, LOT_B, range(20, 30), 5000)  # and these through the pipe
        await caught_up(r)
        # A snapshot waits for the archive, then a new child starts from it.
        snapshot_seq = await r.engine.snapshot()
        assert r.archiver.archived_seq >= snapshot_seq
        await r.archiver.stop()
        await more_bids(r.engine, LOT_A, range(40, 45), 9000)  # while no child runs
        second = new_archiver(mongo_db, mongo_url, tmp_path / "journal")
        assert await second.load_archived_seq() >= snapshot_seq
        second.start(durable_seq=r.engine.last_seq)
        try:
            assert await second.wait_caught_up(r.engine.last_seq, timeout=30)
        finally:
            await second.stop()
        # Every bid exactly once, in seq order, whichever way it reached the archive.
        await assert_archived_once(r, mongo_db)
        await assert_mirror_matches_book(mongo_db, r.engine, LOT_A)


async def test_a_killed_child_is_started_again_and_loses_nothing(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    async with rig(tmp_path, mongo_db, mongo_url) as r:
        await open_session(r, mongo_db)
        await bid_burst(r.engine)
        await caught_up(r)
        first = child_pid(r.archiver)
        os.kill(first, signal.SIGKILL)
        await more_bids(r.engine, LOT_B, range(20, 40), 5000)  # some meet the dead pipe
        await caught_up(r)
        assert child_pid(r.archiver) != first
        assert r.archiver.stats["starts"] == 2
        await assert_archived_once(r, mongo_db)
        await assert_mirror_matches_book(mongo_db, r.engine, LOT_B)


async def test_stop_writes_everything_held_and_ends_the_child(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    async with open_rig(tmp_path, mongo_db, mongo_url) as r:
        pid = child_pid(r.archiver)
        await bid_burst(r.engine)
        await r.archiver.stop()  # no waiting for the archive first: stop itself flushes
        assert not alive(pid)
        assert r.archiver.archived_seq == r.engine.last_seq
        await assert_archived_once(r, mongo_db)


async def test_a_child_whose_parent_dies_writes_what_it_holds_and_exits(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    """The parent's end of the pipe closing (as when it is SIGKILLed) is the child's signal to go."""
    async with open_rig(tmp_path, mongo_db, mongo_url) as r:
        process = r.archiver._process
        assert process is not None and process.stdin is not None
        await bid_burst(r.engine)
        r.archiver._stopping = True  # no restart: this parent is "dead" from now on
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await assert_archived_once(r, mongo_db)


async def test_ctrl_c_to_the_process_group_leaves_the_child_to_its_parent(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    async with open_rig(tmp_path, mongo_db, mongo_url) as r:
        pid = child_pid(r.archiver)
        os.kill(pid, signal.SIGINT)
        await bid_burst(r.engine)
        await caught_up(r)
        assert child_pid(r.archiver) == pid  # still the same child, still archiving
        await assert_archived_once(r, mongo_db)


def test_the_child_is_given_no_secret_on_its_command_line(tmp_path: pathlib.Path) -> None:
    class FakeDb:
        name = "gavel"

    db: Any = FakeDb()
    archiver = ArchiverProcess(db, mongodb_url="mongodb://user:s3cret@db:27017", journal_dir=tmp_path)
    assert not any("s3cret" in part for part in archiver.command)
    assert archiver.env["GAVEL_ARCHIVER_MONGODB_URL"] == "mongodb://user:s3cret@db:27017"
