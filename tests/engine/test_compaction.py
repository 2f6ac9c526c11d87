"""Closed lots compacted out of the engine: the book's rule, the journaled command (replay and
snapshots give the same book), the pure decision and the compactor over fake ports."""

import pathlib

import msgpack
import pytest

from engine.book.book import Book
from engine.book.errors import InvalidCommand, RejectCode
from engine.book.increments import FixedIncrement
from engine.book.lot import EMPTY_HISTORY, NO_VOIDS, Lot
from engine.book.session import NO_DEPOSITORS
from engine.book.states import LotState, SessionState
from engine.clock import FakeClock
from engine.commands import CloseLot, CompactLots, MarkOverdue, PlaceBid, RegisterDeposit, SetMaxBid
from engine.compaction import Compactor, archived_candidates, closed_uncompacted, lots_to_compact
from engine.engine import Engine
from tests.engine.test_engine import T0, MemorySnapshotSink, open_session, restart


def closed_book() -> Book:
    """Lot 1 sold after three bids (two bidders, a proxy step), lot 2 still bidding."""
    book = Book()
    book.put_session(1, preview_start=0, preview_end=0, bidding_start=10, bidding_end=1_000)
    for lot_id in (1, 2):
        book.put_lot(lot_id, 1, FixedIncrement(100, 10))
    book.advance(10)
    assert book.place(1, 7, 200, True, 20).accepted
    assert book.place(1, 8, 150, False, 30).accepted
    assert book.place(2, 8, 100, False, 40).accepted
    book.close_lot(1, 50)
    return book


def test_a_compacted_lot_keeps_its_outcome_and_refuses_bids_as_closed() -> None:
    book = closed_book()
    before = book.lot(1)
    outcome = (before.state, before.price, before.leader, before.winner, before.bid_count, before.ends_at)
    assert book.compact_lots([1, 2, 99]) == [1]  # lot 2 is open, 99 unknown: skipped
    lot = book.lot(1)
    assert lot.compacted and not book.lot(2).compacted
    assert (lot.state, lot.price, lot.leader, lot.winner, lot.bid_count, lot.ends_at) == outcome
    assert len(lot.bids) == 0 and len(lot.input_log) == 0 and not lot.depositors
    assert book.place(1, 9, 10_000, False, 60).code is RejectCode.CLOSED
    with pytest.raises(InvalidCommand):
        book.compact_lots([1, 2])  # nothing left to compact: refused, so not journaled
    book.mark_overdue(1)  # the winner did not pay: a compacted lot still moves on
    assert book.lot(1).state is LotState.OVERDUE


def test_a_snapshot_keeps_compacted_lots_compacted_and_is_smaller() -> None:
    book = closed_book()
    full = len(msgpack.packb(book.to_state()))
    book.compact_lots([1])
    state = book.to_state()
    assert len(msgpack.packb(state)) < full
    again = Book.from_state(msgpack.unpackb(msgpack.packb(state), strict_map_key=False))
    assert again.to_state() == state
    assert again.lot(1).bid_count == 3 and again.lot(1).price == 160
    assert again.lot(1).compacted and again.place(1, 9, 10_000, False, 60).code is RejectCode.CLOSED
    # An older snapshot (no compaction field) loads every lot uncompacted.
    old = msgpack.unpackb(msgpack.packb(closed_book().to_state()), strict_map_key=False)
    for row in old["lots"]:
        del row[19:]
    assert not any(lot.compacted for lot in Book.from_state(old).lots.values())


def answers(lot: Lot) -> tuple[object, ...]:
    """What the readers of a closed lot ask of it."""
    return (
        lot.state,
        lot.price,
        lot.leader,
        lot.winner,
        lot.bid_count,
        lot.ends_at,
        lot.next_min(),
        lot.may_bid(7),
    )


