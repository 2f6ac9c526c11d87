"""Personal websocket frames (the degree path's homework_graded, homework_submitted and
degree_graduated) to every socket of one user.

One process: the hub's sockets of that user (`ctx.hub.by_user`). A cluster: the Redis channel
`gavel:user-frames` as well, through gateway/fanout.py (`listen_user_frames` on every gateway).
Best effort: a notice is a nudge, the record is the truth.
"""

from typing import Any, Final

import orjson

from gateway.fanout import Fanout
from web.context import AppContext

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


USER_FRAMES: Final = Fanout(CHANNEL, "user_id", int, deliver_local, "user frame")


async def notify_user(ctx: AppContext, user_id: int, message: dict[str, Any]) -> None:
    await USER_FRAMES.publish(ctx, user_id, orjson.dumps(message))


def on_envelope(ctx: AppContext, origin: str, data: bytes) -> bool:
    """Deliver one published envelope unless it came from `origin`; whether it was delivered."""
    return USER_FRAMES.on_envelope(ctx, origin, data)


async def listen_user_frames(ctx: AppContext) -> None:
    """Deliver other gateways' user frames to this process's sockets until cancelled."""
    await USER_FRAMES.listen(ctx)
