"""The price bus between gateway processes, on the real embedded redis-server (no mocks)."""

from __future__ import annotations

import asyncio
import pathlib
import random
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import persistence.redis_bus
from persistence.embedded import free_port, start_redis
from persistence.redis_bus import PriceBus


class Inbox:
    """Collects callback calls and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, session_id: int, frame: bytes) -> None:
        self.frames.append((session_id, frame))
        self._changed.set()

    async def wait_for(self, count: int, seconds: float = 5.0) -> list[tuple[int, bytes]]:
        async with asyncio.timeout(seconds):
            while len(self.frames) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.frames


def session_ids(n: int = 1) -> list[int]:
    # Pub/sub channels are server-wide (not per database): random ids keep parallel runs apart.
    return random.sample(range(10**9, 2 * 10**9), n)


@pytest.fixture
async def buses(redis_url: str) -> AsyncIterator[tuple[PriceBus, PriceBus]]:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    pair = (PriceBus(clients[0], "gw-a"), PriceBus(clients[1], "gw-b"))
    for bus in pair:
        bus.start()
    try:
        yield pair
    finally:
        for bus in pair:
            await bus.stop()
        for client in clients:
            await client.aclose()


async def test_frames_reach_other_origins_and_own_are_ignored(buses: tuple[PriceBus, PriceBus]) -> None:
    a, b = buses
    s1, s2 = session_ids(2)
    inbox_a, inbox_b = Inbox(), Inbox()
    await a.subscribe([s1, s2], inbox_a)
    await b.subscribe([s1], inbox_b)

    a.publish(s1, b"\x01price-1")
    a.publish(s2, b"not for b")
    b.publish(s1, b"\x02from-b")
    a.publish(s1, b"\x01price-2")

    assert await inbox_b.wait_for(2) == [(s1, b"\x01price-1"), (s1, b"\x01price-2")]  # in order
    assert await inbox_a.wait_for(1) == [(s1, b"\x02from-b")]
    await asyncio.sleep(0.1)  # anything else would have arrived by now
    assert len(inbox_a.frames) == 1 and len(inbox_b.frames) == 2
    assert a.stats["ignored_own"] == 3 and b.stats["ignored_own"] == 1


async def test_sessions_nobody_listens_to_cost_no_publish(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    publisher = PriceBus(client, "gw-a", listener_check_s=0.2)
    listener = PriceBus(aioredis.Redis.from_url(redis_url), "gw-b")
    publisher.start()
    listener.start()
    try:
        heard, unheard = session_ids(2)
        inbox = Inbox()
        await listener.subscribe([heard], inbox)
        for n in range(50):
            publisher.publish(heard, f"h{n}".encode())
            publisher.publish(unheard, f"u{n}".encode())
        assert [f for _, f in await inbox.wait_for(50)] == [f"h{n}".encode() for n in range(50)]
        for _ in range(200):  # the unheard half leaves no trace to wait on but the counter
            if publisher.stats["published"] + publisher.stats["unheard"] == 100:
                break
            await asyncio.sleep(0.01)
        assert publisher.stats["published"] == 50 and publisher.stats["unheard"] == 50
        # While that check is fresh, a frame nobody hears is not even queued for the publisher.
        publisher.publish(unheard, b"skipped")
        assert publisher.pending == 0 and publisher.stats["unheard"] == 51
        # A late subscriber hears the session from the next check on.
        late = Inbox()
        await listener.subscribe([unheard], late)
        await asyncio.sleep(0.3)
        publisher.publish(unheard, b"now")
        assert await late.wait_for(1) == [(unheard, b"now")]
    finally:
        await publisher.stop()
        await listener.stop()
        await client.aclose()


async def test_one_loop_turn_goes_out_in_order(buses: tuple[PriceBus, PriceBus]) -> None:
    a, b = buses
    (sid,) = session_ids()
    inbox = Inbox()
    await b.subscribe([sid], inbox)
    frames = [f"frame-{n}".encode() for n in range(2500)]  # more than one pipeline's worth
    for frame in frames:
        a.publish(sid, frame)
    assert [f for _, f in await inbox.wait_for(len(frames))] == frames


async def test_unsubscribe_stops_delivery(buses: tuple[PriceBus, PriceBus]) -> None:
    a, b = buses
    s1, s2 = session_ids(2)
    inbox, other = Inbox(), Inbox()
    await b.subscribe([s1, s2], inbox)
    await b.subscribe([s1], other)
    a.publish(s1, b"one")
    await inbox.wait_for(1)
    await other.wait_for(1)

    await b.unsubscribe([s1], inbox)  # `other` still listens to s1
    a.publish(s1, b"two")
    await other.wait_for(2)
    await b.unsubscribe([s1])
    a.publish(s1, b"three")
    a.publish(s2, b"four")
    await inbox.wait_for(2)
    await asyncio.sleep(0.1)
    assert inbox.frames == [(s1, b"one"), (s2, b"four")]
    assert other.frames == [(s1, b"one"), (s1, b"two")]


async def test_channel_names_stay_bounded_as_sessions_come_and_go(
    buses: tuple[PriceBus, PriceBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-running gateway sees session after session: the kept names must not grow with them,
    # and a session whose name was dropped still gets its frames (the name is rebuilt).
    monkeypatch.setattr(persistence.redis_bus, "CHANNEL_NAMES_KEPT", 4)
    a, b = buses
    sessions = session_ids(10)
    inbox = Inbox()
    await b.subscribe(sessions[:1], inbox)
    for sid in sessions:
        a.publish(sid, b"frame")
    a.publish(sessions[0], b"last")
    assert [f for _, f in await inbox.wait_for(2)] == [b"frame", b"last"]
    assert len(a._channels) <= 4  # every frame before "last" went out: each session's name was made
    await b.unsubscribe(sessions[:1], inbox)
    assert len(b._channels) <= 4


async def test_binary_frames_survive(buses: tuple[PriceBus, PriceBus]) -> None:
    a, b = buses
    (sid,) = session_ids()
    inbox = Inbox()
    await b.subscribe([sid], inbox)
    frame = bytes(range(256)) * 4
    a.publish(sid, frame)
    a.publish(sid, b"")
    assert await inbox.wait_for(2) == [(sid, frame), (sid, b"")]


async def test_publish_never_blocks_when_redis_is_unreachable() -> None:
    # Few client retries: redis-py's default (10, backing off to 1 s) makes each attempt ~3.6 s.
    client = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 1))
    bus = PriceBus(client, "gw-down", max_pending=1000)
    bus.start()
    try:
        started = time.perf_counter()
        for n in range(100_000):
            bus.publish(n % 7, b"price")
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"100k publishes took {elapsed * 1000:.0f} ms"
        await asyncio.sleep(0.3)  # let the publisher hit the closed port and back off
        assert bus.pending == 1000  # the newest 1000 are kept, the rest dropped
        assert bus.stats["dropped"] == 99_000 and bus.stats["published"] == 0
        # Still never blocks, and keeps the newest frame.
        bus.publish(3, b"latest")
        assert bus._pending[-1] == (3, b"latest")
        # Subscribing while Redis is down is deferred, not an error; once the outage is known
        # it returns at once.
        await bus.subscribe([1], Inbox())
        started = time.perf_counter()
        await bus.subscribe([2], Inbox())
        assert time.perf_counter() - started < 0.01
    finally:
        started = time.perf_counter()
        await bus.stop()
        assert time.perf_counter() - started < 1.5
        await client.aclose()


async def test_recovers_after_a_redis_restart(tmp_path: pathlib.Path) -> None:
    """A private redis-server (the shared one must not be stopped): publish and subscribe resume,
    and (un)subscriptions made during the outage take effect once it is back."""
    server = start_redis(tmp_path)  # from the main thread, as persistence.embedded requires
    clients = [aioredis.Redis.from_url(server.url) for _ in range(2)]
    a = PriceBus(clients[0], "gw-a", min_backoff=0.02, max_backoff=0.2)
    b = PriceBus(clients[1], "gw-b", min_backoff=0.02, max_backoff=0.2)
    a.start()
    b.start()
    kept, dropped, added = session_ids(3)
    inbox = Inbox()
    try:
        await b.subscribe([kept, dropped], inbox)
        a.publish(kept, b"before")
        await inbox.wait_for(1)

        await asyncio.to_thread(server.stop)
        for n in range(20):
            a.publish(kept, f"during-{n}".encode())
        async with asyncio.timeout(5):
            # Polling: the bus exposes no event for "outage noticed", and tests need no such API.
            while not b._read_failing:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        started = time.perf_counter()
        await b.unsubscribe([dropped])
        await b.subscribe([added], inbox)
        assert time.perf_counter() - started < 0.05  # deferred, not waiting for Redis
        server = start_redis(tmp_path, port=server.port)

        # Pub/sub is fire-and-forget: frames sent before the reader resubscribed may be gone, but
        # both sides must come back on their own.
        async with asyncio.timeout(10):
            n = 0
            while not {kept, added} <= {sid for sid, frame in inbox.frames if frame.startswith(b"after")}:
                a.publish(kept, f"after-{n}".encode())
                a.publish(added, f"after-{n}".encode())
                a.publish(dropped, f"after-{n}".encode())
                n += 1
                await asyncio.sleep(0.05)
        assert inbox.frames[0] == (kept, b"before")
        assert not [frame for sid, frame in inbox.frames if sid == dropped]
        live = set(await clients[0].pubsub_channels(b"gavel:session:*"))
        assert live == {b.channel(kept), b.channel(added)}  # the skipped UNSUBSCRIBE was sent too
        assert not a._publish_failing and not b._read_failing
    finally:
        await a.stop()
        await b.stop()
        for client in clients:
            await client.aclose()
        await asyncio.to_thread(server.stop)
