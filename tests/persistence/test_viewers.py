"""persistence/viewers.py on the real embedded redis-server: two gateways' hubs share one Redis;
distinct viewers are counted once across them, and a gateway that stops refreshing expires."""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis

from backoffice.viewers import EXPIRES_S
from gateway.ws import Hub
from persistence.viewers import ViewerStore

SESSION = 41


class Socket:
    """What the hub's viewer count reads of a socket: its user (0: anonymous)."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id


def gateway_hub(*users: int) -> Hub:
    hub = Hub(ctx=cast(Any, None))  # membership only: nothing here reads the context
    hub.by_session[SESSION] = {Socket(user) for user in users}  # type: ignore[misc]
    return hub


async def test_two_gateways_count_each_viewer_once(redis_client: aioredis.Redis) -> None:
    store = ViewerStore(redis_client)
    one = gateway_hub(1, 2, 0)  # users 1 and 2, an anonymous socket
    two = gateway_hub(2, 2, 3, 0)  # user 2 again (two tabs), user 3, another anonymous socket
    now = 1_000_000
    await store.refresh(one.session_viewers("gw-1"), now)
    await store.refresh(two.session_viewers("gw-2"), now + 10)
    counted = await store.count(SESSION, now + 20)
    assert (counted.viewers, counted.users) == (5, 3)  # u:1 u:2 u:3 and two anonymous sockets
    assert await store.count(SESSION + 1, now) == type(counted)(0, 0)


async def test_a_gateway_that_stops_refreshing_expires(redis_client: aioredis.Redis) -> None:
    store = ViewerStore(redis_client)
    alive, killed = gateway_hub(1, 0), gateway_hub(2, 0)
    now = 2_000_000
    await store.refresh(alive.session_viewers("gw-alive"), now)
    await store.refresh(killed.session_viewers("gw-killed"), now)
    assert (await store.count(SESSION, now + 1)).viewers == 4
    later = now + int(EXPIRES_S * 1000) - 1000  # the live gateway refreshed in time, the other not
    await store.refresh(alive.session_viewers("gw-alive"), later)
    counted = await store.count(SESSION, now + int(EXPIRES_S * 1000) + 1)
    assert (counted.viewers, counted.users) == (2, 1)
    # expired members are dropped at the next refresh, and the keys expire with their members
    assert await redis_client.zcard(f"gavel:viewers:{SESSION}") == 4
    await store.refresh(alive.session_viewers("gw-alive"), now + int(EXPIRES_S * 1000) + 1)
    assert await redis_client.zcard(f"gavel:viewers:{SESSION}") == 2
    assert 0 < await redis_client.pttl(f"gavel:viewers:{SESSION}") <= int(EXPIRES_S * 1000)


async def test_a_viewer_refreshed_later_by_another_gateway_keeps_the_later_expiry(
    redis_client: aioredis.Redis,
) -> None:
    store = ViewerStore(redis_client)
    now = 3_000_000
    await store.refresh(gateway_hub(9).session_viewers("gw-b"), now + 4000)
    await store.refresh(gateway_hub(9).session_viewers("gw-a"), now)  # an older refresh arrives last
    assert (await store.count(SESSION, now + int(EXPIRES_S * 1000) + 1)).users == 1
