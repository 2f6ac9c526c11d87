"""A process-local cache of what is read often and changes rarely (the auction catalogue's and the
course shop's metadata, the feed's first pages as anyone sees them), kept correct across the
processes of a cluster through Redis.

Entries live in named domains ("auction", "shop", "feed"). A write that changes a domain calls
`changed(domain)` AFTER it is durable (after its transaction committed): the domain is emptied
in this process at once, and a message on the Redis channel `gavel:read-cache` empties it in every
other process that is subscribed (within a round trip). A read that started before a change may
finish after it; its answer is not stored, because `put` takes the generation `stamp` gave before
the read and refuses a value when the domain's generation has moved since. So after `changed`
returns, no process serves the old value once the message has reached it.

Messages can be lost only while the subscription is down; then the cache is not `live`: nothing is
stored or served (every read goes to MongoDB) until the subscription is back, and it starts empty.
Until `run()` has subscribed (and in tests that never start it) the cache is therefore a
pass-through. Nothing personal goes in: entries are the same for every caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable
from typing import Any, Final

import redis.asyncio
import redis.exceptions

log = logging.getLogger("gavel.read_cache")

CHANNEL: Final = "gavel:read-cache"
DOMAINS: Final = ("auction", "shop", "feed")
# Per domain; past it the domain starts again (the catalogue is far smaller; a scan of made-up
# ids or pages costs reads, never more memory than this many entries).
MAX_ENTRIES: Final = 5_000
RETRY_SECONDS: Final = 0.5
MISSING: Final[Any] = object()


class ReadCache:
    def __init__(self, redis_client: redis.asyncio.Redis) -> None:
        self.redis = redis_client
        self._entries: dict[str, dict[Hashable, Any]] = {domain: {} for domain in DOMAINS}
        self._generation: dict[str, int] = dict.fromkeys(DOMAINS, 0)
        self.live = False
        self.invalidations = 0  # domains emptied (here or by a message): for tests and metrics

    # -- reads -----------------------------------------------------------------------------------
    def get(self, domain: str, key: Hashable) -> Any:
        """The stored value, or MISSING (also whenever the cache is not live)."""
        if not self.live:
            return MISSING
        return self._entries[domain].get(key, MISSING)

    def stamp(self, domain: str) -> int:
        """Take before reading the source; give to `put` with what was read."""
        return self._generation[domain]

    def put(self, domain: str, key: Hashable, value: Any, stamp: int) -> None:
        """Store `value` unless the domain changed since `stamp` (then the value may be stale)."""
        if not self.live or stamp != self._generation[domain]:
            return
        entries = self._entries[domain]
        if len(entries) >= MAX_ENTRIES:
            entries.clear()
        entries[key] = value

    # -- invalidation ----------------------------------------------------------------------------
    def forget(self, domain: str) -> None:
        """Empty `domain` in this process (a change seen here or announced by another process)."""
        self._generation[domain] += 1
        self._entries[domain].clear()
        self.invalidations += 1

    def forget_all(self) -> None:
        for domain in DOMAINS:
            self.forget(domain)

    async def changed(self, domain: str) -> None:
        """A write to `domain` is durable: empty it here and tell the other processes."""
        self.forget(domain)
        try:
            await self.redis.publish(CHANNEL, domain)
        except (redis.exceptions.RedisError, OSError) as exc:
            # The other processes' subscriptions use the same Redis: if it cannot take this
            # message it has dropped their connections too, and they stopped serving cached reads.
            log.warning("could not announce a change of %s: %s", domain, exc)

    # -- the subscription ------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.run(), name="read-cache")

    async def run(self) -> None:
        """Keep the subscription; serve from the cache only while it is up."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        # Messages sent before this point were missed: start empty.
                        self.forget_all()
                        self.live = True
                    elif message["type"] == "message":
                        data = message["data"]
                        domain = data.decode() if isinstance(data, bytes) else str(data)
                        if domain in self._generation:
                            self.forget(domain)
                        else:
                            self.forget_all()
            except asyncio.CancelledError:
                self.live = False
                raise
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("read cache subscription lost (%s); reads go to the database", exc)
            finally:
                self.live = False
                self.forget_all()
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(RETRY_SECONDS)
