"""The single writer: group commit, idempotency, recovery from snapshot + journal, timers."""

import asyncio
import pathlib
import shutil
import threading
import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import journal
from engine.book.states import LotState, SessionState
from engine.clock import FakeClock
from engine.commands import (
    CancelLot,
    CloseLot,
    Outcome,
    PlaceBid,
    PutLot,
    PutSession,
    RegisterDeposit,
    SetMaxBid,
)
from engine.engine import CommittedBatch, Engine

T0 = 1_700_000_000_000
MINUTE = 60_000


class MemorySnapshotSink:
    """In-memory fake of the SnapshotSink port."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, bytes]] = []

    async def save(self, seq: int, blob: bytes) -> None:
        self.saved.append((seq, blob))

    async def latest(self) -> tuple[int, bytes] | None:
        return self.saved[-1] if self.saved else None


async def open_session(engine: Engine, clock: FakeClock, *, lots: int = 1, deposit: int = 0) -> None:
    """Session 1 with lots 1..n (start 1000, unit 100, reserve 2000), open for bidding."""
    await engine.execute(
        PutSession(1, T0, T0 + MINUTE, T0 + MINUTE, T0 + 60 * MINUTE, deposit, 30_000, 120_000)
    )
    for lot_id in range(1, lots + 1):
        assert (await engine.execute(PutLot(lot_id, 1, ["fixed", 1000, 100], 2000, 0))).ok
    clock.set(T0 + MINUTE)
    engine.poke()
    await engine.execute(RegisterDeposit(1, None, 999))  # a no-op that waits for the tick to apply


@pytest.fixture
async def running(tmp_path: pathlib.Path):
    clock = FakeClock(T0)
    sink = MemorySnapshotSink()
    engine = Engine(clock, tmp_path / "journal", sink, sync=False)
    await engine.start()
    yield engine, clock, sink, tmp_path
    if engine.running:
        await engine.stop(snapshot=False)


async def restart(engine: Engine, sink: MemorySnapshotSink | None, tmp_path: pathlib.Path) -> Engine:
    await engine.stop(snapshot=False)
    again = Engine(engine.clock, tmp_path / "journal", sink, sync=False)
    await again.start()
    return again


async def test_bid_is_answered_after_its_record_is_in_the_journal(running) -> None:
    engine, clock, _sink, tmp_path = running
    await open_session(engine, clock)
    batches: list[CommittedBatch] = []
    engine.listeners.append(batches.append)
    outcome = await engine.execute(PlaceBid(1, 7, 1000, "r1"))
    assert outcome.ok and outcome.decision is not None
    assert outcome.decision.price == 1000 and outcome.seq > 0
    records = dict(journal.recover(tmp_path / "journal"))
    assert msgpack.unpackb(records[outcome.seq])[0] == 1  # PlaceBid's tag
    kinds = [type(e).__name__ for batch in batches for e in batch.events]
    assert kinds == ["BidPlaced", "PriceChanged"]
    assert batches[0].seqs == [outcome.seq, outcome.seq]


async def test_rejections_are_not_journaled_and_bad_admin_commands_do_not_kill_the_engine(running) -> None:
    engine, clock, _sink, _tmp = running
    await open_session(engine, clock)
    before = engine.last_seq
    low = await engine.execute(PlaceBid(1, 7, 900, "low"))
    assert not low.ok and low.code == "TOO_LOW" and low.decision is not None
    assert low.decision.next_min == 1000
    bad = await engine.execute(PutLot(5, 42, ["fixed", 1000, 100], 0, 0))  # no session 42
    assert not bad.ok and bad.code == "NOT_FOUND"
    bad_rule = await engine.execute(PutLot(6, 1, ["fixed", 0, 100], 0, 0))
    assert not bad_rule.ok and bad_rule.code == "BAD_REQUEST"
    assert engine.last_seq == before
    assert (await engine.execute(PlaceBid(1, 7, 1000, "ok"))).ok


async def test_a_retried_reference_gets_the_first_answer_even_after_a_restart(running) -> None:
    engine, clock, sink, tmp_path = running
    await open_session(engine, clock)
    first = await engine.execute(PlaceBid(1, 7, 1000, "same"))
    await engine.execute(PlaceBid(1, 8, 1100, "other"))
    again = await engine.execute(PlaceBid(1, 7, 1000, "same"))
    assert again == first
    assert engine.book.lots[1].bid_count == 2
    engine = await restart(engine, sink, tmp_path)
    after_restart = await engine.execute(PlaceBid(1, 7, 1000, "same"))
    assert after_restart.ok and after_restart.seq == first.seq
    assert engine.book.lots[1].bid_count == 2
    await engine.stop(snapshot=False)


async def test_a_reference_reused_for_a_different_bid_is_refused_and_changes_nothing(running) -> None:
    engine, clock, _sink, tmp_path = running
    await open_session(engine, clock, lots=2)
    first = await engine.execute(PlaceBid(1, 7, 1000, "r"))
    assert first.ok
    seq, state = engine.last_seq, engine.book.to_state()
    records = dict(journal.recover(tmp_path / "journal"))
    # Another lot, another amount, another kind: each a different bid under the same ref.
    for other in (PlaceBid(2, 7, 1000, "r"), PlaceBid(1, 7, 1100, "r"), SetMaxBid(1, 7, 1000, "r")):
        reused = await engine.execute(other)
        assert reused == Outcome(False, "REF_REUSED", reused.message, 0, None)
        assert "different bid" in reused.message
    assert engine.last_seq == seq and engine.book.to_state() == state
    assert dict(journal.recover(tmp_path / "journal")) == records
    # The same bid is an idempotent retry: the first answer, still.
    assert await engine.execute(PlaceBid(1, 7, 1000, "r")) == first
    # Rejections are remembered with their bid too: a retry gets the rejection, a new bid is refused.
    low = await engine.execute(PlaceBid(1, 8, 900, "low"))
    assert low.code == "TOO_LOW"
    assert (await engine.execute(PlaceBid(1, 8, 1500, "low"))).code == "REF_REUSED"
    assert await engine.execute(PlaceBid(1, 8, 900, "low")) == low
    # References are per bidder: another bidder's "r" is a reference of its own.
    assert (await engine.execute(PlaceBid(2, 9, 1000, "r"))).ok


@pytest.mark.parametrize("with_snapshot", [False, True], ids=["journal", "snapshot"])
async def test_a_reused_reference_is_still_told_apart_after_recovery(running, with_snapshot: bool) -> None:
    engine, clock, sink, tmp_path = running
    await open_session(engine, clock, lots=2)
    plain = await engine.execute(PlaceBid(1, 7, 1000, "p"))
    hidden = await engine.execute(SetMaxBid(2, 7, 5000, "m"))
    assert plain.ok and hidden.ok
    if with_snapshot:
        await engine.snapshot()
    engine = await restart(engine, sink, tmp_path)
    assert engine.snapshot_seq == (engine.last_seq if with_snapshot else 0)
    assert await engine.execute(PlaceBid(1, 7, 1000, "p")) == plain._replace(message="")
    assert await engine.execute(SetMaxBid(2, 7, 5000, "m")) == hidden._replace(message="")
    for other in (PlaceBid(2, 7, 1000, "p"), PlaceBid(1, 7, 1200, "p"), SetMaxBid(1, 7, 1000, "p")):
        assert (await engine.execute(other)).code == "REF_REUSED"
    assert (await engine.execute(PlaceBid(2, 7, 5000, "m"))).code == "REF_REUSED"
    assert engine.book.lots[1].bid_count == 1 and engine.book.lots[2].bid_count == 1
    await engine.stop(snapshot=False)


async def test_a_snapshot_written_before_fingerprints_loads_and_tells_apart_what_it_can(running) -> None:
    """Old snapshots remember `[ref, answer]` without the bid. The safe rule: a reuse on another
    lot (the answer names its lot) is refused; on the same lot it is taken for a retry, since
    refusing a real retry could make the client bid twice."""
    engine, clock, _sink, tmp_path = running
    await open_session(engine, clock, lots=2)
    first = await engine.execute(PlaceBid(1, 7, 1000, "old"))
    state = msgpack.unpackb(engine.snapshot_bytes(), strict_map_key=False)
    # The old format also kept the refs inline rather than packed per bidder.
    state["refs"] = [[user_id, msgpack.unpackb(blob)] for user_id, blob in state.pop("refs_packed")]
    for _user_id, entries in state["refs"]:
        for entry in entries:
            del entry[2:]  # the old format: [ref, [ok, code, seq, decision]]
    ((user_id, [[ref, row]]),) = state["refs"]
    assert (user_id, ref, row[2]) == (7, "old", first.seq)
    await engine.stop(snapshot=False)
    shutil.rmtree(tmp_path / "journal")  # everything must come from the old snapshot
    old = MemorySnapshotSink()
    old.saved.append((state["seq"], msgpack.packb(state)))
    engine = Engine(clock, tmp_path / "journal", old, sync=False)
    await engine.start()
    assert engine.last_seq == first.seq and engine.book.lots[1].bid_count == 1
    assert await engine.execute(PlaceBid(1, 7, 1000, "old")) == first._replace(message="")
    assert (await engine.execute(PlaceBid(2, 7, 1000, "old"))).code == "REF_REUSED"
    assert (await engine.execute(PlaceBid(1, 7, 1100, "old"))).seq == first.seq  # unknown: a retry
    assert engine.book.lots[1].bid_count == 1 and engine.book.lots[2].bid_count == 0
    # Written again, the unknown bid stays unknown (it is not made up), and loads the same way.
    await engine.snapshot()
    engine = await restart(engine, old, tmp_path)
    assert (await engine.execute(PlaceBid(2, 7, 1000, "old"))).code == "REF_REUSED"
    assert (await engine.execute(PlaceBid(1, 7, 1000, "old"))).seq == first.seq
    await engine.stop(snapshot=False)


async def test_the_reference_cache_is_bounded_per_bidder(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", None, sync=False, refs_per_user=3)
    await engine.start()
    await open_session(engine, clock)
    for n in range(5):
        await engine.execute(PlaceBid(1, 7 + n % 2, 1000 + 100 * n, f"r{n}"))
    assert len(engine.refs.answers[7]) == 3
    await engine.stop(snapshot=False)


async def test_refs_are_kept_the_last_few_always_and_more_within_the_window(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", None, sync=False, **small_refs)
    await engine.start()
    await open_session(engine, clock)
    price = 1000
    for n, wait_ms in enumerate([0, 1_000, 1_000, 1_000, 1_000, 200_000, 1_000]):
        clock.advance(wait_ms)
        bidder = 7 if n % 2 == 0 else 8
        assert (await engine.execute(PlaceBid(1, bidder, price, f"k{n}"))).ok
        price += 100
        if n == 4:  # 7 has k0, k2, k4 within two minutes: all kept (the cap is four)
            assert list(engine.refs.answers[7]) == ["k0", "k2", "k4"]
    # Over two minutes later only the newest two of each are left.
    assert list(engine.refs.answers[7]) == ["k4", "k6"]
    assert list(engine.refs.answers[8]) == ["k3", "k5"]
    # A forgotten ref is a new bid again (it was no retry the engine could still tell).
    assert (await engine.execute(PlaceBid(1, 8, price, "k1"))).ok
    expected = engine.refs.to_state()
    await engine.stop(snapshot=False)
    replica = Engine(clock, tmp_path / "journal", None, sync=False, **small_refs)
    await replica.recover()
    assert replica.refs.to_state() == expected


async def test_ref_stamps_never_go_back_with_the_clock(tmp_path: pathlib.Path) -> None:
    """A wall clock stepped back must not make newer refs look older: stamps are the highest
    command time journaled so far, and replay stamps them the same."""
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", None, sync=False, **small_refs)
    await engine.start()
    await open_session(engine, clock)
    price = 1000
    for n, move_ms in enumerate([0, 500_000, -400_000, 1_000, -300_000, 1_000]):
        clock.advance(move_ms)
        assert (await engine.execute(PlaceBid(1, 7 + n % 2, price, f"s{n}"))).ok
        price += 100
    stamps = [entry[2] for entry in engine.refs.answers[7].values()]
    assert stamps == sorted(stamps) and stamps[-1] == T0 + MINUTE + 500_000
    expected = engine.refs.to_state()
    await engine.stop(snapshot=False)
    replica = Engine(clock, tmp_path / "journal", None, sync=False, **small_refs)
    await replica.recover()
    assert replica.refs.to_state() == expected


async def test_replaying_the_journal_reproduces_the_state_exactly(running) -> None:
    engine, clock, _sink, tmp_path = running
    await open_session(engine, clock, lots=3)
    for n in range(60):
        lot = 1 + n % 3
        if n % 7 == 0:
            await engine.execute(SetMaxBid(lot, 10 + n % 4, 5000 + 100 * n, f"m{n}"))
        else:
            await engine.execute(PlaceBid(lot, 10 + n % 5, 1000 + 100 * n, f"p{n}"))
        clock.advance(1_000)
    await engine.execute(CancelLot(3, "withdrawn by the consignor"))
    expected = engine.book.to_state()
    engine = await restart(engine, None, tmp_path)
    assert engine.book.to_state() == expected
    await engine.stop(snapshot=False)


async def test_snapshot_then_journal_recovers_and_old_segments_are_pruned(running) -> None:
    engine, clock, sink, tmp_path = running
    await open_session(engine, clock, lots=2)
    for n in range(10):
        await engine.execute(PlaceBid(1, 10 + n % 2, 1000 + 100 * n, f"a{n}"))
    first = await engine.snapshot()
    assert first == engine.last_seq and sink.saved[-1][0] == first
    for n in range(10):
        await engine.execute(PlaceBid(2, 10 + n % 2, 1000 + 100 * n, f"b{n}"))
    covered = await engine.snapshot()
    await engine.execute(PlaceBid(1, 12, 5000, "after"))
    segments = sorted((tmp_path / "journal").glob("journal-*.log"))
    first_seqs = [int(path.stem.split("-")[1]) for path in segments]
    # Segments wholly covered by the previous snapshot are gone; the previous snapshot's tail stays.
    assert first_seqs == [first + 1, covered + 1]
    expected = engine.book.to_state()
    engine = await restart(engine, sink, tmp_path)
    assert engine.snapshot_seq == covered
    assert engine.book.to_state() == expected
    await engine.stop(snapshot=False)


async def test_timers_open_extend_and_close_with_the_injected_clock(running) -> None:
    engine, clock, _sink, _tmp = running
    await engine.execute(PutSession(1, T0, T0 + MINUTE, T0 + MINUTE, T0 + 10 * MINUTE, 0, 30_000, 60_000))
    await engine.execute(PutLot(1, 1, ["fixed", 1000, 100], 0, 0))
    early = await engine.execute(PlaceBid(1, 7, 1000, "early"))
    assert early.code == "NOT_OPEN"
    clock.set(T0 + MINUTE)
    engine.poke()
    assert (await engine.execute(PlaceBid(1, 7, 1000, "open"))).ok
    assert engine.book.sessions[1].state is SessionState.BIDDING
    clock.set(T0 + 10 * MINUTE - 5_000)
    late = await engine.execute(PlaceBid(1, 8, 1100, "late"))
    assert late.ok
    assert engine.book.lots[1].ends_at == T0 + 10 * MINUTE + 25_000
    clock.set(T0 + 10 * MINUTE + 25_000)
    engine.poke()
    closed = await engine.execute(PlaceBid(1, 7, 1200, "too-late"))
    assert closed.code == "CLOSED"
    assert engine.book.lots[1].state is LotState.SOLD
    assert engine.book.lots[1].winner == 8
    assert engine.book.sessions[1].state is SessionState.ENDED


async def test_timers_that_fell_due_while_down_fire_at_once_after_recovery(running) -> None:
    engine, clock, sink, tmp_path = running
    await open_session(engine, clock)
    await engine.execute(PlaceBid(1, 7, 2000, "win"))
    await engine.stop(snapshot=False)
    clock.set(T0 + 2 * 60 * MINUTE)  # long after the lot's end
    engine = Engine(clock, tmp_path / "journal", sink, sync=False)
    await engine.start()
    await engine.execute(RegisterDeposit(1, None, 999))
    assert engine.book.lots[1].state is LotState.SOLD
    assert engine.book.lots[1].winner == 7
    await engine.stop(snapshot=False)


async def test_a_stopped_engine_refuses_politely(tmp_path: pathlib.Path) -> None:
    engine = Engine(FakeClock(T0), tmp_path / "journal", None, sync=False)
    answers: list[Outcome] = []
    engine.submit(PlaceBid(1, 1, 1000, "x"), answers.append)
    assert answers and answers[0].code == "UNAVAILABLE"


async def test_an_early_close_is_journaled_and_replayed(running) -> None:
    engine, clock, _sink, tmp_path = running
    await open_session(engine, clock)
    await engine.execute(PlaceBid(1, 7, 2500, "w"))
    assert (await engine.execute(CloseLot(1))).ok
    assert not (await engine.execute(CloseLot(1))).ok
    engine = await restart(engine, None, tmp_path)
    assert engine.book.lots[1].state is LotState.SOLD
    await engine.stop(snapshot=False)


async def test_every_journal_cut_keeps_every_acknowledged_bid_before_it(tmp_path: pathlib.Path) -> None:
    """Cut the journal at every byte offset: recovery yields exactly the whole records before it."""
    clock = FakeClock(T0)
    engine = Engine(clock, tmp_path / "journal", None, sync=False)
    await engine.start()
    await open_session(engine, clock)
    acked: list[tuple[int, int]] = []  # (seq, price)
    for n in range(12):
        outcome = await engine.execute(PlaceBid(1, 10 + n % 2, 1000 + 100 * n, f"c{n}"))
        assert outcome.ok
        acked.append((outcome.seq, 1000 + 100 * n))
    await engine.stop(snapshot=False)
    (segment,) = sorted((tmp_path / "journal").glob("journal-*.log"))
    data = segment.read_bytes()
    ends = []  # byte offset where each record ends
    offset = 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        offset += 16 + length
        ends.append(offset)
    for cut in range(8, len(data) + 1):
        work = tmp_path / f"cut-{cut}"
        shutil.copytree(tmp_path / "journal", work)
        (work / segment.name).write_bytes(data[:cut])
        whole = sum(1 for end in ends if end <= cut)
        replica = Engine(clock, work, None, sync=False)
        await replica.recover()
        assert replica.last_seq == whole
        prices = list(replica.book.lots[1].bids.prices) if 1 in replica.book.lots else []
        expected = [price for seq, price in acked if seq <= whole]
        assert prices == expected
        shutil.rmtree(work)


# Two refs always, more within two minutes, at most four: replay must keep exactly what live keeps.
small_refs = {"refs_per_user": 2, "refs_window_ms": 120_000, "refs_max_per_user": 4}

bid_steps = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=3),  # lot
        st.integers(min_value=1, max_value=5),  # bidder
        st.integers(min_value=0, max_value=40),  # steps of 100 above the start price
        st.booleans(),  # a maximum bid?
        st.integers(min_value=0, max_value=90_000),  # ms the clock moves first
        st.sampled_from(["", "", "r1", "r2", "r3", "r4", "r5", "r6"]),  # client references, some repeated
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(steps=bid_steps)
def test_replaying_any_journal_reproduces_the_state_exactly(tmp_path_factory, steps) -> None:
    """Property: whatever the commands and clock readings, recovery rebuilds the identical state."""

    async def scenario() -> None:
        directory = tmp_path_factory.mktemp("replay")
        clock = FakeClock(T0)
        engine = Engine(clock, directory, None, sync=False, **small_refs)
        await engine.start()
        await open_session(engine, clock, lots=3)
        for lot_id, bidder, steps_up, is_max, wait_ms, ref in steps:
            clock.advance(wait_ms)
            price = 1000 + 100 * steps_up
            command = (
                SetMaxBid(lot_id, bidder, price, ref) if is_max else PlaceBid(lot_id, bidder, price, ref)
            )
            await engine.execute(command)
        expected_book = engine.book.to_state()
        expected_refs = engine.refs.to_state()
        await engine.stop(snapshot=False)
        replica = Engine(clock, directory, None, sync=False, **small_refs)
        await replica.recover()
        assert replica.book.to_state() == expected_book
        assert replica.refs.to_state() == expected_refs

    asyncio.run(scenario())


async def test_wakeup_wakes_on_set_or_after_the_timeout() -> None:
    from engine.engine import Wakeup

    wakeup = Wakeup()
    wakeup.set()
    await asyncio.wait_for(wakeup.wait(10.0), 1.0)  # set before the wait: returns at once
    wakeup.clear()
    started = time.perf_counter()
    await wakeup.wait(0.05)  # nothing sets it: back after the timeout, no exception
    assert 0.04 <= time.perf_counter() - started < 1.0
    waiting = asyncio.ensure_future(wakeup.wait(None))
    await asyncio.sleep(0)
    assert not waiting.done()
    wakeup.set()
    await asyncio.wait_for(waiting, 1.0)
    assert wakeup.is_set()


class HeldWrites:
    """Makes the journal's write + fsync wait until the test lets each one through."""

    def __init__(self, engine: Engine) -> None:
        self.real = engine.write_batch
        self.gates: list[threading.Event] = []
        self.writes: list[bytes] = []
        self.started = threading.Semaphore(0)
        engine.write_batch = self.held

    def held(self, writer: journal.JournalWriter, data: bytes) -> float:
        gate = threading.Event()
        self.gates.append(gate)
        self.writes.append(data)
        self.started.release()
        assert gate.wait(10), "a held journal write was never let through"
        return self.real(writer, data)

    async def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(self.started.acquire, True, 10)

    def release(self, index: int) -> None:
        self.gates[index].set()


