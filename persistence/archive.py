"""Write-behind from the engine to MongoDB: bid history, the lots/sessions live mirror, the outbox.

The engine calls `BidArchiver.on_batch` after every group commit; it only queues the batch (O(1),
never awaits). A background task drains the queue in chunks of about `batch_events` events (or
whatever has arrived after `interval` seconds) and writes each chunk with a handful of bulk
operations. Every write is idempotent, so a chunk is simply retried after an error and replaying
old batches (after a crash) creates nothing twice:

* `bids`: one document per `BidPlaced`, `_id` `"{seq}:{k}"` (k = its ordinal among that seq's
  `BidPlaced` events), inserted unordered with duplicate keys ignored;
* `lots` / `sessions`: `$set` of the live fields, guarded by `mirror_seq` so an old replay never
  rolls a newer mirror back; `upsert=False` (the admin writes the metadata document first);
* `settlement_outbox`: one `pending` document per `LotClosed`, `_id` = lot id, duplicates ignored;
* `meta` `{_id: "archive", archived_seq}`: raised with `$max` after each chunk.

Chunks are cut only between seqs (one command's events are never split), so `archived_seq` always
means "every event of every seq up to here is written".

While MongoDB is unreachable the queue just grows (`lag`); the chunk in hand is retried with
backoff (50 ms doubling to 2 s). Nothing is dropped and nothing is raised into the engine.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from engine.book.events import (
    BidPlaced,
    Event,
    LotClosed,
    LotExtended,
    LotOverdue,
    LotStateChanged,
    PriceChanged,
    SessionStateChanged,
)
from engine.book.states import LotState
from engine.book.types import NO_USER
from engine.engine import CommittedBatch

__all__ = ["BidArchiver"]

log = logging.getLogger("gavel.archive")

_Collection = AsyncCollection[dict[str, Any]]

_DUPLICATE_KEY = 11000
_BIDDING = int(LotState.BIDDING)
_SOLD = int(LotState.SOLD)
_OVERDUE = int(LotState.OVERDUE)


def _user(user_id: int) -> int | None:
    """The mirror stores "nobody" as null rather than the engine's NO_USER sentinel."""
    return None if user_id == NO_USER else user_id


@dataclass
class _Chunk:
    """One prepared write: built once from a slice of the queue, retried as is until it lands."""

    events: int
    first_seq: int
    last_seq: int
    bids: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    lots: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    sessions: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    step: int = 0  # steps already written (a retry resumes from here)


