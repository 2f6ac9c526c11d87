"""The websocket's wire after the upgrade: frames read from an asyncio transport, not an IOStream.

Tornado's `WebSocketProtocol13` reads each frame with three or four `IOStream.read_bytes` calls
(header, mask, payload), each a future, and the stream drops and re-adds its interest in the
socket around every frame (two `epoll_ctl` calls). With a bid being one small frame, that read
path was ~45 % of the gateway's CPU per bid (docs/performance.md). Here, once Tornado has done the
handshake and `open()`, the socket moves to an asyncio transport (uvloop's, in C, under `run.py`):
the socket stays registered for reading, every `data_received` chunk is parsed in one pass and
each whole frame goes through Tornado's own `_handle_message` (text/binary/close/ping/pong), so
the handler, `write_message`, `close` and the pings behave as before.

Pings too: Tornado runs a task per socket (a coroutine, its sleep's future and timer: about a
kilobyte each, most of an idle watcher's memory after the handshake's objects). A `Pinger` pings
every socket of the process from one task, at the same interval and with the same timeout.

Only the read side is new code: `FastProtocol13` keeps Tornado's checks (reserved bits, control
frames' size and fragmentation, continuation order, `max_message_size`) and adds two of RFC 6455's
rules Tornado's loop does not apply: a client's frames are masked (else close 1002) and text is
UTF-8 (else close 1007, where Tornado drops the socket without a close frame). Connections that
negotiated compression keep Tornado's read loop.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import tornado.ioloop
import tornado.iostream
import tornado.websocket
from tornado.util import _websocket_mask

from gateway.roster import Outlet

_HEADER = struct.Struct("!BB")
_LENGTH16 = struct.Struct("!H")
_LENGTH64 = struct.Struct("!Q")


class TransportStream:
    """The part of `IOStream` that `WebSocketProtocol13` and the hub use, over an asyncio transport.

    `write` resolves its future once the transport has handed every byte to the kernel, as
    `IOStream.write` does (the hub counts unwritten frames for back-pressure); `send` is the
    allocation-free form for the hub's pre-built frames: None when nothing is left waiting.
    """

    def __init__(self) -> None:
        self.io_loop = tornado.ioloop.IOLoop.current()
        self.error: BaseException | None = None
        self._transport: asyncio.Transport | None = None
        self._early: list[bytes] = []  # written while the socket was changing hands
        self._closed = False
        self._close_when_attached = False
        self._backlogged = True  # the transport (or _early) holds bytes the kernel has not taken
        self._drained: list[asyncio.Future[None]] = []
        self.fd = -1  # the transport's socket descriptor, for the hub's direct sends (direct_fd)
        # The same descriptor for the hub's sweep from C (gateway/roster.py): `stream_ok` mirrors
        # direct_fd() >= 0, set here at each change of what it depends on.
        self.outlet = Outlet(-1)
        self._direct_stopped = False  # the websocket's closing handshake began: no frame after it

    def attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        self.fd = -1 if sock is None else sock.fileno()
        # Pause as soon as anything waits, resume at zero: `write`'s futures mean "in the kernel".
        transport.set_write_buffer_limits(high=0, low=0)
        self.outlet.fd = self.fd
        self._backlogged = False
        early, self._early = self._early, []
        if early:
            transport.writelines(early)
        if not self._backlogged:
            self.resumed()
        if self._close_when_attached:
            self.close()

    def closed(self) -> bool:
        return self._closed

    def writing(self) -> bool:
        return self._backlogged

    def send(self, data: bytes) -> asyncio.Future[None] | None:
        """Write `data`; None when the kernel took it all, else a future for when it has."""
        transport = self._transport
        if self._closed or (transport is not None and transport.is_closing()):
            raise tornado.iostream.StreamClosedError(real_error=self.error)
        if transport is None:
            self._early.append(data)
        else:
            transport.write(data)
            if not self._backlogged:
                return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drained.append(waiter)
        return waiter

    def direct_fd(self) -> int:
        """The descriptor a broadcast may send() to itself (gateway._fanout), or -1: only while
        the transport is open and holds no unwritten byte, so bytes sent directly cannot overtake
        any; whatever such a send leaves goes through `send` (the transport) right after."""
        transport = self._transport
        if (
            transport is None
            or self._backlogged
            or self._closed
            or transport.is_closing()
            or transport.get_write_buffer_size()
            or self._direct_stopped
        ):
            return -1
        return self.fd

    def _sync_outlet(self) -> None:
        self.outlet.stream_ok = self.direct_fd() >= 0

    def stop_direct(self) -> None:
        """No more direct sends: the websocket's close frame is (being) written."""
        self._direct_stopped = True
        self.outlet.stream_ok = False

    def write(self, data: bytes) -> asyncio.Future[None]:
        waiter = self.send(data)
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            waiter.set_result(None)
        return waiter

    def set_nodelay(self, value: bool) -> None:
        transport = self._transport
        sock: socket.socket | None = None if transport is None else transport.get_extra_info("socket")
        if sock is not None and not self._closed:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if value else 0)

    def close(self, exc_info: Any = False) -> None:
        # transport.close() still sends what is buffered (a close frame, say), then closes.
        self.outlet.stream_ok = False
        if self._transport is None:
            self._close_when_attached = True
        elif not self._closed:
            self._transport.close()

    # -- called by the transport's protocol -------------------------------------------------------
    def paused(self) -> None:
        self._backlogged = True
        self.outlet.stream_ok = False

    def resumed(self) -> None:
        self._backlogged = False
        self._sync_outlet()
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def lost(self, error: BaseException | None) -> None:
        # Called from the protocol's connection_lost, which asyncio's and uvloop's transports call
        # before they close the descriptor: no sweep can send to it once closed, or reused.
        self.outlet.stream_ok = False
        self.outlet.fd = -1
        self._closed = True
        self._backlogged = False
        self.error = error
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(tornado.iostream.StreamClosedError(real_error=error))
                waiter.exception()  # retrieved: nobody has to wait for an unsent frame


