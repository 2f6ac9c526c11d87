"""The checks every community write makes before it writes: not blocked, within the rate limit."""

from __future__ import annotations

import datetime

from community.errors import ActionRateLimited, CommunityBlocked
from community.ports import Blocks, RateLimiter


async def check_may_write(
    blocks: Blocks, limiter: RateLimiter, user_id: int, action: str, now: datetime.datetime
) -> None:
    """CommunityBlocked (403) when blocked, ActionRateLimited (429) past the action's limit."""
    if await blocks.blocked(user_id, now):
        raise CommunityBlocked("an administrator has blocked this account from the community")
    await check_rate(limiter, user_id, action)


async def check_rate(limiter: RateLimiter, user_id: int, action: str) -> None:
    retry_after = await limiter.take(user_id, action)
    if retry_after is not None:
        raise ActionRateLimited(f"too many {action} actions; try again in {retry_after} s", retry_after)
