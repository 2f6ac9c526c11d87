"""The cart's pipelined Redis connection (persistence/redis_pipe.py) against the real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from persistence.redis_pipe import PipelinedRedis, Script


def pipe_for(client: aioredis.Redis) -> PipelinedRedis:
    pipe = PipelinedRedis.for_client(client)
    assert pipe is not None
    return pipe


async def test_concurrent_commands_get_their_own_replies_over_one_connection(
    redis_client: aioredis.Redis,
) -> None:
    pipe = pipe_for(redis_client)
    try:
        before = len(await redis_client.client_list())
        # Issued in the same turn of the loop: written together, answered in order.
        replies = await asyncio.gather(*(pipe.execute("INCRBY", f"pipe:{n % 7}", n) for n in range(300)))
        totals: dict[int, int] = {}
        for n, reply in enumerate(replies):
            totals[n % 7] = totals.get(n % 7, 0) + n
            assert reply == totals[n % 7]
        assert len(await redis_client.client_list()) == before + 1
        # The same database as the client it was made for (the test's own, not 0).
        assert await redis_client.get("pipe:3") == str(totals[3]).encode()
        assert await pipe.execute("HGETALL", "pipe:none") == []
    finally:
        pipe.close()


async def test_a_script_loads_itself_and_errors_leave_the_connection_usable(
    redis_client: aioredis.Redis,
) -> None:
    pipe = pipe_for(redis_client)
    script = Script("return {KEYS[1], ARGV[1]}")
    try:
        await redis_client.script_flush()
        assert await pipe.evalsha(script, ["k"], ["v"]) == [b"k", b"v"]  # NOSCRIPT, then EVAL
        assert await pipe.evalsha(script, ["k2"], [3]) == [b"k2", b"3"]
        await pipe.execute("SET", "pipe:text", "x")
        with pytest.raises(redis.exceptions.ResponseError):
            await pipe.execute("HGETALL", "pipe:text")  # WRONGTYPE
        assert await pipe.execute("GET", "pipe:text") == b"x"
    finally:
        pipe.close()


async def test_a_dead_or_stalled_server_fails_in_bounded_time_and_the_next_command_reconnects() -> None:
    dead = PipelinedRedis(host="127.0.0.1", port=1, connect_timeout_s=0.5, timeout_s=0.5)
    with pytest.raises(redis.exceptions.ConnectionError):
        await dead.execute("PING")
    accepted: list[asyncio.StreamWriter] = []

    async def never_answers(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stalled = PipelinedRedis(host="127.0.0.1", port=port, timeout_s=0.2)
    try:
        with pytest.raises(redis.exceptions.TimeoutError):
            await asyncio.gather(stalled.execute("PING"), stalled.execute("PING"))
        with pytest.raises(redis.exceptions.TimeoutError):
            await stalled.execute("PING")
        assert len(accepted) == 2  # the timed-out connection was dropped, a new one made
    finally:
        stalled.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
