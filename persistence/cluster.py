"""Scale-out over Redis: engine processes own sessions, gateway processes hold the sockets.

Keys (all under `gavel:`):

* `gavel:engine:{id}:lease` — an engine process's lease (SET NX PX, renewed by compare-and-expire).
  Holding it is what makes a process the owner of engine `{id}`: a second process with the same
  id refuses to start while it is held, and a process that loses it stops taking commands.
* `gavel:engines` — the set of engine ids ever registered; `gavel:sessions` — session id → engine
  id. A session is assigned once (HSETNX) and stays with its engine: its journal lives there.
* `gavel:engine:{id}:commands` — a Redis Stream of commands for one engine, read through the
  consumer group `engine`; an entry is acknowledged (XACK) only after the engine's answer is
  published, so an engine that restarts re-reads what it had not answered. Bids carry a `ref`
  (the client's, or one the gateway makes), so a re-read bid is answered from the engine's
  reference cache, never applied twice.
* `gavel:engine:{id}:journal` — the engine's committed journal records, one stream entry per
  group commit (entry id = the last seq in it). Every gateway applies them to a read-only
  replica of the book (`Engine.follow`): the same records in the same order give every gateway
  the same prices in the same order, and its websocket fan-out runs off the replica's events as
  it does in a single process. Entries are trimmed back to the previous snapshot; a gateway that
  finds a gap reloads the newest snapshot from MongoDB.
* `gavel:gateway:{id}:replies` — pub/sub channel carrying the engine's answers to one gateway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import itertools
import logging
import os
import secrets
import socket
import struct
from collections import ChainMap
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

import engine.journal as journal
from engine.book.book import Book
from engine.book.errors import RejectCode
from engine.book.lot import Decision
from engine.clock import Clock
from engine.commands import (
    BY_TAG,
    TAGS,
    BlockBidder,
    CancelLot,
    CloseLot,
    Command,
    ExtendLot,
    MarkOverdue,
    OpenLot,
    Outcome,
    PauseLot,
    PauseSession,
    PlaceBid,
    PutLot,
    PutSession,
    RegisterDeposit,
    ResumeLot,
    ResumeSession,
    SetMaxBid,
    UnblockBidder,
    VoidBid,
)
from engine.engine import CommittedBatch, Engine, Reply

log = logging.getLogger("gavel.cluster")

PREFIX = "gavel:"
ENGINES_KEY = PREFIX + "engines"
SESSIONS_KEY = PREFIX + "sessions"
GROUP = "engine"
DEFAULT_ENGINE_ID = "main"
_REDIS_ERRORS = (RedisError, OSError)

# What redis-py's typing says a reply may be; this client never sets decode_responses, so the
# values are bytes, but the stubs allow str too. These helpers say so once.
RedisValue = bytes | str
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def _text(value: RedisValue) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: Any) -> list[StreamEntry]:
    """XRANGE/XREVRANGE entries as this client receives them (bytes, see above)."""
    return list(raw or [])


def _stream_entries(answer: Any) -> list[StreamEntry]:
    """The entries of a one-stream XREAD/XREADGROUP answer (`[[stream, entries]]`), or none."""
    return _entries(answer[0][1]) if answer else []


T = TypeVar("T")


def _shielded(awaitable: Awaitable[T]) -> asyncio.Future[T]:
    """Await a Redis command so that cancelling the waiter can neither be swallowed by redis-py
    nor leave the connection mid-reply: the command finishes (or fails) on its own, unobserved."""
    task = asyncio.ensure_future(awaitable)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return asyncio.shield(task)


def _raise_if_cancelling() -> None:
    """redis-py may turn a cancellation that lands mid-command into a connection error: a loop that
    catches those and retries must still stop when its task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


UNAVAILABLE = "UNAVAILABLE"


def lease_key(engine_id: str) -> str:
    return f"{PREFIX}engine:{engine_id}:lease"


def command_stream(engine_id: str) -> str:
    return f"{PREFIX}engine:{engine_id}:commands"


def journal_stream(engine_id: str) -> str:
    return f"{PREFIX}engine:{engine_id}:journal"


def reply_channel(gateway_id: str) -> str:
    return f"{PREFIX}gateway:{gateway_id}:replies"


def storage_prefix(engine_id: str) -> str:
    """Collection/key prefix of one engine's snapshots and archive ("" for the single-process id)."""
    return "" if engine_id == DEFAULT_ENGINE_ID else f"engine_{engine_id}_"


