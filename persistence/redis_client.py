"""The process's Redis client: every command bounded, like the request path's MongoDB client.

A stalled Redis (paused, partitioned, swapping) then costs a command at most `timeout_ms` and a
`redis.TimeoutError`, which the gateway answers 503 UNAVAILABLE (web/errors.py) or, where
Redis only guards (login throttles), treats as absent; a Redis that is gone refuses at once.
Blocking reads (XREAD BLOCK, pub/sub) that must wait longer use a client of their own
(persistence/cluster.py, `_blocking_client`).
"""

from __future__ import annotations

import redis.asyncio as aioredis


def connect(url: str, *, timeout_ms: int) -> aioredis.Redis:
    """A bytes-mode client whose connects and commands each give up after `timeout_ms`."""
    timeout_s = timeout_ms / 1000
    return aioredis.from_url(
        url,
        health_check_interval=15,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
