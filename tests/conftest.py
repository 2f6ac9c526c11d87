"""Suite-wide fixtures (Mongo/Redis servers); other conftest.py files may exist in subfolders."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.exceptions import ResponseError

from persistence.embedded import Services


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """MONGODB_URL / REDIS_URL when set, else embedded servers for this session.

    Started on first request only, so tests that use neither server pay nothing.
    Under pytest-xdist each worker starts its own embedded pair. Runs in the main
    thread, as embedded servers must be started (see persistence/embedded.py).
    """
    with Services.from_env(tmp_path_factory.mktemp("services")) as started:
        yield started


@pytest.fixture(scope="session")
def mongo_url(services: Services) -> str:
    return services.mongo_url


@pytest.fixture(scope="session")
def redis_url(services: Services) -> str:
    return services.redis_url


def _fail_if_dead(services: Services, name: str) -> None:
    """Fail fast, with the server's log tail, instead of timing out against a dead one."""
    for server in services.embedded:
        if server.name == name and not server.alive():
            pytest.fail(f"embedded server died: {server.describe_exit()}", pytrace=False)


@pytest.fixture
async def mongo_db(services: Services, mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A fresh, uniquely named database (safe in parallel), dropped afterwards."""
    _fail_if_dead(services, "mongo")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[f"gavel_test_{uuid.uuid4().hex}"]
    try:
        yield db
    finally:
        try:
            await client.drop_database(db.name)
        finally:
            await client.close()


def _redis_test_db(redis_url: str) -> int:
    """One Redis database per pytest-xdist worker: the URL's db + 1 + worker number.

    Tests within a worker run one at a time, so flushing that database around
    each test cannot disturb another test; the URL's own database is left for
    whatever else uses ``redis_url``. (A shared REDIS_URL server must therefore
    be disposable and have enough ``databases``; the default 16 allows 15 workers.)
    """
    path = urlsplit(redis_url).path.strip("/")
    base = int(path) if path.isdigit() else 0
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return base + 1 + (int(worker) if worker.isdigit() else 0)


@pytest.fixture
async def redis_client(services: Services, redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A bytes-mode redis.asyncio client on this worker's own, empty database."""
    _fail_if_dead(services, "redis")
    db = _redis_test_db(redis_url)
    url = urlsplit(redis_url)._replace(path=f"/{db}").geturl()
    client = aioredis.Redis.from_url(url, decode_responses=False)
    try:
        await client.flushdb()
    except BaseException as exc:
        await client.aclose()
        if isinstance(exc, ResponseError):  # e.g. "DB index is out of range"
            pytest.fail(f"cannot use Redis database {db} of {redis_url}: {exc}", pytrace=False)
        raise
    try:
        yield client
    finally:
        try:
            await client.flushdb()
        finally:
            await client.aclose()
