"""MongoDB stalled (SIGSTOP) or gone under a running gateway: requests that need it answer 503
UNAVAILABLE within the dependency timeout, bidding goes on, /healthz stays 200, /readyz says which
dependency is missing (and only those the role needs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pymongo.errors
import pytest
import redis
import redis.asyncio as aioredis
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.simple_httpclient
import tornado.websocket

from composition.app import make_engine_app
from engine.settle.uow import atomically
from persistence import redis_client
from persistence.embedded import EmbeddedServer, start_mongo, start_redis
from persistence.logs import JsonFormatter
from persistence.mongo import connect
from persistence.settlement.uow import mongo_uow_factory
from tests.admin.conftest import AdminClient
from tests.gateway.conftest import AppServer, serving_app
from tests.gateway.test_ws import Bidder, open_lot
from web.errors import dependency_fault
from web.health import READY_CACHE_SECONDS, Readiness

# The request-path bound these tests run with; production's default is 3 s (DEPENDENCY_TIMEOUT).
BOUND_MS = 1_000
# Far below the 30 s the driver's socket timeout let a stalled server hold a request before, and
# far above the bound, so a loaded machine cannot make the test flaky.
WITHIN_S = 10.0


@pytest.fixture
def own_mongo(tmp_path: pathlib.Path) -> Iterator[EmbeddedServer]:
    """A MongoDB of this test's own, which it may pause (SIGSTOP) or stop. Started from the main
    thread, as embedded servers must be."""
    server = start_mongo(tmp_path / "own-mongo")
    try:
        yield server
    finally:
        resume(server)
        server.stop()


def pause(server: EmbeddedServer) -> None:
    """SIGSTOP, and wait until the kernel says it is stopped (a signal is delivered asynchronously)."""
    os.kill(server.pid, signal.SIGSTOP)
    for _ in range(1000):
        state = pathlib.Path(f"/proc/{server.pid}/stat").read_text().rpartition(")")[2].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.005)
    raise AssertionError(f"{server.name} (pid {server.pid}) did not stop")


def resume(server: EmbeddedServer) -> None:
    if server.alive():
        os.kill(server.pid, signal.SIGCONT)


@pytest.fixture
def own_redis(tmp_path: pathlib.Path) -> Iterator[EmbeddedServer]:
    """A Redis of this test's own, which it may pause."""
    server = start_redis(tmp_path / "own-redis")
    try:
        yield server
    finally:
        resume(server)
        server.stop()


@contextlib.asynccontextmanager
async def gateway(tmp_path: pathlib.Path, mongo_url: str, redis: aioredis.Redis) -> AsyncIterator[AppServer]:
    """The whole gateway, as `app_server`, with run.py's bounds: 1 s for MongoDB (`BOUND_MS`);
    `redis` should come from `persistence.redis_client.connect`."""
    client = connect(mongo_url, timeout_ms=BOUND_MS)
    name = f"gavel_faults_{uuid.uuid4().hex[:8]}"
    try:
        async with serving_app(tmp_path, client, name, redis) as server:
            yield server
    finally:
        with contextlib.suppress(Exception):
            await client.drop_database(name)
        await client.close()


@pytest.fixture
async def faulty_server(
    tmp_path: pathlib.Path, own_mongo: EmbeddedServer, redis_client: aioredis.Redis
) -> AsyncIterator[AppServer]:
    """A gateway over `own_mongo`, resumed before it is torn down."""
    try:
        async with gateway(tmp_path, own_mongo.url, redis_client) as server:
            yield server
            resume(own_mongo)
    finally:
        resume(own_mongo)


@pytest.fixture
async def redis_faulty_server(
    tmp_path: pathlib.Path, mongo_url: str, own_redis: EmbeddedServer
) -> AsyncIterator[AppServer]:
    """A gateway over the suite's MongoDB and `own_redis`, with run.py's bounded Redis client."""
    redis = redis_client.connect(own_redis.url, timeout_ms=BOUND_MS)
    try:
        async with gateway(tmp_path, mongo_url, redis) as server:
            yield server
            resume(own_redis)
    finally:
        resume(own_redis)
        await redis.aclose()


