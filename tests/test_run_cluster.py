"""run_cluster.py as a user runs it: an engine and two gateways, and an engine that dies comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from persistence.embedded import free_port
from tests.test_run import call, login
from tests.test_scale_out import LOT, Bidder, redis_db_url, wait_open

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER_REDIS_DB = 13


def engine_pid(port: int) -> int:
    """The engine child's pid: the only process started with its health port."""
    found = subprocess.run(
        ["pgrep", "-f", f"run.py --role engine --engine-id e1 --port {port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert len(found) == 1, found
    return int(found[0])


def start_launcher(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "run_cluster.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def wait_serving(base: str, seconds: float) -> dict[str, Any]:
    """The demo lot once the gateway answers and the lot is open (the gateway may not be up yet)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await asyncio.wait_for(wait_open(base), max(1.0, deadline - time.monotonic()))
        except OSError:
            assert time.monotonic() < deadline, f"{base} never served"
            await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_the_launcher_restarts_a_dead_engine(tmp_path: Path, mongo_url: str, redis_url: str) -> None:
    url = redis_db_url(redis_url, LAUNCHER_REDIS_DB)
    redis.Redis.from_url(url).flushdb()
    port = free_port()
    while free_port() in (port + 1, port + 100):  # crude: the launcher uses port, port+1, port+100
        port = free_port()
    env = os.environ | {
        "MONGODB_URL": mongo_url,
        "REDIS_URL": url,
        "MONGODB_DB": f"gavel_cluster_{uuid.uuid4().hex[:8]}",
        "ADMIN_PASSWORD": "admin-password-for-tests",
        "LEASE_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "cluster.out"
    launcher = start_launcher(["--port", str(port), "--data-dir", str(tmp_path / "c")], env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        # Generous: with the suite in two processes the other one may be busy with browsers; these
        # bound a hang, they measure nothing.
        lot = await wait_serving(base, 180)
        await wait_serving(f"http://127.0.0.1:{port + 1}", 120)
        bob = Bidder(port + 1, await login(base, "bob", "bob-demo-pass"))
        await bob.connect(lot["session_id"])
        first = await bob.bid(lot["next_min"], "before")
        assert first["type"] == "accepted", first

        os.kill(engine_pid(port + 100), signal.SIGKILL)
        alice = Bidder(port, await login(base, "alice", "alice-demo-pass"))
        await alice.connect(lot["session_id"])
        deadline = time.monotonic() + 60  # the restart, on a busy machine
        while True:  # UNAVAILABLE (or a timeout) while it is down, accepted once it is back
            answer = await alice.bid(first["next_min"], f"after-{time.monotonic()}", wait_s=15)
            if answer["type"] == "accepted":
                break
            assert answer["code"] == "UNAVAILABLE" and time.monotonic() < deadline, answer
            await asyncio.sleep(0.3)
        code, now = await call("GET", f"{base}/api/v1/lots/{LOT}")
        assert code == 200 and now["bid_count"] == 2 and now["price"] == first["next_min"]
        assert "e1 restarted" in log.read_text()
        for client in (alice, bob):
            client.close()
    finally:
        launcher.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(launcher.wait, 60) == 0, log.read_text()[-3000:]
