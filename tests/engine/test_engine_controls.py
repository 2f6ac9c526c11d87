"""The admin controls as journaled engine commands: refused ones change nothing and are not
journaled; a restart from the journal (and from a snapshot) gives the very same book."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book.states import LotState
from engine.clock import FakeClock
from engine.commands import (
    BY_TAG,
    TAGS,
    Command,
    ExtendLot,
    PauseLot,
    PauseSession,
    PlaceBid,
    ResumeLot,
    ResumeSession,
    SetMaxBid,
    VoidBid,
)
from engine.engine import Engine
from tests.engine.test_engine import MINUTE, T0, open_session, restart, running  # noqa: F401


def test_the_control_tags_are_appended_and_never_renumbered() -> None:
    assert {kind.__name__: TAGS[kind] for kind in BY_TAG.values() if TAGS[kind] >= 18} == {
        "PauseLot": 18,
        "ResumeLot": 19,
        "PauseSession": 20,
        "ResumeSession": 21,
        "ExtendLot": 22,
        "VoidBid": 23,
        "CompactLots": 24,
    }
    assert len(set(TAGS.values())) == len(TAGS)


async def test_controls_are_journaled_and_a_restart_rebuilds_the_same_book(running) -> None:  # noqa: F811
    engine, clock, sink, tmp_path = running
    await open_session(engine, clock, lots=2)
    for n in range(6):
        assert (await engine.execute(PlaceBid(1, 10 + n % 3, 1000 + 100 * n, f"p{n}"))).ok
        clock.advance(1_000)
    assert (await engine.execute(SetMaxBid(2, 20, 5000, "m"))).ok
    paused = await engine.execute(PauseLot(1, "reserve typo"))
    assert paused.ok and paused.seq == engine.last_seq
    refused = await engine.execute(PlaceBid(1, 11, 9000, "while-paused"))
    assert refused.code == "PAUSED"
    again = await engine.execute(PauseLot(1, "twice"))
    assert (again.ok, again.code, again.seq) == (False, "ILLEGAL_STATE", 0)
    clock.advance(90_000)
    assert (await engine.execute(VoidBid(1, 5, "fat finger"))).ok
    assert (await engine.execute(ResumeLot(1))).ok
    lot = engine.book.lots[1]
    assert lot.ends_at == T0 + 60 * MINUTE + 90_000 and lot.price == 1400 and lot.bid_count == 5
    end = lot.ends_at + 5 * MINUTE
    assert (await engine.execute(ExtendLot(1, end))).ok
    bad = await engine.execute(ExtendLot(1, end - 1))
    assert (bad.ok, bad.code) == (False, "BAD_REQUEST")
    assert (await engine.execute(PauseSession(1, "fire alarm"))).ok
    clock.advance(30_000)
    assert (await engine.execute(ResumeSession(1))).ok
    assert engine.book.lots[2].ends_at == T0 + 60 * MINUTE + 30_000
    assert lot.extensions == 1 and lot.ends_at == end + 30_000

    expected = engine.book.to_state()
    engine = await restart(engine, None, tmp_path)  # the journal alone
    assert engine.book.to_state() == expected
    await engine.snapshot()
    engine = await restart(engine, sink, tmp_path)  # the snapshot
    assert engine.book.to_state() == expected
    assert engine.book.lots[1].inputs()[5].voided

    clock.set(end + 30_000)
    engine.poke()
    assert (await engine.execute(PlaceBid(2, 21, 9000, "late"))).code == "CLOSED"
    assert engine.book.lots[1].state is LotState.UNSOLD  # 1400 is below the reserve (2000)
    await engine.stop(snapshot=False)


async def test_a_lot_paused_past_its_end_closes_only_after_the_resume(running) -> None:  # noqa: F811
    engine, clock, _sink, tmp_path = running
    await open_session(engine, clock)
    assert (await engine.execute(PlaceBid(1, 10, 2000, "a"))).ok
    assert (await engine.execute(PauseLot(1, "hold"))).ok
    clock.set(T0 + 70 * MINUTE)  # past the end
    engine.poke()
    assert (await engine.execute(PlaceBid(1, 11, 2100, "b"))).code == "PAUSED"
    assert engine.book.lots[1].state is LotState.BIDDING
    engine = await restart(engine, None, tmp_path)  # the journaled tick is replayed: still held
    assert engine.book.lots[1].state is LotState.BIDDING
    assert (await engine.execute(ResumeLot(1))).ok
    held = 69 * MINUTE  # paused at T0 + 1 min, resumed at T0 + 70 min
    assert engine.book.lots[1].ends_at == T0 + 60 * MINUTE + held
    assert (await engine.execute(PlaceBid(1, 11, 2100, "c"))).ok
    await engine.stop(snapshot=False)


bid_step = st.tuples(
    st.just("bid"),
    st.integers(min_value=1, max_value=2),  # lot
    st.integers(min_value=1, max_value=4),  # bidder
    st.integers(min_value=0, max_value=30),  # steps of 100 above the start
    st.booleans(),  # a maximum?
)
control_steps = st.lists(
    st.one_of(
        bid_step,
        bid_step,
        st.tuples(
            st.just("bid"),
            st.integers(min_value=1, max_value=2),  # lot
            st.integers(min_value=1, max_value=4),  # bidder
            st.integers(min_value=0, max_value=30),  # steps of 100 above the start
            st.booleans(),  # a maximum?
        ),
        st.tuples(st.sampled_from(["pause", "resume", "extend"]), st.integers(min_value=1, max_value=2)),
        st.tuples(
            st.just("void"), st.integers(min_value=1, max_value=2), st.integers(min_value=0, max_value=8)
        ),
        st.tuples(st.sampled_from(["pause_session", "resume_session"])),
    ),
    min_size=10,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(
    steps=control_steps,
    waits=st.lists(st.integers(min_value=0, max_value=3 * MINUTE), min_size=40, max_size=40),
)
def test_any_mix_of_bids_and_controls_recovers_to_the_same_book(tmp_path_factory, steps, waits) -> None:
    """Property: whatever bids and controls were applied (refused ones included), and however the
    clock moved (lots closing on the way), recovery from the journal rebuilds the identical book."""

    async def scenario() -> None:
        directory = tmp_path_factory.mktemp("controls")
        clock = FakeClock(T0)
        engine = Engine(clock, directory, None, sync=False)
        await engine.start()
        await open_session(engine, clock, lots=2)
        for step, wait in zip(steps, waits, strict=False):
            clock.advance(wait)
            command: Command
            if step[0] == "bid":
                _, lot_id, bidder, up, is_max = step
                price = 1000 + 100 * up
                command = SetMaxBid(lot_id, bidder, price) if is_max else PlaceBid(lot_id, bidder, price)
            elif step[0] == "pause":
                command = PauseLot(step[1], "p")
            elif step[0] == "resume":
                command = ResumeLot(step[1])
            elif step[0] == "extend":
                command = ExtendLot(step[1], engine.book.lots[step[1]].ends_at + MINUTE)
            elif step[0] == "void":
                command = VoidBid(step[1], step[2], "v")
            elif step[0] == "pause_session":
                command = PauseSession(1, "s")
            else:
                command = ResumeSession(1)
            engine.poke()
            await engine.execute(command)
        expected = engine.book.to_state()
        await engine.stop(snapshot=False)
        replica = Engine(clock, directory, None, sync=False)
        await replica.recover()
        assert replica.book.to_state() == expected

    asyncio.run(scenario())
