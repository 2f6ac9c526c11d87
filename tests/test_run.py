"""The composition root as a user runs it: a child process, killed and restarted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pymongo
import pytest
import tornado.httpclient
import tornado.websocket

from persistence.embedded import free_port, start_mongo

ROOT = Path(__file__).resolve().parent.parent


class ServiceProcess:
    def __init__(self, data_dir: Path, mongo_url: str, redis_url: str, database: str) -> None:
        self.port = free_port()
        self.env = os.environ | {
            "DATA_DIR": str(data_dir),
            "PORT": str(self.port),
            "MONGODB_URL": mongo_url,
            "MONGODB_DB": database,
            "REDIS_URL": redis_url,
            "ADMIN_PASSWORD": "admin-password-for-tests",
            "SNAPSHOT_INTERVAL": "1",
            "LOG_LEVEL": "WARNING",
            # Every test client registers from 127.0.0.1: more than one address would in an hour.
            "REGISTRATIONS_PER_ADDRESS": "100000",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / "service.log"
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Output goes to a file, never to a pipe nobody reads: a full pipe would block the service.
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "run.py"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                tornado_fetch_sync(self.base + "/healthz")
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("the service did not start")

    def archiver_pid(self) -> int:
        """The write-behind process run.py starts beside itself (persistence/archive_process.py)."""
        assert self.process is not None
        pid = self.process.pid
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            if b"persistence.archive_process" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        raise AssertionError("no archiver process beside the service")

    def kill(self, signum: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=20)


def wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return
        if state == "Z":
            return  # exited; only its (dead) parent could reap it
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.1)


def tornado_fetch_sync(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return bytes(response.read())


async def call(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await tornado.httpclient.AsyncHTTPClient().fetch(
        url,
        method=method,
        body=None if body is None else json.dumps(body),
        headers=headers,
        raise_error=False,
    )
    return response.code, json.loads(response.body) if response.body else None


async def login(base: str, username: str, password: str) -> str:
    code, answer = await call(
        "POST", base + "/api/v1/auth/login", {"username": username, "password": password}
    )
    assert code == 200, answer
    return str(answer["token"])


@pytest.fixture
def service(tmp_path: Path, mongo_url: str, redis_url: str):
    service = ServiceProcess(tmp_path / "data", mongo_url, redis_url, f"gavel_run_{uuid.uuid4().hex[:8]}")
    yield service
    if service.process is not None and service.process.poll() is None:
        service.kill()


@pytest.mark.slow
async def test_every_acknowledged_bid_survives_sigkill_and_restart(service: ServiceProcess) -> None:
    await asyncio.to_thread(service.start)
    token = await login(service.base, "alice", "alice-demo-pass")
    # The demo session opens a few seconds after the first start.
    deadline = time.monotonic() + 15
    while True:
        code, lot = await call("GET", service.base + "/api/v1/lots/3")
        if code == 200 and lot["state"] == 3:
            break
        assert time.monotonic() < deadline, lot
        await asyncio.sleep(0.2)
    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{service.port}/ws?token={token}")
    await ws.read_message()  # hello
    acknowledged = []
    price = lot["next_min"]
    for n in range(20):
        ws.write_message(json.dumps({"op": "max_bid", "lot_id": 3, "max": price + n * 500, "ref": f"k{n}"}))
        while True:
            frame = json.loads(await ws.read_message())
            if frame.get("ref") == f"k{n}":
                break
        assert frame["type"] == "accepted", frame
        acknowledged.append(frame)
    archiver = service.archiver_pid()
    exit_code = await asyncio.to_thread(service.kill, signal.SIGKILL)
    assert exit_code == -signal.SIGKILL
    # The write-behind process sees its pipe close, writes what it holds and goes: no orphan.
    await asyncio.to_thread(wait_gone, archiver)
    await asyncio.to_thread(service.start)
    code, lot = await call("GET", service.base + "/api/v1/lots/3")
    assert code == 200
    assert lot["bid_count"] >= 1 and lot["price"] == acknowledged[-1]["price"]
    token = await login(service.base, "alice", "alice-demo-pass")
    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{service.port}/ws?token={token}")
    await ws.read_message()
    # Every acknowledged reference is known to the restarted engine: a retry returns the first answer.
    for n, frame in enumerate(acknowledged):  # the same bids again (a retry is the same bid)
        ws.write_message(
            json.dumps({"op": "max_bid", "lot_id": 3, "max": price + n * 500, "ref": frame["ref"]})
        )
        again = json.loads(await ws.read_message())
        assert again == frame
    ws.close()
    # The single process keeps its historical storage names: the write-behind's progress under
    # meta "archive" and bid buckets keyed "lot:first_seq" with no engine prefix (docs/scaling.md).
    db = pymongo.MongoClient(service.env["MONGODB_URL"])[service.env["MONGODB_DB"]]
    deadline = time.monotonic() + 10
    while db.meta.find_one({"_id": "archive"}) is None:
        assert time.monotonic() < deadline, "no write-behind progress under meta 'archive'"
        await asyncio.sleep(0.2)
    while not (buckets := list(db.bid_buckets.find({}, {"lot_id": 1, "first_seq": 1}))):
        assert time.monotonic() < deadline, "no bid bucket archived"
        await asyncio.sleep(0.2)
    assert all(doc["_id"] == f"{doc['lot_id']}:{doc['first_seq']}" for doc in buckets)
    assert db.list_collection_names(filter={"name": {"$regex": "^engine_"}}) == []


@pytest.mark.slow
async def test_sigterm_closes_sockets_with_1001_and_exits_zero(service: ServiceProcess) -> None:
    await asyncio.to_thread(service.start)
    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{service.port}/ws")
    await ws.read_message()
    archiver = service.archiver_pid()
    started = time.monotonic()
    exit_code = await asyncio.to_thread(service.kill, signal.SIGTERM)
    assert exit_code == 0
    await asyncio.to_thread(wait_gone, archiver, 0.0)  # stopped with the service, not after it
    assert time.monotonic() - started < 10
    assert await ws.read_message() is None
    assert ws.close_code == 1001
    # A normal stop is quiet: the write-behind helper too (it once printed a BrokenPipeError).
    assert "Traceback" not in service.log_path.read_text()


async def bid_until_acknowledged(
    ws: tornado.websocket.WebSocketClientConnection, lot_id: int, price: int, ref: str
) -> dict[str, Any]:
    ws.write_message(json.dumps({"op": "bid", "lot_id": lot_id, "price": price, "ref": ref}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.read_message(), 10))
        if frame.get("ref") == ref:
            return dict(frame)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["stalled", "gone"])
async def test_sigterm_exits_within_5s_with_mongodb_stalled_or_gone_and_loses_no_bid(
    tmp_path: Path, redis_url: str, fault: str
) -> None:
    """MongoDB paused (SIGSTOP) or stopped: the stop gives up on it (snapshot, write-behind flush,
    closing the client) within its budget; every acknowledged bid is in the journal, and is there
    after a restart once MongoDB is back. A stop is quiet: no traceback."""
    mongo = start_mongo(tmp_path / "own-mongo")  # ours: this test pauses or stops it
    database = f"gavel_stop_{uuid.uuid4().hex[:8]}"
    service = ServiceProcess(tmp_path / "data", mongo.url, redis_url, database)
    try:
        await asyncio.to_thread(service.start)
        sockets = []
        for name in ("alice", "bob"):
            token = await login(service.base, name, f"{name}-demo-pass")
            sockets.append(
                await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{service.port}/ws?token={token}")
            )
            await sockets[-1].read_message()  # hello
        deadline = time.monotonic() + 15
        while (lot := (await call("GET", service.base + "/api/v1/lots/2"))[1])["state"] != 3:
            assert time.monotonic() < deadline, lot
            await asyncio.sleep(0.2)
        acknowledged: list[dict[str, Any]] = []
        price = int(lot["next_min"])
        for n in range(6):
            if n == 3:  # half before the fault, half during it
                if fault == "stalled":
                    os.kill(mongo.pid, signal.SIGSTOP)
                else:
                    await asyncio.to_thread(mongo.stop)
            frame = await bid_until_acknowledged(sockets[n % 2], 2, price, f"s{n}")
            assert frame["type"] == "accepted", frame
            acknowledged.append(frame | {"sent": price})
            price = int(frame["next_min"])
        started = time.monotonic()
        exit_code = await asyncio.to_thread(service.kill, signal.SIGTERM)
        took = time.monotonic() - started
        assert exit_code == 0
        assert took < 5.0, f"the stop took {took:.1f} s"
        output = service.log_path.read_text()
        assert "Traceback" not in output, output[-3000:]
        for ws in sockets:
            ws.close()

        if fault == "stalled":
            os.kill(mongo.pid, signal.SIGCONT)
        else:
            mongo = start_mongo(tmp_path / "own-mongo", port=mongo.port)
        await asyncio.to_thread(service.start)
        code, lot = await call("GET", service.base + "/api/v1/lots/2")
        assert code == 200 and lot["price"] == acknowledged[-1]["price"], lot
        token = await login(service.base, "alice", "alice-demo-pass")
        ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{service.port}/ws?token={token}")
        await ws.read_message()
        for frame in acknowledged[::2]:  # alice's: the same bid again returns the first answer
            again = await bid_until_acknowledged(ws, 2, int(frame["sent"]), str(frame["ref"]))
            assert again | {"sent": frame["sent"]} == frame
        ws.close()
        assert await asyncio.to_thread(service.kill, signal.SIGTERM) == 0
    finally:
        if mongo.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(mongo.pid, signal.SIGCONT)
        if service.process is not None and service.process.poll() is None:
            service.kill()
        mongo.stop()


def test_the_embedded_servers_are_spawned_before_the_service_is_imported() -> None:
    """`make run` overlaps the servers' boot with the service's imports (about a second): what run.py
    imports before it spawns them must not pull in the drivers or the service."""
    probe = (
        "import sys, run; "
        "heavy = [m for m in ('pymongo', 'redis', 'tornado.web', 'composition.service', 'payments.config')"
        " if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert imported.stdout.strip() == ""


@pytest.mark.slow
async def test_the_service_trims_the_heap_after_snapshots_and_reports_it_in_metrics(
    service: ServiceProcess,
) -> None:
    service.env["MALLOC_TRIM_INTERVAL"] = "1s"  # and SNAPSHOT_INTERVAL=1: a trim after each snapshot
    await asyncio.to_thread(service.start)
    deadline = time.monotonic() + 20
    while True:
        text = (await asyncio.to_thread(tornado_fetch_sync, service.base + "/metrics")).decode()
        values = {
            name: float(value)
            for name, _, value in (line.partition(" ") for line in text.splitlines())
            if name.startswith(("gavel_heap_", "gavel_resident_"))
        }
        if values.get("gavel_heap_trims", 0) >= 2:
            break
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.3)
    assert values["gavel_resident_bytes"] > 20 << 20
    assert 0 < values["gavel_heap_trim_seconds_max"] < 1.0
    assert values["gavel_heap_trim_released_bytes"] >= 0
