"""Write-behind from the engine to MongoDB: bid history, the lots/sessions live mirror, the outbox.

The engine calls `BidArchiver.on_batch` after every group commit; it only queues the batch (O(1),
never awaits). A background task drains the queue in chunks of about `batch_events` events (or
whatever has arrived after `interval` seconds) and writes each chunk with a handful of bulk
operations. Every write is idempotent, so a chunk is simply retried after an error and replaying
old batches (after a crash) creates nothing twice:

* `bid_buckets`: the bids of one lot within one chunk in one document, column-wise (MongoDB's
  bucket pattern): `_id` `"{lot_id}:{first_seq}"`, `lot_id`, `session_id`, `first_seq`,
  `last_seq`, `count` and the arrays `seq`, `bidder`, `price`, `auto`, `at` (bid i is the i-th
  entry of each); settlement adds `status.{i}` (成交 / 逾期, absent = 竞价). Inserted unordered with
  duplicate keys ignored. A bid as its own document with two secondary indexes cost the embedded
  MongoDB ~480 µs of CPU; a bucket costs ~20-40 µs per bid (docs/performance.md, "The write-behind
  off the bids' way");
  `archived_bids` reads them back as rows (and the per-bid `bids` documents older versions wrote);
* `lots` / `sessions`: `$set` of the live fields, guarded by `mirror_seq` so an old replay never
  rolls a newer mirror back; `upsert=False` (the admin writes the metadata document first);
* `settlement_outbox`: one `pending` document per `LotClosed`, `_id` = lot id, duplicates ignored;
* `meta` `{_id: "archive", archived_seq, writing}`: `writing` = `[first_seq, last_seq]` of the
  chunk being written (set before its buckets, when it has bids), then `archived_seq` raised with
  `$max` and `writing` removed after the chunk.

Chunks are cut only between seqs (one command's events are never split), so `archived_seq` always
means "every event of every seq up to here is written". A bucket's `_id` depends on where its chunk
was cut, so a chunk cut off by a crash is cut again at the same seqs after the restart (`writing`),
rewrites the same buckets (duplicates ignored) and nothing is archived twice; bids at or below
`archived_seq` (an old batch handed over again) are never bucketed again.

While MongoDB is unreachable the queue just grows (`lag`); the chunk in hand is retried with
backoff (50 ms doubling to 2 s). Nothing is dropped and nothing is raised into the engine.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from engine.book.events import (
    BidPlaced,
    Event,
    LotClosed,
    LotExtended,
    LotOverdue,
    LotPaused,
    LotStateChanged,
    PriceChanged,
    SessionStateChanged,
)
from engine.book.states import LotState
from engine.book.types import NO_USER
from engine.engine import CommittedBatch

__all__ = [
    "BUCKETS",
    "ArchivedBid",
    "BidArchiver",
    "SeqWaiters",
    "archive_meta_id",
    "archived_bids",
    "bidders_of_lot",
    "read_archive_meta",
    "set_bid_status",
]

log = logging.getLogger("gavel.archive")

_Collection = AsyncCollection[dict[str, Any]]

BUCKETS = "bid_buckets"
LEGACY_BIDS = "bids"  # one document per bid, as versions before the buckets wrote them

_DUPLICATE_KEY = 11000
_BIDDING = int(LotState.BIDDING)
_SOLD = int(LotState.SOLD)
_OVERDUE = int(LotState.OVERDUE)


class SeqWaiters:
    """Callers waiting until the archive holds everything up to a seq."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, asyncio.Future[bool]]] = []

    # A timeout argument (not asyncio.timeout) so callers get False instead of an exception.
    async def wait(self, seq: int, timeout: float | None) -> bool:  # noqa: ASYNC109
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (seq, future)
        self._waiting.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(entry)

    def release_below(self, limit: float) -> None:
        """Wake every caller waiting for a seq below `limit`."""
        for seq, future in self._waiting:
            if seq < limit and not future.done():
                future.set_result(True)

    def __bool__(self) -> bool:
        return bool(self._waiting)


async def read_archive_meta(db: AsyncDatabase[dict[str, Any]], meta_id: str) -> tuple[int, list[int] | None]:
    """The stored `archived_seq` and the `[first, last]` seqs of a chunk being written, if any."""
    doc = await db["meta"].find_one({"_id": meta_id})
    if not doc:
        return 0, None
    writing = doc.get("writing")
    return int(doc.get("archived_seq", 0)), [int(seq) for seq in writing] if writing else None


