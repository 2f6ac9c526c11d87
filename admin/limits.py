"""Rate limits on admin sign-in: per username (shared with the JSON login) and per client address.

- Per username: `gateway.rest_auth.LoginThrottle` (10 failures per 15 minutes in Redis), the very
  counter the JSON login uses, so guessing cannot switch between the two doors.
- Per IP address: every attempt counts (failed or not), `admin_login_ip_limit` attempts (default 20)
  per `admin_login_ip_window_s` (default 900 s). Counted in Redis so every gateway process agrees;
  when Redis is unreachable an in-process counter takes over (so the limit fails closed per process
  rather than open).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import redis
import redis.asyncio

from gateway.context import AppContext
from gateway.rest_auth import LoginThrottle

log = logging.getLogger("gavel.admin.limits")

DEFAULT_IP_LIMIT = 20
DEFAULT_IP_WINDOW_S = 15 * 60
MEMORY_KEYS = 10_000


class LoginLimiter:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._memory: OrderedDict[str, tuple[int, float]] = OrderedDict()

    @property
    def ip_limit(self) -> int:
        return int(self.ctx.options.get("admin_login_ip_limit", DEFAULT_IP_LIMIT))

    @property
    def ip_window_s(self) -> int:
        return int(self.ctx.options.get("admin_login_ip_window_s", DEFAULT_IP_WINDOW_S))

    def username_throttle(self) -> LoginThrottle:
        return LoginThrottle(self.ctx.redis)

    async def ip_attempt(self, ip: str) -> bool:
        """Count one attempt from `ip`; False when it is over the limit (refuse it)."""
        key = f"gavel:admin-login-ip:{ip[:64]}"
        try:
            async with self.ctx.redis.pipeline(transaction=True) as pipe:
                pipe.set(key, 0, ex=self.ip_window_s, nx=True)
                pipe.incr(key)
                _, count = await pipe.execute()
        except redis.RedisError:
            log.warning("admin login limiter: Redis unavailable, counting in memory", exc_info=True)
            count = self._memory_incr(key)
        return int(count) <= self.ip_limit

    def _memory_incr(self, key: str) -> int:
        now = time.monotonic()
        count, started = self._memory.get(key, (0, now))
        if now - started > self.ip_window_s:
            count, started = 0, now
        self._memory[key] = (count + 1, started)
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY_KEYS:
            self._memory.popitem(last=False)
        return count + 1
