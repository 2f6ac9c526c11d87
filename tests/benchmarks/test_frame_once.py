"""The hub's "frame once" write path (gateway/ws.py `text_frame`, `write_frames`).

Frames built once are what Tornado's own client reads back, message for message, whatever their
size; writes that go straight to the socket and writes the stream has to buffer (a peer that does
not read) stay in order, and only the buffered ones carry a future (the back-pressure count).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
import tornado.websocket

from gateway.ws import text_frame, write_frames

SIZES = (0, 1, 125, 126, 127, 300, 65535, 65536, 100_000)


def payload(size: int) -> bytes:
    return (b'{"type":"price","n":%d,"pad":"' % size + b"x" * size)[:size]


class FramesOnce(tornado.websocket.WebSocketHandler):
    def open(self, *args: Any, **kwargs: Any) -> None:
        assert self.ws_connection is not None
        wire = b"".join(text_frame(payload(size)) for size in SIZES)
        write_frames(self.ws_connection.stream, wire)


@pytest.fixture
async def ws_url() -> Any:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/ws", FramesOnce)]))
    server.add_sockets(sockets)
    yield f"ws://127.0.0.1:{sockets[0].getsockname()[1]}/ws"
    server.stop()
    await server.close_all_connections()


async def test_frames_built_once_are_read_back_by_tornados_client_message_for_message(ws_url: str) -> None:
    client = await tornado.websocket.websocket_connect(ws_url)
    try:
        for size in SIZES:
            message = await asyncio.wait_for(client.read_message(), 5)
            assert isinstance(message, str)  # a text frame
            assert message.encode() == payload(size)
    finally:
        client.close()


def test_text_frame_headers_follow_rfc_6455() -> None:
    assert text_frame(b"abc") == b"\x81\x03abc"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")


async def test_direct_and_buffered_writes_stay_in_order_and_only_buffered_ones_are_pending() -> None:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    stream = tornado.iostream.IOStream(ours)
    frames = [text_frame(b"%06d" % n + b"y" * 2000) for n in range(2000)]  # ~4 MB: beyond the socket buffers
    results = [write_frames(stream, frame) for frame in frames]
    assert results[0] is None  # an idle socket takes the first frames at once: no future, nothing pending
    pending = [future for future in results if future is not None]
    assert pending, "a peer that does not read must leave frames in the stream's buffer"
    assert not pending[-1].done()

    received = bytearray()
    expected = b"".join(frames)
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while len(received) < len(expected) and loop.time() < deadline:
        try:
            received += peer.recv(1 << 20)
        except BlockingIOError:
            await asyncio.sleep(0.005)
    assert bytes(received) == expected  # nothing lost, duplicated or reordered
    await asyncio.wait_for(asyncio.gather(*pending), 5)  # the back-pressure count drains to zero
    stream.close()
    peer.close()


async def test_a_closed_stream_raises_stream_closed() -> None:
    ours, peer = socket.socketpair()
    stream = tornado.iostream.IOStream(ours)
    stream.close()
    peer.close()
    with pytest.raises(tornado.iostream.StreamClosedError):
        write_frames(stream, text_frame(b"late"))
