"""Live counts for the community's open pages over the bidder websocket (docs/protocol.md
"Community topics"): sockets `watch` a topic ("post:12", "article:3") and get `counts`, `comment`
and `comment_counts` frames after each committed change.

`LiveFrames` is the reaction service's LivePublisher: the service says what changed, synchronously
and cheaply; the frames are built in one task per process that first lets the current loop turn
finish, then reads each changed topic's counters once and sends one frame per topic, and goes
round again while changes keep coming. A burst of 100 likes on one post costs a few reads and a
few frames, and the last frame always carries counts read after the last change.

`publish(ctx, topic, frame)`: this process's watchers, and with `ctx.price_bus` (a cluster) the
Redis channel `gavel:community-frames`, which every gateway's `listen_community_frames` delivers to
its own watchers (skipping its own envelopes). Best effort, like gateway/notify.py: the records
are the truth and a page reloads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson

from community.ports import Record
from community.rules import Target
from gateway.fanout import Fanout
from web.context import AppContext

log = logging.getLogger("gavel.community")

CHANNEL: Final = b"gavel:community-frames"
COUNT_FIELDS: Final = {
    "post": ("likes", "comments", "views"),
    "article": ("likes", "comments", "views", "collects"),
}


def deliver_local(ctx: AppContext, topic: str, frame: bytes) -> int:
    hub = ctx.hub
    return 0 if hub is None else int(hub.send_topic(topic, frame))


COMMUNITY_FRAMES: Final = Fanout(CHANNEL, "topic", str, deliver_local, "community frame")


async def publish(ctx: AppContext, topic: str, message: dict[str, Any]) -> None:
    await COMMUNITY_FRAMES.publish(ctx, topic, orjson.dumps(message))


def on_envelope(ctx: AppContext, origin: str, data: bytes) -> bool:
    """Deliver one published envelope unless it came from `origin`; whether it was delivered."""
    return COMMUNITY_FRAMES.on_envelope(ctx, origin, data)


async def listen_community_frames(ctx: AppContext) -> None:
    """Deliver other gateways' community frames to this process's watchers until cancelled."""
    await COMMUNITY_FRAMES.listen(ctx)


class LiveFrames:
    """The LivePublisher (community/ports.py) of one process."""

    def __init__(
        self,
        ctx: AppContext,
        counters: Callable[[Target], Awaitable[Record | None]],
        render_comment: Callable[[Record], Awaitable[dict[str, Any]]],
    ) -> None:
        self.ctx = ctx
        self.counters = counters  # a post's, article's or comment's counters, read now
        self.render_comment = render_comment  # the public comment view (author's name, avatar)
        self._counts: set[Target] = set()
        self._comment_counts: set[tuple[Target, int]] = set()
        self._comments: list[Record] = []
        self._task: asyncio.Task[None] | None = None
        self.frames_published = 0

    def _wanted(self, topic: Target) -> bool:
        """Someone may watch: a local watcher, or any gateway of a cluster."""
        hub = self.ctx.hub
        return self.ctx.price_bus is not None or (hub is not None and str(topic) in hub.by_topic)

    # -- LivePublisher -------------------------------------------------------------------------
    def counts_changed(self, target: Target) -> None:
        if self._wanted(target):
            self._counts.add(target)
            self._schedule()

    def comment_counts_changed(self, topic: Target, comment_id: int) -> None:
        if self._wanted(topic):
            self._comment_counts.add((topic, comment_id))
            self._schedule()

    def comment_added(self, comment: Record) -> None:
        kind, _, number = str(comment["target"]).partition(":")
        if self._wanted(Target(kind, int(number))):  # type: ignore[arg-type]
            self._comments.append(comment)
            self._schedule()

    # -- the flush -----------------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="community-live")

    async def drained(self) -> None:
        """Until every change told so far has been published (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        await asyncio.sleep(0)  # the rest of this loop turn's changes join this round
        while self._counts or self._comment_counts or self._comments:
            comments, self._comments = self._comments, []
            counts, self._counts = self._counts, set()
            comment_counts, self._comment_counts = self._comment_counts, set()
            try:
                for comment in comments:
                    await self._publish_comment(comment)
                for target in sorted(counts, key=str):
                    await self._publish_counts(target)
                for topic, comment_id in sorted(comment_counts, key=lambda k: (str(k[0]), k[1])):
                    await self._publish_comment_counts(topic, comment_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("community live frames failed; the pages catch up at their next change")

    async def _publish_comment(self, comment: Record) -> None:
        view = await self.render_comment(comment)
        topic = str(comment["target"])
        await self._send(topic, {"type": "comment", "topic": topic, "comment": view})

    async def _publish_counts(self, target: Target) -> None:
        found = await self.counters(target)
        if found is None:
            return
        frame: dict[str, Any] = {"type": "counts", "topic": str(target)}
        for name in COUNT_FIELDS.get(target.kind, ()):
            frame[name] = int(found.get(name, 0))
        await self._send(str(target), frame)

    async def _publish_comment_counts(self, topic: Target, comment_id: int) -> None:
        found = await self.counters(Target("comment", comment_id))
        if found is None:
            return
        frame = {
            "type": "comment_counts",
            "topic": str(topic),
            "comment_id": comment_id,
            "likes": int(found.get("likes", 0)),
            "replies": int(found.get("replies", 0)),
        }
        await self._send(str(topic), frame)

    async def _send(self, topic: str, frame: dict[str, Any]) -> None:
        self.frames_published += 1
        await publish(self.ctx, topic, frame)
