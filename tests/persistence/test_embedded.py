"""Embedded SecantusDB / redis-server children: fixtures, failure reporting, lifetime."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pymongo import MongoClient
from pymongo.asynchronous.database import AsyncDatabase

from persistence import embedded
from persistence.embedded import (
    EmbeddedServer,
    EmbeddedServerError,
    Services,
    free_port,
    start_mongo,
    start_redis,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` s; return the pids still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_gone(pid) for pid in pids):
            return []
        time.sleep(0.05)
    return [pid for pid in pids if not _gone(pid)]


def _ping_mongo(url: str) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        assert client.admin.command("ping")["ok"] == 1
    finally:
        client.close()


def _ping_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


# --------------------------------------------------------------------------- fixtures


async def test_mongo_fixture_pings_and_aborted_transaction_writes_nothing(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    client = mongo_db.client
    assert (await client.admin.command("ping"))["ok"] == 1
    bids = mongo_db["bids"]
    await mongo_db.create_collection("bids")

    async with client.start_session() as session, await session.start_transaction():
        await bids.insert_one({"lot": 1, "amount": 10}, session=session)
        await bids.insert_one({"lot": 1, "amount": 12}, session=session)
        assert await bids.count_documents({}, session=session) == 2
        assert await bids.count_documents({}) == 0  # not visible outside yet
        await session.abort_transaction()

    assert await bids.count_documents({}) == 0


async def test_redis_fixture_set_get(redis_client: aioredis.Redis) -> None:
    assert await redis_client.ping() is True
    assert await redis_client.dbsize() == 0
    await redis_client.set(b"lot:1", b"\x00bid\xff")
    assert await redis_client.get(b"lot:1") == b"\x00bid\xff"


def test_external_urls_start_nothing(tmp_path: Path) -> None:
    env = {"MONGODB_URL": "mongodb://db.example:27017/", "REDIS_URL": "redis://cache.example/2"}
    with Services.from_env(tmp_path, env) as services:
        assert services.embedded == []
        assert services.mongo_url == env["MONGODB_URL"]
        assert services.redis_url == env["REDIS_URL"]
        assert services.check() == []
    assert not (tmp_path / "run").exists()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------- failures


def test_sigkilled_child_is_reported(tmp_path: Path) -> None:
    with Services.from_env(tmp_path, {}) as services:
        mongo, redis_server = services.embedded
        assert (mongo.name, redis_server.name) == ("mongo", "redis")
        assert mongo.url.startswith("mongodb://127.0.0.1:") and mongo.url.endswith("?directConnection=true")
        assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
        assert services.check() == []
        assert "still running" in mongo.describe_exit()

        mongo.process.send_signal(signal.SIGKILL)
        mongo.process.wait(5)

        assert not mongo.alive()
        assert mongo.returncode == -signal.SIGKILL
        description = mongo.describe_exit()
        assert description.startswith("mongo exited with code -9 (killed by SIGKILL)")
        assert "last log lines" in description
        assert "listening on 127.0.0.1" in description  # the child's own output
        assert "=== " not in description  # our header line is not part of the tail
        assert services.check() == [description]
        assert redis_server.alive()
    assert not mongo.pidfile.exists()
    assert not redis_server.pidfile.exists()


def test_early_exit_raises_with_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:  # bound, not listening: redis's bind() fails, connects are refused
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedServerError) as info:
            start_redis(tmp_path, port=port)
    message = str(info.value)
    assert "redis exited with code 1" in message
    assert "Address already in use" in message
    assert str(tmp_path / "logs" / "redis.log") in message
    assert not (tmp_path / "run" / "redis.pid").exists()


def test_ping_timeout_raises_and_stops_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[EmbeddedServer] = []

    def never_ready(server: EmbeddedServer) -> None:
        seen.append(server)
        raise redis.ConnectionError("simulated: no PONG")

    monkeypatch.setattr(embedded, "_ping_redis", never_ready)
    with pytest.raises(EmbeddedServerError, match=r"did not answer ping .* within 0\.3 s") as info:
        start_redis(tmp_path, timeout=0.3)
    assert "simulated: no PONG" in str(info.value)
    assert "Ready to accept connections" in str(info.value)  # log tail
    assert seen and seen[0].returncode is not None
    assert not seen[0].pidfile.exists()


# --------------------------------------------------------------------------- lifetime

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from persistence.embedded import start_mongo, start_redis

    data_dir = Path(sys.argv[1])
    mongo = start_mongo(data_dir)
    redis = start_redis(data_dir)
    print(mongo.process.pid, redis.process.pid, flush=True)
    time.sleep(600)
    """
)


def test_parent_sigkill_stops_servers_and_data_dir_is_reusable(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("MONGODB_URL", None)
    env.pop("REDIS_URL", None)
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        readable, _, _ = select.select([parent.stdout], [], [], 60)
        line = parent.stdout.readline().decode() if readable else ""
        assert line, (
            f"child printed nothing; stderr:\n{parent.stderr.read().decode() if parent.stderr else ''}"
        )
        pids = [int(pid) for pid in line.split()]
        assert not any(_gone(pid) for pid in pids)
    finally:
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        if parent.stdout:
            parent.stdout.close()
        if parent.stderr:
            parent.stderr.close()

    assert _wait_gone(pids, timeout=10) == [], "PR_SET_PDEATHSIG did not stop the servers"
    assert "Received SIGTERM" in (tmp_path / "logs" / "redis.log").read_text()
    # Their pidfiles survive the parent (nobody removed them) but name dead processes.
    assert (tmp_path / "run" / "mongo.pid").exists()

    with Services.from_env(tmp_path, {}) as services:
        mongo, redis_server = services.embedded
        assert {mongo.pid, redis_server.pid}.isdisjoint(pids)
        assert (tmp_path / "run" / "mongo.pid").read_text().split()[0] == str(mongo.pid)
        _ping_mongo(services.mongo_url)
        _ping_redis(services.redis_url)


@pytest.mark.parametrize("start", [start_mongo, start_redis], ids=["mongo", "redis"])
def test_leftover_server_from_pidfile_is_replaced(
    tmp_path: Path, start: Callable[[Path], EmbeddedServer]
) -> None:
    first = start(tmp_path)  # plays a server whose parent vanished without PDEATHSIG
    second = start(tmp_path)
    try:
        assert first.process.wait(1) == 0, "the leftover server should get a graceful SIGTERM"
        assert second.alive()
        assert second.pidfile.read_text().split()[0] == str(second.pid)
        if second.name == "mongo":
            _ping_mongo(second.url)
        else:
            _ping_redis(second.url)

        first.stop()  # must not remove the pidfile that now belongs to `second`
        assert second.pidfile.exists()
    finally:
        second.stop()
    assert not second.pidfile.exists()
    assert second.returncode == 0


def test_pidfile_naming_another_program_is_ignored(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "redis.pid").write_text(f'{bystander.pid}\n["/usr/bin/redis-server"]\n')
        server = start_redis(tmp_path)
        server.stop()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_failed_start_stops_the_servers_already_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "_redis_server_path", lambda: "/bin/false")
    with pytest.raises(EmbeddedServerError, match="redis exited with code 1"):
        Services.from_env(tmp_path, {})
    storage = str(tmp_path / "mongo")
    survivors = [
        proc.name
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and storage in _read_cmdline(proc)
    ]
    assert survivors == [], "mongo was left running after redis failed to start"
    assert list((tmp_path / "run").glob("*.pid")) == []


def _read_cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