_JOURNAL_HEADER = struct.pack("<4sI", journal.MAGIC, journal.FORMAT_VERSION)


def parse_records(data: bytes) -> list[tuple[int, bytes]]:
    """Framed journal records (as the engine writes them after the file header) → (seq, payload)."""
    records, end = journal.scan_segment(_JOURNAL_HEADER + data)
    if end != len(data) + len(_JOURNAL_HEADER):
        raise ValueError("damaged journal records in the replication stream")
    return records


def encode_outcome(outcome: Outcome) -> list[Any]:
    decision = outcome.decision
    row = None
    if decision is not None:
        code = decision.code
        row = [decision.accepted, str(code) if code is not None else None, *decision[2:]]
    return [outcome.ok, outcome.code, outcome.message, outcome.seq, row]


def decode_outcome(row: list[Any]) -> Outcome:
    ok, code, message, seq, decision_row = row
    decision = None
    if decision_row is not None:
        accepted, decision_code, *rest = decision_row
        decision = Decision(accepted, RejectCode(decision_code) if decision_code else None, *rest)
    return Outcome(ok, code, message, seq, decision)


def unavailable(message: str) -> Outcome:
    return Outcome(False, UNAVAILABLE, message, 0, None)


def _log_crash(task: asyncio.Task[None]) -> None:
    """Background loops must not die silently: say so loudly (the process keeps serving)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("cluster task %s crashed", task.get_name(), exc_info=task.exception())


# -- the registry ------------------------------------------------------------------------------
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Registry:
    """Which engine owns which session, and which engines are alive (leases)."""

    def __init__(self, redis: aioredis.Redis, *, lease_ms: int = 10_000) -> None:
        self.redis = redis
        self.lease_ms = lease_ms

    async def acquire(self, engine_id: str, token: str) -> bool:
        taken = await self.redis.set(lease_key(engine_id), token, nx=True, px=self.lease_ms)
        if taken:
            await self.redis.sadd(ENGINES_KEY, engine_id)
        return bool(taken)

    async def holder(self, engine_id: str) -> str | None:
        value = await self.redis.get(lease_key(engine_id))
        return None if value is None else _text(value)

    async def take_over(self, engine_id: str, stale: str, token: str) -> bool:
        """Replace the holder `stale` (known dead) with `token`, atomically."""
        return bool(await self.redis.eval(_TAKE_OVER, 1, lease_key(engine_id), stale, token, self.lease_ms))

    async def renew(self, engine_id: str, token: str) -> bool:
        return bool(await self.redis.eval(_RENEW, 1, lease_key(engine_id), token, self.lease_ms))

    async def release(self, engine_id: str, token: str) -> None:
        await self.redis.eval(_RELEASE, 1, lease_key(engine_id), token)

    async def engines(self) -> list[str]:
        return sorted(_text(member) for member in await self.redis.smembers(ENGINES_KEY))

    async def alive(self, engine_ids: Iterable[str]) -> dict[str, bool]:
        ids = list(engine_ids)
        if not ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for engine_id in ids:
                pipe.exists(lease_key(engine_id))
            answers = await pipe.execute()
        return {engine_id: bool(answer) for engine_id, answer in zip(ids, answers, strict=True)}

    async def assignments(self) -> dict[int, str]:
        raw = await self.redis.hgetall(SESSIONS_KEY)
        return {int(key): _text(value) for key, value in raw.items()}

    async def assign(self, session_id: int) -> str | None:
        """The session's engine; a new session goes to the live engine with the fewest sessions."""
        current = await self.redis.hget(SESSIONS_KEY, str(session_id))
        if current is not None:
            return _text(current)
        live = [engine_id for engine_id, up in (await self.alive(await self.engines())).items() if up]
        if not live:
            return None
        load = collections.Counter((await self.assignments()).values())
        choice = min(live, key=lambda engine_id: (load[engine_id], engine_id))
        await self.redis.hsetnx(SESSIONS_KEY, str(session_id), choice)
        winner = await self.redis.hget(SESSIONS_KEY, str(session_id))
        return _text(winner) if winner is not None else None


# -- the engine side ---------------------------------------------------------------------------
class LeaseLost(RuntimeError):
    """Another process holds (or took) this engine id's lease."""