async def timed(server: AppServer, method: str, path: str, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    answer = await server.call(method, path, *args, **kwargs)
    return answer, time.monotonic() - started


async def test_a_stalled_mongodb_answers_503_within_the_bound_and_bidding_goes_on(
    faulty_server: AppServer, own_mongo: EmbeddedServer
) -> None:
    server = faulty_server
    _session_id, lot_id = await open_lot(server)
    _user, token = await server.register()
    assert (await server.call("GET", "/api/v1/me", token=token)).status == 200  # the token is cached
    _other, other_token = await server.register()
    bidder = await Bidder.connect(server, token)
    rival = await Bidder.connect(server, other_token)
    first = await bidder.bid(lot_id, 10_000, "f1")
    assert first["type"] == "accepted", first

    pause(own_mongo)
    answer, took = await timed(server, "GET", "/api/v1/me", token=token)
    assert answer.status == 503 and answer.code == "UNAVAILABLE", answer.body
    assert answer.headers.get("Retry-After", "").isdigit()
    assert took < WITHIN_S
    # The engine never waits for MongoDB: a bid is acknowledged while it is stalled.
    second = await rival.bid(lot_id, first["next_min"], "f2")
    assert second["type"] == "accepted", second
    # Liveness is not readiness: the process serves, MongoDB does not.
    assert (await server.call("GET", "/healthz")).status == 200
    ready, took = await timed(server, "GET", "/readyz")
    assert ready.status == 503 and ready.json["checks"]["mongodb"] is False
    assert ready.json["checks"]["engine"] is True and ready.json["checks"]["redis"] is True
    assert took < WITHIN_S

    resume(own_mongo)
    assert (await server.call("GET", "/api/v1/me", token=token)).status == 200
    bidder.close()
    rival.close()


async def test_a_stalled_mongodb_refuses_a_websocket_upgrade_with_503(
    faulty_server: AppServer, own_mongo: EmbeddedServer
) -> None:
    server = faulty_server
    _user, token = await server.register()  # never looked up: not in the token cache
    pause(own_mongo)
    started = time.monotonic()
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(f"{server.ws_url}?token={token}")
    assert refused.value.code == 503
    assert refused.value.response is not None
    assert b'"UNAVAILABLE"' in (refused.value.response.body or b"")
    assert refused.value.response.headers.get("Retry-After", "").isdigit()
    assert time.monotonic() - started < WITHIN_S
    # Watching needs no account: an anonymous socket still opens.
    watcher = await Bidder.connect(server)
    watcher.close()


async def test_a_stalled_mongodb_gives_the_admin_ui_an_html_503_page(
    faulty_server: AppServer, own_mongo: EmbeddedServer
) -> None:
    admin = AdminClient(faulty_server)
    signed_in = await admin.sign_in()
    assert signed_in.status in (302, 303), signed_in.body
    assert (await admin.get("/admin/users")).status == 200  # the session token is now cached
    pause(own_mongo)
    started = time.monotonic()
    page = await admin.get("/admin/users")
    assert page.status == 503
    assert page.headers["Content-Type"].startswith("text/html")
    assert b"UNAVAILABLE" in page.body and b"Traceback" not in page.body
    assert page.headers.get("Retry-After", "").isdigit()
    assert time.monotonic() - started < WITHIN_S


async def test_a_stopped_mongodb_answers_503_within_the_bound(
    faulty_server: AppServer, own_mongo: EmbeddedServer
) -> None:
    server = faulty_server
    user_id, token = await server.register()
    assert (await server.call("GET", "/api/v1/me", token=token)).status == 200
    admin_token = await server.admin_token()
    await server.credit(user_id, 100)  # the admin token is now cached
    await asyncio.to_thread(own_mongo.stop)
    answer, took = await timed(server, "GET", "/api/v1/me", token=token)
    assert answer.status == 503 and answer.code == "UNAVAILABLE", answer.body
    assert took < WITHIN_S
    # A transaction (a balance credit: the user and the ledger) is bounded too: the driver would
    # otherwise retry it as transient for 120 s.
    answer, took = await timed(
        server, "POST", f"/api/v1/admin/users/{user_id}/credit", {"amount": 100}, token=admin_token
    )
    assert answer.status == 503 and answer.code == "UNAVAILABLE", answer.body
    assert took < WITHIN_S


async def test_a_stalled_redis_costs_a_request_the_bound_at_most_and_bidding_goes_on(
    redis_faulty_server: AppServer, own_redis: EmbeddedServer
) -> None:
    server = redis_faulty_server
    _session_id, lot_id = await open_lot(server)
    _user, token = await server.register("redis-stall")
    _other, other_token = await server.register()
    bidder = await Bidder.connect(server, token)
    rival = await Bidder.connect(server, other_token)
    first = await bidder.bid(lot_id, 10_000, "r1")
    pause(own_redis)
    # Sign-in consults Redis (throttling): it answers within the bound, never hangs, never 500s.
    answer, took = await timed(
        server, "POST", "/api/v1/auth/login", {"username": "redis-stall", "password": "correct-horse"}
    )
    assert answer.status == 200 or (answer.status == 503 and answer.code == "UNAVAILABLE"), answer.body
    assert took < WITHIN_S
    second = await rival.bid(lot_id, first["next_min"], "r2")
    assert second["type"] == "accepted", second
    assert (await server.call("GET", "/healthz")).status == 200
    ready, took = await timed(server, "GET", "/readyz")
    assert ready.status == 503 and ready.json["checks"]["redis"] is False
    assert ready.json["checks"]["mongodb"] is True
    assert took < WITHIN_S
    bidder.close()
    rival.close()


async def test_settlement_units_of_work_give_up_at_the_bound_not_after_120_s_of_retries(
    faulty_server: AppServer, own_mongo: EmbeddedServer
) -> None:
    """Settlement retries a transient failure for up to 120 s; a stalled MongoDB is not one. The
    unit of work ends with the timeout (a 503 for a request, one log line for the worker)."""
    ctx = faulty_server.ctx
    new_uow = mongo_uow_factory(ctx.client, ctx.db, ctx.accounts)

    async def reads(uow: Any) -> int | None:
        await uow.orders.get(1)
        return await uow.orders.id_for_lot(1)

    assert await atomically(new_uow, reads) is None
    pause(own_mongo)
    started = time.monotonic()
    with pytest.raises(pymongo.errors.PyMongoError) as failed:
        await atomically(new_uow, reads)
    assert dependency_fault(failed.value), failed.value
    assert time.monotonic() - started < WITHIN_S


# -- readiness by role -------------------------------------------------------------------------------
async def test_healthz_is_liveness_even_with_the_engine_stopped(app_server: AppServer) -> None:
    await app_server.engine.stop(snapshot=False)
    answer = await app_server.call("GET", "/healthz")
    assert answer.status == 200 and answer.json == {"ok": True}
    ready = await app_server.call("GET", "/readyz")
    assert ready.status == 503 and ready.json["checks"]["engine"] is False


async def test_a_gateway_is_ready_without_a_live_engine(app_server: AppServer) -> None:
    """A gateway serves REST, admin and sockets through the registry; a missing engine makes its
    sessions answer UNAVAILABLE, not the whole gateway unready."""
    app_server.ctx.role = "gateway"
    await app_server.engine.stop(snapshot=False)
    assert (await app_server.call("GET", "/healthz")).status == 200
    ready = await app_server.call("GET", "/readyz")
    assert ready.status == 200, ready.body
    assert ready.json == {"ready": True, "checks": {"mongodb": True, "redis": True, "registry": True}}


async def test_an_engine_process_is_ready_on_its_journal_and_redis(app_server: AppServer) -> None:
    ctx = app_server.ctx
    ctx.role = "engine"
    engine_app = make_engine_app(ctx)
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    http_server = tornado.httpserver.HTTPServer(engine_app)
    http_server.add_sockets([sock])
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/readyz"
        response = await app_server.http.fetch(url, raise_error=False)
        assert response.code == 200, response.body
        body = orjson.loads(response.body or b"null")
        assert body == {"ready": True, "checks": {"journal": True, "redis": True}}
    finally:
        http_server.stop()


async def test_readiness_is_cached_so_it_cannot_hammer_the_dependencies(app_server: AppServer) -> None:
    readiness = app_server.ctx.readiness
    assert isinstance(readiness, Readiness)
    before = readiness.checks_run
    answers = await asyncio.gather(*(app_server.call("GET", "/readyz") for _ in range(20)))
    assert all(answer.status == 200 for answer in answers)
    assert readiness.checks_run - before == 1
    assert READY_CACHE_SECONDS >= 0.5


# -- the one mapping ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        pymongo.errors.ServerSelectionTimeoutError("no server"),
        pymongo.errors.NetworkTimeout("read timed out"),
        pymongo.errors.AutoReconnect("connection reset"),
        pymongo.errors.ExecutionTimeout("operation exceeded time limit", 50),
        pymongo.errors.WaitQueueTimeoutError("pool exhausted"),
        redis.ConnectionError("refused"),
        redis.TimeoutError("timed out"),
    ],
)
def test_dependency_faults_are_recognised(error: BaseException) -> None:
    assert dependency_fault(error)


