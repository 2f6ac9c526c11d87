"""Closed lots out of the engine's memory and snapshots, once nothing in the engine needs their past.

A closed lot's bid history (its bid lines, its inputs, its depositors) decides nothing any more:
a bid to it is refused CLOSED by its state, and the settlement reads the archive in MongoDB. Kept,
it made every snapshot, every restart and the process's memory grow with the whole history
(docs/performance.md, "Recovery after SIGKILL"). The `Compactor` asks the engine to drop it with a
journaled `CompactLots` command once

* every event up to the lot's close is in the archive (the archiver's `archived_seq` reached the
  seq that closed it): its bids, the lots mirror and the settlement outbox row are in MongoDB, and
* the settlement has finished with its close (the outbox row is done: the winner's order, the
  won bid's mark, the deposits' refunds are recorded).

What stays in the book is the lot's summary (state, price, leader and winner, bid count, end):
enough for a late `MarkOverdue`, the live pages and a bid's CLOSED answer. The command is
journaled, so a replay (and every replica following the journal) compacts at the same point.
The decision (`lots_to_compact`) is a pure function of those facts; the facts come through ports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from engine.book.book import Book
from engine.book.events import LotClosed
from engine.book.states import CLOSED_LOT_STATES
from engine.book.types import LotId
from engine.commands import CompactLots, Outcome
from engine.engine import CommittedBatch

log = logging.getLogger("gavel.compaction")

COMPACT_BATCH = 1_000  # lots per CompactLots record (and per settlement query)


def lots_to_compact(
    closed_at_seq: Mapping[LotId, int],
    archived_seq: int,
    settled: Iterable[LotId],
    limit: int = COMPACT_BATCH,
) -> list[LotId]:
    """The closed lots that may be compacted now, in the order they closed, at most `limit`.

    `closed_at_seq`: each candidate's closing seq (an upper bound of it is safe); `archived_seq`:
    every event up to it is in the archive; `settled`: lots whose close the settlement finished.
    """
    done = set(settled)
    ready = [(seq, lot_id) for lot_id, seq in closed_at_seq.items() if seq <= archived_seq and lot_id in done]
    ready.sort()
    return [lot_id for _seq, lot_id in ready[:limit]]


def archived_candidates(closed_at_seq: Mapping[LotId, int], archived_seq: int) -> list[LotId]:
    """The candidates whose close is archived: the only ones worth asking the settlement about."""
    return sorted(lot_id for lot_id, seq in closed_at_seq.items() if seq <= archived_seq)


def closed_uncompacted(book: Book) -> list[LotId]:
    """Lots of a (recovered) book that are closed and still hold their history."""
    return [
        lot_id for lot_id, lot in book.lots.items() if lot.state in CLOSED_LOT_STATES and not lot.compacted
    ]


class ArchiveProgress(Protocol):
    """The archiver (inline or its process): every event up to `archived_seq` is in MongoDB."""

    @property
    def archived_seq(self) -> int: ...


class SettledCloses(Protocol):
    """Which of these lots' closes the settlement has finished (the outbox rows that are done)."""

    async def settled(self, lot_ids: list[LotId]) -> set[LotId]: ...


class Compactor:
    """Keeps the candidates (closed lots not compacted, with the seq that closed them) and, every
    `interval` seconds, compacts those `lots_to_compact` allows.

    It listens to the engine's committed batches for closes; lots already closed when it starts
    (a recovered book) are taken as closed at the engine's `last_seq` then, an upper bound.
    """

    def __init__(
        self,
        book: Callable[[], Book],
        last_seq: Callable[[], int],
        execute: Callable[[CompactLots], Awaitable[Outcome]],
        archive: ArchiveProgress,
        settlement: SettledCloses,
        *,
        interval: float = 5.0,
        batch: int = COMPACT_BATCH,
    ) -> None:
        self._book = book
        self._last_seq = last_seq
        self._execute = execute
        self.archive = archive
        self.settlement = settlement
        self.interval = interval
        self.batch = batch
        self.candidates: dict[LotId, int] = {}
        self.compacted = 0

    def adopt_book(self) -> None:
        """Take the book's closed, uncompacted lots as candidates (after recovery)."""
        seq = self._last_seq()
        for lot_id in closed_uncompacted(self._book()):
            self.candidates.setdefault(lot_id, seq)

    def on_batch(self, batch: CommittedBatch) -> None:
        """An engine listener: a closed lot becomes a candidate at the seq that closed it."""
        for event, seq in zip(batch.events, batch.seqs, strict=True):
            if type(event) is LotClosed:
                self.candidates.setdefault(event.lot_id, seq)

    async def run_once(self) -> int:
        """Compact what may be compacted now; returns how many lots were."""
        archived = archived_candidates(self.candidates, self.archive.archived_seq)
        total = 0
        for start in range(0, len(archived), self.batch):
            chunk = archived[start : start + self.batch]
            settled = await self.settlement.settled(chunk)
            ready = lots_to_compact(
                {lot_id: self.candidates[lot_id] for lot_id in chunk},
                self.archive.archived_seq,
                settled,
                self.batch,
            )
            if not ready:
                continue
            outcome = await self._execute(CompactLots(ready))
            book = self._book()
            for lot_id in ready:
                lot = book.lots.get(lot_id)
                if lot is None or lot.compacted:
                    self.candidates.pop(lot_id, None)
                    total += lot is not None
            if not outcome.ok and outcome.code == "UNAVAILABLE":
                break
        self.compacted += total
        return total

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                compacted = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # MongoDB away: the lots wait for the next round, nothing is lost
                log.exception("lot compaction failed; retried at the next round")
                continue
            if compacted:
                log.info("compacted %d closed lot(s)", compacted, extra={"pending": len(self.candidates)})
