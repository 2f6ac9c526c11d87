"""`app_server`: the whole gateway on a free port, over real MongoDB and Redis, with a fake clock.

async def test_x(app_server: AppServer) -> None:
    user_id, token = await app_server.register("alice")
    answer = await app_server.call("GET", "/api/v1/me", token=token)
    assert answer.status == 200 and answer.json["balance"] == 0
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import pathlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import tornado.httpclient
import tornado.netutil
import tornado.simple_httpclient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from composition.app import make_app
from composition.bootstrap import edge_config
from composition.settings import Settings
from engine import journal
from engine.book.states import SessionState
from engine.clock import FakeClock, SystemClock
from engine.commands import CompactLots
from engine.engine import Engine
from gateway.edge import EdgeServer, build_edge_server
from gateway.ws import Hub
from persistence.accounts import Accounts, ScryptParams
from persistence.archive import BidArchiver
from persistence.mongo import check_replica_set, connect, ensure_indexes, iso_from_ms
from web.context import AppContext
from web.signin import SigninPolicy

ADMIN_PASSWORD = "admin-password-for-tests"
HOUR_MS = 3_600_000
# Cheap scrypt for tests (the cost is a parameter; production keeps the default).
TEST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)
_NO_BODY: Any = object()
_usernames = itertools.count(1)


@dataclasses.dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def code(self) -> str | None:
        """The error code of an error answer."""
        data = self.json
        return data["error"]["code"] if isinstance(data, dict) and "error" in data else None


@dataclasses.dataclass
class AppServer:
    base_url: str
    ws_url: str
    ctx: AppContext
    engine: Engine
    clock: FakeClock
    http: tornado.simple_httpclient.SimpleAsyncHTTPClient
    edge: EdgeServer  # its `limits` may be tightened by a test
    _admin_token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        body: Any = _NO_BODY,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request; `body` is sent as JSON, `raw` as is. Never raises for HTTP errors."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        payload: bytes | None = raw
        if payload is None and body is not _NO_BODY:
            # The stdlib encoder, unlike orjson, writes integers of any size (tests send some).
            payload = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if payload is None and method in ("POST", "PUT", "PATCH"):
            payload = b""
        request = tornado.httpclient.HTTPRequest(
            self.base_url + path,
            method=method,
            headers=all_headers,
            body=payload,
            allow_nonstandard_methods=True,
            request_timeout=30,
        )
        response = await self.http.fetch(request, raise_error=False)
        if response.code == 599:
            raise response.error or RuntimeError("request failed")
        return Answer(response.code, response.body or b"", dict(response.headers.get_all()))

    async def register(self, username: str | None = None, password: str = "correct-horse") -> tuple[int, str]:
        name = username or f"bidder{next(_usernames)}"
        answer = await self.call("POST", "/api/v1/auth/register", {"username": name, "password": password})
        assert answer.status == 201, answer.body
        return answer.json["user_id"], answer.json["token"]

    async def admin_token(self) -> str:
        if self._admin_token is None:
            answer = await self.call(
                "POST", "/api/v1/admin/login", {"username": "admin", "password": ADMIN_PASSWORD}
            )
            assert answer.status == 200, answer.body
            self._admin_token = answer.json["token"]
        return self._admin_token

    def session_body(self, **overrides: Any) -> dict[str, Any]:
        """A valid session: preview in 1 h, bidding from 2 h to 3 h from the fake clock's now."""
        now = self.clock.now_ms()
        body: dict[str, Any] = {
            "title": "Spring porcelain",
            "preview_start": iso_from_ms(now + HOUR_MS),
            "preview_end": iso_from_ms(now + 2 * HOUR_MS),
            "bidding_start": iso_from_ms(now + 2 * HOUR_MS),
            "bidding_end": iso_from_ms(now + 3 * HOUR_MS),
            "deposit": 0,
            "soft_close_seconds": 60,
            "soft_close_cap_seconds": 600,
        }
        body.update(overrides)
        return body

    def lot_body(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "catalogue_no": f"L{next(_usernames):04d}",
            "title": "Blue and white vase",
            "start_price": 10_000,
            "unit": 1_000,
            "reserve_price": 0,
            "highest_price": 50_000,
            "deposit": 0,
        }
        body.update(overrides)
        return body

    async def create_session(self, **overrides: Any) -> int:
        answer = await self.call(
            "POST", "/api/v1/admin/sessions", self.session_body(**overrides), token=await self.admin_token()
        )
        assert answer.status == 201, answer.body
        return int(answer.json["id"])

    async def create_lot(self, session_id: int, **overrides: Any) -> int:
        answer = await self.call(
            "POST",
            f"/api/v1/admin/sessions/{session_id}/lots",
            self.lot_body(**overrides),
            token=await self.admin_token(),
        )
        assert answer.status == 201, answer.body
        return int(answer.json["id"])

    async def credit(self, user_id: int, amount: int, idempotency_key: str | None = None) -> Answer:
        body: dict[str, Any] = {"amount": amount}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        answer = await self.call(
            "POST", f"/api/v1/admin/users/{user_id}/credit", body, token=await self.admin_token()
        )
        assert answer.status in (200, 201), answer.body
        return answer

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 5.0) -> None:
        """Poll `predicate` (state the engine changes on its own loop turns) for up to `within_s`."""
        step = 0.005
        for _ in range(int(within_s / step)):
            if predicate():
                return
            await asyncio.sleep(step)
        raise TimeoutError(f"condition not met within {within_s} s")

    async def advance_to(self, ms: int) -> None:
        """Move the fake clock and let the engine fire whatever became due."""
        self.clock.set(ms)
        self.engine.poke()
        before = self.engine.stats["batches"]
        await self.wait_for(lambda: self.engine.stats["batches"] > before)

    async def start_bidding(self, session_id: int) -> None:
        """Jump to the session's bidding start and wait until its lots are open."""
        session = self.engine.book.sessions[session_id]
        await self.advance_to(session.bidding_start)
        await self.wait_for(lambda: session.state is SessionState.BIDDING)