async def test_the_next_group_is_written_before_the_last_one_is_answered(running) -> None:
    """Pipelined group commits: the commands that arrived during an fsync are applied and their
    write started before the finished group's answers go out; every answer still waits for its
    own fsync, and answers and events stay in order."""
    engine, clock, _sink, tmp_path = running
    await open_session(engine, clock)
    held = HeldWrites(engine)
    batches: list[CommittedBatch] = []
    engine.listeners.append(batches.append)
    first: list[Outcome] = []
    records_taken_at_first_answer: list[int] = []

    def answer_first(outcome: Outcome) -> None:
        first.append(outcome)
        records_taken_at_first_answer.append(engine.stats["records"])

    engine.submit(PlaceBid(1, 7, 1000, "first"), answer_first)
    await held.wait_started(1)
    taken = engine.stats["records"]
    second = engine.execute(PlaceBid(1, 8, 1100, "second"))
    third = engine.execute(PlaceBid(1, 7, 1200, "third"))
    for _ in range(20):
        await asyncio.sleep(0)
    # Queued, not answered (nor applied) while the first group is not durable.
    assert not first and not second.done() and not third.done()
    assert engine.book.lots[1].price == 1000
    held.release(0)
    await held.wait_started(1)
    # The second group (both later bids, one write) was taken before the first answer went out.
    assert records_taken_at_first_answer == [taken + 2]
    assert first[0].ok and not second.done() and not third.done()
    assert [type(e).__name__ for batch in batches for e in batch.events] == ["BidPlaced", "PriceChanged"]
    held.release(1)
    answers = [await second, await third]
    assert [a.seq for a in answers] == [first[0].seq + 1, first[0].seq + 2]
    assert all(a.ok for a in answers)
    seqs = [seq for batch in batches for seq in batch.seqs]
    assert seqs == sorted(seqs) and seqs[-1] == answers[-1].seq
    assert len(held.writes) == 2
    records = dict(journal.recover(tmp_path / "journal"))
    assert {first[0].seq, *(a.seq for a in answers)} <= set(records)


