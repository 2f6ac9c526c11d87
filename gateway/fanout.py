"""Frames for this process's sockets, and for every other gateway's through one Redis channel.

Two kinds of frames reach sockets that no price subscription names: a user's own notices
(gateway/notify.py, keyed by user id) and the community's live counts (gateway/community_live.py,
keyed by topic). Each is a `Fanout`: `publish` delivers to this process's sockets, then, in a
cluster (`ctx.price_bus` is set), publishes an envelope `{"origin", <key field>, "frame"}` on its
channel; every gateway's `listen` delivers the envelopes of the others (a process skips its own:
it delivered those already). Best effort: a frame is a nudge, the records are the truth.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import orjson

from web.context import AppContext

log = logging.getLogger("gavel.fanout")


@dataclasses.dataclass(frozen=True, slots=True)
class Fanout:
    channel: bytes
    key_field: str  # the envelope's key: "user_id", "topic"
    key_of: Callable[[Any], Any]  # the key as delivered (int, str), from the decoded envelope
    deliver: Callable[[AppContext, Any, bytes], int]  # to this process's sockets; how many
    what: str  # for the log

    async def publish(self, ctx: AppContext, key: Any, frame: bytes) -> None:
        self.deliver(ctx, key, frame)
        bus = ctx.price_bus
        if bus is None:
            return
        envelope = orjson.dumps({"origin": bus.origin, self.key_field: key, "frame": frame.decode()})
        try:
            await bus.redis.publish(self.channel, envelope)
        except Exception as error:  # Redis away: the other gateways' sockets miss this one
            log.warning("%s not published: %s", self.what, error)

    def on_envelope(self, ctx: AppContext, origin: str, data: bytes) -> bool:
        """Deliver one published envelope unless it came from `origin`; whether it was delivered."""
        try:
            envelope = orjson.loads(data)
            if envelope["origin"] == origin:
                return False
            self.deliver(ctx, self.key_of(envelope[self.key_field]), str(envelope["frame"]).encode())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.debug("malformed %s envelope", self.what)
            return False
        return True

    async def listen(self, ctx: AppContext) -> None:
        """Deliver the other gateways' frames to this process's sockets until cancelled."""
        bus = ctx.price_bus
        if bus is None:
            return
        while True:
            try:
                pubsub = bus.redis.pubsub()
                await pubsub.subscribe(self.channel)
                try:
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message.get("type") == "message":
                            self.on_envelope(ctx, bus.origin, message["data"])
                finally:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("%s: %s; subscribing again", self.what, error)
                await asyncio.sleep(1.0)