@pytest.mark.parametrize(
    "error",
    [
        pymongo.errors.DuplicateKeyError("dup", 11000),
        pymongo.errors.OperationFailure("bad query", 2),
        ValueError("a bug"),
        redis.ResponseError("WRONGTYPE"),
    ],
)
def test_other_errors_are_not_dependency_faults(error: BaseException) -> None:
    assert not dependency_fault(error)


def _logged(error: BaseException) -> dict[str, Any]:
    try:
        raise error
    except BaseException:
        info = sys.exc_info()
        record = logging.LogRecord("gavel.test", logging.ERROR, __file__, 1, "phase failed", (), info)
    return dict(orjson.loads(JsonFormatter().format(record)))


def test_a_dependency_fault_is_logged_as_one_line_not_a_traceback() -> None:
    """Background loops (settlement, the shop's sweeper, snapshots) retry through an outage and
    log each failed round: one line each, not a traceback a second."""
    entry = _logged(pymongo.errors.NetworkTimeout("127.0.0.1:27017: timed out"))
    assert "exc" not in entry and entry["error"].startswith("NetworkTimeout: 127.0.0.1:27017")
    entry = _logged(redis.TimeoutError("Timeout reading from socket"))
    assert "exc" not in entry and entry["error"].startswith("TimeoutError")
    # A bug keeps its traceback.
    entry = _logged(ValueError("a bug"))
    assert "Traceback" in entry["exc"]