async def test_a_snapshot_waits_for_the_group_in_flight_and_holds_only_durable_state(running) -> None:
    engine, clock, sink, _tmp = running
    await open_session(engine, clock)
    held = HeldWrites(engine)
    bid = engine.execute(PlaceBid(1, 7, 1000, "durable-first"))
    await held.wait_started(1)
    snapshot = engine.snapshot()
    later = engine.execute(PlaceBid(1, 8, 1100, "after-the-snapshot"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not snapshot.done()
    assert engine.book.lots[1].price == 1000  # the later bid waits behind the snapshot's barrier
    held.release(0)
    covered = await snapshot
    assert covered == (await bid).seq  # the snapshot covers exactly what was durable
    assert sink.saved[-1][0] == covered
    await held.wait_started(1)
    held.release(1)
    assert (await later).seq == covered + 1


async def test_a_failed_journal_write_stops_the_engine_without_answering(running) -> None:
    engine, clock, _sink, _tmp = running
    await open_session(engine, clock)

    def broken(writer: journal.JournalWriter, data: bytes) -> float:
        raise OSError(5, "Input/output error")

    engine.write_batch = broken
    bid = engine.execute(PlaceBid(1, 7, 1000, "lost"))
    task = engine._task
    assert task is not None
    with pytest.raises(OSError):
        await asyncio.wait_for(task, 10)
    assert not bid.done()  # never acknowledged: the bidder's retry goes to the restarted engine
    engine._task = None


@settings(max_examples=30, deadline=None)
@given(steps=bid_steps, cut=st.integers(min_value=0, max_value=60))
def test_a_snapshot_and_the_journal_after_it_rebuild_the_state_after_a_kill(
    tmp_path_factory, steps, cut
) -> None:
    """Property: a snapshot taken anywhere, then the journal's tail, rebuilds the identical book and
    reference cache, with the engine that wrote them never stopped (as after a SIGKILL: only what
    its fsyncs made durable is there). The cache comes back through `RefCache.load`, trimmed at
    once, and must keep exactly what the live cache kept one put at a time."""

    async def scenario() -> None:
        directory = tmp_path_factory.mktemp("killed")
        clock = FakeClock(T0)
        sink = MemorySnapshotSink()
        engine = Engine(clock, directory, sink, sync=False, **small_refs)
        await engine.start()
        await open_session(engine, clock, lots=3)
        for n, (lot_id, bidder, steps_up, is_max, wait_ms, ref) in enumerate(steps):
            if n == cut:
                await engine.snapshot()
            clock.advance(wait_ms)
            price = 1000 + 100 * steps_up
            command = (
                SetMaxBid(lot_id, bidder, price, ref) if is_max else PlaceBid(lot_id, bidder, price, ref)
            )
            await engine.execute(command)
        expected_book = engine.book.to_state()
        expected_refs = engine.refs.to_state()
        replica = Engine(clock, directory, sink, sync=False, **small_refs)
        await replica.recover()
        assert replica.snapshot_seq == (sink.saved[-1][0] if sink.saved else 0)
        assert replica.book.to_state() == expected_book
        assert replica.refs.to_state() == expected_refs
        await engine.stop(snapshot=False)

    asyncio.run(scenario())


def test_loading_refs_trims_them_as_one_put_at_a_time_would() -> None:
    """A snapshot's refs loaded under smaller limits (a restart with other settings) keep what
    puts would keep: the newest, and the older ones only within the window."""
    from engine.engine import RefCache

    wide = RefCache(per_user=10, window_ms=1_000_000, max_per_user=10)
    answer = Outcome(True, None, "", 1, None)
    for n in range(8):
        wide.put(7, f"r{n}", 2 * n, answer._replace(seq=n + 1), T0 + n * 60_000)
    narrow, one_at_a_time = (RefCache(per_user=2, window_ms=120_000, max_per_user=4) for _ in range(2))
    narrow.load(wide.to_state())
    for ref, (fingerprint, outcome, stamp) in wide.answers[7].items():
        one_at_a_time.put(7, ref, fingerprint, outcome, stamp)
    assert list(narrow.answers[7]) == list(one_at_a_time.answers[7]) == ["r5", "r6", "r7"]
    assert narrow.to_state() == one_at_a_time.to_state()


async def test_a_bidders_refs_stay_packed_after_a_restart_until_the_bidder_bids(running) -> None:
    """Loading a snapshot decodes no bidder's refs; the first bid of a bidder decodes that bidder's
    (and a retry there still gets its first answer), and a snapshot writes the others back as is."""
    engine, clock, sink, tmp_path = running
    await open_session(engine, clock, lots=2)
    first = await engine.execute(PlaceBid(1, 7, 1000, "a"))
    await engine.execute(PlaceBid(1, 8, 1100, "b"))
    await engine.snapshot()
    expected = engine.refs.to_state()
    engine = await restart(engine, sink, tmp_path)
    assert sorted(engine.refs.packed) == [7, 8] and engine.refs.answers == {}
    assert engine.refs.to_state() == expected
    assert await engine.execute(PlaceBid(1, 7, 1000, "a")) == first._replace(message="")
    assert sorted(engine.refs.packed) == [8] and list(engine.refs.answers[7]) == ["a"]
    packed_8 = engine.refs.packed[8]
    await engine.snapshot()
    state = msgpack.unpackb(sink.saved[-1][1], strict_map_key=False)
    assert dict(state["refs_packed"])[8] == packed_8
    engine = await restart(engine, sink, tmp_path)
    assert engine.refs.to_state() == expected
    # A packed bidder's bid in the journal's tail waits beside its bytes through the replay.
    tail = await engine.execute(PlaceBid(2, 8, 1000, "c"))
    expected = engine.refs.to_state()
    engine = await restart(engine, sink, tmp_path)
    assert 8 in engine.refs.packed and [ref for ref, _ in engine.refs.pending[8]] == ["c"]
    assert await engine.execute(PlaceBid(2, 8, 1000, "c")) == tail._replace(message="")
    assert 8 not in engine.refs.packed and list(engine.refs.answers[8]) == ["b", "c"]
    assert engine.refs.to_state() == expected
    await engine.stop(snapshot=False)
