"""Per-user rate limits in Redis: one counter per user, action and fixed window.

`INCR` then `EXPIRE` on the first hit, in one Lua call so a crash between them cannot leave a
counter without an expiry. Every gateway process shares the counters, so a user cannot dodge a limit
by reconnecting to another process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

import redis.asyncio

from community.rules import RATE_LIMITS, RateLimit

PREFIX: Final = "gavel:rl:"
# KEYS[1] the window's counter; ARGV[1] the window in seconds. Returns the count and the TTL left.
_TAKE: Final = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
"""


class RedisRateLimiter:
    def __init__(
        self,
        redis_client: redis.asyncio.Redis,
        policy: Mapping[str, RateLimit] = RATE_LIMITS,
        *,
        enabled: bool = True,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis_client
        self.policy = dict(policy)
        self.enabled = enabled  # False only for load tests (COMMUNITY_RATE_LIMITS=off)
        self.now = now
        self._script = redis_client.register_script(_TAKE)

    async def take(self, user_id: int, action: str) -> int | None:
        limit = self.policy.get(action)
        if limit is None or not self.enabled:
            return None
        window = int(self.now()) // limit.seconds
        key = f"{PREFIX}{action}:{user_id}:{window}"
        count, ttl = await self._script(keys=[key], args=[limit.seconds])
        if int(count) <= limit.count:
            return None
        return max(1, int(ttl))
