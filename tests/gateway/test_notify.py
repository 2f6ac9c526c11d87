"""gateway/notify.py: a user's frame reaches every socket of that user, locally and — through Redis
`gavel:user-frames` — on another gateway, and a gateway does not deliver its own frame twice."""

import asyncio
import dataclasses
from collections import defaultdict
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from gateway.notify import CHANNEL, listen_user_frames, notify_user, on_envelope
from web.context import AppContext


class Socket:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))


@dataclasses.dataclass
class Hub:
    by_user: dict[int, set[Socket]] = dataclasses.field(default_factory=lambda: defaultdict(set))


@dataclasses.dataclass
class Bus:
    redis: aioredis.Redis
    origin: str


@dataclasses.dataclass
class Gateway:
    hub: Hub
    price_bus: Bus | None


def gateway(redis: aioredis.Redis | None, origin: str) -> tuple[AppContext, Socket]:
    socket = Socket()
    hub = Hub()
    hub.by_user[7].add(socket)
    ctx = Gateway(hub, None if redis is None else Bus(redis, origin))
    return cast(AppContext, ctx), socket


async def test_local_sockets_only_without_a_bus() -> None:
    ctx, socket = gateway(None, "a")
    await notify_user(ctx, 7, {"type": "homework_graded", "record_id": 1})
    await notify_user(ctx, 8, {"type": "homework_graded", "record_id": 2})
    assert socket.frames == [{"type": "homework_graded", "record_id": 1}]


async def test_other_gateways_deliver_through_redis(redis_client: aioredis.Redis) -> None:
    a, socket_a = gateway(redis_client, "gw-a")
    b, socket_b = gateway(redis_client, "gw-b")
    listeners = [asyncio.create_task(listen_user_frames(a)), asyncio.create_task(listen_user_frames(b))]
    try:
        for _ in range(500):  # both subscribed before the frame is published
            [(_name, count)] = await redis_client.pubsub_numsub(CHANNEL)
            if count == 2:
                break
            await asyncio.sleep(0.01)
        await notify_user(a, 7, {"type": "degree_graduated", "award": 500})
        for _ in range(500):
            if socket_b.frames:
                break
            await asyncio.sleep(0.01)
        assert socket_b.frames == [{"type": "degree_graduated", "award": 500}]
        assert socket_a.frames == [{"type": "degree_graduated", "award": 500}]  # once, not twice
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)


def test_own_and_malformed_envelopes_are_skipped() -> None:
    ctx, socket = gateway(None, "a")
    own = orjson.dumps({"origin": "a", "user_id": 7, "frame": "{}"})
    assert on_envelope(ctx, "a", own) is False
    assert on_envelope(ctx, "a", b"not json") is False
    assert on_envelope(ctx, "a", orjson.dumps({"origin": "b", "user_id": 7, "frame": '{"x":1}'})) is True
    assert socket.frames == [{"x": 1}]
