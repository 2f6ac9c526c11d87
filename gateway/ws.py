"""The bidder websocket (`/ws`) and the hub that fans engine events out to subscribers.

Transport and logic are split the way Tornado's own websocket module splits them: the handler
only decodes frames and hands typed requests on; the hub turns committed engine events into
frames, encodes each frame once and writes the same bytes to every subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import tornado.iostream
import tornado.web
import tornado.websocket

from backoffice.viewers import session_viewers
from engine.book.events import (
    BidVoided,
    LotClosed,
    LotExtended,
    LotPaused,
    LotStateChanged,
    Outbid,
    PriceChanged,
)
from engine.book.lot import Lot
from engine.book.states import CLOSED_LOT_STATES, LotState
from engine.commands import Outcome, PlaceBid, SetMaxBid
from engine.engine import CommittedBatch
from gateway.order_lookups import OrderLookups
from gateway.protocol import BadFrame, ClientFrame, parse_client_frame
from gateway.roster import Outlet, OutletLike, Roster, RosterLike
from gateway.wire import FastProtocol13, Pinger, TransportStream
from persistence.archive import BidArchiver
from persistence.catalog import lot_increment
from persistence.kept_json import kept_json
from persistence.lot_results import LotOrder, orders_of_lots
from persistence.viewers import ViewerStore
from web.errors import (
    RETRY_AFTER_SECONDS,
    UNAVAILABLE_MESSAGE,
    dependency_fault,
    describe_fault,
)

if TYPE_CHECKING:
    from web.context import AppContext

log = logging.getLogger("gavel.ws")


MAX_FRAME_BYTES = 64 * 1024
MAX_SUBSCRIPTIONS = 50
MAX_TOPICS = 64  # community topics ("post:12") one socket may watch
# A subscriber with this many frames still unwritten only gets the latest price per lot...
LAGGING_AFTER_PENDING_WRITES = 64
# ...and is closed when it stays behind for this long.
SLOW_CONSUMER_GRACE_S = 10.0
# The winner's `result` frame waits for the order the settlement worker records after the close:
# looked up after 100 ms, then at doubling intervals up to 2 s, for at most 60 s.
RESULT_FIRST_RETRY_S = 0.1
RESULT_MAX_RETRY_S = 2.0
RESULT_GIVE_UP_S = 60.0
# The LotClosed reason of a lot an operator withdrew (engine/book/book.py `cancel_lot`).
WITHDRAWN_PREFIX = "cancelled:"
# A broadcast sweeps a session's subscribers in chunks of about FANOUT_CHUNK_S of writes, handing
# the loop back between chunks: with ten thousand watchers (one send() each costs ~9 µs of kernel
# time here) bids are read and answered between chunks instead of after the whole sweep. Frames
# that arrive during a sweep go to the sockets it has not reached yet in this sweep and to the
# others in the next one, which starts as soon as this one ends: a frame waits at most about one
# sweep, where waiting for the sweep under way to finish and then for its socket's turn in the next
# took up to two.
FANOUT_CHUNK_S = 0.004
# Loop turns between two chunks of a sweep: what a chunk interrupted (a group commit's completion,
# an answer on its way) moves one callback further per turn; with a single turn between chunks,
# each of its steps would wait for a whole chunk.
FANOUT_TURNS_BETWEEN_CHUNKS = 4
# Where gateway/_fanout.c is built (build_fanout.py), the sweep runs in C over each session's
# Roster (gateway/roster.py) and sends to every ready socket from there, FANOUT_BATCH sockets at a
# time on the loop thread and one worker thread at once (the clock read after each batch): the
# kernel's per-send cost, most of a sweep, then uses both cores, and the sweep's own work per socket
# is a read of two arrays instead of Python's dict look-ups and attribute chains (~3 µs of the loop
# thread's wall a socket at ten thousand watchers). Sockets that are not ready (a transport still
# holding bytes, a lagging or closing socket) and, without the C module, every socket are written
# through their transports here, at most FANOUT_BATCH per call.
FANOUT_BATCH = 256
FANOUT_THREADS = 2 if (os.cpu_count() or 1) > 1 else 1
# Encoded snapshots kept (per session, for the engine's current seq) before the cache is cleared.
SNAPSHOT_CACHE_SIZE = 256


# A session's roster (gateway/roster.py): the C type where gateway/_fanout.c is built.
new_roster: Callable[[], RosterLike] = Roster


def deposit_state(lot: Lot, user_id: int) -> str:
    """ "not_needed", "paid" (a paid per-lot or whole-session deposit) or "needed" for one bidder.

    A closed lot is never "needed": no deposit can make it take a bid. A compacted lot has dropped
    its depositors (docs/engine.md, "Compacting closed lots"), so its own deposit is no longer
    "paid" either; the `result` frame says what became of it."""
    if not (lot.deposit or lot.session.deposit):
        return "not_needed"
    if user_id in lot.depositors or user_id in lot.session.depositors:
        return "paid"
    return "not_needed" if lot.state in CLOSED_LOT_STATES else "needed"


def bidders_of(lot: Lot) -> set[int]:
    """Everyone who bid on the lot (its whole bid history; proxy bids count for their owner)."""
    return {line[0] for line in lot.bids.lines()}


def text_frame(payload: bytes) -> bytes:
    """The RFC 6455 bytes of one server frame: FIN + text opcode, unmasked, uncompressed.

    What Tornado's `write_message` puts on the wire for `payload`, built once so the hub can write
    the same bytes to every subscriber's stream.
    """
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size <= 0xFFFF:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


def write_frames(
    stream: tornado.iostream.IOStream | TransportStream, data: bytes
) -> asyncio.Future[None] | None:
    """Write pre-built frames to a websocket's stream: None when the kernel took every byte at once.

    While nothing is queued in the stream, the bytes go straight to the socket: no copy into the
    stream's buffer, no future, no callbacks, just the send(). Whatever the socket does not take
    (a full send buffer, an error) goes through `stream.write`, which buffers it, reports errors and
    closes the stream as usual; its future then resolves when those bytes have left the buffer.
    Raises StreamClosedError on a closed stream. A socket moved to an asyncio transport
    (gateway.wire) writes through the transport, which does the same in C.
    """
    if type(stream) is TransportStream:
        return stream.send(data)
    if type(stream) is tornado.iostream.IOStream and not stream.writing() and not stream.closed():
        try:
            sent = stream.socket.send(data)
        except OSError:  # BlockingIOError included: let the stream retry, or find and report it
            sent = 0
        if sent == len(data):
            return None
        data = data[sent:]
    return stream.write(data)


class TokenBucket:
    """Per-socket bid rate limit: `rate` per second with bursts up to `burst`."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class SessionLog:
    """A session's broadcast frames, numbered from the session's first, kept until every
    subscriber has been written up to them. Each subscriber's position is the number of the next
    frame it needs (Hub.by_session); the frames from a position to the end are framed once per
    (position, end) and those bytes shared by every subscriber at that position."""

    __slots__ = ("_joined", "_joined_end", "base", "frames", "wires")

    def __init__(self) -> None:
        self.base = 0  # the number of frames[0]
        self.frames: list[bytes] = []
        self.wires: list[bytes] = []  # text_frame of each frame
        self._joined: dict[int, tuple[list[bytes], bytes]] = {}  # position -> frames, wire to end
        self._joined_end = 0

    @property
    def end(self) -> int:
        return self.base + len(self.frames)

    def append(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.wires.append(text_frame(frame))

    def since(self, position: int) -> tuple[list[bytes], bytes]:
        """The frames from `position` (>= base) to the end, and their wire bytes."""
        end = self.end
        if end != self._joined_end:
            self._joined, self._joined_end = {}, end
        joined = self._joined.get(position)
        if joined is None:
            start = position - self.base
            joined = self._joined[position] = (self.frames[start:], b"".join(self.wires[start:]))
        return joined

    def forget_before(self, position: int) -> None:
        """Drop the frames every subscriber has been written (those before `position`)."""
        drop = min(position, self.end) - self.base
        if drop > 0:
            del self.frames[:drop]
            del self.wires[:drop]
            self.base += drop
            self._joined, self._joined_end = {}, -1


class Hub:
    """Fan-out of committed engine events to websocket subscribers.

    Each broadcast frame is encoded and framed once and the same bytes are written to the
    subscribers of its session, one write per socket carrying every frame it has not had yet.
    Price changes are coalesced per lot until the next chunk of a sweep (FANOUT_CHUNK_S) takes
    them: with few subscribers a sweep is one chunk on the loop turn after the engine's batch;
    with thousands it runs in chunks, the loop serving bids and requests between them.
    """

    def __init__(self, ctx: AppContext, publish: Callable[[int, bytes], None] | None = None) -> None:
        self.ctx = ctx
        self.publish = publish  # Redis pub/sub for other gateway processes
        # session_id -> subscriber -> its slot in the session's roster, which holds the number of
        # the next frame of the session's log it needs (its position)
        self.by_session: dict[int, dict[BidderSocket, int]] = {}
        self._rosters: dict[int, RosterLike] = {}
        self.by_user: dict[int, set[BidderSocket]] = defaultdict(set)
        # The community's live counts (gateway/community_live.py): topic ("post:12") -> watchers.
        self.by_topic: dict[str, set[BidderSocket]] = {}
        self.sockets: set[BidderSocket] = set()
        # Places taken per address and per user, from the upgrade request on (before anything is
        # awaited, so concurrent upgrades cannot all pass one check) until the socket has closed.
        self.by_ip: dict[str, int] = {}
        self.user_places: dict[int, int] = {}
        # Bid rate limits are per user, not per socket: more sockets must not buy more bids.
        self.buckets: dict[int, TokenBucket] = {}
        self._prices: dict[int, tuple[PriceChanged, int]] = {}
        self._frames: list[tuple[int, bytes]] = []  # (session_id, frame) in order
        self._closed: list[LotClosed] = []  # personal `result` frames to send after the broadcasts
        self._logs: dict[int, SessionLog] = {}  # per session with subscribers
        # Sessions whose log has frames some subscriber may not have had, in sweep order.
        self._behind: dict[int, None] = {}
        # The sweep under way: session_id, its log, its roster, the next slot, the log's end when it
        # started (every subscriber has everything before it once done).
        self._sweep: tuple[int, SessionLog, RosterLike, int, int] | None = None
        self._step_scheduled = False
        self.frames_sent = 0
        # session_id -> (engine seq, the snapshot's lots encoded once, shared by every subscriber)
        self._snapshots: dict[int, tuple[int, list[tuple[Lot, bytes]]]] = {}
        self._result_tasks: set[asyncio.Task[None]] = set()
        self.result_delays_ms: list[float] = []  # close -> winner's result frame, newest last (bounded)
        # The winners' order look-ups of a close, one query at a time for all of them (`_send_won`).
        self._order_lookups = OrderLookups(lambda lot_ids: orders_of_lots(self.ctx.db, lot_ids))
        self.pinger = Pinger()  # one task pings every socket (gateway/wire.py)
        # Set while gateway/viewers_live.py shares this process's viewers (then counts are global).
        self.viewer_store: ViewerStore | None = None

    # -- membership ----------------------------------------------------------------------------
    def join(self, socket: BidderSocket, session_id: int) -> None:
        """From the session's next frame on (its snapshot, sent now, has the state before)."""
        log = self._logs.get(session_id)
        if log is None:
            log = self._logs[session_id] = SessionLog()
        roster = self._rosters.get(session_id)
        if roster is None:
            roster = self._rosters[session_id] = new_roster()
        members = self.by_session.setdefault(session_id, {})
        slot = members.get(socket)
        if slot is None:
            members[socket] = roster.add(socket.outlet(), socket, log.end)
        else:
            roster.set_position(slot, log.end)

    def leave(self, socket: BidderSocket, session_id: int) -> None:
        members = self.by_session.get(session_id)
        if members is not None:
            slot = members.pop(socket, None)
            if slot is not None:
                self._rosters[session_id].remove(slot)
            if not members:
                del self.by_session[session_id]
                del self._rosters[session_id]
                self._logs.pop(session_id, None)
                self._behind.pop(session_id, None)

    def reserve(self, places: dict[Any, int], key: Any, limit: int) -> bool:
        """Take one of `limit` places for `key` (an address in by_ip, a user in user_places);
        check and take in one step, with no await in between."""
        taken = places.get(key, 0)
        if taken >= limit:
            return False
        places[key] = taken + 1
        return True

    def release(self, places: dict[Any, int], key: Any) -> None:
        left = places.get(key, 0) - 1
        if left > 0:
            places[key] = left
        else:
            places.pop(key, None)

    def connected(self, socket: BidderSocket) -> None:
        self.sockets.add(socket)
        if socket.user_id:
            self.by_user[socket.user_id].add(socket)

    def watch(self, socket: BidderSocket, topic: str) -> None:
        self.by_topic.setdefault(topic, set()).add(socket)

    def unwatch(self, socket: BidderSocket, topic: str) -> None:
        members = self.by_topic.get(topic)
        if members is not None:
            members.discard(socket)
            if not members:
                del self.by_topic[topic]

    def send_topic(self, topic: str, frame: bytes) -> int:
        """A community frame to this process's watchers of `topic`; how many."""
        members = self.by_topic.get(topic)
        if not members:
            return 0
        wire = text_frame(frame)
        for socket in list(members):
            socket.send_many((frame,), wire)
        return len(members)

    def disconnected(self, socket: BidderSocket) -> None:
        self.sockets.discard(socket)
        for session_id in list(socket.subscriptions):
            self.leave(socket, session_id)
        for topic in list(socket.topics or ()):
            self.unwatch(socket, topic)
        sockets = self.by_user.get(socket.user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self.by_user[socket.user_id]

    def bucket(self, user_id: int) -> TokenBucket:
        bucket = self.buckets.get(user_id)
        if bucket is None:
            if len(self.buckets) > 100_000:
                # Kept across reconnects (a reconnect must not refill it); forget only idle ones.
                now = time.monotonic()
                self.buckets = {u: b for u, b in self.buckets.items() if now - b.stamp < 10.0}
            limits = self.ctx.limits
            bucket = self.buckets[user_id] = TokenBucket(limits.bids_per_second, limits.bid_burst)
        return bucket

    def session_viewers(self, gateway: str) -> dict[int, set[str]]:
        """Each session's distinct viewers among this process's sockets (backoffice/viewers.py)."""
        return session_viewers(
            {sid: [(s.user_id, id(s)) for s in members] for sid, members in self.by_session.items()},
            gateway,
        )

    @property
    def socket_count(self) -> int:
        return len(self.sockets)

    def close_all(self, code: int, reason: str) -> None:
        for task in list(self._result_tasks):
            task.cancel()
        for socket in list(self.sockets):
            socket.close(code, reason)

    # -- engine events -------------------------------------------------------------------------
    def on_batch(self, batch: CommittedBatch) -> None:
        """Engine listener: cheap, never blocks; frames are written on the next loop turn."""
        pseudonym = self.ctx.pseudonym
        for event, seq in zip(batch.events, batch.seqs, strict=True):
            kind = type(event)
            if kind is PriceChanged:
                self._prices[event.lot_id] = (event, seq)  # type: ignore[union-attr,assignment]
            elif kind is Outbid:
                assert isinstance(event, Outbid)
                frame = orjson.dumps({"type": "outbid", "lot_id": event.lot_id, "price": event.price})
                for socket in self.by_user.get(event.bidder, ()):
                    self.send_personal(socket, frame)
            elif kind is LotExtended:
                assert isinstance(event, LotExtended)
                self._queue(
                    event.session_id,
                    {"type": "extended", "lot_id": event.lot_id, "ends_at": event.ends_at},
                )
            elif kind is LotStateChanged:
                assert isinstance(event, LotStateChanged)
                self._queue(
                    event.session_id,
                    {
                        "type": "state",
                        "lot_id": event.lot_id,
                        "state": int(event.state),
                        "ends_at": event.ends_at,
                    },
                )
            elif kind is LotPaused:
                assert isinstance(event, LotPaused)
                self._queue(
                    event.session_id,
                    {
                        "type": "lot_paused",
                        "lot_id": event.lot_id,
                        "session_id": event.session_id,
                        "paused": event.paused,
                        "ends_at": event.ends_at,
                    },
                )
            elif kind is BidVoided:
                assert isinstance(event, BidVoided)
                self._bid_voided(event)
            elif kind is LotClosed:
                assert isinstance(event, LotClosed)
                self._flush_price(event.lot_id)
                self._closed.append(event)
                archiver = self.ctx.archiver
                if isinstance(archiver, BidArchiver):
                    archiver.hurry()  # its outbox item first (a child archiver hurries by itself)
                settlement = self.ctx.settlement
                if settlement is not None:
                    # Records the order now rather than at the worker's next round (harmless where
                    # the worker does not run in this process: a gateway without the lease).
                    settlement.worker.poke()
                self._queue(
                    event.session_id,
                    {
                        "type": "closed",
                        "lot_id": event.lot_id,
                        "result": "sold" if event.result is LotState.SOLD else "unsold",
                        "price": event.price,
                        "winner": pseudonym(event.session_id, event.winner),
                        # An operator withdrew the lot (CancelLot): its deposits are refunded.
                        "withdrawn": event.reason.startswith(WITHDRAWN_PREFIX),
                    },
                )
        if not self._step_scheduled and (self._prices or self._frames or self._closed):
            self._step_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def _bid_voided(self, event: BidVoided) -> None:
        """Everyone in the session: the lot's state after the void (a `price` frame follows from
        the PriceChanged after it). The voided bidder: a personal notice, on every socket here."""
        pseudonym = self.ctx.pseudonym
        self._queue(
            event.session_id,
            {
                "type": "bid_voided",
                "lot_id": event.lot_id,
                "session_id": event.session_id,
                "price": event.price,
                "leader": pseudonym(event.session_id, event.leader),
                "bid_count": event.bid_count,
                "next_min": event.next_min,
            },
        )
        notice = orjson.dumps(
            {
                "type": "your_bid_voided",
                "lot_id": event.lot_id,
                "session_id": event.session_id,
                "price": event.price,
                "leading": event.leader == event.bidder,
            }
        )
        for socket in self.by_user.get(event.bidder, ()):
            self.send_personal(socket, notice)

    def _queue(self, session_id: int, message: dict[str, Any]) -> None:
        self._frames.append((session_id, orjson.dumps(message)))

    def _flush_price(self, lot_id: int) -> None:
        pending = self._prices.pop(lot_id, None)
        if pending is not None:
            self._frames.append((pending[0].session_id, self._price_frame(*pending)))

    def _price_frame(self, event: PriceChanged, seq: int) -> bytes:
        lot = self.ctx.engine.book.lots.get(event.lot_id)
        # Whether the reserve is met (never the reserve itself), as the public lot view says it.
        reserve_met = lot is not None and event.leader != 0 and event.price >= lot.reserve
        return orjson.dumps(
            {
                "type": "price",
                "session_id": event.session_id,
                "lot_id": event.lot_id,
                "price": event.price,
                "leader": self.ctx.pseudonym(event.session_id, event.leader),
                "bid_count": event.bid_count,
                "next_min": event.next_min,
                "ends_at": event.ends_at,
                "seq": seq,
                "ts": event.at,
                "reserve_met": reserve_met,
            }
        )

    def flush(self) -> None:
        """One step of the broadcast: take the frames queued since the last step, then write to
        subscribers for about FANOUT_CHUNK_S; another step follows on the next loop turn while
        any subscriber is behind."""
        self._step_scheduled = False
        self._collect()
        deadline_ns = time.monotonic_ns() + int(FANOUT_CHUNK_S * 1e9)
        while self._sweep is not None or self._behind:
            if self._sweep is None:
                session_id = next(iter(self._behind))
                del self._behind[session_id]
                log = self._logs.get(session_id)
                roster = self._rosters.get(session_id)
                if log is None or roster is None:
                    continue
                self._sweep = (session_id, log, roster, 0, log.end)
            if not self._sweep_chunk(deadline_ns):
                self._step_scheduled = True
                asyncio.get_running_loop().call_soon(self._next_chunk, FANOUT_TURNS_BETWEEN_CHUNKS - 1)
                return

    def _next_chunk(self, turns: int) -> None:
        """The sweep's next step, `turns` loop turns from now."""
        if turns > 0:
            asyncio.get_running_loop().call_soon(self._next_chunk, turns - 1)
        else:
            self.flush()

    def _collect(self) -> None:
        """The queued frames into their sessions' logs (prices: each lot's latest), published for
        other gateway processes; then the personal results of the lots that closed."""
        for lot_id in list(self._prices):
            self._flush_price(lot_id)
        frames, self._frames = self._frames, []
        publish = self.publish
        for session_id, frame in frames:
            if publish is not None:
                publish(session_id, frame)
            log = self._logs.get(session_id)
            if log is not None:
                log.append(frame)
                self._behind[session_id] = None
        if self._closed:
            closed, self._closed = self._closed, []
            for event in closed:
                self._send_results(event)

    def _sweep_chunk(self, deadline_ns: int) -> bool:
        """Write the sweep under way until it ends (True) or the deadline passes (False)."""
        assert self._sweep is not None
        session_id, log, roster, index, started_end = self._sweep
        if self._rosters.get(session_id) is not roster or self._logs.get(session_id) is not log:
            # Everyone left meanwhile (and maybe others joined since, on a new log and roster: its
            # frames are marked behind and get a sweep of their own).
            self._sweep = None
            return True
        end = log.end

        def wire_since(position: int) -> bytes:
            return log.since(position)[1]

        written = 0
        while True:
            # Ready sockets are sent to from C (positions moved to `end` there); the rest come back.
            index, slow, short, direct_frames, _sends = roster.sweep(
                index, end, wire_since, deadline_ns, FANOUT_THREADS, FANOUT_BATCH, FANOUT_BATCH
            )
            written += direct_frames
            for slot, sent, before in short:
                # The kernel took part of the bytes (or none, or the socket failed): the transport
                # sends the rest in order, applies back-pressure, or meets the error and closes the
                # socket as it would have on its own write.
                frames, wire = log.since(before)
                roster.owner(slot).send_many(frames, wire[sent:] if sent > 0 else wire)
            for slot in slow:
                frames, wire = log.since(roster.position(slot))
                roster.owner(slot).send_many(frames, wire)
                written += len(frames)
                # It may have left within send_many (closed as a slow consumer): nothing to mark then.
                with contextlib.suppress(KeyError):
                    roster.set_position(slot, end)
            if index >= roster.size or time.monotonic_ns() > deadline_ns:
                break
        self.frames_sent += written
        if index < roster.size:
            self._sweep = (session_id, log, roster, index, started_end)
            return False
        self._sweep = None
        # Every subscriber now has every frame before the sweep's start; those who joined during
        # it started from the end at their join, later still.
        log.forget_before(started_end)
        if log.end > started_end:  # frames came during the sweep: some subscribers lack them
            self._behind[session_id] = None
        return True

    def send_personal(self, socket: BidderSocket, frame: bytes) -> None:
        """A frame for one socket, after the broadcast frames it has not had yet (so a `result`
        never overtakes the `closed` before it)."""
        for session_id in socket.subscriptions:
            members = self.by_session.get(session_id)
            log = self._logs.get(session_id)
            slot = None if members is None else members.get(socket)
            if slot is None or log is None:
                continue
            roster = self._rosters[session_id]
            position = roster.position(slot)
            end = log.end
            if position < end:
                frames, wire = log.since(position)
                socket.send_many(frames, wire)
                roster.set_position(slot, end)
                self.frames_sent += len(frames)
        socket.send(frame)

    def position(self, socket: BidderSocket, session_id: int) -> int | None:
        """The number of the next frame of the session's log `socket` needs, if it is subscribed."""
        slot = self.by_session.get(session_id, {}).get(socket)
        return None if slot is None else self._rosters[session_id].position(slot)

    def snapshot_frame(self, session_id: int, user_id: int = 0) -> bytes | None:
        """The `snapshot` for one subscriber: every lot's public state, encoded once per engine seq
        and shared, plus, for a signed-in bidder, their own `leading`, `my_max` and `deposit`."""
        session = self.ctx.engine.book.sessions.get(session_id)
        if session is None:
            return None
        lots = self._snapshot_lots(session_id, session.lot_ids)
        if user_id:
            parts = [
                part[:-1] + orjson.dumps(personal_fields(lot, user_id)).replace(b"{", b",", 1)
                for lot, part in lots
            ]
        else:
            parts = [part for _lot, part in lots]
        head = orjson.dumps(
            {
                "type": "snapshot",
                "session_id": session_id,
                "state": int(session.state),
                "server_time": self.ctx.engine.clock.now_ms(),
            }
        )
        return head[:-1] + b',"lots":[' + b",".join(parts) + b"]}"

    def _snapshot_lots(self, session_id: int, lot_ids: Sequence[int]) -> list[tuple[Lot, bytes]]:
        # Every change to the book is journaled with a new seq in the same loop turn (a replica's
        # too), so an encoding made at the current seq is current.
        seq = self.ctx.engine.last_seq
        cached = self._snapshots.get(session_id)
        if cached is not None and cached[0] == seq:
            return cached[1]
        book = self.ctx.engine.book
        pseudonym = self.ctx.pseudonym
        lots = []
        for lot_id in lot_ids:
            lot = book.lots[lot_id]
            lots.append(
                (
                    lot,
                    # Kept for up to SNAPSHOT_CACHE_SIZE sessions: right-sized, not in orjson's
                    # ~4 KiB buffer per lot (persistence/kept_json.py).
                    kept_json(
                        {
                            "lot_id": lot_id,
                            "state": int(lot.state),
                            "price": lot.price,
                            "leader": pseudonym(session_id, lot.leader),
                            "bid_count": lot.bid_count,
                            "next_min": lot.next_min(),
                            "ends_at": lot.ends_at,
                            "no_bids": lot.bid_count == 0,
                            "increment": lot_increment(lot),
                            "paused": bool(lot.paused_since),
                        }
                    ),
                )
            )
        if len(self._snapshots) >= SNAPSHOT_CACHE_SIZE:
            self._snapshots.clear()
        self._snapshots[session_id] = (seq, lots)
        return lots

    # -- results -------------------------------------------------------------------------------
    def _send_results(self, event: LotClosed) -> None:
        """The personal `result` frames of a closed lot, to its bidders with a socket here: "lost"
        at once, "won" once the order is recorded (`_send_won`)."""
        by_user = self.by_user
        if not by_user:
            return
        lot = self.ctx.engine.book.lots.get(event.lot_id)
        if lot is None:
            return
        present = [user for user in bidders_of(lot) if user in by_user]
        if not present:
            return
        winner = event.winner if event.result is LotState.SOLD else 0
        lost = orjson.dumps(result_message(event, "lost", None))
        for user in present:
            if user == winner:
                task = asyncio.get_running_loop().create_task(
                    self._send_won(event, time.monotonic()), name=f"result-{event.lot_id}"
                )
                self._result_tasks.add(task)
                task.add_done_callback(self._result_tasks.discard)
            else:
                for socket in by_user.get(user, ()):
                    self.send_personal(socket, lost)

    async def _send_won(self, event: LotClosed, closed_at: float) -> None:
        """Look the lot's order up with a short back-off, then tell the winner (every socket they
        have here then, reconnected ones included). Given up after RESULT_GIVE_UP_S, the frame
        still goes, without order_id and pay_by (GET /api/v1/lots/{id}/result has them later)."""
        delay = RESULT_FIRST_RETRY_S
        order: LotOrder | None = None
        while True:
            await asyncio.sleep(delay)
            try:
                # Coalesced with the other winners' look-ups: a close of many lots is one query at a
                # time, not one per winner at once (each burst opened dozens of pooled connections).
                order = await self._order_lookups.order_of(event.lot_id)
            except Exception as error:
                if not dependency_fault(error):
                    raise
                order = None  # MongoDB did not answer: try again within the bound
            if order is not None:
                break
            if time.monotonic() - closed_at >= RESULT_GIVE_UP_S:
                log.warning(
                    "no order for sold lot %s after %.0f s: result sent without it",
                    event.lot_id,
                    RESULT_GIVE_UP_S,
                )
                break
            settlement = self.ctx.settlement
            if settlement is not None:
                settlement.worker.poke()  # the close may have reached the outbox only now
            delay = min(delay * 2, RESULT_MAX_RETRY_S)
        elapsed_ms = (time.monotonic() - closed_at) * 1000.0
        if len(self.result_delays_ms) >= 1000:
            del self.result_delays_ms[:500]
        self.result_delays_ms.append(elapsed_ms)
        log.debug("lot %s: result sent to its winner %.0f ms after the close", event.lot_id, elapsed_ms)
        frame = orjson.dumps(result_message(event, "won", order))
        for socket in list(self.by_user.get(event.winner, ())):
            self.send_personal(socket, frame)


def personal_fields(lot: Lot, user_id: int) -> dict[str, Any]:
    """A signed-in bidder's own state of a lot: never anyone else's maximum."""
    leading = lot.leader == user_id
    return {
        "leading": leading,
        "my_max": lot.leader_max if leading else None,
        "deposit": deposit_state(lot, user_id),
    }


def result_message(event: LotClosed, outcome: str, order: LotOrder | None) -> dict[str, Any]:
    return {
        "type": "result",
        "session_id": event.session_id,
        "lot_id": event.lot_id,
        "outcome": outcome,
        "price": event.price,
        "order_id": None if order is None else order.order_id,
        "pay_by": None if order is None else order.deadline_ms,
    }


class BidderSocket(tornado.websocket.WebSocketHandler):
    """One bidder's (or watcher's) connection. Anonymous sockets may watch but not bid."""

    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.user_id = 0
        self.remote_ip = ""
        self.subscriptions: set[int] = set()
        self.topics: set[str] | None = None  # watched community topics (most sockets watch none)
        self._pending_writes = 0
        self._latest: dict[int, bytes] | None = None  # set while lagging: lot_id -> frame
        self._lagging_since = 0.0
        self._frame_once = False  # set in open(): write pre-built frames straight to the stream
        self._outlet: OutletLike | None = None  # the sweep's view of this socket (outlet())

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        """Tornado's protocol, reading frames from an asyncio transport once open (gateway.wire)
        instead of Tornado's IOStream read loop."""
        protocol = super().get_websocket_protocol()
        if type(protocol) is not tornado.websocket.WebSocketProtocol13:
            return protocol
        # A TLS socket cannot change hands: its session state lives in the SSLSocket object, and
        # the transport would read the raw records. WSS keeps Tornado's read loop.
        if isinstance(getattr(self.request.connection, "stream", None), tornado.iostream.SSLIOStream):
            return protocol
        return FastProtocol13(self, False, protocol.params, pinger=self.ctx.hub.pinger)

    def check_origin(self, origin: str) -> bool:
        # Bearer tokens, not cookies, authorize bids: a foreign page cannot ride a session.
        return True

    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.remote_ip = self.request.remote_ip or ""
        hub = self.ctx.hub
        limits = self.ctx.limits
        limit = limits.ws_connections_per_ip
        if not hub.reserve(hub.by_ip, self.remote_ip, limit):
            self._refuse(429, "TOO_MANY_CONNECTIONS", f"at most {limit} connections per address")
            return
        user_place = False
        try:  # the places are held while the socket lives: super().get() returns when it closes
            token = self.get_query_argument("token", None)
            header = self.request.headers.get("Authorization", "")
            if not token and header.startswith("Bearer "):
                token = header[len("Bearer ") :].strip()
            if token:
                try:
                    user = await self.ctx.accounts.user_for_token(token)
                except Exception as error:
                    if not dependency_fault(error):
                        raise
                    # MongoDB did not answer within the bound: refuse the upgrade like a REST call.
                    log.warning("websocket upgrade unavailable: %s", describe_fault(error))
                    self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
                    self._refuse(503, "UNAVAILABLE", UNAVAILABLE_MESSAGE)
                    return
                if user is None:
                    self._refuse(401, "UNAUTHORIZED", "invalid or revoked token")
                    return
                per_user = limits.websockets_per_user
                if not hub.reserve(hub.user_places, user.user_id, per_user):
                    self._refuse(429, "TOO_MANY_CONNECTIONS", f"at most {per_user} sockets per user")
                    return
                user_place = True
                self.user_id = user.user_id
            await super().get(*args, **kwargs)
        finally:
            hub.release(hub.by_ip, self.remote_ip)
            if user_place:
                hub.release(hub.user_places, self.user_id)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": {"code": code, "message": message}}))

    def open(self, *args: str, **kwargs: str) -> None:
        # The handshake's headers (the request's and the 101's) are never read again, but Tornado's
        # suspended get() and the HTTP connection keep the objects for the socket's lifetime:
        # emptied in place, an idle watcher holds about 2 KB less.
        self.request.headers.clear()
        self._headers.clear()
        self.set_nodelay(True)
        # Pre-built frames are plain (uncompressed) frames: never used if compression was negotiated.
        self._frame_once = getattr(self.ws_connection, "_compressor", None) is None
        hub = self.ctx.hub
        hub.connected(self)
        self.send(orjson.dumps({"type": "hello", "user": bool(self.user_id), "server_time": self._now()}))

    def on_close(self) -> None:
        self.ctx.hub.disconnected(self)

    def _now(self) -> int:
        return self.ctx.engine.clock.now_ms()

    # -- writing, with back-pressure ------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        """Write a frame; a subscriber that falls behind gets only the latest price per lot."""
        self.send_many((frame,))

    def send_many(self, frames: Sequence[bytes], wire: bytes | None = None) -> None:
        """Write frames in order (the hub's broadcasts); `wire`, when given, is
        `b"".join(map(text_frame, frames))`, built once by the hub for every subscriber.

        Frames the kernel has not taken yet count as pending; past LAGGING_AFTER_PENDING_WRITES the
        socket gets only the latest price per lot until it drains.
        """
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return
        if self._latest is not None:
            for frame in frames:
                if frame.startswith(b'{"type":"price"'):
                    lot_id = orjson.loads(frame)["lot_id"]
                    self._latest[lot_id] = frame
                else:
                    self._latest[-len(self._latest) - 1] = frame  # keep non-price frames, in order
            if time.monotonic() - self._lagging_since > SLOW_CONSUMER_GRACE_S:
                self.close(4008, "slow consumer: fell too far behind")
            return
        stream: tornado.iostream.IOStream | TransportStream | None = connection.stream
        if wire is not None and self._frame_once and type(stream) is TransportStream:
            # The broadcast's case (ten thousand sockets a sweep), without _write's calls.
            try:
                written = stream.send(wire)
            except tornado.iostream.StreamClosedError:
                return
            if written is not None:  # some bytes wait in the transport until the kernel takes them
                self._pending_writes += len(frames)
                written.add_done_callback(functools.partial(self._written, count=len(frames)))
        else:
            self._write(frames, wire)
        if self._pending_writes > LAGGING_AFTER_PENDING_WRITES:
            self._set_lagging({})
            self._lagging_since = time.monotonic()

    def outlet(self) -> OutletLike:
        """What the hub's sweep reads of this socket (gateway/roster.py): the stream's outlet, its
        `socket_ok` kept here (plain frames, not lagging); a socket whose stream is not a
        TransportStream (compression, TLS) gets one that is never ready."""
        if self._outlet is None:
            connection = self.ws_connection
            stream: tornado.iostream.IOStream | TransportStream | None = (
                None if connection is None else connection.stream
            )
            self._outlet = stream.outlet if type(stream) is TransportStream else Outlet(-1)
            self._outlet.socket_ok = self._frame_once and self._latest is None
        return self._outlet

    def _set_lagging(self, latest: dict[int, bytes] | None) -> None:
        self._latest = latest
        if self._outlet is not None:
            self._outlet.socket_ok = self._frame_once and latest is None

    def direct_fd(self) -> int:
        """The descriptor the hub's sweep may send this socket's broadcast frames to from C, or -1
        (gateway/wire.py TransportStream.direct_fd; not while lagging or when frames are framed per
        write, i.e. compressed)."""
        connection = self.ws_connection
        if self._latest is not None or not self._frame_once or connection is None:
            return -1
        # connection.is_closing() without its two calls (ten thousand sockets a sweep): the
        # stream's own closed state is checked by TransportStream.direct_fd.
        if connection.client_terminated or connection.server_terminated:
            return -1
        stream: tornado.iostream.IOStream | TransportStream | None = connection.stream
        return stream.direct_fd() if type(stream) is TransportStream else -1

    def _write(self, frames: Sequence[bytes], wire: bytes | None = None) -> None:
        connection = self.ws_connection
        if connection is None:
            return
        if not self._frame_once:
            for frame in frames:
                try:
                    future = self.write_message(frame)
                except tornado.websocket.WebSocketClosedError:
                    return
                self._pending_writes += 1
                future.add_done_callback(self._written)
            return
        stream = connection.stream
        if stream is None:  # the connection is closing: nothing to write to
            return
        try:
            written = write_frames(stream, wire or b"".join(map(text_frame, frames)))
        except tornado.iostream.StreamClosedError:
            return
        if written is not None:  # some bytes wait in the stream's buffer until it can write
            self._pending_writes += len(frames)
            written.add_done_callback(functools.partial(self._written, count=len(frames)))

    def _written(self, _future: Any, count: int = 1) -> None:
        self._pending_writes -= count
        if self._latest is not None and self._pending_writes == 0:
            latest = self._latest
            self._set_lagging(None)
            self._write(list(latest.values()))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(orjson.dumps(message))

    # -- reading -------------------------------------------------------------------------------
    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.send_json({"type": "error", "code": "BINARY_FRAME", "message": "send JSON in text frames"})
            return
        if len(message) > MAX_FRAME_BYTES:
            self.send_json(
                {"type": "error", "code": "FRAME_TOO_LARGE", "message": "frames are limited to 64 KiB"}
            )
            return
        try:
            request = parse_client_frame(message)
        except BadFrame as error:
            self.send_json({"type": "error", "code": error.code, "message": error.message, "ref": error.ref})
            return
        self.handle(request)

    def handle(self, request: ClientFrame) -> None:
        op = request.op
        if op == "ping":
            self.send_json({"type": "pong", "server_time": self._now()})
        elif op == "subscribe":
            self.subscribe(request.session_id)
        elif op == "unsubscribe":
            self.subscriptions.discard(request.session_id)
            self.ctx.hub.leave(self, request.session_id)
            self.send_json({"type": "unsubscribed", "session_id": request.session_id})
        elif op == "watch":
            self.watch(request.topic)
        elif op == "unwatch":
            if self.topics is not None:
                self.topics.discard(request.topic)
            self.ctx.hub.unwatch(self, request.topic)
            self.send_json({"type": "unwatched", "topic": request.topic})
        else:
            self.bid(request)

    def watch(self, topic: str) -> None:
        if self.topics is None:
            self.topics = set()
        if topic not in self.topics and len(self.topics) >= MAX_TOPICS:
            message = f"at most {MAX_TOPICS} topics per socket"
            self.send_json({"type": "error", "code": "TOO_MANY_SUBSCRIPTIONS", "message": message})
            return
        self.topics.add(topic)
        self.ctx.hub.watch(self, topic)
        self.send_json({"type": "watching", "topic": topic})

    def subscribe(self, session_id: int) -> None:
        hub = self.ctx.hub
        frame = hub.snapshot_frame(session_id, self.user_id)
        if frame is None:
            self.send_json({"type": "error", "code": "NOT_FOUND", "message": f"no session {session_id}"})
            return
        if session_id not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            self.send_json(
                {
                    "type": "error",
                    "code": "TOO_MANY_SUBSCRIPTIONS",
                    "message": "at most 50 sessions per socket",
                }
            )
            return
        self.subscriptions.add(session_id)
        hub.join(self, session_id)
        self.send(frame)

    def bid(self, request: ClientFrame) -> None:
        ref, lot_id = request.ref, request.lot_id
        if not self.user_id:
            self._reject(ref, lot_id, "NOT_AUTHENTICATED")
            return
        if not self.ctx.hub.bucket(self.user_id).take():
            self._reject(ref, lot_id, "RATE_LIMITED")
            return
        if request.op == "max_bid":
            command: PlaceBid | SetMaxBid = SetMaxBid(lot_id, self.user_id, request.amount, ref)
        else:
            command = PlaceBid(lot_id, self.user_id, request.amount, ref)

        received = time.perf_counter()

        def reply(outcome: Outcome) -> None:
            metrics = self.ctx.metrics
            if metrics is not None:
                metrics.bid_answered(outcome.code, time.perf_counter() - received)
            decision = outcome.decision
            if outcome.ok and decision is not None:
                leading = decision.leader == self.user_id
                self.send_json(
                    {
                        "type": "accepted",
                        "ref": ref,
                        "lot_id": lot_id,
                        "price": decision.price,
                        "leading": leading,
                        "next_min": decision.next_min,
                        "seq": outcome.seq,
                        # A maximum the bidder leads with is exactly the one just set.
                        "my_max": request.amount if leading and request.op == "max_bid" else None,
                    }
                )
            else:
                next_min = decision.next_min if decision is not None else None
                self._reject(ref, lot_id, outcome.code or "REJECTED", next_min)

        self.ctx.engine.submit(command, reply)

    def _reject(self, ref: str, lot_id: int, code: str, next_min: int | None = None) -> None:
        lot = self.ctx.engine.book.lots.get(lot_id)
        if next_min is None and lot is not None:
            next_min = lot.next_min()
        self.send_json({"type": "rejected", "ref": ref, "lot_id": lot_id, "code": code, "next_min": next_min})
