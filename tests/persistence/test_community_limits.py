"""The community's Redis rate limiter and the blocks read, on the real servers."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import redis.asyncio as aioredis
from pymongo.asynchronous.database import AsyncDatabase

from community.errors import ActionRateLimited, CommunityBlocked
from community.guard import check_may_write
from community.rules import RateLimit
from persistence.community.blocks import MongoBlocks
from persistence.community.limits import RedisRateLimiter

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


async def test_a_window_allows_exactly_its_count_even_concurrently(redis_client: aioredis.Redis) -> None:
    clock = [1_000_000.0]
    limiter = RedisRateLimiter(redis_client, {"like": RateLimit(10, 60)}, now=lambda: clock[0])
    answers = await asyncio.gather(*(limiter.take(7, "like") for _ in range(25)))
    assert answers.count(None) == 10
    assert all(isinstance(a, int) and 1 <= a <= 60 for a in answers if a is not None)
    assert await limiter.take(8, "like") is None  # another user has their own window
    clock[0] += 60  # the next window
    assert await limiter.take(7, "like") is None
    assert await limiter.take(7, "unknown-action") is None  # no policy, no limit


async def test_lifted_limits_count_nothing(redis_client: aioredis.Redis) -> None:
    limiter = RedisRateLimiter(redis_client, {"post": RateLimit(1, 600)}, enabled=False)
    assert [await limiter.take(1, "post") for _ in range(3)] == [None, None, None]


async def test_guard_refuses_blocked_users_and_users_past_their_limit(
    mongo_db: AsyncDatabase[dict[str, Any]], redis_client: aioredis.Redis
) -> None:
    blocks = MongoBlocks(mongo_db)
    limiter = RedisRateLimiter(redis_client, {"comment": RateLimit(1, 60)})
    await mongo_db.community_blocks.insert_many(
        [
            {"_id": 1, "until": None, "reason": "spam"},
            {"_id": 2, "until": NOW - datetime.timedelta(days=1), "reason": "lifted by time"},
            {"_id": 3, "until": NOW + datetime.timedelta(days=1), "reason": "a day"},
        ]
    )
    for blocked in (1, 3):
        try:
            await check_may_write(blocks, limiter, blocked, "comment", NOW)
        except CommunityBlocked:
            pass
        else:
            raise AssertionError(f"user {blocked} is blocked")
    await check_may_write(blocks, limiter, 2, "comment", NOW)  # the block has run out
    try:
        await check_may_write(blocks, limiter, 2, "comment", NOW)
    except ActionRateLimited as refused:
        assert refused.code == "RATE_LIMITED" and 1 <= refused.retry_after_s <= 60
    else:
        raise AssertionError("the second comment in the window is refused")
