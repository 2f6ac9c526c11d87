"""Redis pub/sub between gateway processes: each publishes its sessions' price frames, all listen.

`PriceBus.publish` only appends to a bounded deque (never awaits, never raises). A background task
sends whatever accumulated since its last round in one pipeline of PUBLISHes to
`gavel:session:{session_id}` (so one loop turn's frames go out together). When Redis is
unreachable the deque keeps only the newest `max_pending` frames — a price frame is superseded by
the next one anyway — and the outage is logged once when it starts and once when it ends.

Every message is `len(origin) (1 byte) + origin + frame`; a subscriber ignores messages carrying
its own origin (its local subscribers already got the frame directly).

Frames for a session nobody listens to are not sent: once per `listener_check_s` the publisher
asks Redis (`PUBSUB NUMSUB`) which of the sessions it publishes have subscribers, and skips the
others (counted as `unheard`). A subscriber that arrives gets frames from the next check on (at
most `listener_check_s` later; a price frame is superseded by the next anyway). This is what a
single process pays for the channel when no one else listens: one round trip a second instead of
a PUBLISH per frame. `listener_check_s=0` publishes everything.

The client must be bytes-mode (`decode_responses=False`): frames are binary.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

__all__ = ["CHANNEL_PREFIX", "FrameCallback", "PriceBus"]

log = logging.getLogger("gavel.redis_bus")

CHANNEL_PREFIX = "gavel:session:"
# Channel names are kept so the hot path does not format one per frame; sessions keep coming
# (thousands a year), so the kept names start again empty past this many (rebuilt on next use).
CHANNEL_NAMES_KEPT = 4_096

FrameCallback = Callable[[int, bytes], None]
"""`callback(session_id, frame)`, called on the event loop for frames from other origins."""

# Redis errors surface as RedisError subclasses, but a dying socket can leak a bare OSError.
_REDIS_ERRORS = (RedisError, OSError)


class PriceBus:
    def __init__(
        self,
        redis: aioredis.Redis,
        origin: str,
        *,
        max_pending: int = 10_000,
        pipeline_size: int = 1_000,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
        listener_check_s: float = 1.0,
    ) -> None:
        raw_origin = origin.encode()
        if not 0 < len(raw_origin) < 256:
            raise ValueError("origin must be 1..255 bytes of UTF-8")
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("PriceBus needs a bytes-mode Redis client (decode_responses=False)")
        self.redis = redis
        self.origin = origin
        self.max_pending = max_pending
        self.pipeline_size = pipeline_size
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._header = bytes([len(raw_origin)]) + raw_origin
        # maxlen: appending beyond the bound drops the oldest frame, in O(1).
        self._pending: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self._channels: dict[int, bytes] = {}
        self._callbacks: dict[int, list[FrameCallback]] = {}
        self._by_channel: dict[bytes, int] = {}
        self._subscribed = asyncio.Event()  # set while there is at least one subscription
        self._pubsub: PubSub | None = None
        # Serializes SUBSCRIBE/UNSUBSCRIBE sends: two first sends at once would open two connections.
        self._sub_lock = asyncio.Lock()
        self._publisher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._publish_failing = False
        self._read_failing = False
        # The reader compares our wanted channels with the connection's after sends were skipped
        # or failed (an outage), instead of on every message.
        self._needs_sync = False
        self._flushed: asyncio.Future[None] | None = None  # stop() waits on it for the queue to empty
        self.stats = {"published": 0, "dropped": 0, "received": 0, "ignored_own": 0, "unheard": 0}
        self.listener_check_s = listener_check_s
        self._heard: dict[int, bool] = {}  # session -> had subscribers at the last check
        self._checked_at = float("-inf")

    # -- publishing --------------------------------------------------------------------------------
    def publish(self, session_id: int, frame: bytes) -> None:
        """Queue `frame` for the session's channel. Never awaits, never raises, never blocks."""
        if self._heard.get(session_id) is False and self._check_is_fresh(asyncio.get_running_loop().time()):
            # Nobody listened at a check that is still fresh: not even a wake-up of the publisher.
            self.stats["unheard"] += 1
            return
        pending = self._pending
        if len(pending) == self.max_pending:
            self.stats["dropped"] += 1
        pending.append((session_id, frame))
        if not self._wake.is_set():
            self._wake.set()

    @property
    def pending(self) -> int:
        """Frames queued and not yet handed to Redis."""
        return len(self._pending)

    def channel(self, session_id: int) -> bytes:
        name = self._channels.get(session_id)
        if name is None:
            if len(self._channels) >= CHANNEL_NAMES_KEPT:
                self._channels.clear()
            name = self._channels[session_id] = f"{CHANNEL_PREFIX}{session_id}".encode()
        return name

    async def _publish_loop(self) -> None:
        backoff = self.min_backoff
        pending = self._pending
        while True:
            if not pending:
                self._resolve_flush()
                self._wake.clear()
                await self._wake.wait()
                continue
            count = min(len(pending), self.pipeline_size)
            # Peek, send, and only then pop: a failed round leaves the frames queued (bounded).
            batch = list(itertools.islice(pending, count))
            try:
                if self.listener_check_s:
                    await self._check_listeners(batch)
                heard = self._heard
                pipe = self.redis.pipeline(transaction=False)
                header = self._header
                sent = 0
                for session_id, frame in batch:
                    if heard.get(session_id, True):
                        pipe.publish(self.channel(session_id), header + frame)
                        sent += 1
                if sent:
                    await pipe.execute()
                self.stats["unheard"] += count - sent
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as error:
                if not self._publish_failing:
                    self._publish_failing = True
                    log.warning(
                        "Redis publish failing, keeping the newest %d frames meanwhile: %s",
                        self.max_pending,
                        _describe(error),
                    )
                self._resolve_flush()  # no point making stop() wait through an outage
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            # Frames published on this round are the oldest `count` unless the bound dropped
            # some meanwhile; pop only what is provably ours (compare identities).
            for item in batch:
                if pending and pending[0] is item:
                    pending.popleft()
            self.stats["published"] += sent
            backoff = self.min_backoff
            if self._publish_failing:
                self._publish_failing = False
                log.info("Redis publish recovered (%d frames dropped so far)", self.stats["dropped"])

    async def _check_listeners(self, batch: list[tuple[int, bytes]]) -> None:
        """Refresh which sessions have subscribers, at most once per `listener_check_s`."""
        now = asyncio.get_running_loop().time()
        if self._check_is_fresh(now) and all(session_id in self._heard for session_id, _ in batch):
            return
        sessions = sorted({session_id for session_id, _ in batch})
        counts = await self.redis.pubsub_numsub(*(self.channel(session_id) for session_id in sessions))
        pairs = zip(sessions, counts, strict=True)
        self._heard = {session_id: int(n) > 0 for session_id, (_name, n) in pairs}
        self._checked_at = now

    def _check_is_fresh(self, now: float) -> bool:
        return now - self._checked_at < self.listener_check_s

    def _resolve_flush(self) -> None:
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)

    # -- subscribing -------------------------------------------------------------------------------
    async def subscribe(self, session_ids: Iterable[int], callback: FrameCallback) -> None:
        """Call `callback(session_id, frame)` for frames other origins publish to these sessions.

        Returns once the SUBSCRIBE is sent; if Redis is down, the reader subscribes when it is back.
        """
        new: list[bytes] = []
        for session_id in session_ids:
            callbacks = self._callbacks.setdefault(session_id, [])
            if not callbacks:
                channel = self.channel(session_id)
                self._by_channel[channel] = session_id
                new.append(channel)
            if callback not in callbacks:
                callbacks.append(callback)
        if new:
            await self._send_subscription("subscribe", new)
        if self._callbacks:
            self._subscribed.set()

    async def unsubscribe(self, session_ids: Iterable[int], callback: FrameCallback | None = None) -> None:
        """Stop calling `callback` (or every callback, when None) for these sessions."""
        gone: list[bytes] = []
        for session_id in session_ids:
            callbacks = self._callbacks.get(session_id)
            if callbacks is None:
                continue
            if callback is None:
                callbacks.clear()
            elif callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                del self._callbacks[session_id]
                channel = self.channel(session_id)
                self._by_channel.pop(channel, None)
                gone.append(channel)
        if gone:
            await self._send_subscription("unsubscribe", gone)

    async def _send_subscription(self, command: str, channels: list[bytes]) -> None:
        if self._read_failing:
            # Redis is known to be down: don't sit through the client's connect retries here;
            # the reader subscribes to everything registered once it reconnects.
            self._needs_sync = True
            return
        pubsub = self._get_pubsub()
        try:
            # Sending while the reader waits on the same connection is fine: it only writes.
            async with self._sub_lock:
                if command == "subscribe":
                    await pubsub.subscribe(*channels)
                else:
                    await pubsub.unsubscribe(*channels)
        except _REDIS_ERRORS as error:
            # The reader reconciles the subscriptions once Redis answers again.
            self._read_failing = self._needs_sync = True
            log.warning("Redis %s of %d channels deferred: %s", command, len(channels), _describe(error))

    def _get_pubsub(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    async def _read_loop(self) -> None:
        backoff = self.min_backoff
        while True:
            if not self._callbacks:
                self._subscribed.clear()
                await self._subscribed.wait()
                continue
            pubsub = self._get_pubsub()
            try:
                if self._needs_sync or pubsub.connection is None:
                    await self._sync_subscriptions(pubsub)
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (*_REDIS_ERRORS, RuntimeError) as error:
                # RuntimeError: redis-py's "pubsub connection not set" after a failed first SUBSCRIBE.
                self._needs_sync = True
                if not self._read_failing:
                    self._read_failing = True
                    log.warning("Redis subscription reader failing, retrying: %s", _describe(error))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            if self._read_failing:
                self._read_failing = False
                log.info("Redis subscription reader recovered")
            if message is not None and message.get("type") == "message":
                self._dispatch(message)

    async def _sync_subscriptions(self, pubsub: PubSub) -> None:
        """Make the connection's subscriptions match the wanted ones (after an outage)."""
        async with self._sub_lock:
            missing = [c for c in self._by_channel if c not in pubsub.channels]
            if missing:
                await pubsub.subscribe(*missing)
            # An UNSUBSCRIBE skipped during the outage: redis-py resubscribed it on reconnect.
            extra = [
                c
                for c in pubsub.channels
                if c not in self._by_channel and c not in pubsub.pending_unsubscribe_channels
            ]
            if extra:
                await pubsub.unsubscribe(*extra)
        self._needs_sync = False

    def _dispatch(self, message: dict[str, Any]) -> None:
        data = message["data"]
        if not isinstance(data, bytes) or not data:
            return
        if data.startswith(self._header):
            self.stats["ignored_own"] += 1
            return
        session_id = self._by_channel.get(message["channel"])
        if session_id is None:  # unsubscribed meanwhile
            return
        start = 1 + data[0]
        if start > len(data):
            log.debug("malformed bus message on %r", message["channel"])
            return
        frame = data[start:]
        self.stats["received"] += 1
        for callback in tuple(self._callbacks.get(session_id, ())):
            try:
                callback(session_id, frame)
            except Exception:
                log.exception("a price bus callback failed")

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the publisher and the subscription reader (needs a running loop)."""
        loop = asyncio.get_running_loop()
        if self._publisher is None:
            self._publisher = loop.create_task(self._publish_loop(), name=f"price-bus-publish-{self.origin}")
            self._publisher.add_done_callback(_log_crash)
        if self._reader is None:
            self._reader = loop.create_task(self._read_loop(), name=f"price-bus-read-{self.origin}")
            self._reader.add_done_callback(_log_crash)

    async def stop(self, flush_timeout: float = 1.0) -> None:
        """Give queued frames up to `flush_timeout` seconds to go out, then stop both tasks."""
        if self._publisher is not None and self._pending and not self._publish_failing and flush_timeout > 0:
            self._flushed = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed, flush_timeout)
            self._flushed = None
        tasks = {task for task in (self._publisher, self._reader) if task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # not `await task`: a crash was logged already
        self._publisher = self._reader = None
        if self._pubsub is not None:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py is untyped here
            self._pubsub = None


def _describe(error: BaseException) -> str:
    # redis-py's exception repr is terse ("network:ConnectionError"); the message names the address.
    return f"{type(error).__name__}: {error}"


def _log_crash(task: asyncio.Task[None]) -> None:
    # The loops catch what Redis throws; anything else is a bug that must not die silently.
    if not task.cancelled() and task.exception() is not None:
        log.error("%s crashed", task.get_name(), exc_info=task.exception())
