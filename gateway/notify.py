"""Personal websocket frames (the degree path's homework_graded, homework_submitted and
degree_graduated) to every socket of one user.

One process: the hub's sockets of that user (`ctx.hub.by_user`). A cluster (`ctx.price_bus` is
set, ROLE=all): published on the Redis channel `gavel:user-frames` as well, and every gateway's
`listen_user_frames` delivers to its own sockets; a process skips what it published itself (it
delivered that locally already). Best effort: a notice is a nudge, the record is the truth.
"""

import asyncio
import logging
from typing import Any, Final

import orjson

from web.context import AppContext

log = logging.getLogger("gavel.notify")

CHANNEL: Final = b"gavel:user-frames"


def deliver_local(ctx: AppContext, user_id: int, frame: bytes) -> int:
    """Write the frame to this process's sockets of the user; how many."""
    hub = ctx.hub
    if hub is None:
        return 0
    sockets = list(hub.by_user.get(user_id, ()))
    for socket in sockets:
        socket.send(frame)
    return len(sockets)


async def notify_user(ctx: AppContext, user_id: int, message: dict[str, Any]) -> None:
    frame = orjson.dumps(message)
    deliver_local(ctx, user_id, frame)
    bus = ctx.price_bus
    if bus is None:
        return
    envelope = orjson.dumps({"origin": bus.origin, "user_id": user_id, "frame": frame.decode()})
    try:
        await bus.redis.publish(CHANNEL, envelope)
    except Exception as error:  # Redis away: the other gateways' sockets miss this nudge
        log.warning("user frame not published: %s", error)


def on_envelope(ctx: AppContext, origin: str, data: bytes) -> bool:
    """Deliver one published envelope unless it came from `origin`; whether it was delivered."""
    try:
        envelope = orjson.loads(data)
        if envelope["origin"] == origin:
            return False
        deliver_local(ctx, int(envelope["user_id"]), str(envelope["frame"]).encode())
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.debug("malformed user frame envelope")
        return False
    return True


async def listen_user_frames(ctx: AppContext) -> None:
    """Deliver other gateways' user frames to this process's sockets until cancelled."""
    bus = ctx.price_bus
    if bus is None:
        return
    while True:
        try:
            pubsub = bus.redis.pubsub()
            await pubsub.subscribe(CHANNEL)
            try:
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        on_envelope(ctx, bus.origin, message["data"])
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("user frames: %s; subscribing again", error)
            await asyncio.sleep(1.0)
