"""Scale-out as operators run it: one engine process and two gateway processes over Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import tornado.websocket

from tests.test_run import ServiceProcess, call, login

# Its own Redis database: the cluster registry's keys are process-wide names.
CLUSTER_REDIS_DB = 14
LOT = 3  # the demo's tea set: fixed increment 5_00 from 80_00


def redis_db_url(redis_url: str, db: int) -> str:
    parts = urlsplit(redis_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


class Node(ServiceProcess):
    def __init__(self, data_dir: Path, mongo_url: str, redis_url: str, database: str, **env: str) -> None:
        super().__init__(data_dir, mongo_url, redis_url, database)
        self.env |= {"LEASE_SECONDS": "2", **env}
        self.log_path = data_dir.parent / f"{data_dir.name}.log"


class Bidder:
    """One websocket client that keeps every frame it gets, by type."""

    def __init__(self, port: int, token: str | None) -> None:
        self.port, self.token = port, token
        self.frames: list[dict[str, Any]] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self.ws: tornado.websocket.WebSocketClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, session_id: int) -> None:
        query = f"?token={self.token}" if self.token else ""
        self.ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{self.port}/ws{query}")
        hello = json.loads(await self.ws.read_message())  # type: ignore[arg-type]
        assert hello["type"] == "hello"
        self.ws.write_message(json.dumps({"op": "subscribe", "session_id": session_id}))
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        while (message := await self.ws.read_message()) is not None:
            frame = json.loads(message)
            self.frames.append(frame)
            if "ref" in frame:
                self.answers[frame["ref"]] = frame

    async def bid(self, amount_fen: int, ref: str, *, wait_s: float = 10.0) -> dict[str, Any]:
        assert self.ws is not None
        frame = {"op": "bid", "lot_id": LOT, "price": amount_fen, "ref": ref}
        await self.ws.write_message(json.dumps(frame))
        deadline = time.monotonic() + wait_s
        while ref not in self.answers:
            assert time.monotonic() < deadline, f"no answer to {ref}"
            await asyncio.sleep(0.01)
        return self.answers.pop(ref)

    def prices(self) -> list[tuple[int, int]]:
        return [(f["seq"], f["price"]) for f in self.frames if f["type"] == "price" and f["lot_id"] == LOT]

    async def wait_for_seq(self, seq: int, wait_s: float = 10.0) -> None:
        deadline = time.monotonic() + wait_s
        while not any(s >= seq for s, _ in self.prices()):
            assert time.monotonic() < deadline, f"price frame for seq {seq} never came"
            await asyncio.sleep(0.01)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


async def wait_open(base: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        code, lot = await call("GET", f"{base}/api/v1/lots/{LOT}")
        if code == 200 and lot["state"] == 3:
            return dict(lot)
        assert time.monotonic() < deadline, (code, lot)
        await asyncio.sleep(0.2)


@pytest.fixture
def cluster(tmp_path: Path, mongo_url: str, redis_url: str):
    url = redis_db_url(redis_url, CLUSTER_REDIS_DB)
    redis.Redis.from_url(url).flushdb()
    database = f"gavel_scale_{uuid.uuid4().hex[:8]}"
    nodes = {
        "engine": Node(tmp_path / "engine", mongo_url, url, database, ROLE="engine", ENGINE_ID="e1"),
        "g1": Node(tmp_path / "g1", mongo_url, url, database, ROLE="gateway"),
        "g2": Node(tmp_path / "g2", mongo_url, url, database, ROLE="gateway", SEED_DEMO="0"),
    }
    yield nodes
    for node in nodes.values():
        if node.process is not None and node.process.poll() is None:
            node.kill()


@pytest.mark.slow
async def test_two_gateways_one_engine(cluster: dict[str, Node]) -> None:
    engine, g1, g2 = cluster["engine"], cluster["g1"], cluster["g2"]
    await asyncio.to_thread(engine.start)
    await asyncio.to_thread(g1.start)  # seeds the demo session through the engine
    await asyncio.to_thread(g2.start)
    lot = await wait_open(g1.base)
    assert (await wait_open(g2.base))["price"] == lot["price"]
    session_id = lot["session_id"]

    alice = Bidder(g1.port, await login(g1.base, "alice", "alice-demo-pass"))
    bob = Bidder(g2.port, await login(g2.base, "bob", "bob-demo-pass"))
    watch1, watch2 = Bidder(g1.port, None), Bidder(g2.port, None)
    for client in (alice, bob, watch1, watch2):
        await client.connect(session_id)

    # Turn by turn, each bid on a different gateway: both watchers see every price, in order.
    acknowledged: list[dict[str, Any]] = []
    sent: list[int] = []  # each turn's price: a retry must be the same bid
    price = lot["next_min"]
    for n in range(10):
        bidder = alice if n % 2 == 0 else bob
        answer = await bidder.bid(price, f"turn-{n}")
        assert answer["type"] == "accepted", answer
        acknowledged.append(answer)
        sent.append(price)
        await watch1.wait_for_seq(answer["seq"])
        await watch2.wait_for_seq(answer["seq"])
        price = answer["next_min"]
    assert watch1.prices() == watch2.prices()
    assert [p for _, p in watch1.prices()][-10:] == [a["price"] for a in acknowledged]

    # Both at once: whatever each gateway coalesced, a seq means the same price on both.
    results = await asyncio.gather(
        *(alice.bid(price + k * 5_00, f"race-a{k}") for k in range(0, 10, 2)),
        *(bob.bid(price + k * 5_00, f"race-b{k}") for k in range(1, 10, 2)),
    )
    accepted = [r for r in results if r["type"] == "accepted"]
    assert accepted and all(r["type"] in ("accepted", "rejected") for r in results)
    last_seq = max(r["seq"] for r in accepted)
    await watch1.wait_for_seq(last_seq)
    await watch2.wait_for_seq(last_seq)
    seen1, seen2 = dict(watch1.prices()), dict(watch2.prices())
    assert all(seen1[seq] == seen2[seq] for seq in seen1.keys() & seen2.keys())
    for watcher, seen in ((watch1, seen1), (watch2, seen2)):
        assert [s for s, _ in watcher.prices()] == sorted(seen)
    assert seen1[max(seen1)] == seen2[max(seen2)]
    final_price = seen1[max(seen1)]

    # A gateway dies: nothing acknowledged is lost, and its bidder carries on through the other.
    assert await asyncio.to_thread(g1.kill, signal.SIGKILL) == -signal.SIGKILL
    alice.close()
    alice = Bidder(g2.port, await login(g2.base, "alice", "alice-demo-pass"))
    await alice.connect(session_id)
    retry = await alice.bid(sent[8], "turn-8")  # the same bid through another gateway: the first answer
    assert retry == acknowledged[8]
    code, now = await call("GET", f"{g2.base}/api/v1/lots/{LOT}")
    assert code == 200 and now["price"] == final_price
    assert now["bid_count"] == 10 + len(accepted)

    # The engine dies: its session answers UNAVAILABLE until it is back, then bidding resumes.
    assert await asyncio.to_thread(engine.kill, signal.SIGKILL) == -signal.SIGKILL
    await asyncio.sleep(3.0)  # past the 2 s lease
    refused = await alice.bid(now["next_min"], "while-down", wait_s=15)
    assert refused["type"] == "rejected" and refused["code"] == "UNAVAILABLE", refused
    await asyncio.to_thread(engine.start)
    deadline = time.monotonic() + 15
    bidders = [alice, bob]
    while True:
        answer = await bidders[0].bid(now["next_min"], f"after-{time.monotonic()}")
        if answer["type"] == "accepted":
            break
        if answer["code"] == "SELF_OUTBID":  # the leader cannot raise itself: the other one bids
            bidders.reverse()
            continue
        assert answer["code"] == "UNAVAILABLE" and time.monotonic() < deadline, answer
        await asyncio.sleep(0.3)
    assert answer["price"] == now["next_min"]
    await watch2.wait_for_seq(answer["seq"])
    code, after = await call("GET", f"{g2.base}/api/v1/lots/{LOT}")
    assert after["bid_count"] == now["bid_count"] + 1
    for client in (alice, bob, watch1, watch2):
        client.close()


@pytest.mark.slow
async def test_a_second_engine_with_the_same_id_refuses_to_start(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    engine = cluster["engine"]
    await asyncio.to_thread(engine.start)
    twin = Node(tmp_path / "twin", "", "", "", ROLE="engine", ENGINE_ID="e1")
    twin.env = engine.env | {"DATA_DIR": str(tmp_path / "twin"), "PORT": str(twin.port)}
    with pytest.raises(AssertionError):
        await asyncio.to_thread(twin.start)
    assert twin.process is not None and twin.process.wait(timeout=10) != 0
    assert "held by another live process" in twin.log_path.read_text()
