"""MongoDB stopped for 10 s while bidders bid: bidding goes on, REST that needs MongoDB answers 503
UNAVAILABLE within DEPENDENCY_TIMEOUT, and the write-behind stores every acknowledged bid once
MongoDB is back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket
from pymongo import AsyncMongoClient

from persistence.archive import archived_bids
from persistence.embedded import start_mongo
from tests.test_run import ServiceProcess, call


@pytest.mark.slow
async def test_bidding_goes_on_through_a_mongodb_outage(tmp_path: Path, redis_url: str) -> None:
    mongo = start_mongo(tmp_path / "mongo-outage")  # our own server: this test stops it
    database = f"gavel_outage_{uuid.uuid4().hex[:8]}"
    service = ServiceProcess(tmp_path / "data", mongo.url, redis_url, database)
    try:
        await asyncio.to_thread(service.start)
        sockets = []
        tokens = []
        for name in ("alice", "bob"):
            code, answer = await call(
                "POST",
                service.base + "/api/v1/auth/login",
                {"username": name, "password": f"{name}-demo-pass"},
            )
            assert code == 200, answer
            tokens.append(answer["token"])
            sockets.append(
                await tornado.websocket.websocket_connect(
                    f"ws://127.0.0.1:{service.port}/ws?token={answer['token']}"
                )
            )
            await sockets[-1].read_message()
        deadline = time.monotonic() + 15
        while (lot := (await call("GET", service.base + "/api/v1/lots/2"))[1])["state"] != 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        accepted: list[dict[str, object]] = []
        next_price = int(lot["next_min"])

        async def bid_for(seconds: float) -> None:
            """Alice and Bob take turns with plain bids at the next valid price."""
            nonlocal next_price
            stop_at = time.monotonic() + seconds
            while time.monotonic() < stop_at:
                ws = sockets[len(accepted) % 2]
                ref = f"o{len(accepted)}"
                ws.write_message(json.dumps({"op": "bid", "lot_id": 2, "price": next_price, "ref": ref}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.read_message(), 5))
                    if frame.get("ref") == ref:
                        break
                assert frame["type"] == "accepted", frame  # acknowledged with MongoDB up or down
                accepted.append(frame)
                next_price = int(frame["next_min"])  # type: ignore[call-overload]
                await asyncio.sleep(0.1)

        async def probe_rest() -> None:
            """During the outage: REST that needs MongoDB answers 503 within the bound (3 s, not
            a 30 s hang), the process stays live, and not ready."""
            started = time.monotonic()
            response = await tornado.httpclient.AsyncHTTPClient().fetch(
                service.base + "/api/v1/me",
                headers={"Authorization": f"Bearer {tokens[0]}"},
                raise_error=False,
            )
            assert time.monotonic() - started < 10
            assert response.code == 503, response.body
            assert json.loads(response.body)["error"]["code"] == "UNAVAILABLE"
            assert response.headers.get("Retry-After", "").isdigit()
            assert (await call("GET", service.base + "/healthz"))[0] == 200
            code, ready = await call("GET", service.base + "/readyz")
            assert code == 503 and ready["checks"]["mongodb"] is False, ready

        await bid_for(1.0)
        port = mongo.port
        await asyncio.to_thread(mongo.stop)
        outage_started = len(accepted)
        await asyncio.gather(bid_for(10.0), probe_rest())
        assert len(accepted) - outage_started >= 20, "bids were acknowledged during the outage"
        mongo = start_mongo(tmp_path / "mongo-outage", port=port)
        await bid_for(1.0)
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo.url)
        try:
            db = client[database]
            deadline = time.monotonic() + 30
            while True:
                stored = len([b for b in await archived_bids(db, 2) if not b.auto])
                if stored >= len(accepted):
                    break
                assert time.monotonic() < deadline, (stored, len(accepted))
                await asyncio.sleep(0.2)
            # Every acknowledged bid is archived exactly once, with its journal seq.
            seqs = sorted(b.seq for b in await archived_bids(db, 2) if not b.auto)
            assert seqs == sorted(int(frame["seq"]) for frame in accepted)  # type: ignore[call-overload]
        finally:
            await client.close()
        for ws in sockets:
            ws.close()
    finally:
        if service.process is not None and service.process.poll() is None:
            service.kill()
        mongo.stop()
