"""Every gateway's viewers of each session in Redis, for a count across processes (backoffice/viewers.py
decides what a viewer is and when one expires).

Two sorted sets per session, `gavel:viewers:{session_id}` (every viewer) and
`gavel:viewers:{session_id}:users` (signed-in ones), member = viewer, score = when it expires
(epoch ms). A gateway's refresh adds its viewers with their new expiry (`ZADD GT`: a viewer
another gateway refreshed later keeps the later time), drops the expired members and sets the keys
to expire EXPIRES_S after this refresh (the latest refresh has the latest members), all in one
pipeline. The count is `ZCOUNT now +inf` of each: the
union of every live gateway's viewers, each counted once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import redis.asyncio as aioredis

from backoffice.viewers import EXPIRES_S, ViewerCount, expires_at, is_user

KEY_PREFIX = "gavel:viewers:"


def wall_ms() -> int:
    """Expiries are stamped and read on the wall clock: every gateway's (NTP-kept) time base."""
    return int(time.time() * 1000)


def viewers_key(session_id: int) -> str:
    return f"{KEY_PREFIX}{session_id}"


def users_key(session_id: int) -> str:
    return f"{KEY_PREFIX}{session_id}:users"


class ViewerStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def refresh(self, viewers: Mapping[int, set[str]], now_ms: int) -> None:
        """Stamp this gateway's viewers of each session to expire EXPIRES_S from `now_ms`."""
        if not viewers:
            return
        until = expires_at(now_ms)
        keep_ms = int(EXPIRES_S * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id, members in viewers.items():
                users = [viewer for viewer in members if is_user(viewer)]
                for key, chosen in ((viewers_key(session_id), members), (users_key(session_id), users)):
                    if chosen:
                        pipe.zadd(key, dict.fromkeys(chosen, until), gt=True)
                        pipe.pexpire(key, keep_ms)
                    pipe.zremrangebyscore(key, "-inf", now_ms)
            await pipe.execute()

    async def count(self, session_id: int, now_ms: int) -> ViewerCount:
        """The session's distinct viewers not yet expired, over every gateway."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(viewers_key(session_id), f"({now_ms}", "+inf")
            pipe.zcount(users_key(session_id), f"({now_ms}", "+inf")
            viewers, users = await pipe.execute()
        return ViewerCount(int(viewers), int(users))
