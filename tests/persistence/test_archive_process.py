"""The write-behind in its own process: a real engine, the real child process, the real MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from engine import journal
from engine.clock import FakeClock
from engine.commands import PlaceBid
from engine.engine import CommittedBatch, Engine
from persistence.archive_process import PIPE_FLUSH_INTERVAL, ArchiverProcess, FramedRecordReader
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
        # Written to the pipe within PIPE_FLUSH_INTERVAL (what a parent killed sooner had gathered
        # is in its journal, for the next child).
        await asyncio.sleep(3 * PIPE_FLUSH_INTERVAL)
        r.archiver._stopping = True  # no restart: this parent is "dead" from now on
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await assert_archived_once(r, mongo_db)


async def test_a_child_whose_parent_is_gone_exits_without_a_traceback(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Both pipes closed, as when the parent was killed: the child's last progress report meets a
    closed pipe. It says nothing about it (it once printed a BrokenPipeError traceback)."""
    async with open_rig(tmp_path, mongo_db, mongo_url) as r:
        process = r.archiver._process
        assert process is not None and process.stdin is not None
        await bid_burst(r.engine)
        r.archiver._stopping = True  # no restart: this parent is "dead" from now on
        transport: Any = process._transport  # type: ignore[attr-defined]
        transport.get_pipe_transport(1).close()  # the reports' read end
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    assert "Traceback" not in capfd.readouterr().err


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


async def many_bids(engine: Engine, lot_id: int, count: int, price: int) -> None:
    """`count` accepted bids by distinct bidders, 100 to a group commit (each beats the last)."""
    for group in range(0, count, 100):
        futures = [
            engine.execute(PlaceBid(lot_id, 1000 + n, price + 100 * n, f"many-{lot_id}-{price}-{n}"))
            for n in range(group, min(group + 100, count))
        ]
        outcomes = await asyncio.gather(*futures)
        assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]


async def test_group_commits_are_gathered_into_few_pipe_writes(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    async with open_rig(tmp_path, mongo_db, mongo_url) as r:
        commits: list[int] = []
        observer = r.engine.record_observer
        assert observer is not None

        def counting(last_seq: int, data: bytes) -> None:
            commits.append(last_seq)
            observer(last_seq, data)

        r.engine.record_observer = counting
        writes_before = r.archiver.stats["pipe_writes"]
        await more_bids(r.engine, LOT_B, range(20, 80), 5000)  # one group commit each
        await caught_up(r)
        writes = r.archiver.stats["pipe_writes"] - writes_before
        assert len(commits) == 60
        assert 1 <= writes < len(commits) // 2, writes
        await assert_archived_once(r, mongo_db)


async def test_a_child_too_far_behind_is_replaced_and_the_journal_fills_the_gap(
    tmp_path: pathlib.Path, mongo_db: Db, mongo_url: str
) -> None:
    """A child that stops reading (here SIGSTOP; in life, starved of CPU) does not make the engine's
    process buffer the journal without end: past the limit the pipe is dropped, the child writes
    what it read and exits, and the next one reads the rest from the journal files."""
    async with open_rig(tmp_path, mongo_db, mongo_url) as r:
        r.archiver.backlog_limit = 16 << 10
        first = child_pid(r.archiver)
        os.kill(first, signal.SIGSTOP)
        try:
            # ~150 KB of records: more than the pipe (64 KiB) and the limit hold.
            await many_bids(r.engine, LOT_B, 3000, 5000)
            await asyncio.sleep(0.05)  # the last gathered commits reach the pipe
            assert r.archiver.stats["overflows"] == 1
        finally:
            os.kill(first, signal.SIGCONT)
        await caught_up(r)
        assert child_pid(r.archiver) != first
        assert r.archiver.stats["starts"] == 2
        await assert_archived_once(r, mongo_db)
        await assert_mirror_matches_book(mongo_db, r.engine, LOT_B)


def test_the_child_runs_under_sched_idle_unless_told_otherwise(tmp_path: pathlib.Path) -> None:
    """The write-behind takes the CPU only when the engine's process does not want it."""
    script = (
        "import os, sys; from persistence.archive_process import _parse, set_idle_priority\n"
        "args = _parse(['--journal-dir', '.', '--mongodb-db', 'x', '--cpu', sys.argv[1]])\n"
        "if args.cpu == 'idle': assert set_idle_priority()\n"
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE)"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    for policy, expected in (("idle", "True"), ("normal", "False")):
        done = subprocess.run(
            [sys.executable, "-c", script, policy], cwd=root, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == expected, done.stderr

    class FakeDb:
        name = "gavel"

    db: Any = FakeDb()
    command = ArchiverProcess(db, mongodb_url="mongodb://db", journal_dir=tmp_path).command
    assert command[command.index("--cpu") + 1] == "idle"


def test_the_child_is_given_no_secret_on_its_command_line(tmp_path: pathlib.Path) -> None:
    class FakeDb:
        name = "gavel"

    db: Any = FakeDb()
    archiver = ArchiverProcess(db, mongodb_url="mongodb://user:s3cret@db:27017", journal_dir=tmp_path)
    assert not any("s3cret" in part for part in archiver.command)
    assert archiver.env["GAVEL_ARCHIVER_MONGODB_URL"] == "mongodb://user:s3cret@db:27017"
