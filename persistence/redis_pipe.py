"""A thin pipelined Redis connection for the hottest request paths (the cart's add and view).

redis-py's asyncio client takes a pooled connection per command, so 32 concurrent requests make
32 sockets, 32 sends and 32 receives, and its per-command machinery costs 110-150 µs of CPU here
(docs/performance.md, "REST paths against hello-world"). This keeps ONE connection per process:
every command issued during one turn of the event loop goes out in a single write, replies are
parsed by hiredis (the C parser redis-py uses too) and handed back in order. Redis answers a
connection's commands in the order sent, so the n-th reply is the n-th command's.

It has the process client's bounds and error types (persistence/redis_client.py): connecting and
every command give up after the client's timeouts with `redis.exceptions.TimeoutError`; a refused
or lost connection is `redis.exceptions.ConnectionError` for every command in flight (none is
retried: the caller cannot know whether it ran), and the next command connects again. Error
replies are `redis.exceptions.ResponseError` (`NoScriptError` for NOSCRIPT). Only plain TCP and
Unix-socket connections are supported; for anything else (TLS, Sentinel) `for_client` answers
None and the caller keeps redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any, Final, cast

import hiredis
import redis.asyncio
import redis.asyncio.connection
import redis.exceptions

DEFAULT_TIMEOUT_S: Final = 5.0


def _pack(args: tuple[str | bytes | int, ...]) -> bytes:
    # hiredis's stub types the tuple as one element long; it takes any number.
    packed: bytes = hiredis.pack_command(cast(Any, args))
    return packed


def _error(reply: hiredis.ReplyError) -> redis.exceptions.ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.exceptions.ResponseError(message)


class _Protocol(asyncio.Protocol):
    """One connection: commands queued in a turn of the loop are written together; replies are
    matched to the futures in the order the commands were sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            while True:
                reply = reader.gets()
                if reply is False:
                    return
                if not self.waiting:
                    raise redis.exceptions.InvalidResponse("a reply nobody asked for")
                future, _ = self.waiting.popleft()
                if future.done():  # its caller gave up (cancelled); the reply is dropped
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(_error(reply))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, redis.exceptions.InvalidResponse) as exc:
            self.abort(redis.exceptions.ConnectionError(f"unreadable reply from Redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort(redis.exceptions.ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    # -- commands ------------------------------------------------------------------------------
    def call(self, packed: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise redis.exceptions.ConnectionError("connection to Redis closed")
        future: asyncio.Future[Any] = self.loop.create_future()
        self.waiting.append((future, self.loop.time()))
        self.outgoing.append(packed)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self.timer is None:
            self.timer = self.loop.call_later(self.timeout_s, self._check_timeout)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.closed or self.transport is None or not self.outgoing:
            return
        self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def _check_timeout(self) -> None:
        self.timer = None
        if not self.waiting or self.closed:
            return
        oldest = self.waiting[0][1]
        left = oldest + self.timeout_s - self.loop.time()
        if left <= 0:
            # As redis-py does: the connection is dropped, its replies could no longer be matched.
            self.abort(redis.exceptions.TimeoutError("Redis did not answer in time"))
        else:
            self.timer = self.loop.call_later(left, self._check_timeout)

    def abort(self, error: Exception) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiting, self.waiting = self.waiting, collections.deque()
        self.outgoing.clear()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class PipelinedRedis:
    """`await pipe.execute("HGETALL", key)`: the reply as redis-py's bytes-mode client gives it
    (without its per-command parsing: lists stay lists)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        connect_timeout_s: float = DEFAULT_TIMEOUT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.db = username, password, db
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._connecting_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_client(cls, client: redis.asyncio.Redis) -> PipelinedRedis | None:
        """One to the same server, database and credentials as `client`, with its timeouts."""
        pool = client.connection_pool
        kwargs: dict[str, Any] = pool.connection_kwargs
        kind = pool.connection_class
        timeout = kwargs.get("socket_timeout") or DEFAULT_TIMEOUT_S
        common: dict[str, Any] = {
            "username": kwargs.get("username"),
            "password": kwargs.get("password"),
            "db": int(kwargs.get("db") or 0),
            "connect_timeout_s": kwargs.get("socket_connect_timeout") or timeout,
            "timeout_s": timeout,
        }
        if kind is redis.asyncio.connection.Connection:
            return cls(
                host=str(kwargs.get("host", "localhost")), port=int(kwargs.get("port", 6379)), **common
            )
        if kind is redis.asyncio.connection.UnixDomainSocketConnection:
            return cls(path=str(kwargs["path"]), **common)
        return None

    async def execute(self, *args: str | bytes | int) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed or protocol.loop is not asyncio.get_running_loop():
            protocol = await self._connect()
        return await protocol.call(_pack(args))

    async def evalsha(self, script: Script, keys: list[str], args: list[str | bytes | int]) -> Any:
        """EVALSHA, or EVAL (which also loads it) when the server does not know the script yet."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._connecting_loop is not loop:
            # A lock belongs to one loop (tests run several, one after another).
            self._connecting, self._connecting_loop = asyncio.Lock(), loop
        async with self._connecting:
            known = self._protocol
            if known is not None and not known.closed and known.loop is loop:
                return known  # another caller connected while this one waited
            protocol = _Protocol(loop, self.timeout_s)
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    if self.path is not None:
                        await loop.create_unix_connection(lambda: protocol, self.path)
                    else:
                        await loop.create_connection(lambda: protocol, self.host, self.port)
                    if self.password:
                        credentials = (self.username, self.password) if self.username else (self.password,)
                        await protocol.call(_pack(("AUTH", *credentials)))
                    if self.db:
                        await protocol.call(_pack(("SELECT", self.db)))
            except BaseException as exc:
                protocol.abort(redis.exceptions.ConnectionError("connecting to Redis failed"))
                if isinstance(exc, TimeoutError):
                    raise redis.exceptions.TimeoutError("connecting to Redis timed out") from None
                if isinstance(exc, OSError):
                    raise redis.exceptions.ConnectionError(f"cannot connect to Redis: {exc}") from None
                raise
            self._protocol = protocol
            return protocol

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.abort(redis.exceptions.ConnectionError("connection to Redis closed"))


class Script:
    """A Lua script and its SHA-1, for `PipelinedRedis.evalsha`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