# A round of pings goes out PING_SLICE sockets at a time, the slices spread evenly over up to
# PING_SPREAD_S (at most half the interval). Ten thousand pings at once held the loop ~100 ms, and
# in consecutive loop turns they and their pongs still took ~200 ms of the loop within a few
# hundred ms, every broadcast sweep of that moment as much longer; spread over 5 s it is one slice
# (~2.5 ms, and its pongs) every ~125 ms.
PING_SLICE = 256
PING_SPREAD_S = 5.0


class Pinger:
    """Pings every registered socket each `ping_interval` from one task, closing those that sent
    no pong within `ping_timeout`, as Tornado's `periodic_ping` does per socket. Runs while it has
    sockets (no task left pending once the last one has gone)."""

    def __init__(self) -> None:
        self.members: set[FastProtocol13] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, member: FastProtocol13) -> None:
        self.members.add(member)
        if self._task is None:
            run = self._run(member.ping_interval, member.ping_timeout)
            self._task = asyncio.get_running_loop().create_task(run, name="pinger")

    def discard(self, member: FastProtocol13) -> None:
        self.members.discard(member)
        if not self.members and self._task is not None:
            self._task.cancel()
            self._task = None

    def ping_slice(self, pinged: Sequence[FastProtocol13]) -> None:
        members = self.members
        for member in pinged:
            if member not in members:  # closed since the round began
                continue
            member._received_pong = False
            try:
                member.write_ping(b"")
            except (tornado.iostream.StreamClosedError, tornado.websocket.WebSocketClosedError):
                self.discard(member)

    async def _run(self, interval: float, pong_within: float) -> None:
        while True:
            await asyncio.sleep(interval)
            pinged = list(self.members)
            slices = range(0, len(pinged), PING_SLICE)
            gap = min(PING_SPREAD_S, interval / 2) / len(slices) if slices else 0.0
            for start in slices:
                if start:
                    await asyncio.sleep(gap)
                self.ping_slice(pinged[start : start + PING_SLICE])
            # A member pinged in the round's first slice has up to PING_SPREAD_S more to answer.
            await asyncio.sleep(pong_within)
            if pong_within > 0:
                for member in pinged:
                    if member in self.members and not member._received_pong:
                        self.discard(member)
                        member.close(reason="ping timed out")