class EngineNode:
    """Puts one engine on the cluster: lease, command stream in, answers and journal out.

    Start it before `engine.start()` (the lease and the data-directory lock must be held before
    the journal is touched) and call `serve()` after.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        engine: Engine,
        engine_id: str,
        data_dir: Path,
        *,
        lease_ms: int = 10_000,
        read_count: int = 2_000,
        on_lease_lost: Callable[[], None] | None = None,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.engine_id = engine_id
        self.registry = Registry(redis, lease_ms=lease_ms)
        # host and data directory first: a restart on the same directory can tell its own dead lease.
        self.owner_prefix = f"{socket.gethostname()}:{data_dir.resolve()}:"
        self.token = f"{self.owner_prefix}{os.getpid()}-{secrets.token_hex(8)}"
        self.data_dir = data_dir
        self.read_count = read_count
        self.on_lease_lost = on_lease_lost
        self.commands = command_stream(engine_id)
        self.journal = journal_stream(engine_id)
        self._lock_fd: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._replies: dict[str, list[list[Any]]] = collections.defaultdict(list)
        self._acks: list[bytes] = []
        self._flush_scheduled = False
        self._flush_wake = asyncio.Event()
        self._records: collections.deque[tuple[int, bytes]] = collections.deque()
        self._records_wake = asyncio.Event()
        self._published_seq = 0
        self._serving = False
        self.stats = {"commands": 0, "replies": 0, "journal_entries": 0}

    async def acquire(self) -> None:
        """Lock the data directory and take the lease, or raise LeaseLost."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LeaseLost(f"another engine process uses {self.data_dir}") from None
        self._lock_fd = fd
        if await self.registry.acquire(self.engine_id, self.token):
            pass
        elif not await self._take_over_own_lease():
            raise LeaseLost(
                f"engine id {self.engine_id!r} is held by another live process (its lease "
                f"{lease_key(self.engine_id)} runs out {self.registry.lease_ms} ms after it dies)"
            )
        self.engine.record_observer = self._on_commit

    async def _take_over_own_lease(self) -> bool:
        """A lease left by a dead process of this same host and data directory is ours to take.

        We hold the directory's lock, so the process that wrote that lease is gone: waiting for it
        to expire would only keep this engine's sessions unavailable for longer.
        """
        holder = await self.registry.holder(self.engine_id)
        if holder is None:
            return await self.registry.acquire(self.engine_id, self.token)
        if not holder.startswith(self.owner_prefix):
            return False
        log.info("taking over the lease a dead process of this data directory left")
        return await self.registry.take_over(self.engine_id, holder, self.token)

    async def serve(self) -> None:
        """After `engine.start()`: publish any journal tail the stream missed, then take commands."""
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
            await self.redis.xgroup_create(self.commands, GROUP, id="0", mkstream=True)
        self._published_seq = await self._stream_last_seq()
        if self.engine.last_seq > self._published_seq:
            tail = list(journal.recover(self.engine.journal_dir, self._published_seq))
            for start in range(0, len(tail), 1_000):
                chunk = tail[start : start + 1_000]
                self._records.append(
                    (chunk[-1][0], b"".join(journal.encode_record(seq, payload) for seq, payload in chunk))
                )
            self._records_wake.set()
        self._serving = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._renew_lease(), name="engine-lease"),
            loop.create_task(self._read_commands(), name="engine-commands"),
            loop.create_task(self._publish_journal(), name="engine-journal-out"),
            loop.create_task(self._flush_loop(), name="engine-replies"),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_crash)

    async def stop_reading(self) -> None:
        """Take no more commands (shutdown); answers already owed still go out."""
        self._serving = False
        if len(self._tasks) > 1:
            self._tasks[1].cancel()

    async def stop(self) -> None:
        self._serving = False
        for task in self._tasks[:2]:
            task.cancel()
        # Let the answers and records already produced go out before the lease is given up.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain(), 3.0)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(*_REDIS_ERRORS):
            await self.registry.release(self.engine_id, self.token)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _drain(self) -> None:
        while self._records or self._acks:
            self._records_wake.set()
            self._flush_wake.set()
            await asyncio.sleep(0.01)

    async def trim(self, before_seq: int) -> None:
        """Drop journal stream entries a gateway can get from the snapshot at `before_seq` or later."""
        if before_seq > 0:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self.redis.xtrim(self.journal, minid=f"{before_seq}-0")

    async def _stream_last_seq(self) -> int:
        entries = _entries(await self.redis.xrevrange(self.journal, count=1))
        return int(entries[0][0].split(b"-")[0]) if entries else 0

    # -- lease -----------------------------------------------------------------------------------
    async def _renew_lease(self) -> None:
        interval = self.registry.lease_ms / 3000.0
        while True:
            await asyncio.sleep(interval)
            try:
                held = await _shielded(self.registry.renew(self.engine_id, self.token))
            except _REDIS_ERRORS as error:
                _raise_if_cancelling()
                log.warning("lease renewal failed: %s", error)
                continue
            if not held:
                # Someone else owns this engine id now: taking one more command could split it.
                log.error("engine %s lost its lease; stopping", self.engine_id)
                self._serving = False
                if self.on_lease_lost is not None:
                    self.on_lease_lost()
                return

    # -- commands in -----------------------------------------------------------------------------
    async def _read_commands(self) -> None:
        # "0" first: entries delivered to us before a restart and never acknowledged.
        position = "0"
        backoff = 0.05
        while self._serving:
            try:
                answer = await _shielded(
                    self.redis.xreadgroup(
                        GROUP,
                        self.engine_id,
                        {self.commands: position},
                        count=self.read_count,
                        block=None if position != ">" else 1000,
                    )
                )
                backoff = 0.05
            except _REDIS_ERRORS as error:
                _raise_if_cancelling()
                log.warning("reading commands failed: %s", error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            entries = _stream_entries(answer)
            if position != ">":
                if not entries:
                    position = ">"
                    continue
                position = entries[-1][0].decode()
            for entry_id, fields in entries:
                self._take(entry_id, fields)

    def _take(self, entry_id: bytes, fields: Mapping[bytes, bytes]) -> None:
        try:
            gateway, token, tag, args, expires_ms = msgpack.unpackb(fields[b"c"])
            command = BY_TAG[tag](*args)
        except Exception:
            log.warning("dropping a malformed command entry %r", entry_id)
            self._acks.append(entry_id)
            return
        self.stats["commands"] += 1
        if expires_ms < self.engine.clock.now_ms():
            # The gateway has told its client UNAVAILABLE by now (it waited while this engine was
            # down): applying the command late would contradict that answer.
            self.stats["expired"] = self.stats.get("expired", 0) + 1
            self._replies[gateway].append([token, *encode_outcome(unavailable("the command expired"))])
            self._acks.append(entry_id)
            self._flush_wake.set()
            return

        def reply(outcome: Outcome) -> None:
            # Looked up now, not at take time: a flush may have swapped the dict in between.
            self._replies[gateway].append([token, *encode_outcome(outcome)])
            self._acks.append(entry_id)
            if not self._flush_wake.is_set():
                self._flush_wake.set()

        self.engine.submit(command, reply)

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            replies, self._replies = self._replies, collections.defaultdict(list)
            acks, self._acks = self._acks, []
            if not acks:
                continue
            while True:
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for gateway, rows in replies.items():
                            if rows:
                                pipe.publish(reply_channel(gateway), msgpack.packb(rows))
                        pipe.xack(self.commands, GROUP, *acks)
                        await pipe.execute()
                    self.stats["replies"] += len(acks)
                    break
                except _REDIS_ERRORS as error:
                    _raise_if_cancelling()
                    # The gateway times out and its client retries with the same ref: no loss.
                    log.warning("publishing answers failed: %s", error)
                    await asyncio.sleep(0.2)

    # -- journal out -----------------------------------------------------------------------------
    def _on_commit(self, last_seq: int, data: bytes) -> None:
        self._records.append((last_seq, data))
        if not self._records_wake.is_set():
            self._records_wake.set()

    async def _publish_journal(self) -> None:
        while True:
            await self._records_wake.wait()
            self._records_wake.clear()
            while self._records:
                batch = [self._records.popleft() for _ in range(min(len(self._records), 256))]
                batch = [(seq, data) for seq, data in batch if seq > self._published_seq]
                if not batch:
                    continue
                while True:
                    try:
                        async with self.redis.pipeline(transaction=False) as pipe:
                            for seq, data in batch:
                                pipe.xadd(self.journal, {b"r": data}, id=f"{seq}-0")
                            await pipe.execute(raise_on_error=False)
                        break
                    except _REDIS_ERRORS as error:
                        _raise_if_cancelling()
                        log.warning("publishing the journal failed: %s", error)
                        await asyncio.sleep(0.2)
                self._published_seq = batch[-1][0]
                self.stats["journal_entries"] += len(batch)


def _blocking_client(redis: aioredis.Redis) -> aioredis.Redis:
    """A client of its own for blocking reads, without the command socket timeout."""
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs.pop("socket_timeout", None)  # XREAD BLOCK and pub/sub wait longer than a command
    return aioredis.Redis(
        connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


# -- the gateway side --------------------------------------------------------------------------
class MergedBook:
    """The read-only view gateways show: every followed engine's lots and sessions, side by side."""

    def __init__(self, books: Callable[[], list[Book]]) -> None:
        self._books = books

    @property
    def lots(self) -> Mapping[int, Any]:
        books = self._books()
        return books[0].lots if len(books) == 1 else ChainMap(*(book.lots for book in books))

    @property
    def sessions(self) -> Mapping[int, Any]:
        books = self._books()
        return books[0].sessions if len(books) == 1 else ChainMap(*(book.sessions for book in books))

    @property
    def blocked(self) -> set[int]:
        return set().union(*(getattr(book, "blocked", ()) for book in self._books()))


_ALL_ENGINES = (BlockBidder, UnblockBidder)


class RemoteEngine:
    """What a gateway has instead of an engine: the same `submit`/`execute`/`book` surface.

    Commands go to the owning engine's stream; answers come back on this gateway's channel; the
    book is a replica fed by the engines' journal streams.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        clock: Clock,
        snapshots: Callable[[str], Any],
        *,
        gateway_id: str | None = None,
        reply_timeout: float = 10.0,
        lease_ms: int = 10_000,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.snapshots = snapshots  # engine id -> SnapshotSink (MongoDB), for bootstrapping replicas
        self.gateway_id = gateway_id or f"gw-{os.getpid()}-{secrets.token_hex(3)}"
        self.registry = Registry(redis, lease_ms=lease_ms)
        self.reply_timeout = reply_timeout
        self.listeners: list[Callable[[CommittedBatch], None]] = []
        self.followers: dict[str, Engine] = {}
        self.owners: dict[int, str] = {}
        self.alive: dict[str, bool] = {}
        self.book = MergedBook(lambda: [follower.book for follower in self.followers.values()] or [Book()])
        self._tokens = itertools.count(1)
        self._pending: dict[int, tuple[Reply, float]] = {}
        self._outbox: list[tuple[Command, Reply | None]] = []
        self._outbox_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._stream_positions: dict[str, str] = {}
        self._reply_client: aioredis.Redis | None = None
        self._follow_client: aioredis.Redis | None = None
        self.stats = {"sent": 0, "answered": 0, "timeouts": 0, "unavailable": 0, "reloads": 0}

    # -- the Engine surface the gateway uses ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running and any(self.alive.values())

    @property
    def queue_depth(self) -> int:
        return len(self._outbox) + len(self._pending)

    @property
    def last_seq(self) -> int:
        return sum(follower.last_seq for follower in self.followers.values())

    def submit(self, command: Command, reply: Reply | None = None) -> None:
        if not self._running:
            if reply is not None:
                reply(unavailable("the gateway is not connected to an engine"))
            return
        self._outbox.append((command, reply))
        if not self._outbox_wake.is_set():
            self._outbox_wake.set()

    def execute(self, command: Command) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def reply(outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self.submit(command, reply)
        return future

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._follow_client = _blocking_client(self.redis)
        self._reply_client = _blocking_client(self.redis)
        await self._refresh()
        for engine_id in list(self.alive):
            await self._bootstrap(engine_id)
        self._running = True
        loop = asyncio.get_running_loop()
        pubsub = self._reply_client.pubsub()
        await pubsub.subscribe(reply_channel(self.gateway_id))
        self._tasks = [
            loop.create_task(self._read_replies(pubsub), name="gateway-replies"),
            loop.create_task(self._send_loop(), name="gateway-commands"),
            loop.create_task(self._follow_loop(), name="gateway-follow"),
            loop.create_task(self._watch_loop(), name="gateway-watch"),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_crash)

    async def stop(self, *, snapshot: bool = False) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for reply, _deadline in self._pending.values():
            reply(unavailable("the gateway is shutting down"))
        self._pending.clear()
        for client in (self._follow_client, self._reply_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def wait_for_engine(self, timeout: float) -> bool:  # noqa: ASYNC109
        """True once some engine is alive and followed (gateways may start before engines)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.running and self.followers:
                return True
            await asyncio.sleep(0.1)
        return False

    # -- following the engines' journals ---------------------------------------------------------------
    async def _refresh(self) -> None:
        engines = await self.registry.engines()
        alive = await self.registry.alive(engines)
        for engine_id, up in alive.items():
            if up != self.alive.get(engine_id, False):
                state = "up" if up else "down (its sessions answer UNAVAILABLE)"
                log.info("engine %s is %s", engine_id, state)
        self.alive = alive
        self.owners = await self.registry.assignments()

    async def _bootstrap(self, engine_id: str) -> None:
        """A fresh replica: the engine's newest snapshot, then its journal stream after it."""
        follower = Engine(self.clock, Path("/nonexistent-replica"), None)
        sink = self.snapshots(engine_id)
        latest = await sink.latest() if sink is not None else None
        if latest is not None:
            follower.load_snapshot(latest[1])
        self.followers[engine_id] = follower
        self._stream_positions[engine_id] = f"{follower.last_seq}-0"
        entries = _entries(
            await self.redis.xrange(journal_stream(engine_id), min=f"{follower.last_seq + 1}-0")
        )
        self._apply_entries(engine_id, entries, deliver=False)

    def _apply_entries(self, engine_id: str, entries: list[StreamEntry], *, deliver: bool = True) -> bool:
        follower = self.followers[engine_id]
        for entry_id, fields in entries:
            records = [record for record in parse_records(fields[b"r"]) if record[0] > follower.last_seq]
            if records and records[0][0] != follower.last_seq + 1:
                return False  # a gap: the stream was trimmed past us
            batch = follower.follow(records)
            self._stream_positions[engine_id] = entry_id.decode()
            if deliver and batch is not None and batch.events:
                for listener in self.listeners:
                    try:
                        listener(batch)
                    except Exception:
                        log.exception("a replica listener failed")
        return True

    async def _follow_loop(self) -> None:
        client = self._follow_client
        assert client is not None
        while True:
            if not self._stream_positions:
                await asyncio.sleep(0.5)
                continue
            streams: dict[Any, Any] = {
                journal_stream(engine_id): position for engine_id, position in self._stream_positions.items()
            }
            try:
                answer = await _shielded(client.xread(streams, count=500, block=1000))
            except _REDIS_ERRORS as error:
                _raise_if_cancelling()
                log.warning("following the engine journals failed: %s", error)
                await asyncio.sleep(0.5)
                continue
            streams_read: list[Any] = list(answer or [])
            for stream, raw_entries in streams_read:
                entries = _entries(raw_entries)
                engine_id = stream.decode().split(":")[2]
                if engine_id not in self.followers:
                    continue
                if not self._apply_entries(engine_id, entries):
                    self.stats["reloads"] += 1
                    log.warning("replica of engine %s fell behind the trimmed stream; reloading", engine_id)
                    await self._bootstrap(engine_id)

    async def _watch_loop(self) -> None:
        """Leases and assignments, once a second: a dead engine's sessions answer UNAVAILABLE."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._refresh()
                for engine_id, up in self.alive.items():
                    if up and engine_id not in self.followers:
                        await self._bootstrap(engine_id)
            except _REDIS_ERRORS as error:
                _raise_if_cancelling()
                log.warning("refreshing the engine registry failed: %s", error)
            except Exception:  # MongoDB (the snapshot) or a damaged stream entry: retried next second
                log.exception("following a new engine failed")
            now = asyncio.get_running_loop().time()
            expired = [token for token, (_reply, deadline) in self._pending.items() if deadline < now]
            for token in expired:
                reply, _deadline = self._pending.pop(token)
                self.stats["timeouts"] += 1
                reply(unavailable("the engine did not answer in time; retry with the same ref"))

    # -- commands out, answers in ----------------------------------------------------------------------
    def _session_of(self, command: Command) -> int | None:
        if isinstance(command, PutSession | RegisterDeposit | PutLot | PauseSession | ResumeSession):
            return command.session_id
        if isinstance(
            command,
            PlaceBid
            | SetMaxBid
            | OpenLot
            | CloseLot
            | CancelLot
            | MarkOverdue
            | PauseLot
            | ResumeLot
            | ExtendLot
            | VoidBid,
        ):
            lot = self.book.lots.get(command.lot_id)
            return None if lot is None else int(lot.session_id)
        return None

    async def _targets(self, command: Command) -> list[str] | Outcome:
        if isinstance(command, _ALL_ENGINES):
            live = [engine_id for engine_id, up in self.alive.items() if up]
            return live or unavailable("no engine is running")
        session_id = self._session_of(command)
        if session_id is None:
            return Outcome(False, "NOT_FOUND", "unknown lot", 0, None)
        owner = self.owners.get(session_id)
        if owner is None:
            owner = await self.registry.assign(session_id) if isinstance(command, PutSession) else None
            if owner is None:
                return unavailable("no engine owns this session")
            self.owners[session_id] = owner
        if not self.alive.get(owner, False):
            return unavailable(f"the engine of session {session_id} is restarting")
        return [owner]

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._outbox_wake.wait()
            self._outbox_wake.clear()
            outbox, self._outbox = self._outbox, []
            deadline = loop.time() + self.reply_timeout
            # The engine refuses what reaches it after this (a second before our own timeout): a
            # command must not be applied after its client was told UNAVAILABLE.
            expires_ms = self.clock.now_ms() + int(1000 * self.reply_timeout) - 1000
            entries: list[tuple[str, bytes]] = []
            for command, reply in outbox:
                try:
                    targets = await self._targets(command)
                except _REDIS_ERRORS:
                    _raise_if_cancelling()
                    targets = unavailable("the registry is unreachable")
                if isinstance(targets, Outcome):
                    self.stats["unavailable"] += 1
                    if reply is not None:
                        reply(targets)
                    continue
                if isinstance(command, PlaceBid | SetMaxBid) and not command.ref:
                    # A ref makes a re-read (after an engine restart) answer, not apply twice.
                    command = command._replace(ref=f"~{self.gateway_id}:{next(self._tokens)}")
                for index, engine_id in enumerate(targets):
                    token = next(self._tokens)
                    if reply is not None and index == 0:
                        self._pending[token] = (reply, deadline)
                    payload = msgpack.packb(
                        [self.gateway_id, token, TAGS[type(command)], list(command), expires_ms]
                    )
                    entries.append((engine_id, payload))
            if not entries:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for engine_id, payload in entries:
                        pipe.xadd(command_stream(engine_id), {b"c": payload})
                    await pipe.execute()
                self.stats["sent"] += len(entries)
            except _REDIS_ERRORS as error:
                _raise_if_cancelling()
                log.warning("sending commands failed: %s", error)
                # Answered by the timeout sweep as UNAVAILABLE; clients retry with their ref.

    async def _read_replies(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except _REDIS_ERRORS as error:
                _raise_if_cancelling()
                log.warning("reading answers failed: %s", error)
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            for row in msgpack.unpackb(message["data"]):
                pending = self._pending.pop(row[0], None)
                if pending is None:
                    continue  # timed out already, or an answer to a fan-out copy
                self.stats["answered"] += 1
                try:
                    pending[0](decode_outcome(row[1:]))
                except Exception:
                    log.exception("a reply callback failed")


# -- one of many: a lease-elected singleton (the settlement worker among gateways) ---------------
async def run_with_lease(
    redis: aioredis.Redis,
    name: str,
    lease_ms: int,
    start: Callable[[], Any],
    *,
    retry_s: float | None = None,
) -> None:
    """Run `start()`'s tasks while this process holds `gavel:singleton:{name}`; stop them if lost.

    `start` returns a coroutine giving a list of tasks (e.g. `start_settlement(ctx)`).
    """
    key = f"{PREFIX}singleton:{name}"
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    interval = retry_s if retry_s is not None else lease_ms / 3000.0
    tasks: list[asyncio.Task[None]] = []
    try:
        while True:
            try:
                if tasks:
                    held = bool(await _shielded(redis.eval(_RENEW, 1, key, token, lease_ms)))
                else:
                    held = bool(await _shielded(redis.set(key, token, nx=True, px=lease_ms)))
            except _REDIS_ERRORS as error:
                _raise_if_cancelling()
                log.warning("%s lease: %s", name, error)
                held = bool(tasks)  # keep going through a blip; the lease outlives it
            if held and not tasks:
                log.info("this process now runs the %s singleton", name)
                tasks = list(await start())
            elif not held and tasks:
                log.warning("lost the %s lease; stopping it here", name)
                for task in tasks:
                    task.cancel()
                tasks = []
            await asyncio.sleep(interval)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(*_REDIS_ERRORS):
            await redis.eval(_RELEASE, 1, key, token)
