"""What the scale-out hop costs one bid: ack latency in one process vs engine + gateway over Redis.

Prints one JSON object. Starts the embedded MongoDB and Redis, then, one after the other, the
single-process service (`ROLE=all`) and an engine (`ROLE=engine`) with one gateway
(`ROLE=gateway`), each as `run.py` child processes with the demo seed. Two demo bidders on one
websocket each take turns raising the demo's lot 3, one bid in flight, `--gap` seconds between
bids (under the per-user limit of 20 bids/s), so nothing queues: the figure is the path itself —
frame in, decision, journal fsync, answer out; scaled out, plus XADD to the engine's command
stream, the engine's XREADGROUP, and its PUBLISH of the answer to the gateway. Latency is taken
at the client from writing the bid to reading its `accepted`.

    .venv/bin/python benchmarks/bench_ack_path.py [--bids 300] [--gap 0.06]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tornado.httpclient  # noqa: E402
import tornado.websocket  # noqa: E402

from persistence.embedded import Services, free_port  # noqa: E402

LOT = 3  # the demo's tea set: a fixed increment, no deposit


def start(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, port


async def wait_open(base: str) -> dict[str, Any]:
    client = tornado.httpclient.AsyncHTTPClient()
    deadline = time.monotonic() + 60
    while True:
        try:
            lot = json.loads((await client.fetch(f"{base}/api/v1/lots/{LOT}")).body)
            if lot["state"] == 3:
                return dict(lot)
        except (OSError, tornado.httpclient.HTTPClientError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base}: lot {LOT} never opened")
        await asyncio.sleep(0.2)


async def measure(port: int, bids: int, gap: float) -> dict[str, float]:
    base = f"http://127.0.0.1:{port}"
    lot = await wait_open(base)
    client = tornado.httpclient.AsyncHTTPClient()
    sockets = []
    for user in ("alice", "bob"):
        body = json.dumps({"username": user, "password": f"{user}-demo-pass"})
        answer = await client.fetch(f"{base}/api/v1/auth/login", method="POST", body=body)
        token = json.loads(answer.body)["token"]
        ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/ws?token={token}")
        await ws.read_message()  # hello
        sockets.append(ws)
    price, latencies = lot["next_min"], []
    for n in range(bids):
        ws = sockets[n % 2]  # turns: a leader may not raise itself
        await asyncio.sleep(gap)
        started = time.perf_counter()
        await ws.write_message(json.dumps({"op": "bid", "lot_id": LOT, "price": price, "ref": f"b{n}"}))
        while True:
            frame = json.loads(await ws.read_message())  # type: ignore[arg-type]
            if frame.get("ref") == f"b{n}":
                break
        latencies.append(1000.0 * (time.perf_counter() - started))
        if frame["type"] != "accepted":
            raise RuntimeError(f"bid {n} not accepted: {frame}")
        price = frame["next_min"]
    for ws in sockets:
        ws.close()
    latencies.sort()

    def at(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": round(latencies[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bids", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.06, help="seconds between bids")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gavel-ack-path-") as tmp:
        root = Path(tmp)
        with Services.from_env(root / "services", {}) as services:
            base_env = os.environ | {
                "MONGODB_URL": services.mongo_url,
                "ADMIN_PASSWORD": "bench-admin-password",
                "LOG_LEVEL": "WARNING",
                "SNAPSHOT_INTERVAL": "3600",
            }
            redis_base = services.redis_url.rsplit("/", 1)[0]
            result: dict[str, Any] = {}
            single, port = start(
                ["--data-dir", str(root / "single")],
                base_env | {"MONGODB_DB": "ack_single", "REDIS_URL": f"{redis_base}/10"},
                root / "single.log",
            )
            try:
                result["single_process"] = asyncio.run(measure(port, args.bids, args.gap))
            finally:
                single.terminate()
                single.wait(20)
            env = base_env | {"MONGODB_DB": "ack_scaled", "REDIS_URL": f"{redis_base}/11"}
            engine, engine_port = start(
                ["--role", "engine", "--engine-id", "e1", "--data-dir", str(root / "engine")],
                env,
                root / "engine.log",
            )
            gateway = None
            try:
                asyncio.run(wait_ready(engine_port))
                gateway, port = start(
                    ["--role", "gateway", "--data-dir", str(root / "gw")], env, root / "gw.log"
                )
                result["engine_plus_gateway"] = asyncio.run(measure(port, args.bids, args.gap))
            finally:
                for process in (gateway, engine):
                    if process is not None:
                        process.terminate()
                        process.wait(20)
    result["ratio_p50"] = round(
        result["engine_plus_gateway"]["p50_ms"] / result["single_process"]["p50_ms"], 2
    )
    result["bids"], result["gap_s"] = args.bids, args.gap
    result["command"] = " ".join([".venv/bin/python", "benchmarks/bench_ack_path.py", *sys.argv[1:]])
    print(json.dumps(result))


async def wait_ready(port: int) -> None:
    client = tornado.httpclient.AsyncHTTPClient()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await client.fetch(f"http://127.0.0.1:{port}/readyz")
            return
        except (OSError, tornado.httpclient.HTTPClientError):
            await asyncio.sleep(0.2)
    raise TimeoutError("the engine never became ready")


if __name__ == "__main__":
    main()