def archive_meta_id(engine_id: str) -> str:
    """The `meta` document holding an engine's `archived_seq` ("" is the single-process engine)."""
    return f"archive:{engine_id}" if engine_id else "archive"


def _user(user_id: int) -> int | None:
    """The mirror stores "nobody" as null rather than the engine's NO_USER sentinel."""
    return None if user_id == NO_USER else user_id


@dataclass
class _Chunk:
    """One prepared write: built once from a slice of the queue, retried as is until it lands."""

    events: int
    first_seq: int
    last_seq: int
    bids: list[dict[str, Any]] = field(default_factory=list)  # buckets, one per lot with bids
    bid_count: int = 0
    outbox: list[dict[str, Any]] = field(default_factory=list)
    lots: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    sessions: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    step: int = 0  # steps already written (a retry resumes from here)


# The writer shares the loop with every websocket: it works in small pieces (about a millisecond
# each) and pauses between them (`BidArchiver.pause`), so a bid's few loop turns rarely meet one.
_SLICE = 500  # events prepared between two yields to the loop
_DOCS_PER_WRITE = 25  # buckets, or mirror updates, encoded and sent in one request


async def _pieces(count: int, size: int, pause: float) -> AsyncIterator[int]:
    """The start of each `size`-long piece of `count` items, pausing `pause` s between pieces."""
    for start in range(0, count, size):
        if start:
            await asyncio.sleep(pause)
        yield start


class _ChunkBuilder:
    """Turns a chunk's events into its writes, a slice at a time."""

    def __init__(
        self, events: int, first_seq: int, last_seq: int, record_prefix: str, archived_seq: int
    ) -> None:
        self.chunk = _Chunk(events, first_seq, last_seq)
        self.record_prefix = record_prefix
        self.archived_seq = archived_seq
        self.buckets: dict[int, dict[str, Any]] = {}

    def add(self, events: list[Event], seqs: list[int]) -> None:
        chunk, buckets, record_prefix, archived_seq = (
            self.chunk,
            self.buckets,
            self.record_prefix,
            self.archived_seq,
        )
        outbox, lots, sessions = chunk.outbox, chunk.lots, chunk.sessions

        def lot_fields(lot_id: int, seq: int) -> dict[str, Any]:
            # Later events of the chunk override earlier ones: the result is the state after the chunk.
            entry = lots.get(lot_id)
            if entry is None:
                fields: dict[str, Any] = {}
                lots[lot_id] = (seq, fields)
                return fields
            lots[lot_id] = (seq, entry[1])
            return entry[1]

        for event, seq in zip(events, seqs, strict=True):
            if isinstance(event, BidPlaced):
                if seq <= archived_seq:
                    continue  # handed over again (a replay): its bucket is written already
                bucket = buckets.get(event.lot_id)
                if bucket is None:
                    bucket = buckets[event.lot_id] = {
                        "_id": f"{record_prefix}{event.lot_id}:{seq}",
                        "lot_id": event.lot_id,
                        "session_id": event.session_id,
                        "first_seq": seq,
                        "seq": [],
                        "bidder": [],
                        "price": [],
                        "auto": [],
                        "at": [],
                    }
                bucket["seq"].append(seq)
                bucket["bidder"].append(event.bidder)
                bucket["price"].append(event.price)
                bucket["auto"].append(bool(event.auto))
                bucket["at"].append(event.at)
            elif isinstance(event, PriceChanged):
                f = lot_fields(event.lot_id, seq)
                f["state"] = _BIDDING
                f["price"] = event.price
                f["leader_id"] = _user(event.leader)
                f["bid_count"] = event.bid_count
                f["ends_at_ms"] = event.ends_at
            elif isinstance(event, LotExtended):
                lot_fields(event.lot_id, seq)["ends_at_ms"] = event.ends_at
            elif isinstance(event, LotPaused):
                # A resume moves the end later by the time paused (docs/engine.md "Admin controls").
                f = lot_fields(event.lot_id, seq)
                f["ends_at_ms"] = event.ends_at
                f["paused"] = event.paused
            elif isinstance(event, LotStateChanged):
                f = lot_fields(event.lot_id, seq)
                f["state"] = int(event.state)
                f["ends_at_ms"] = event.ends_at
            elif isinstance(event, LotClosed):
                result = int(event.result)
                winner = _user(event.winner)
                f = lot_fields(event.lot_id, seq)
                f["state"] = result
                f["result"] = result
                f["price"] = event.price
                f["bid_count"] = event.bid_count
                f["winner_id"] = winner
                f["deal_price"] = event.price if result == _SOLD else None
                f["closed_at_ms"] = event.at
                f["close_reason"] = event.reason
                outbox.append(
                    {
                        "_id": event.lot_id,
                        "session_id": event.session_id,
                        "result": result,
                        "winner_id": winner,
                        "price": event.price,
                        "bid_count": event.bid_count,
                        "closed_at_ms": event.at,
                        "seq": seq,
                        "status": "pending",
                    }
                )
            elif isinstance(event, LotOverdue):
                lot_fields(event.lot_id, seq)["state"] = _OVERDUE
            elif isinstance(event, SessionStateChanged):
                sessions[event.session_id] = (seq, {"state": int(event.state)})

    def finish(self) -> _Chunk:
        chunk = self.chunk
        for bucket in self.buckets.values():
            bucket["last_seq"] = bucket["seq"][-1]
            bucket["count"] = len(bucket["seq"])
            chunk.bid_count += bucket["count"]
        chunk.bids = list(self.buckets.values())
        return chunk