async def archive_and_compact(server: AppServer, *lot_ids: int) -> None:
    """What the service's archiver and compactor do, at once: the journal's events written to the
    archive (by a replica of the book replaying the journal, as the archiver process does), then
    the closed lots compacted (engine/compaction.py; the decision is tested in tests/engine)."""
    engine = server.engine
    replica = Engine(server.clock, engine.journal_dir, None, sync=False)
    batch = replica.follow(journal.recover(engine.journal_dir, 0, read_only=True), events_after=0)
    archiver = BidArchiver(server.ctx.db, interval=0.01)
    archiver.start()
    if batch is not None:
        archiver.on_batch(batch)
    assert await archiver.wait_caught_up(replica.last_seq, timeout=10)
    await archiver.stop()
    assert (await engine.execute(CompactLots(list(lot_ids)))).ok


@contextlib.asynccontextmanager
async def serving_app(
    tmp_path: pathlib.Path, client: AsyncMongoClient[dict[str, Any]], db_name: str, redis: aioredis.Redis
) -> AsyncIterator[AppServer]:
    """The whole gateway on `client[db_name]` and `redis`, listening on a free port behind the
    production edge (gateway/edge.py) with the default limits, wired as the composition root does.
    The caller owns the client."""
    db = client[db_name]
    await check_replica_set(client)
    await ensure_indexes(db)
    clock = FakeClock(SystemClock().now_ms())
    engine = Engine(clock, tmp_path / "journal", None, sync=False)
    await engine.start()
    accounts = Accounts(client, db, scrypt=TEST_SCRYPT)
    await accounts.ensure_admin(ADMIN_PASSWORD)
    ctx = AppContext(
        engine=engine,
        client=client,
        db=db,
        redis=redis,
        accounts=accounts,
        pseudonym_secret=b"test-pseudonym-secret",
    )
    # Every test client registers from 127.0.0.1; tests of the registration limit set their own policy.
    ctx.signin_policy = SigninPolicy(registrations_per_address=1_000_000)
    ctx.hub = Hub(ctx)  # the websocket side's fan-out, wired as the composition root does
    engine.listeners.append(ctx.hub.on_batch)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    port = sock.getsockname()[1]
    ctx.base_url = f"http://127.0.0.1:{port}"
    server = build_edge_server(make_app(ctx), edge_config(Settings()), websockets=ctx.hub)
    server.add_sockets([sock])
    http = tornado.simple_httpclient.SimpleAsyncHTTPClient(force_instance=True)
    try:
        yield AppServer(
            base_url=ctx.base_url,
            ws_url=f"ws://127.0.0.1:{port}/ws",
            ctx=ctx,
            engine=engine,
            clock=clock,
            http=http,
            edge=server,
        )
    finally:
        http.close()
        server.stop()
        await server.close_all_connections()
        await engine.stop(snapshot=False)


@pytest.fixture
async def app_server(
    tmp_path: pathlib.Path,
    mongo_url: str,
    mongo_db: AsyncDatabase[dict[str, Any]],
    redis_client: aioredis.Redis,
) -> AsyncIterator[AppServer]:
    # Our own client (tz-aware, as in production) on the fixture's fresh database, which it drops.
    client = connect(mongo_url)
    try:
        async with serving_app(tmp_path, client, mongo_db.name, redis_client) as server:
            yield server
    finally:
        await client.close()