class BidArchiver:
    """Engine listener that archives committed events to MongoDB behind the engine's back."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        batch_events: int = 5000,
        interval: float = 0.05,
        min_backoff: float = 0.05,
        max_backoff: float = 2.0,
        engine_id: str = "",
    ) -> None:
        """`engine_id` keeps the records of several engines (each with its own seqs) apart."""
        self.db = db
        self.meta_id = f"archive:{engine_id}" if engine_id else "archive"
        self.record_prefix = f"{engine_id}/" if engine_id else ""
        self.batch_events = batch_events
        self.interval = interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._queue: collections.deque[CommittedBatch] = collections.deque()
        self._offset = 0  # events of the queue's first batch already taken
        self._lag = 0  # events handed over and not yet written (queued + in flight)
        self._in_flight: _Chunk | None = None
        self._archived_seq = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
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

    # A timeout argument (not asyncio.timeout) so callers get False instead of an exception.
    async def wait_caught_up(self, seq: int, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until `caught_up(seq)`; False if `timeout` seconds pass first.

        A seq whose command produced no events counts as written once everything before it is,
        so waiting for `engine.last_seq` works.
        """
        if self.caught_up(seq):
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (seq, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def load_archived_seq(self) -> int:
        """Read the stored `archived_seq` (the replay point after a crash) and adopt it if higher."""
        doc = await self.db["meta"].find_one({"_id": self.meta_id})
        stored = int(doc.get("archived_seq", 0)) if doc else 0
        self._archived_seq = max(self._archived_seq, stored)
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
                if self._lag < self.batch_events and not self._stopping:
                    # Let a chunk build up for a moment: few large writes beat many small ones.
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self.interval)
                chunk = self._in_flight = self._take()
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
            self.stats["bids"] += len(chunk.bids)
            self._notify()

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
        if self._queue:
            return self._queue[0].seqs[self._offset]
        return math.inf

    def _notify(self) -> None:
        if not self._waiters:
            return
        first_pending = self._first_pending_seq()
        for seq, future in self._waiters:
            if seq < first_pending and not future.done():
                future.set_result(True)

    # -- building a chunk ---------------------------------------------------------------------------------
    def _take(self) -> _Chunk:
        """Take about `batch_events` events off the queue, cut between seqs, and prepare their writes."""
        limit = self.batch_events
        events: list[Event] = []
        seqs: list[int] = []
        queue = self._queue
        while queue and len(events) < limit:
            batch = queue[0]
            start = self._offset
            size = len(batch.events)
            end = min(size, start + limit - len(events))
            if end < size:
                # Never split one seq's events: extend to the end of the seq at the cut.
                batch_seqs = batch.seqs
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
                seqs.extend(batch.seqs)
            else:
                events.extend(batch.events[start:end])
                seqs.extend(batch.seqs[start:end])
        return self._prepare(events, seqs, self.record_prefix)

    @staticmethod
    def _prepare(events: list[Event], seqs: list[int], record_prefix: str = "") -> _Chunk:
        chunk = _Chunk(len(events), seqs[0], seqs[-1])
        bids, outbox, lots, sessions = chunk.bids, chunk.outbox, chunk.lots, chunk.sessions
        bid_seq, k = -1, 0

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
                if seq != bid_seq:
                    bid_seq, k = seq, 0
                bids.append(
                    {
                        "_id": f"{record_prefix}{seq}:{k}",
                        "lot_id": event.lot_id,
                        "session_id": event.session_id,
                        "bidder": event.bidder,
                        "price": event.price,
                        "auto": bool(event.auto),
                        "at": event.at,
                        "seq": seq,
                    }
                )
                k += 1
            elif isinstance(event, PriceChanged):
                f = lot_fields(event.lot_id, seq)
                f["state"] = _BIDDING
                f["price"] = event.price
                f["leader_id"] = _user(event.leader)
                f["bid_count"] = event.bid_count
                f["ends_at_ms"] = event.ends_at
            elif isinstance(event, LotExtended):
                lot_fields(event.lot_id, seq)["ends_at_ms"] = event.ends_at
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
        return chunk

    # -- writing a chunk ----------------------------------------------------------------------------------
    async def _write(self, chunk: _Chunk) -> None:
        """Write the chunk's steps in order, resuming after the last one that succeeded."""
        db = self.db
        steps = (
            lambda: _insert_ignoring_duplicates(db["bids"], chunk.bids),
            lambda: _insert_ignoring_duplicates(db["settlement_outbox"], chunk.outbox),
            lambda: _mirror(db["lots"], chunk.lots),
            lambda: _mirror(db["sessions"], chunk.sessions),
            lambda: db["meta"].update_one(
                {"_id": self.meta_id}, {"$max": {"archived_seq": chunk.last_seq}}, upsert=True
            ),
        )
        started = time.perf_counter()
        while chunk.step < len(steps):
            await steps[chunk.step]()
            chunk.step += 1
        log.debug(
            "archived %d events (%d bids) up to seq %d in %.1f ms",
            chunk.events,
            len(chunk.bids),
            chunk.last_seq,
            (time.perf_counter() - started) * 1000,
        )


async def _insert_ignoring_duplicates(collection: _Collection, docs: list[dict[str, Any]]) -> None:
    if not docs:
        return
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as error:
        details = error.details
        others = [e for e in details.get("writeErrors", ()) if e.get("code") != _DUPLICATE_KEY]
        if others or details.get("writeConcernErrors"):
            raise
        # Only duplicates: those documents were written by an earlier attempt or a replay.


async def _mirror(collection: _Collection, entries: dict[int, tuple[int, dict[str, Any]]]) -> None:
    if not entries:
        return
    requests = [
        UpdateOne(
            # `$not: {$gt}` also matches documents without a mirror yet.
            {"_id": key, "mirror_seq": {"$not": {"$gt": seq}}},
            {"$set": {**fields, "mirror_seq": seq}},
            upsert=False,
        )
        for key, (seq, fields) in entries.items()
    ]
    await collection.bulk_write(requests, ordered=False)


def _log_crash(task: asyncio.Task[None]) -> None:
    # Write errors are retried inside the loop; anything escaping it is a bug that must be seen.
    if not task.cancelled() and task.exception() is not None:
        log.critical("the archiver crashed; events are queuing unwritten", exc_info=task.exception())
