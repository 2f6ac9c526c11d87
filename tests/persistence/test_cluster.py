"""The scale-out adapters against a real Redis: registry and leases, engine node, remote engine."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from engine.book.errors import RejectCode
from engine.book.lot import Decision
from engine.book.states import LotState
from engine.clock import FakeClock
from engine.commands import (
    TAGS,
    BlockBidder,
    ExtendLot,
    Outcome,
    PauseLot,
    PauseSession,
    PlaceBid,
    PutLot,
    PutSession,
    ResumeLot,
    ResumeSession,
    VoidBid,
)
from engine.engine import CommittedBatch, Engine
from persistence.cluster import (
    EngineNode,
    LeaseLost,
    Registry,
    RemoteEngine,
    command_stream,
    decode_outcome,
    encode_outcome,
    journal_stream,
    run_with_lease,
)
from persistence.snapshots import FileSnapshotSink

T0 = 1_700_000_000_000
MINUTE = 60_000


def session_opening_at(session_id: int, start: int) -> PutSession:
    return PutSession(session_id, start, start, start, start + 60 * MINUTE, 0, 30_000, 120_000)


class Cluster:
    """Engines and gateways in one event loop, each with its own Redis client, as processes would."""

    def __init__(self, redis_client: aioredis.Redis, tmp_path: Path) -> None:
        self.redis = redis_client
        self.tmp_path = tmp_path
        self.clock = FakeClock(T0)
        self.engines: dict[str, tuple[Engine, EngineNode]] = {}
        self.remotes: list[RemoteEngine] = []

    def sink(self, engine_id: str) -> FileSnapshotSink:
        return FileSnapshotSink(self.tmp_path / engine_id / "snapshots")

    async def engine(self, engine_id: str, *, lease_ms: int = 10_000) -> tuple[Engine, EngineNode]:
        engine = Engine(self.clock, self.tmp_path / engine_id / "journal", self.sink(engine_id), sync=False)
        node = EngineNode(self.redis, engine, engine_id, self.tmp_path / engine_id, lease_ms=lease_ms)
        await node.acquire()
        await engine.start()
        await node.serve()
        self.engines[engine_id] = (engine, node)
        return engine, node

    async def gateway(self) -> RemoteEngine:
        remote = RemoteEngine(self.redis, self.clock, self.sink, reply_timeout=3.0)
        await remote.start()
        assert await remote.wait_for_engine(5.0)
        self.remotes.append(remote)
        return remote

    async def stop_engine(self, engine_id: str) -> None:
        engine, node = self.engines.pop(engine_id)
        await node.stop_reading()
        await engine.stop(snapshot=False)
        await node.stop()

    async def close(self) -> None:
        for remote in self.remotes:
            await remote.stop()
        for engine_id in list(self.engines):
            await self.stop_engine(engine_id)


@pytest.fixture
async def cluster(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(redis_client, tmp_path)
    yield cluster
    await cluster.close()


async def eventually(
    condition: Callable[[], bool], seconds: float = 5.0, message: Callable[[], str] = lambda: ""
) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"condition never held {message()}"
        await asyncio.sleep(0.01)


async def seed(cluster: Cluster, remote: RemoteEngine, session_id: int, lot_id: int) -> None:
    """A session with one lot, added before bidding starts; then the clock moves to its start."""
    start = cluster.clock.now_ms() + 1_000
    assert (await remote.execute(session_opening_at(session_id, start))).ok
    assert (await remote.execute(PutLot(lot_id, session_id, ["fixed", 1000, 100], 0, 0))).ok
    cluster.clock.advance(1_000)
    for engine, _node in cluster.engines.values():
        engine.poke()
    await eventually(
        lambda: lot_id in remote.book.lots and remote.book.lots[lot_id].state is LotState.BIDDING
    )


async def one_engine_one_lot(cluster: Cluster) -> tuple[Engine, EngineNode, RemoteEngine]:
    """Engine e1 and a gateway, with lot 10 of session 1 open for bidding."""
    engine, node = await cluster.engine("e1")
    gateway = await cluster.gateway()
    await seed(cluster, gateway, 1, 10)
    return engine, node, gateway


# -- pure pieces ---------------------------------------------------------------------------------
def test_outcomes_cross_the_wire_unchanged() -> None:
    accepted = Outcome(True, None, "", 7, Decision(True, None, 3, 1200, 1300, 42))
    rejected = Outcome(False, "TOO_LOW", "TOO_LOW", 0, Decision(False, RejectCode.TOO_LOW, 3, 1200, 1300, 42))
    for outcome in (accepted, rejected, Outcome(False, "UNAVAILABLE", "down", 0, None)):
        wire = msgpack.unpackb(msgpack.packb(encode_outcome(outcome)))
        assert decode_outcome(wire) == outcome
    assert decode_outcome(msgpack.unpackb(msgpack.packb(encode_outcome(rejected)))).decision.code is (  # type: ignore[union-attr]
        RejectCode.TOO_LOW
    )


# -- registry ------------------------------------------------------------------------------------
async def test_a_lease_has_one_holder_until_released(redis_client: aioredis.Redis) -> None:
    registry = Registry(redis_client, lease_ms=5_000)
    assert await registry.acquire("e1", "first")
    assert not await registry.acquire("e1", "second")
    assert await registry.renew("e1", "first")
    assert not await registry.renew("e1", "second")
    await registry.release("e1", "second")  # not the holder: nothing happens
    assert (await registry.alive(["e1"]))["e1"]
    await registry.release("e1", "first")
    assert not (await registry.alive(["e1"]))["e1"]
    assert await registry.acquire("e1", "second")


async def test_new_sessions_go_to_the_least_loaded_live_engine_and_stay(redis_client: aioredis.Redis) -> None:
    registry = Registry(redis_client, lease_ms=5_000)
    assert await registry.assign(1) is None  # no engine yet
    await registry.acquire("e1", "t1")
    await registry.acquire("e2", "t2")
    owners = [await registry.assign(session_id) for session_id in (1, 2, 3, 4)]
    assert sorted(owners) == ["e1", "e1", "e2", "e2"]  # type: ignore[type-var]
    await registry.release("e2", "t2")
    assert await registry.assign(5) == "e1"  # only live engines take new sessions
    assert await registry.assign(2) == owners[1]  # an assignment never moves


# -- engine node and remote engine ----------------------------------------------------------------
async def test_a_bid_through_a_gateway_is_answered_and_mirrored(cluster: Cluster) -> None:
    engine, _node = await cluster.engine("e1")
    gateway = await cluster.gateway()
    seen: list[CommittedBatch] = []
    gateway.listeners.append(seen.append)
    await seed(cluster, gateway, 1, 10)
    await eventually(lambda: cluster.engines["e1"][0].book.lots[10].state is LotState.BIDDING)

    outcome = await gateway.execute(PlaceBid(10, 501, 1000, "r1"))
    assert outcome.ok and outcome.decision is not None and outcome.decision.price == 1000
    low = await gateway.execute(PlaceBid(10, 502, 1000, "r2"))
    assert not low.ok and low.code == RejectCode.TOO_LOW and low.decision is not None
    assert low.decision.next_min == 1100

    # The replica catches up with the engine, record for record, and its events reach listeners.
    await eventually(lambda: gateway.book.lots[10].price == 1000)
    assert gateway.followers["e1"].last_seq == engine.last_seq
    assert gateway.followers["e1"].book.to_state() == engine.book.to_state()
    assert any(event.lot_id == 10 for batch in seen for event in batch.events if hasattr(event, "lot_id"))

    # The same bid again (a client retrying through any gateway): the first answer, nothing new.
    again = await gateway.execute(PlaceBid(10, 501, 1000, "r1"))
    assert again == outcome
    # The same ref for another bid: refused with its code, through the gateway too.
    reused = await gateway.execute(PlaceBid(10, 501, 999_999, "r1"))
    assert not reused.ok and reused.code == "REF_REUSED" and reused.seq == 0
    assert engine.book.lots[10].bid_count == 1


async def test_unknown_lots_and_dead_engines_get_clear_codes(cluster: Cluster) -> None:
    await cluster.engine("e1", lease_ms=500)
    gateway = await cluster.gateway()
    await seed(cluster, gateway, 1, 10)
    assert (await gateway.execute(PlaceBid(99, 501, 1000, "x"))).code == "NOT_FOUND"
    # The engine goes away without releasing its lease (a crash): UNAVAILABLE once the lease lapses.
    engine, node = cluster.engines.pop("e1")
    for task in node._tasks:
        task.cancel()
    await engine.stop(snapshot=False)
    await eventually(lambda: not gateway.alive.get("e1", True), seconds=5)
    outcome = await gateway.execute(PlaceBid(10, 501, 1000, "y"))
    assert outcome.code == "UNAVAILABLE"


async def test_a_command_that_waited_past_its_expiry_is_refused_not_applied(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    engine, node, gateway = await one_engine_one_lot(cluster)
    stale = [gateway.gateway_id, 10_001, TAGS[PlaceBid], [10, 501, 1000, "late"], T0 - 1]
    before = engine.last_seq
    await redis_client.xadd(command_stream("e1"), {b"c": msgpack.packb(stale)})
    await eventually(lambda: node.stats.get("expired", 0) == 1)
    assert engine.last_seq == before and engine.book.lots[10].price == 0


async def test_a_new_gateway_starts_from_the_snapshot_and_the_stream_after_it(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    engine, node, first = await one_engine_one_lot(cluster)
    for n, user in enumerate((501, 502, 501)):
        assert (await first.execute(PlaceBid(10, user, 1000 + 100 * n, f"b{n}"))).ok
    covered = await engine.snapshot()
    await node.trim(covered + 1)  # everything the snapshot covers is gone from the stream
    assert (await first.execute(PlaceBid(10, 502, 1300, "b3"))).ok
    entries = await redis_client.xrange(journal_stream("e1"))
    assert int(entries[0][0].split(b"-")[0]) > covered

    late = await cluster.gateway()
    await eventually(lambda: late.followers["e1"].last_seq == engine.last_seq)
    assert late.book.lots[10].price == 1300
    assert late.followers["e1"].book.to_state() == engine.book.to_state()


async def test_blocking_a_bidder_reaches_every_engine(cluster: Cluster) -> None:
    await cluster.engine("e1")
    await cluster.engine("e2")
    gateway = await cluster.gateway()
    await eventually(lambda: len(gateway.followers) == 2)
    await seed(cluster, gateway, 1, 10)
    await seed(cluster, gateway, 2, 20)
    assert {gateway.owners[1], gateway.owners[2]} == {"e1", "e2"}
    assert (await gateway.execute(BlockBidder(777))).ok
    await eventually(lambda: all(777 in engine.book.blocked for engine, _ in cluster.engines.values()))
    await eventually(lambda: 777 in gateway.book.blocked)  # the replicas follow the engines


async def test_a_second_node_for_the_same_engine_id_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.engine("e1")
    twin = EngineNode(cluster.redis, Engine(cluster.clock, tmp_path / "twin"), "e1", tmp_path / "twin")
    with pytest.raises(LeaseLost, match="held by another live process"):
        await twin.acquire()
    same_dir = EngineNode(cluster.redis, Engine(cluster.clock, tmp_path / "x"), "e9", tmp_path / "e1")
    with pytest.raises(LeaseLost, match="another engine process uses"):
        await same_dir.acquire()


async def test_a_lease_elected_singleton_runs_in_one_place_at_a_time(redis_client: aioredis.Redis) -> None:
    running: list[str] = []

    def starter(name: str) -> Callable[[], Any]:
        async def start() -> list[asyncio.Task[None]]:
            async def work() -> None:
                running.append(name)
                try:
                    await asyncio.Event().wait()
                finally:
                    running.remove(name)

            return [asyncio.create_task(work())]

        return start

    first = asyncio.create_task(run_with_lease(redis_client, "job", 600, starter("a"), retry_s=0.05))
    await eventually(lambda: running == ["a"])
    second = asyncio.create_task(run_with_lease(redis_client, "job", 600, starter("b"), retry_s=0.05))
    await asyncio.sleep(0.3)
    assert running == ["a"]
    first.cancel()  # releases the lease on the way out
    await eventually(lambda: running == ["b"], message=lambda: f"running: {running}")
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    await eventually(lambda: running == [])


async def test_a_restart_on_the_same_data_directory_takes_its_dead_lease_back(
    redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    clock = FakeClock(T0)
    dead = EngineNode(redis_client, Engine(clock, tmp_path / "j"), "e1", tmp_path / "e1", lease_ms=60_000)
    await dead.acquire()
    assert dead._lock_fd is not None
    os.close(dead._lock_fd)  # the process died: the kernel dropped its lock, the lease stays
    registry = Registry(redis_client)
    assert await registry.holder("e1") == dead.token
    restarted = EngineNode(redis_client, Engine(clock, tmp_path / "j"), "e1", tmp_path / "e1")
    await restarted.acquire()
    assert await registry.holder("e1") == restarted.token
    assert not await registry.renew("e1", dead.token)
    await restarted.stop()


async def test_a_malformed_command_entry_is_dropped_and_the_engine_goes_on(
    cluster: Cluster, redis_client: aioredis.Redis
) -> None:
    engine, node, gateway = await one_engine_one_lot(cluster)
    before = engine.last_seq
    for garbage in (b"\xc1not msgpack", msgpack.packb(["gw", 1, 999, [], T0 * 2]), msgpack.packb({"x": 1})):
        await redis_client.xadd(command_stream("e1"), {b"c": garbage})
    await redis_client.xadd(command_stream("e1"), {b"no-c-field": b"1"})
    outcome = await gateway.execute(PlaceBid(10, 501, 1000, "after-garbage"))
    assert outcome.ok and engine.last_seq == before + 1
    for _ in range(100):  # every entry, garbage included, is acknowledged: nothing is re-read forever
        pending = (await redis_client.xpending(command_stream("e1"), "engine"))["pending"]
        if pending == 0:
            break
        await asyncio.sleep(0.02)
    assert pending == 0
    assert node.stats["commands"] >= 1


async def test_the_live_controls_reach_the_engine_that_owns_the_session(cluster: Cluster) -> None:
    engine, _node, gateway = await one_engine_one_lot(cluster)
    assert (await gateway.execute(PlaceBid(10, 501, 1000, "c1"))).ok
    assert (await gateway.execute(PlaceBid(10, 502, 5000, "c2"))).ok
    assert (await gateway.execute(PauseLot(10, "check"))).ok
    assert engine.book.lots[10].paused_since
    assert (await gateway.execute(VoidBid(10, 1, "typo"))).ok
    assert (await gateway.execute(ResumeLot(10))).ok
    end = engine.book.lots[10].ends_at
    assert (await gateway.execute(ExtendLot(10, end + 60_000))).ok
    assert (await gateway.execute(PauseSession(1, "alarm"))).ok
    assert (await gateway.execute(ResumeSession(1))).ok
    assert (await gateway.execute(PauseLot(99, "no such lot"))).code == "NOT_FOUND"
    lot = engine.book.lots[10]
    assert (lot.price, lot.leader, lot.extensions, lot.paused_since) == (1000, 501, 1, 0)
    await eventually(lambda: gateway.followers["e1"].last_seq == engine.last_seq)
    assert gateway.followers["e1"].book.to_state() == engine.book.to_state()