class BidArchiver:
    """Engine listener that archives committed events to MongoDB behind the engine's back."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        # A chunk every 2 s (or at 60,000 waiting events): a `lots` mirror update costs the embedded
        # MongoDB far more than a bucket insert, and there is one per lot per chunk. At 1 s / 20,000,
        # chunks were cut every ~1 s at full rate and MongoDB used 0.4-0.5 core against 0.18 here
        # (docs/performance.md, "The read path off Tornado's IOStream").
        batch_events: int = 60_000,
        interval: float = 2.0,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
        pause: float = 0.005,
        engine_id: str = "",
    ) -> None:
        """`engine_id` keeps the records of several engines (each with its own seqs) apart.

        `pause`: seconds between two pieces of a chunk's work (a slice of events, a request). With a
        bare yield, the next piece ran one loop turn later, and a bid needs several turns (frame
        in, engine turn, journal commit, answer out), so it waited behind a piece at every turn;
        with 5 ms pauses the ack p99 at 3,700 bids/s fell from a median of 24 to 13 ms over five
        rounds (docs/performance.md). No pauses while catching up (more than `batch_events`
        waiting), where finishing sooner matters more.
        """
        self.db = db
        self.meta_id = archive_meta_id(engine_id)
        self.record_prefix = f"{engine_id}/" if engine_id else ""
        self.batch_events = batch_events
        self.interval = interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.pause = pause
        self._queue: collections.deque[CommittedBatch] = collections.deque()
        self._offset = 0  # events of the queue's first batch already taken
        self._lag = 0  # events handed over and not yet written (queued + in flight)
        self._in_flight: _Chunk | None = None
        self._preparing: int | None = None  # first seq of the events being turned into a chunk
        self._archived_seq = 0
        self._resume_through: int | None = None  # a chunk cut off by a crash ends at this seq
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._hurry = False  # write what is queued without waiting for `interval` (see `hurry`)
        self._waiters = SeqWaiters()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False  # inside an outage (logged once when it starts and once when it ends)
        self.stats = {"chunks": 0, "events": 0, "bids": 0, "retries": 0}

    # -- the engine side (hot path) ---------------------------------------------------------------
    def on_batch(self, batch: CommittedBatch) -> None:
        """Queue a committed batch. O(1), never awaits, never raises."""
        if not batch.events:
            return
        self._queue.append(batch)
        self._lag += len(batch.events)
        if not self._wake.is_set():
            self._wake.set()
        if self._lag >= self.batch_events and not self._full.is_set():
            self._full.set()

    def hurry(self) -> None:
        """Write what is queued now rather than after `interval`: a lot closed, and settlement
        (its order, the winner's `result` frame) waits for its outbox item. Closes are rare."""
        self._hurry = True
        if not self._full.is_set():
            self._full.set()

    # -- observing ----------------------------------------------------------------------------------
    @property
    def archived_seq(self) -> int:
        """The highest seq whose events are all written (monotonic; see `load_archived_seq`)."""
        return self._archived_seq

    @property
    def lag(self) -> int:
        """Events handed to `on_batch` and not yet written to MongoDB."""
        return self._lag

    def caught_up(self, seq: int) -> bool:
        """True once every event handed over so far with a seq <= `seq` is written."""
        return self._first_pending_seq() > seq

    def written_through(self, last_seq: int) -> int:
        """The highest seq up to which everything is written, `last_seq` being the last handed over.

        Seqs without events count as written once everything before them is.
        """
        pending = self._first_pending_seq()
        return last_seq if pending == math.inf else min(last_seq, int(pending) - 1)

    # A timeout argument (not asyncio.timeout) so callers get False instead of an exception.
    async def wait_caught_up(self, seq: int, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until `caught_up(seq)`; False if `timeout` seconds pass first.

        A seq whose command produced no events counts as written once everything before it is,
        so waiting for `engine.last_seq` works.
        """
        if self.caught_up(seq):
            return True
        return await self._waiters.wait(seq, timeout)

    async def load_archived_seq(self) -> int:
        """Read the stored `archived_seq` (the replay point after a crash) and adopt it if higher."""
        stored, writing = await read_archive_meta(self.db, self.meta_id)
        self._archived_seq = max(self._archived_seq, stored)
        if writing and writing[1] > self._archived_seq:
            # A chunk was being written when the process stopped: cut the replay there again.
            self._resume_through = writing[1]
        return stored

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background writer (needs a running loop)."""
        if self._task is not None:
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gavel-archiver")
        self._task.add_done_callback(_log_crash)

    async def stop(self, flush: bool = True, flush_timeout: float | None = None) -> None:
        """Stop the writer; with `flush`, first write everything queued (up to `flush_timeout` s)."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        self._full.set()
        if flush:
            done, _ = await asyncio.wait({task}, timeout=flush_timeout)
            if not done:
                log.error("archive flush timed out with %d events unwritten", self._lag)
        if not task.done():
            task.cancel()
        await asyncio.wait({task})  # not `await task`: a crash was logged already, don't re-raise it
        self._task = None
        if self._lag:
            log.warning("archiver stopped with %d events unwritten (still in the journal)", self._lag)

    # -- the writer -----------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self.min_backoff
        while True:
            # A chunk cut off by stop(flush=False) is written first when started again.
            chunk = self._in_flight
            if chunk is None:
                if not self._queue:
                    if self._stopping:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if self._lag < self.batch_events and not self._stopping and not self._hurry:
                    # Let a chunk build up for a moment: few large writes beat many small ones.
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self.interval)
                self._hurry = False
                chunk = self._in_flight = await self._take_yielding()
            while True:
                try:
                    await self._write(chunk)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self.stats["retries"] += 1
                    self._report_failure(error)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                break
            backoff = self.min_backoff
            if self._failing:
                self._failing = False
                log.info("archive writes resumed; %d events still queued", self._lag - chunk.events)
            self._in_flight = None
            self._lag -= chunk.events
            self._archived_seq = max(self._archived_seq, chunk.last_seq)
            self.stats["chunks"] += 1
            self.stats["events"] += chunk.events
            self.stats["bids"] += chunk.bid_count
            self._notify()

    def _pause_between_pieces(self) -> float:
        """`pause`, or 0 (a bare yield) while catching up on a backlog."""
        return 0.0 if self._lag > self.batch_events else self.pause

    def _report_failure(self, error: Exception) -> None:
        if isinstance(error, ConnectionFailure) or (
            isinstance(error, PyMongoError) and error.has_error_label("RetryableWriteError")
        ):
            # Server down or failing over: expected now and then, one line per outage.
            if not self._failing:
                self._failing = True
                log.warning("MongoDB unreachable, archive writes queued (%d events): %s", self._lag, error)
            return
        # Anything else is a bug or a misconfiguration: loud every time, but still never dropped.
        self._failing = True
        log.error("archive write failed, retrying (%d events queued)", self._lag, exc_info=error)

    def _first_pending_seq(self) -> float:
        if self._in_flight is not None:
            return self._in_flight.first_seq
        if self._preparing is not None:
            return self._preparing
        if self._queue:
            return self._queue[0].seqs[self._offset]
        return math.inf

    def _notify(self) -> None:
        if self._waiters:
            self._waiters.release_below(self._first_pending_seq())

    # -- building a chunk ---------------------------------------------------------------------------------
    def _take(self) -> _Chunk:
        """Take about `batch_events` events off the queue, cut between seqs, and prepare their writes."""
        events, seqs = self._cut()
        builder = self._builder(events, seqs)
        builder.add(events, seqs)
        return builder.finish()

    async def _take_yielding(self) -> _Chunk:
        """`_take`, giving the loop back every `_SLICE` events: bids are answered meanwhile."""
        pause = self._pause_between_pieces()
        events, seqs = self._cut()
        self._preparing = seqs[0]
        builder = self._builder(events, seqs)
        start = 0
        try:
            async for start in _pieces(len(events), _SLICE, pause):
                builder.add(events[start : start + _SLICE], seqs[start : start + _SLICE])
        except asyncio.CancelledError:
            # Stopped mid-way: finish the chunk anyway so the events taken off the queue are kept.
            builder.add(events[start + _SLICE :], seqs[start + _SLICE :])
            self._in_flight = builder.finish()
            raise
        finally:
            self._preparing = None
        return builder.finish()

    def _builder(self, events: list[Event], seqs: list[int]) -> _ChunkBuilder:
        return _ChunkBuilder(len(events), seqs[0], seqs[-1], self.record_prefix, self._archived_seq)

    def _cut(self) -> tuple[list[Event], list[int]]:
        """Take about `batch_events` events off the queue, cut between seqs.

        The first chunk after a restart ends exactly where the chunk cut off by the crash ended.
        """
        limit = self.batch_events
        through, self._resume_through = self._resume_through, None
        events: list[Event] = []
        seqs: list[int] = []
        queue = self._queue
        while queue and (through is not None or len(events) < limit):
            batch = queue[0]
            start = self._offset
            size = len(batch.events)
            batch_seqs = batch.seqs
            if through is not None:
                if batch_seqs[start] > through:
                    break
                end = bisect.bisect_right(batch_seqs, through, start, size)
            else:
                end = min(size, start + limit - len(events))
                if end < size:
                    # Never split one seq's events: extend to the end of the seq at the cut.
                    cut = batch_seqs[end - 1]
                    while end < size and batch_seqs[end] == cut:
                        end += 1
            if end >= size:
                queue.popleft()
                self._offset = 0
            else:
                self._offset = end
            if start == 0 and end == size:
                events.extend(batch.events)
                seqs.extend(batch_seqs)
            else:
                events.extend(batch.events[start:end])
                seqs.extend(batch_seqs[start:end])
        if not events and through is not None:
            return self._cut()  # the cut-off chunk's seqs are not in the replay: cut as usual
        return events, seqs

    # -- writing a chunk ----------------------------------------------------------------------------------
    async def _write(self, chunk: _Chunk) -> None:
        """Write the chunk's steps in order, resuming after the last one that succeeded."""
        db = self.db
        meta_id = self.meta_id
        pause = self._pause_between_pieces()
        steps = (
            lambda: _announce(db["meta"], meta_id, chunk),
            lambda: _insert_ignoring_duplicates(db[BUCKETS], chunk.bids, pause),
            lambda: _insert_ignoring_duplicates(db["settlement_outbox"], chunk.outbox, pause),
            lambda: _mirror(db["lots"], chunk.lots, pause),
            lambda: _mirror(db["sessions"], chunk.sessions, pause),
            lambda: db["meta"].update_one(
                {"_id": meta_id},
                {"$max": {"archived_seq": chunk.last_seq}, "$unset": {"writing": ""}},
                upsert=True,
            ),
        )
        started = time.perf_counter()
        while chunk.step < len(steps):
            await steps[chunk.step]()
            chunk.step += 1
        log.debug(
            "archived %d events (%d bids) up to seq %d in %.1f ms",
            chunk.events,
            chunk.bid_count,
            chunk.last_seq,
            (time.perf_counter() - started) * 1000,
        )


async def _announce(meta: _Collection, meta_id: str, chunk: _Chunk) -> None:
    """Record where the chunk is cut before its buckets exist (see the module's docstring)."""
    if chunk.bids:
        await meta.update_one(
            {"_id": meta_id}, {"$set": {"writing": [chunk.first_seq, chunk.last_seq]}}, upsert=True
        )


async def _insert_ignoring_duplicates(
    collection: _Collection, docs: list[dict[str, Any]], pause: float = 0.0
) -> None:
    async for start in _pieces(len(docs), _DOCS_PER_WRITE, pause):
        try:
            await collection.insert_many(docs[start : start + _DOCS_PER_WRITE], ordered=False)
        except BulkWriteError as error:
            details = error.details
            others = [e for e in details.get("writeErrors", ()) if e.get("code") != _DUPLICATE_KEY]
            if others or details.get("writeConcernErrors"):
                raise
            # Only duplicates: those documents were written by an earlier attempt or a replay.


async def _mirror(
    collection: _Collection, entries: dict[int, tuple[int, dict[str, Any]]], pause: float = 0.0
) -> None:
    items = list(entries.items())
    async for start in _pieces(len(items), _DOCS_PER_WRITE, pause):
        requests = [
            UpdateOne(
                # `$not: {$gt}` also matches documents without a mirror yet.
                {"_id": key, "mirror_seq": {"$not": {"$gt": seq}}},
                {"$set": {**fields, "mirror_seq": seq}},
                upsert=False,
            )
            for key, (seq, fields) in items[start : start + _DOCS_PER_WRITE]
        ]
        await collection.bulk_write(requests, ordered=False)


# -- reading the archive back ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchivedBid:
    """One archived bid; `where` locates it for `set_bid_status` (bucket id and index, or legacy id)."""

    lot_id: int
    session_id: int
    seq: int
    bidder: int
    price: int
    auto: bool
    at: int
    status: int
    where: tuple[str, int | None]


_BIDDING_STATUS = 1  # engine.settle.rules.BidStatus.BIDDING: no status recorded yet


async def archived_bids(
    db: AsyncDatabase[dict[str, Any]], lot_id: int, *, session: AsyncClientSession | None = None
) -> list[ArchivedBid]:
    """Every archived bid of a lot, oldest first (buckets, then any legacy per-bid documents)."""
    rows: list[ArchivedBid] = []
    async for doc in db[BUCKETS].find({"lot_id": lot_id}, sort=[("first_seq", ASCENDING)], session=session):
        marks = doc.get("status") or {}
        for i, (seq, bidder, price, auto, at) in enumerate(
            zip(doc["seq"], doc["bidder"], doc["price"], doc["auto"], doc["at"], strict=True)
        ):
            status = int(marks.get(str(i), _BIDDING_STATUS))
            rows.append(
                ArchivedBid(lot_id, doc["session_id"], seq, bidder, price, auto, at, status, (doc["_id"], i))
            )
    async for doc in db[LEGACY_BIDS].find({"lot_id": lot_id}, session=session):
        rows.append(
            ArchivedBid(
                lot_id,
                doc["session_id"],
                doc["seq"],
                doc["bidder"],
                doc["price"],
                doc["auto"],
                doc["at"],
                int(doc.get("status", _BIDDING_STATUS)),
                (doc["_id"], None),
            )
        )
    rows.sort(key=lambda row: row.seq)  # stable: a seq's bids keep their order
    return rows


async def bidders_of_lot(db: AsyncDatabase[dict[str, Any]], lot_id: int) -> set[int]:
    """Everyone with an archived bid on the lot (proxy bids count for their owner): what a
    compacted lot's bid lines told (engine/compaction.py)."""
    bidders: set[int] = set()
    async for doc in db[BUCKETS].find({"lot_id": lot_id}, {"bidder": 1}):
        bidders.update(abs(int(bidder)) for bidder in doc["bidder"])
    async for doc in db[LEGACY_BIDS].find({"lot_id": lot_id}, {"bidder": 1}):
        bidders.add(abs(int(doc["bidder"])))
    return bidders


async def set_bid_status(
    db: AsyncDatabase[dict[str, Any]],
    bid: ArchivedBid,
    status: int,
    *,
    session: AsyncClientSession | None = None,
) -> None:
    """Record a bid's settlement status (成交 / 逾期) where it is archived."""
    doc_id, index = bid.where
    if index is None:
        await db[LEGACY_BIDS].update_one({"_id": doc_id}, {"$set": {"status": status}}, session=session)
    else:
        await db[BUCKETS].update_one({"_id": doc_id}, {"$set": {f"status.{index}": status}}, session=session)


def _log_crash(task: asyncio.Task[None]) -> None:
    # Write errors are retried inside the loop; anything escaping it is a bug that must be seen.
    if not task.cancelled() and task.exception() is not None:
        log.critical("the archiver crashed; events are queuing unwritten", exc_info=task.exception())