class FastProtocol13(tornado.websocket.WebSocketProtocol13):
    """`WebSocketProtocol13` whose frames arrive through `data_received` on an asyncio transport."""

    def __init__(self, *args: Any, pinger: Pinger | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pinger = pinger
        # Bytes of a frame not yet complete. A bytearray: a frame dripping in one byte per packet
        # costs appends, not a copy of everything received so far per packet.
        self._unparsed = bytearray()
        self._transport: asyncio.Transport | None = None
        self._handling: Awaitable[None] | None = None  # an async on_message still running
        self._finished: asyncio.Future[None] | None = None

    async def _receive_frame_loop(self) -> None:
        if self._decompressor is not None:
            await super()._receive_frame_loop()
            return
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        try:
            await self._move_to_transport(loop)
            await self._finished
        except tornado.iostream.StreamClosedError:
            self._abort()
        finally:
            if self.pinger is not None:
                self.pinger.discard(self)
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    def start_pinging(self) -> None:
        if self.pinger is None or self._decompressor is not None:
            super().start_pinging()  # Tornado's read loop (compression) keeps Tornado's pings
        elif self.ping_interval > 0:
            self.pinger.add(self)

    async def _move_to_transport(self, loop: asyncio.AbstractEventLoop) -> None:
        iostream = self.stream
        # Whatever Tornado wrote (the 101 answer, open()'s frames) leaves before the socket changes
        # hands; the bytes it already read (frames sent right after the upgrade) are parsed first.
        await iostream.write(b"")
        if iostream.closed() or self.client_terminated:
            raise tornado.iostream.StreamClosedError()
        self._unparsed = bytearray(iostream._read_buffer[: iostream._read_buffer_size])
        iostream._read_buffer = bytearray()
        iostream._read_buffer_size = 0
        iostream.set_close_callback(None)
        iostream.io_loop.remove_handler(iostream.socket)
        # The IOStream keeps a detached husk: closing it later cannot close the moved descriptor.
        moved = socket.socket(fileno=iostream.socket.detach())
        iostream._state = None
        # The husk lives as long as the request (request.server_connection holds it): closed, it
        # drops its buffers (Tornado's _signal_closed), and closing it touches no descriptor.
        iostream.close()
        # Frames written until the transport's connection_made runs wait in the new stream.
        stream = self.stream = TransportStream()  # type: ignore[assignment]
        try:
            await loop.connect_accepted_socket(lambda: _FrameReader(self), sock=moved)
        except (OSError, RuntimeError) as error:  # the socket died while it changed hands
            moved.close()
            stream.lost(error)
            raise tornado.iostream.StreamClosedError(real_error=error) from error

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # From the close frame on (ours, or the answer to the client's), a sweep writes nothing more.
        stream = self.stream
        if isinstance(stream, TransportStream):
            stream.stop_direct()
        super().close(code, reason)

    # -- called by _FrameReader ---------------------------------------------------------------------
    def transport_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        stream = self.stream
        assert isinstance(stream, TransportStream)
        stream.attach(transport)
        if self._unparsed:
            self.data_received(b"")

    def transport_lost(self, error: BaseException | None) -> None:
        if isinstance(self.stream, TransportStream):
            self.stream.lost(error)
        self.client_terminated = True
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)
        self._abort()

    def data_received(self, data: bytes) -> None:
        unparsed = self._unparsed
        buffer: bytes | bytearray = data
        if unparsed:
            unparsed += data
            buffer = unparsed
        position, end = 0, len(buffer)
        while position < end and not self.client_terminated:
            if self._handling is not None:  # an async handler is busy: keep the rest for later
                break
            consumed = self._parse_frame(buffer, position, end)
            if consumed == 0:
                break
            position += consumed
        if self.client_terminated:
            unparsed.clear()
        elif buffer is unparsed:
            del unparsed[:position]
        elif position < end:
            unparsed += memoryview(data)[position:]

    def _parse_frame(self, buffer: bytes | bytearray, position: int, end: int) -> int:
        """Handle the frame at `position`: bytes consumed, or 0 when the frame is not all here."""
        if end - position < 2:
            return 0
        header, mask_payloadlen = _HEADER.unpack_from(buffer, position)
        is_final_frame = header & self.FIN
        opcode = header & self.OPCODE_MASK
        opcode_is_control = opcode & 0x8
        if header & self.RSV_MASK:  # an extension nobody negotiated
            self._abort()
            return 0
        if not mask_payloadlen & 0x80:  # RFC 6455 §5.1: a server must close on unmasked frames
            self.close(1002, "client frames must be masked")
            self._abort()
            return 0
        payloadlen = mask_payloadlen & 0x7F
        if opcode_is_control and payloadlen >= 126:
            self._abort()
            return 0
        cursor: int = position + 2  # unpack_from gives Any; the length is an int
        if payloadlen == 126:
            if end - cursor < 2:
                return 0
            (payloadlen,) = _LENGTH16.unpack_from(buffer, cursor)
            cursor += 2
        elif payloadlen == 127:
            if end - cursor < 8:
                return 0
            (payloadlen,) = _LENGTH64.unpack_from(buffer, cursor)
            cursor += 8
        total = payloadlen
        if self._fragmented_message_buffer is not None:
            total += len(self._fragmented_message_buffer)
        if total > self.params.max_message_size:
            self.close(1009, "message too big")
            self._abort()
            return 0
        if end - cursor < 4 + payloadlen:
            return 0
        mask = bytes(buffer[cursor : cursor + 4])  # bytes(): no copy of a bytes slice
        cursor += 4
        data = _websocket_mask(mask, bytes(buffer[cursor : cursor + payloadlen]))
        cursor += payloadlen
        self._wire_bytes_in += cursor - position

        if opcode_is_control:
            if not is_final_frame:  # control frames are never fragmented
                self._abort()
                return 0
        elif opcode == 0:  # continuation
            if self._fragmented_message_buffer is None:
                self._abort()
                return 0
            self._fragmented_message_buffer.extend(data)
            if is_final_frame:
                opcode = self._fragmented_message_opcode
                data = bytes(self._fragmented_message_buffer)
                self._fragmented_message_buffer = None
        else:  # a new data message
            if self._fragmented_message_buffer is not None:
                self._abort()
                return 0
            if not is_final_frame:
                self._fragmented_message_opcode = opcode
                self._fragmented_message_buffer = bytearray(data)
        if is_final_frame:
            if opcode == 0x1:
                try:
                    message = data.decode()
                except UnicodeDecodeError:  # RFC 6455 §8.1 (Tornado's loop drops the socket silently)
                    self.close(1007, "text frames must be UTF-8")
                    self._abort()
                    return 0
                self._message_bytes_in += len(data)
                handled = self._run_callback(self.handler.on_message, message)
            else:
                handled = self._handle_message(opcode, data)
            if handled is not None:
                self._wait_for(handled)
        return cursor - position

    def _wait_for(self, handled: Awaitable[None]) -> None:
        """An async on_message: read no further frame until it finishes, as Tornado's loop does."""
        self._handling = handled
        if self._transport is not None:
            self._transport.pause_reading()

        def finished(_: Any) -> None:
            self._handling = None
            if self.client_terminated or self._transport is None:
                return
            self._transport.resume_reading()
            if self._unparsed:
                self.data_received(b"")

        asyncio.ensure_future(handled).add_done_callback(finished)


class _FrameReader(asyncio.Protocol):
    """Passes the transport's events to its `FastProtocol13` (and back-pressure to the stream)."""

    def __init__(self, connection: FastProtocol13) -> None:
        self.connection = connection
        self.data_received = connection.data_received  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has Transport's methods without subclassing it.
        self.connection.transport_made(cast(asyncio.Transport, transport))

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.transport_lost(exc)

    def eof_received(self) -> bool:
        return False  # a half-closed peer is a gone peer: close our side too

    def pause_writing(self) -> None:
        stream = self.connection.stream
        if isinstance(stream, TransportStream):
            stream.paused()

    def resume_writing(self) -> None:
        stream = self.connection.stream
        if isinstance(stream, TransportStream):
            stream.resumed()
