"""The peer design: what most teams would build instead of Gavel's in-process engine.

    python -m benchmarks.e2e.redis_lua_server PORT REDIS_URL [--start FEN] [--unit FEN] [--session ID]

A Tornado gateway under uvloop (same frame shapes as Gavel) where each bid is decided by one
atomic Redis Lua script (`EVALSHA`, through redis-py's `Script`, hiredis parser): the script
checks the price against the lot's current price + unit (or the start price) and the increment
grid, records price, leader and bid count, numbers the bid, stamps `ts` with Redis' clock and
`PUBLISH`es the `price` frame; the gateway answers `accepted` / `rejected` from the script's
result. Its own subscriber loop (a redis.asyncio pub/sub connection) writes every published frame
to each watcher with `write_message`, the way a Tornado gateway fans out Redis pub/sub.

It does less than Gavel (no accounts, deposits, proxy bids, soft close or idempotent refs) and
keeps bids only in Redis (the embedded server's append-only file, fsynced every second), where
Gavel fsyncs its journal before every acknowledgement.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import sys
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
import tornado.httpserver
import tornado.web
import tornado.websocket
import uvloop

BID_SCRIPT = """
local price = tonumber(ARGV[1])
local start = tonumber(ARGV[5])
local unit = tonumber(ARGV[6])
local current = tonumber(redis.call('HGET', KEYS[1], 'price'))
local minimum = start
if current then minimum = current + unit end
if price < minimum then return {0, minimum} end
if (price - start) % unit ~= 0 then return {-1, minimum} end
local count = redis.call('HINCRBY', KEYS[1], 'bids', 1)
redis.call('HSET', KEYS[1], 'price', ARGV[1], 'leader', ARGV[2])
local seq = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local frame = string.format(
  '{"type":"price","session_id":%s,"lot_id":%s,"price":%s,"leader":"%s","bid_count":%.0f,' ..
  '"next_min":%.0f,"ends_at":0,"seq":%.0f,"ts":%.0f}',
  ARGV[3], ARGV[4], ARGV[1], ARGV[2], count, price + unit, seq, ts)
redis.call('PUBLISH', ARGV[7], frame)
return {1, price + unit, seq}
"""

MAX_PRICE = 10**13
MAX_ID = 2**53 - 1


class Peer:
    def __init__(self, redis: aioredis.Redis, start: int, unit: int, session_id: int) -> None:
        self.redis = redis
        self.script = redis.register_script(BID_SCRIPT)
        self.start, self.unit, self.session_id = start, unit, session_id
        self.prefix = f"peer:{os.getpid()}:"  # a fresh namespace for every start
        self.channel = f"peer:session:{session_id}"
        self.watchers: set[PeerSocket] = set()
        self.bidder_ids = itertools.count(1)

    async def fan_out(self) -> None:
        """The subscriber loop: every published frame to every watcher of this gateway."""
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self.channel)
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            frame = message["data"]
            for socket in list(self.watchers):
                try:
                    socket.write_message(frame)
                except tornado.websocket.WebSocketClosedError:
                    self.watchers.discard(socket)


class PeerSocket(tornado.websocket.WebSocketHandler):
    def initialize(self, peer: Peer) -> None:
        self.peer = peer
        self.leader = f"Bidder-P{next(peer.bidder_ids):05d}"

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        self.write_message(orjson.dumps({"type": "hello", "user": True, "server_time": now_ms()}))

    def on_close(self) -> None:
        self.peer.watchers.discard(self)

    async def on_message(self, message: str | bytes) -> None:
        try:
            request = orjson.loads(message)
        except orjson.JSONDecodeError:
            self.write_message(orjson.dumps({"type": "error", "code": "BAD_JSON", "message": "not JSON"}))
            return
        op = request.get("op") if isinstance(request, dict) else None
        peer = self.peer
        if op == "bid":
            ref, lot_id, price = request.get("ref"), request.get("lot_id"), request.get("price")
            if not (
                isinstance(ref, str)
                and 1 <= len(ref) <= 64
                and type(lot_id) is int
                and 0 < lot_id <= MAX_ID
                and type(price) is int
                and 0 < price <= MAX_PRICE
            ):
                self.write_message(orjson.dumps({"type": "error", "code": "BAD_REQUEST", "ref": ref}))
                return
            outcome, next_min, *rest = await peer.script(
                keys=[f"{peer.prefix}lot:{lot_id}", f"{peer.prefix}seq"],
                args=[price, self.leader, peer.session_id, lot_id, peer.start, peer.unit, peer.channel],
            )
            if outcome == 1:
                answer = {
                    "type": "accepted",
                    "ref": ref,
                    "lot_id": lot_id,
                    "price": price,
                    "leading": True,
                    "next_min": next_min,
                    "seq": rest[0],
                }
            else:
                code = "TOO_LOW" if outcome == 0 else "OFF_INCREMENT"
                answer = {
                    "type": "rejected",
                    "ref": ref,
                    "lot_id": lot_id,
                    "code": code,
                    "next_min": next_min,
                }
            if self.ws_connection is not None and not self.ws_connection.is_closing():
                self.write_message(orjson.dumps(answer))
        elif op == "subscribe":
            peer.watchers.add(self)
            self.write_message(
                orjson.dumps(
                    {
                        "type": "snapshot",
                        "session_id": request.get("session_id"),
                        "state": 3,
                        "server_time": now_ms(),
                        "lots": [],
                    }
                )
            )
        elif op == "ping":
            self.write_message(orjson.dumps({"type": "pong", "server_time": now_ms()}))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def serve(args: argparse.Namespace) -> None:
    # One connection per bid in flight (redis-py's default pool stops at 100).
    redis = aioredis.from_url(args.redis_url, max_connections=10_000)
    peer = Peer(redis, args.start, args.unit, args.session)
    await redis.script_load(BID_SCRIPT)  # EVALSHA from the first bid on
    fan_out = asyncio.create_task(peer.fan_out())
    app = tornado.web.Application(
        [(r"/ws", PeerSocket, {"peer": peer})], websocket_ping_interval=20, websocket_ping_timeout=20
    )
    server = tornado.httpserver.HTTPServer(app)
    server.listen(args.port, "127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"redis-lua peer on 127.0.0.1:{args.port}", flush=True)
    await stop.wait()
    server.stop()
    fan_out.cancel()
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("port", type=int)
    parser.add_argument("redis_url")
    parser.add_argument("--start", type=int, default=100_00)
    parser.add_argument("--unit", type=int, default=1_00)
    parser.add_argument("--session", type=int, default=1)
    args = parser.parse_args()
    uvloop.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
