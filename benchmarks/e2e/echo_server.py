"""The transport limit: a bare Tornado websocket server under uvloop with Gavel's frame shapes.

    python -m benchmarks.e2e.echo_server PORT [--write-message]

No accounts, no engine, no storage: it answers every `bid` frame at once with an
`accepted`-shaped frame and, when sockets subscribed, writes a `price`-shaped frame (with `ts`, the
time it answered) to each of them. What is left is Tornado's websocket framing, uvloop and the
kernel's loopback: the most a Tornado gateway on this machine can do with these frames.

Writes take the path Gavel's gateway takes (`gateway.ws.write_frames`: each message framed once,
the bytes handed to the socket directly while nothing is queued), so the limit is the best this
write path can do; `--write-message` uses Tornado's `write_message` instead, what a plain Tornado
server does.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import orjson
import tornado.httpserver
import tornado.iostream
import tornado.web
import tornado.websocket
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from gateway.ws import text_frame, write_frames

FRAME_ONCE = "--write-message" not in sys.argv
UNIT = 100


class EchoSocket(tornado.websocket.WebSocketHandler):
    subscribers: ClassVar[set[EchoSocket]] = set()
    seq = 0

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        self.send(orjson.dumps({"type": "hello", "user": True, "server_time": now_ms()}))

    def on_close(self) -> None:
        EchoSocket.subscribers.discard(self)

    def send(self, frame: bytes, wire: bytes | None = None) -> None:
        try:
            if FRAME_ONCE and self.ws_connection is not None:
                write_frames(self.ws_connection.stream, wire or text_frame(frame))
            else:
                self.write_message(frame)
        except (tornado.websocket.WebSocketClosedError, tornado.iostream.StreamClosedError):
            pass

    def on_message(self, message: str | bytes) -> None:
        request = orjson.loads(message)
        op = request.get("op")
        if op == "bid":
            EchoSocket.seq += 1
            lot_id, price = request["lot_id"], request["price"]
            self.send(
                orjson.dumps(
                    {
                        "type": "accepted",
                        "ref": request["ref"],
                        "lot_id": lot_id,
                        "price": price,
                        "leading": True,
                        "next_min": price + UNIT,
                        "seq": EchoSocket.seq,
                    }
                )
            )
            if EchoSocket.subscribers:
                frame = orjson.dumps(
                    {
                        "type": "price",
                        "session_id": 1,
                        "lot_id": lot_id,
                        "price": price,
                        "leader": "Bidder-ECHO00",
                        "bid_count": EchoSocket.seq,
                        "next_min": price + UNIT,
                        "ends_at": 0,
                        "seq": EchoSocket.seq,
                        "ts": now_ms(),
                    }
                )
                wire = text_frame(frame) if FRAME_ONCE else None
                for socket in list(EchoSocket.subscribers):
                    socket.send(frame, wire)
        elif op == "subscribe":
            EchoSocket.subscribers.add(self)
            self.send(
                orjson.dumps(
                    {
                        "type": "snapshot",
                        "session_id": request["session_id"],
                        "state": 3,
                        "server_time": now_ms(),
                        "lots": [],
                    }
                )
            )
        elif op == "ping":
            self.send(orjson.dumps({"type": "pong", "server_time": now_ms()}))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def serve(port: int) -> None:
    app = tornado.web.Application(
        [(r"/ws", EchoSocket)], websocket_ping_interval=20, websocket_ping_timeout=20
    )
    server = tornado.httpserver.HTTPServer(app)
    server.listen(port, "127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"echo server on 127.0.0.1:{port}", flush=True)
    await stop.wait()
    server.stop()


def main() -> None:
    ports = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    if len(ports) != 1:
        sys.exit(__doc__)
    uvloop.run(serve(int(ports[0])))


if __name__ == "__main__":
    main()