def test_compacted_lots_share_their_empty_history_depositors_and_rule() -> None:
    book = closed_book()
    book.register_deposit(1, 1, 7)  # its own set until compacted
    book.close_lot(2, 60)
    readers = [answers(lot) for lot in book.lots.values()]
    first_rule = book.lot(1).rule
    assert book.compact_lots([1, 2]) == [1, 2]
    for lot in book.lots.values():
        assert lot.bids is EMPTY_HISTORY and lot.input_log is EMPTY_HISTORY
        assert lot.voided is NO_VOIDS and lot.depositors is NO_DEPOSITORS
        assert lot.rule is first_rule  # one rule object per spec, not one per lot
    assert [answers(lot) for lot in book.lots.values()] == readers
    assert book.place(2, 9, 10_000, True, 70).code is RejectCode.CLOSED
    assert len(EMPTY_HISTORY) == 0 and not NO_VOIDS and not NO_DEPOSITORS  # never written through


def test_a_first_depositor_gets_a_set_of_its_own() -> None:
    book = Book()
    for session_id in (1, 2):
        book.put_session(session_id, preview_start=0, preview_end=0, bidding_start=10, bidding_end=1_000)
        book.put_lot(session_id, session_id, FixedIncrement(100, 10), deposit=50)
    book.register_deposit(1, None, 7)
    book.register_deposit(1, 1, 8)
    assert book.session(1).depositors == {7} and book.lot(1).depositors == {8}
    assert book.session(2).depositors is NO_DEPOSITORS and book.lot(2).depositors is NO_DEPOSITORS
    assert not NO_DEPOSITORS
    book.advance(10)
    assert book.place(1, 7, 100, False, 20).accepted and book.place(1, 8, 110, False, 21).accepted
    assert book.place(2, 7, 100, False, 22).code is RejectCode.NO_DEPOSIT


def test_an_ended_session_lets_its_depositors_go_once_every_lot_is_compacted() -> None:
    book = closed_book()
    book.register_deposit(1, None, 7)
    book.close_lot(2, 60)
    assert book.session(1).state is SessionState.ENDED
    book.compact_lots([1])
    assert book.session(1).depositors == {7}  # lot 2's settlement may still need them
    book.compact_lots([2])
    assert book.session(1).depositors is NO_DEPOSITORS
    state = book.to_state()
    again = Book.from_state(msgpack.unpackb(msgpack.packb(state), strict_map_key=False))
    assert again.to_state() == state and again.session(1).depositors is NO_DEPOSITORS
    # A snapshot taken before depositors were let go loads them let go.
    old = msgpack.unpackb(msgpack.packb(state), strict_map_key=False)
    old["sessions"][0][9] = [7]
    assert Book.from_state(old).session(1).depositors is NO_DEPOSITORS


def test_the_decision_needs_the_close_archived_and_settled() -> None:
    closed_at = {10: 5, 11: 7, 12: 9, 13: 4}
    assert lots_to_compact(closed_at, archived_seq=7, settled={10, 11, 12}) == [10, 11]
    assert lots_to_compact(closed_at, archived_seq=9, settled={12, 13}) == [13, 12]  # in closing order
    assert lots_to_compact(closed_at, archived_seq=9, settled={10, 11, 12, 13}, limit=2) == [13, 10]
    assert lots_to_compact(closed_at, archived_seq=3, settled=closed_at) == []
    assert archived_candidates(closed_at, 7) == [10, 11, 13]
    assert closed_uncompacted(closed_book()) == [1]


