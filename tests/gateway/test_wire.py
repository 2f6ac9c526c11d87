"""gateway/wire.py: websocket frames read from an asyncio transport, on uvloop and on asyncio.

A raw TCP client speaks RFC 6455 byte by byte, so each test controls exactly how frames are cut
into TCP writes; the server is a Tornado application whose handler uses `FastProtocol13`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
import uvloop

from gateway.wire import FastProtocol13, Pinger, TransportStream

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
MAX_MESSAGE = 4096


class EchoSocket(tornado.websocket.WebSocketHandler):
    """Echoes text frames; "slow:..." makes on_message a coroutine that answers after a pause."""

    def initialize(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        protocol = super().get_websocket_protocol()
        assert isinstance(protocol, tornado.websocket.WebSocketProtocol13)
        return FastProtocol13(self, False, protocol.params, pinger=self.seen.get("pinger"))

    def open(self) -> None:
        self.seen["protocol"] = self.ws_connection

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        if isinstance(message, str) and message.startswith("slow:"):
            return self._answer_later(message)
        self.write_message(message, binary=isinstance(message, bytes))
        return None

    async def _answer_later(self, message: str) -> None:
        await asyncio.sleep(0.05)
        self.write_message(message)

    def on_close(self) -> None:
        self.seen["closed"] = (self.close_code, self.close_reason)


def client_frame(opcode: int, payload: bytes, *, final: bool = True, masked: bool = True) -> bytes:
    head = bytes([(0x80 if final else 0) | opcode])
    size = len(payload)
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size <= 0xFFFF:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(payload: str, **kwargs: Any) -> bytes:
    return client_frame(0x1, payload.encode(), **kwargs)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame as (opcode, payload); (-1, b"") when the server closed the socket."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), 5)
        except asyncio.IncompleteReadError:
            return -1, b""
        size = head[1] & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return head[0] & 0x0F, await self.reader.readexactly(size)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""

    def send(self, data: bytes) -> None:
        self.writer.write(data)


def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


Scenario = Callable[[Callable[..., Awaitable[RawClient]], dict[str, Any]], Awaitable[None]]


def run_on(loop_name: str, scenario: Scenario, **settings: Any) -> None:
    async def main() -> None:
        seen: dict[str, Any] = {"pinger": settings.pop("pinger", None)}
        app = tornado.web.Application(
            [(r"/ws", EchoSocket, {"seen": seen})], websocket_max_message_size=MAX_MESSAGE, **settings
        )
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        port = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)

        async def connect(early: bytes = b"") -> RawClient:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(upgrade_request(port) + early)  # `early`: frames sent before the 101 arrives
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert answer.startswith(b"HTTP/1.1 101")
            return RawClient(reader, writer)

        try:
            await scenario(connect, seen)
        finally:
            server.stop()
            await server.close_all_connections()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())


pytestmark = pytest.mark.parametrize("loop_name", list(LOOPS))


def test_frames_cut_anywhere_by_tcp_arrive_whole_and_in_order(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect()
        assert isinstance(seen["protocol"].stream, TransportStream)
        client.send(text("one") + text("two") + text("x" * 300))  # three frames in one write
        dribbled = text("four") + client_frame(0x2, bytes(range(200)))
        for i in range(len(dribbled)):  # one byte per TCP write
            client.send(dribbled[i : i + 1])
            await client.writer.drain()
            await asyncio.sleep(0)
        answers = [await client.frame() for _ in range(5)]
        assert answers == [
            (0x1, b"one"),
            (0x1, b"two"),
            (0x1, b"x" * 300),
            (0x1, b"four"),
            (0x2, bytes(range(200))),
        ]

    run_on(loop_name, scenario)


def test_frames_sent_with_the_upgrade_request_are_not_lost(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect(early=text("early-1") + text("early-2"))
        assert [await client.frame() for _ in range(2)] == [(0x1, b"early-1"), (0x1, b"early-2")]

    run_on(loop_name, scenario)


def test_a_fragmented_message_is_joined_and_a_ping_between_fragments_is_answered(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect()
        client.send(text("hel", final=False))
        client.send(client_frame(0x9, b"are you there"))
        client.send(client_frame(0x0, b"lo ", final=False) + client_frame(0x0, b"world"))
        assert await client.frame() == (0xA, b"are you there")
        assert await client.frame() == (0x1, b"hello world")

    run_on(loop_name, scenario)


def test_the_close_handshake_echoes_the_code_and_reports_it_to_the_handler(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect()
        client.send(client_frame(0x8, struct.pack("!H", 1000) + b"bye"))
        opcode, payload = await client.frame()
        assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 1000))
        assert await client.closed()
        for _ in range(100):
            if "closed" in seen:
                break
            await asyncio.sleep(0.01)
        assert seen["closed"] == (1000, "bye")

    run_on(loop_name, scenario)


def test_the_server_closing_sends_a_close_frame_then_drops_the_socket(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect()
        seen["protocol"].handler.close(4008, "slow consumer")
        opcode, payload = await client.frame()
        assert (opcode, payload) == (0x8, struct.pack("!H", 4008) + b"slow consumer")
        client.send(client_frame(0x8, struct.pack("!H", 4008)))
        assert await client.closed()

    run_on(loop_name, scenario)


@pytest.mark.parametrize(
    ("frame", "close_code"),
    [
        (text("not masked", masked=False), 1002),  # RFC 6455 §5.1
        (text("x" * (MAX_MESSAGE + 1)), 1009),  # websocket_max_message_size
        (text("a" * MAX_MESSAGE, final=False) + client_frame(0x0, b"b"), 1009),  # ...across fragments
        (bytes([0x81 | 0x40, 0x80]) + os.urandom(4), None),  # a reserved bit nobody negotiated
        (client_frame(0x9, b"p" * 126), None),  # a control frame longer than 125 bytes
        (client_frame(0x9, b"p", final=False), None),  # a fragmented control frame
        (client_frame(0x0, b"orphan"), None),  # a continuation of nothing
        (text("a", final=False) + text("b"), None),  # a new message inside a fragmented one
        (client_frame(0x1, b"\xff\xfe"), 1007),  # text that is not UTF-8 (RFC 6455 §8.1)
        (client_frame(0x3, b"?"), None),  # an unknown opcode
    ],
    ids=[
        "unmasked",
        "too-big",
        "too-big-fragmented",
        "reserved-bit",
        "long-control",
        "fragmented-control",
        "orphan-continuation",
        "message-inside-message",
        "bad-utf8",
        "unknown-opcode",
    ],
)
def test_a_broken_frame_closes_only_its_own_connection(
    loop_name: str, frame: bytes, close_code: int | None
) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        bystander = await connect()
        client = await connect()
        client.send(frame + text("never answered"))
        opcode, payload = await client.frame()
        if close_code is None:
            assert opcode == -1  # dropped without a close frame, as Tornado's own reader does
        else:
            assert (opcode, payload[:2]) == (0x8, struct.pack("!H", close_code))
            assert await client.closed()
        bystander.send(text("still here"))
        assert await bystander.frame() == (0x1, b"still here")

    run_on(loop_name, scenario)


def test_an_async_handler_finishes_before_the_next_message_is_handled(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect()
        client.send(text("slow:first") + text("second"))
        assert [await client.frame() for _ in range(2)] == [(0x1, b"slow:first"), (0x1, b"second")]

    run_on(loop_name, scenario)


def test_a_write_resolves_only_when_the_kernel_has_every_byte(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect()
        stream = seen["protocol"].stream
        big = b"\x82\x7f" + struct.pack("!Q", 16 << 20) + bytes(16 << 20)  # more than socket buffers
        written = stream.write(big)
        assert stream.writing() and not written.done()
        assert stream.send(b"\x81\x02ok") is not None  # queued behind it, with its own future
        await asyncio.sleep(0.2)
        assert not written.done()  # the client has not read anything yet
        opcode, payload = await client.frame()
        assert (opcode, len(payload)) == (0x2, 16 << 20)
        await asyncio.wait_for(written, 5)
        assert await client.frame() == (0x1, b"ok")
        assert stream.send(b"\x81\x01!") is None and not stream.writing()  # drained: written at once

    run_on(loop_name, scenario)


def test_writes_to_a_lost_connection_fail_as_closed(loop_name: str) -> None:
    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        client = await connect()
        stream = seen["protocol"].stream
        client.writer.transport.abort()
        for _ in range(100):
            if stream.closed():
                break
            await asyncio.sleep(0.01)
        assert stream.closed()
        with pytest.raises(tornado.iostream.StreamClosedError):
            stream.send(b"\x81\x01!")
        with pytest.raises(tornado.websocket.WebSocketClosedError):
            seen["protocol"].handler.write_message("gone")

    run_on(loop_name, scenario)


def test_a_socket_lost_while_changing_hands_closes_only_that_connection(loop_name: str) -> None:
    if loop_name == "uvloop":
        pytest.skip("uvloop's loop methods cannot be replaced; the asyncio run covers the code path")

    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        real = loop.connect_accepted_socket

        async def dying(*args: Any, **kwargs: Any) -> Any:
            loop.connect_accepted_socket = real  # type: ignore[method-assign]  # only the first
            raise OSError("socket gone")

        loop.connect_accepted_socket = dying  # type: ignore[method-assign]
        doomed = await connect()
        assert await doomed.closed()
        for _ in range(100):
            if "closed" in seen:
                break
            await asyncio.sleep(0.01)
        assert "closed" in seen  # the handler's on_close ran
        survivor = await connect()
        survivor.send(text("fine"))
        assert await survivor.frame() == (0x1, b"fine")

    run_on(loop_name, scenario)


def test_one_pinger_pings_every_socket_and_closes_the_ones_that_do_not_answer(loop_name: str) -> None:
    pinger = Pinger()

    async def scenario(connect: Any, seen: dict[str, Any]) -> None:
        answering, silent = await connect(), await connect()
        assert len(pinger.members) == 2
        opcode, _ = await answering.frame()
        assert opcode == 0x9  # the shared task's ping
        answering.send(client_frame(0xA, b""))
        assert await silent.frame() == (0x9, b"")
        assert await silent.frame() == (0x8, struct.pack("!H", 1000) + b"ping timed out")
        answering.send(text("still here"))
        frames = [await answering.frame() for _ in range(2)]
        assert (0x1, b"still here") in frames  # beside, maybe, the next ping
        assert len(pinger.members) == 1
        answering.send(client_frame(0x8, b""))
        await answering.closed()
        for _ in range(50):
            if not pinger.members:
                break
            await asyncio.sleep(0.01)
        assert not pinger.members and pinger._task is None  # no task left once nobody is pinged

    run_on(loop_name, scenario, pinger=pinger, websocket_ping_interval=0.1, websocket_ping_timeout=0.1)


def test_the_pinger_pings_in_slices_spread_over_the_round_and_every_member_once(
    loop_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten thousand pings at once held the loop ~100 ms: PING_SLICE at a time, the loop running
    between (the slices spread over half the interval here: PING_SPREAD_S is longer)."""
    import gateway.wire

    monkeypatch.setattr(gateway.wire, "PING_SLICE", 2)
    turns = [0]
    pinged: list[tuple[int, int]] = []  # (member, loop turn)

    class Member:
        """What the pinger uses of a FastProtocol13."""

        ping_interval, ping_timeout = 0.01, 5.0

        def __init__(self, number: int) -> None:
            self.number, self._received_pong = number, True

        def write_ping(self, data: bytes) -> None:
            pinged.append((self.number, turns[0]))
            if len(pinged) == 4:
                round_done.set()

    async def count_turns() -> None:
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    round_done = asyncio.Event()

    async def scenario() -> None:
        counter = asyncio.get_running_loop().create_task(count_turns())
        pinger = Pinger()
        members = [Member(n) for n in range(5)]
        for member in members:
            pinger.add(member)  # type: ignore[arg-type]
        pinger.discard(members[3])  # type: ignore[arg-type]  # gone before the round: not pinged
        await asyncio.wait_for(round_done.wait(), 5)
        assert sorted(number for number, _ in pinged) == [0, 1, 2, 4]  # each once, in the set's order
        assert pinged[0][1] == pinged[1][1] < pinged[2][1] == pinged[3][1]  # two slices, turns apart
        assert not any(m._received_pong for m in members if m.number != 3)  # waiting for their pongs
        for member in members:
            pinger.discard(member)  # type: ignore[arg-type]
        counter.cancel()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(scenario())