async def test_replay_of_a_journal_with_compactions_gives_the_same_book(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(T0)
    sink = MemorySnapshotSink()
    engine = Engine(clock, tmp_path / "journal", sink, sync=False)
    await engine.start()
    await open_session(engine, clock, lots=3)
    for lot_id in (1, 2, 3):
        assert (await engine.execute(SetMaxBid(lot_id, 7, 5_000, f"a{lot_id}"))).ok
        assert (await engine.execute(PlaceBid(lot_id, 8, 3_000, f"b{lot_id}"))).ok
    assert (await engine.execute(CloseLot(1))).ok
    assert (await engine.execute(CompactLots([1]))).ok
    await engine.snapshot()  # the snapshot holds lot 1 compacted; the tail compacts lot 2
    assert (await engine.execute(CloseLot(2))).ok
    assert (await engine.execute(CompactLots([2, 3]))).ok  # lot 3 is open: only lot 2
    assert not (await engine.execute(CompactLots([1, 2]))).ok  # nothing left: refused
    assert (await engine.execute(MarkOverdue(1))).ok
    closed = await engine.execute(PlaceBid(2, 9, 9_000, "late"))
    assert closed.code == "CLOSED"
    state = engine.book.to_state()
    assert [lot[0] for lot in state["lots"] if lot[19]] == [1, 2]
    counts = {lot_id: lot.bid_count for lot_id, lot in engine.book.lots.items()}

    again = await restart(engine, sink, tmp_path)  # snapshot + tail
    assert again.book.to_state() == state
    assert {lot_id: lot.bid_count for lot_id, lot in again.book.lots.items()} == counts
    assert (await again.execute(PlaceBid(2, 9, 9_000, "late"))).code == "CLOSED"
    # The retry of an acknowledged bid on a compacted lot still gets its first answer.
    retry = await again.execute(PlaceBid(2, 8, 3_000, "b2"))
    assert retry.ok and retry.decision is not None and retry.decision.lot_id == 2
    sink.saved.clear()
    whole = await restart(again, sink, tmp_path)  # the whole journal, no snapshot
    assert whole.book.to_state() == state
    await whole.stop(snapshot=False)


async def test_replay_lets_an_ended_sessions_depositors_go_at_the_same_compaction(
    tmp_path: pathlib.Path,
) -> None:
    clock = FakeClock(T0)
    sink = MemorySnapshotSink()
    engine = Engine(clock, tmp_path / "journal", sink, sync=False)
    await engine.start()
    await open_session(engine, clock, lots=2, deposit=500)  # depositor 999
    assert (await engine.execute(RegisterDeposit(1, None, 7))).ok
    assert (await engine.execute(PlaceBid(1, 7, 1_000, "a"))).ok
    for lot_id in (1, 2):
        assert (await engine.execute(CloseLot(lot_id))).ok
    assert (await engine.execute(CompactLots([1]))).ok
    await engine.snapshot()  # holds the session's depositors: lot 2 is not compacted yet
    assert engine.book.session(1).depositors == {7, 999}
    assert (await engine.execute(CompactLots([2]))).ok
    assert engine.book.session(1).depositors is NO_DEPOSITORS
    state = engine.book.to_state()
    again = await restart(engine, sink, tmp_path)  # snapshot + the tail's CompactLots
    assert again.book.to_state() == state and again.book.session(1).depositors is NO_DEPOSITORS
    sink.saved.clear()
    whole = await restart(again, sink, tmp_path)  # the whole journal
    assert whole.book.to_state() == state
    await whole.stop(snapshot=False)


class FakeArchive:
    def __init__(self) -> None:
        self.archived_seq = 0


class FakeSettlement:
    def __init__(self) -> None:
        self.done: set[int] = set()
        self.asked: list[list[int]] = []

    async def settled(self, lot_ids: list[int]) -> set[int]:
        self.asked.append(lot_ids)
        return self.done & set(lot_ids)


async def test_the_compactor_waits_for_the_archive_and_the_settlement(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", None, sync=False)
    await engine.start()
    await open_session(engine, clock, lots=3)
    assert (await engine.execute(PlaceBid(1, 7, 1_000))).ok
    assert (await engine.execute(CloseLot(1))).ok  # closed before the compactor starts
    archive, settlement = FakeArchive(), FakeSettlement()
    compactor = Compactor(lambda: engine.book, lambda: engine.last_seq, engine.execute, archive, settlement)
    compactor.adopt_book()
    engine.listeners.append(compactor.on_batch)
    close_two = await engine.execute(CloseLot(2))
    assert compactor.candidates == {1: close_two.seq - 1, 2: close_two.seq}

    assert await compactor.run_once() == 0 and settlement.asked == []  # nothing archived yet
    archive.archived_seq = close_two.seq
    assert await compactor.run_once() == 0  # archived, not settled
    settlement.done = {1}
    assert await compactor.run_once() == 1
    assert engine.book.lot(1).compacted and not engine.book.lot(2).compacted
    assert compactor.candidates == {2: close_two.seq}
    settlement.done = {1, 2}
    assert await compactor.run_once() == 1 and compactor.candidates == {} and compactor.compacted == 2
    await engine.stop(snapshot=False)
