"""The single writer: one coroutine applies every command to the book, in order.

Per loop turn it takes everything queued, fires due timers, applies the commands, appends their
records to the journal, fsyncs once (group commit) and only then releases the answers and the
events. Nothing downstream (fan-out, write-behind, settlement) can make it wait: listeners are
plain callbacks that queue work of their own.
"""

import asyncio
import collections
import contextlib
import functools
import gc
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, NamedTuple

import msgpack

import engine.journal as journal
from engine.book.book import Book
from engine.book.errors import GavelError, RejectCode
from engine.book.events import Event
from engine.book.increments import rule_from_spec
from engine.book.lot import Decision
from engine.clock import Clock
from engine.commands import (
    BY_TAG,
    TAGS,
    BlockBidder,
    CancelLot,
    CloseLot,
    Command,
    CompactLots,
    ExtendLot,
    MarkOverdue,
    OpenLot,
    Outcome,
    PauseLot,
    PauseSession,
    PlaceBid,
    PutLot,
    PutSession,
    RegisterDeposit,
    ResumeLot,
    ResumeSession,
    SetMaxBid,
    Tick,
    UnblockBidder,
    VoidBid,
)
from engine.ports import SnapshotSink

log = logging.getLogger("gavel.engine")

Reply = Callable[[Outcome], None]


def _resolve(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


class Wakeup:
    """What wakes the writer loop: `asyncio.Event` without the task `asyncio.wait_for` creates.

    The loop sleeps once per turn, and at a few bids per turn the task, its timeout handle and
    their callbacks were a visible share of each bid's cost; a bare future and one timer are not.
    """

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    # A timeout argument (not asyncio.timeout): a timer handle is all it costs, no exception.
    async def wait(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Until `set()` is called or `timeout` seconds pass (no exception either way)."""
        if self._flag:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = None if timeout is None else loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


class CommittedBatch(NamedTuple):
    """What one group commit made durable: events, each with the journal seq that caused it."""

    events: list[Event]
    seqs: list[int]


Listener = Callable[[CommittedBatch], None]

# Module constants used per command are Final: compiled (mypyc) they live in C statics rather
# than being looked up in the module's dict at every use; interpreted, Final costs nothing.
_OK: Final = Outcome(True, None, "", 0, None)
_pack: Final = msgpack.Packer().pack  # one reusable packer instead of a new one per record
_unpackb: Final = msgpack.unpackb
# Replay decodes a record's arrays as tuples (cheaper to make and free than lists); the few records
# whose nested arrays must stay lists (a lot's rule spec) are decoded again with lists.
_unpack_tuples: Final = functools.partial(msgpack.unpackb, use_list=False)
_new: Final = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (the bid path's cost)
_OUTCOME: Final = Outcome
_PLACE_BID_TYPE: Final = PlaceBid
_SET_MAX_TYPE: Final = SetMaxBid
_TAGS: Final = TAGS
_PLACE_BID: Final = TAGS[PlaceBid]
_SET_MAX: Final = TAGS[SetMaxBid]


# How long and how many refs each bidder's cache keeps (docs/protocol.md, "How long refs are
# remembered"). Accepted refs: always the newest REFS_KEPT; beyond those, every one placed within
# REFS_WINDOW_MS of the bidder's newest, up to REFS_MAX_PER_USER, so a client that reconnects
# minutes later gets its answer even if the same user bid at the rate limit meanwhile (20/s and
# bursts of 40: 12,040 in 10 minutes per gateway would exceed the cap; 8,192 is 6.8 minutes of
# that), while a bidder's steady state costs only REFS_KEPT entries. Rejected refs: the newest
# 256, in memory only, since anyone can make them and a forgotten one costs nothing.
REFS_KEPT: Final = 256
REFS_WINDOW_MS: Final = 10 * 60_000
REFS_MAX_PER_USER: Final = 8192
REJECTED_REFS_PER_USER: Final = 256

# What identifies a bid besides its bidder, its ref and its lot (the answer's decision names the
# lot): the amount and the kind, packed in one int (amount * 2, + 1 for a maximum) because an int
# is the cheapest thing to keep per remembered ref. UNKNOWN_BID: loaded from a snapshot written
# before bids were remembered.
UNKNOWN_BID: Final = -1
# A remembered reference: the fingerprint of the bid it was first given to, that bid's answer, and
# its stamp (RefCache.clock once its record was journaled; 0 for a rejection or an old snapshot).
Remembered = tuple[int, Outcome, int]

# Answers a bid whose ref this bidder already gave a different bid. A constant: nothing is built,
# nothing journaled, nothing remembered (the original answer stays the ref's answer).
_REF_REUSED: Final = Outcome(
    False, "REF_REUSED", "this ref was already used for a different bid: use a new ref", 0, None
)


def fingerprint(amount: int, is_max: bool) -> int:
    return amount * 2 + 1 if is_max else amount * 2


def same_bid(known: Remembered, lot_id: int, bid_fingerprint: int) -> bool:
    """Is the bid (same bidder, same ref) the one `known` was remembered for, i.e. a retry?

    The lot, the amount and the kind must match. An entry from an old snapshot knows only its lot:
    a bid on another lot is certainly different; on the same lot it is taken for a retry, since
    refusing a real retry could lead the client to bid again under a new ref, and twice.
    """
    decision = known[1].decision
    if decision is not None and decision.lot_id != lot_id:
        return False
    return known[0] == bid_fingerprint or known[0] == UNKNOWN_BID


class RefCache:
    """Each bidder's remembered client references: accepted and rejected ones kept apart.

    Accepted: the newest `per_user` always, and beyond them those stamped within `window_ms` of
    the bidder's newest, up to `max_per_user`. Stamps are `clock`, the highest journaled command
    time so far, so they never decrease even if the wall clock steps back: the ones outside the
    window then always form the oldest part, and whatever order the entries are trimmed in (one
    put at a time live, all at once in replay) the same newest ones are kept.

    Rejections (in memory only: they changed nothing and are not journaled) keep the newest
    `rejected_per_user`, and never push an accepted reference out: the accepted side is exactly
    what a replay rebuilds.

    A bidder's references loaded from a snapshot stay packed (`packed`: the msgpack bytes the
    snapshot stored for that bidder) until the bidder's first bid or the journal's replay needs
    them: a restart then decodes one bytes object per bidder instead of hundreds of thousands of
    answers before it can serve, and a snapshot writes an idle bidder's bytes back as they were.
    """

    __slots__ = (
        "answers",
        "clock",
        "max_per_user",
        "packed",
        "pending",
        "per_user",
        "rejected_per_user",
        "rejections",
        "window_ms",
    )

    def __init__(
        self,
        per_user: int = REFS_KEPT,
        rejected_per_user: int = REJECTED_REFS_PER_USER,
        window_ms: int = REFS_WINDOW_MS,
        max_per_user: int = REFS_MAX_PER_USER,
    ) -> None:
        self.per_user = per_user
        self.rejected_per_user = rejected_per_user
        self.window_ms = window_ms
        self.max_per_user = max(max_per_user, per_user)
        self.clock = 0
        self.answers: dict[int, collections.OrderedDict[str, Remembered]] = {}
        self.rejections: dict[int, collections.OrderedDict[str, Remembered]] = {}
        self.packed: dict[int, bytes] = {}
        # A packed bidder's references replayed from the journal after the snapshot: put after the
        # packed ones when the bidder is unpacked (a replay must not unpack every active bidder).
        self.pending: dict[int, list[tuple[str, Remembered]]] = {}

    def emptied(self) -> "RefCache":
        """An empty cache with the same limits."""
        return RefCache(self.per_user, self.rejected_per_user, self.window_ms, self.max_per_user)

    def get(self, user_id: int, ref: str) -> Remembered | None:
        if self.packed and user_id in self.packed:
            self.unpack(user_id)
        answers = self.answers.get(user_id)
        if answers is not None:
            known = answers.get(ref)
            if known is not None:
                return known
        rejections = self.rejections.get(user_id)
        return rejections.get(ref) if rejections is not None else None

    def put(self, user_id: int, ref: str, bid_fingerprint: int, outcome: Outcome, stamp: int = 0) -> None:
        if self.packed and user_id in self.packed:
            self.unpack(user_id)
        if not outcome.ok:
            rejections = self.rejections.get(user_id)
            if rejections is None:
                rejections = self.rejections[user_id] = collections.OrderedDict()
            rejections[ref] = (bid_fingerprint, outcome, 0)
            if len(rejections) > self.rejected_per_user:
                rejections.popitem(last=False)
            return
        answers = self.answers.get(user_id)
        if answers is None:
            answers = self.answers[user_id] = collections.OrderedDict()
        answers[ref] = (bid_fingerprint, outcome, stamp)
        size = len(answers)
        if size > self.per_user:
            horizon = stamp - self.window_ms
            while size > self.per_user:
                oldest = next(iter(answers.values()))
                if size <= self.max_per_user and oldest[2] >= horizon:
                    break
                answers.popitem(last=False)
                size -= 1

    def kept(self, stamps: list[int]) -> int:
        """How many of a bidder's newest refs (stamps oldest first, nondecreasing) are kept."""
        count = len(stamps)
        if count <= self.per_user:
            return count
        horizon = stamps[-1] - self.window_ms
        young, limit = 0, min(count, self.max_per_user)
        while young < limit and stamps[count - 1 - young] >= horizon:
            young += 1
        return max(self.per_user, young)

    def to_state(self) -> list[list[Any]]:
        """The accepted references (what the journal rebuilds), by bidder:
        `[user_id, [[ref, answer, fingerprint, stamp], ...]]`."""
        self.unpack_pending()
        rows = [[user_id, _entry_rows(answers)] for user_id, answers in self.answers.items() if answers]
        rows += [[user_id, _unpackb(blob)] for user_id, blob in self.packed.items()]
        rows.sort(key=_first)
        return rows

    def to_packed_state(self) -> list[list[Any]]:
        """What snapshots keep: `[user_id, msgpack of that bidder's to_state entries]` per bidder,
        a packed bidder's bytes as they are."""
        self.unpack_pending()
        rows: list[list[Any]] = [
            [user_id, _pack(_entry_rows(answers))] for user_id, answers in self.answers.items() if answers
        ]
        rows += [[user_id, blob] for user_id, blob in self.packed.items()]
        return rows

    def load_packed(self, rows: Iterable[list[Any]]) -> None:
        """Add `to_packed_state` rows; they are decoded bidder by bidder when needed (`unpack`)."""
        for user_id, blob in rows:
            self.packed[user_id] = blob
            if user_id in self.answers:
                self.unpack(user_id)

    def unpack(self, user_id: int) -> None:
        """Decode a bidder's packed references into the cache, then put its pending ones."""
        self.load([[user_id, _unpackb(self.packed.pop(user_id))]])
        waiting = self.pending.pop(user_id, None)
        if waiting:
            for ref, (bid_fingerprint, outcome, stamp) in waiting:
                self.put(user_id, ref, bid_fingerprint, outcome, stamp)

    def unpack_pending(self) -> None:
        """Unpack every bidder with pending references (before the cache is written out)."""
        for user_id in list(self.pending):
            self.unpack(user_id)

    def defer(self, user_id: int, entries: list[tuple[str, Remembered]], limit: int) -> None:
        """Keep a packed bidder's newer references (oldest first) to put when it is unpacked; past
        `limit` of them it is unpacked now, so a replica that never serves the bidder stays bounded."""
        waiting = self.pending.get(user_id)
        if waiting is None:
            waiting = self.pending[user_id] = []
        waiting.extend(entries)
        if len(waiting) > limit:
            self.unpack(user_id)

    def load(self, rows: Iterable[list[Any]]) -> None:
        """Add a snapshot's accepted references (`to_state` rows), trimmed as puts would trim them.

        Each bidder's entries are one dict built at once and trimmed once (`kept`), not a put
        each: a restart loads up to 256 per bidder, hundreds of thousands in all.
        """
        answers = self.answers
        for user_id, entries in rows:
            # Snapshots written before bids were remembered hold `[ref, answer]` only: the bid is
            # unknown and the stamp the oldest possible.
            loaded = collections.OrderedDict(
                (
                    entry[0],
                    (
                        entry[2] if len(entry) > 2 else UNKNOWN_BID,
                        _outcome_from_row(entry[1]),
                        entry[3] if len(entry) > 3 else 0,
                    ),
                )
                for entry in entries
            )
            known = answers.get(user_id)
            if known:
                for ref, (bid_fingerprint, outcome, stamp) in loaded.items():
                    self.put(user_id, ref, bid_fingerprint, outcome, stamp)
                continue
            for _ in range(len(loaded) - self.kept([entry[2] for entry in loaded.values()])):
                loaded.popitem(last=False)
            if loaded:
                answers[user_id] = loaded


def _first(row: list[Any]) -> Any:
    return row[0]


def _entry_rows(answers: "collections.OrderedDict[str, Remembered]") -> list[list[Any]]:
    return [[ref, _outcome_row(o), fp, at] for ref, (fp, o, at) in answers.items()]


def _outcome_row(outcome: Outcome) -> list[Any]:
    d = outcome.decision
    return [
        outcome.ok,
        outcome.code,
        outcome.seq,
        None if d is None else [d.accepted, d.code, d.lot_id, d.price, d.next_min, d.leader],
    ]


def _outcome_from_row(row: list[Any]) -> Outcome:
    ok, code, seq, d = row
    decision = None
    if d is not None:
        decision = Decision(d[0], None if d[1] is None else RejectCode(d[1]), d[2], d[3], d[4], d[5])
    return Outcome(ok, code, "", seq, decision)


class _Commit(NamedTuple):
    """A group of commands whose records are being written and fsynced."""

    future: "asyncio.Future[float]"  # the seconds the write + fsync took
    records: int
    data: bytes
    last_seq: int
    replies: list[tuple[Reply, Outcome]]
    batch: CommittedBatch


def _timed_write(writer: journal.JournalWriter, data: bytes) -> float:
    """Runs in the journal's thread: write + fsync, and how long they took."""
    started = time.perf_counter()
    writer.write_and_sync(data)
    return time.perf_counter() - started


class Engine:
    def __init__(
        self,
        clock: Clock,
        journal_dir: pathlib.Path,
        snapshot_sink: SnapshotSink | None = None,
        *,
        sync: bool = True,
        refs_per_user: int = REFS_KEPT,
        rejected_refs_per_user: int = REJECTED_REFS_PER_USER,
        refs_window_ms: int = REFS_WINDOW_MS,
        refs_max_per_user: int = REFS_MAX_PER_USER,
    ) -> None:
        self.clock = clock
        self.journal_dir = journal_dir
        self.snapshot_sink = snapshot_sink
        self.sync = sync
        self.book = Book()
        self.refs = RefCache(refs_per_user, rejected_refs_per_user, refs_window_ms, refs_max_per_user)
        self.listeners: list[Listener] = []
        self.last_seq = 0
        self.snapshot_seq = 0
        self._writer: journal.JournalWriter | None = None
        self._inbox: collections.deque[tuple[Command, Reply | None]] = collections.deque()
        self._wake = Wakeup()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._snapshot_requests: list[asyncio.Future[int]] = []
        self._rotate_at: int | None = None
        self._fsync_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-fsync")
        self._redeliver: CommittedBatch | None = None
        # Awaited before a snapshot covering `seq` is saved: the write-behind must have stored every
        # event up to it, since recovery redelivers only what comes after the snapshot.
        self.before_snapshot: Callable[[int], Awaitable[object]] | None = None
        # Told (records, seconds) after each group commit's write + fsync: metrics hang here.
        self.commit_observer: Callable[[int, float], None] | None = None
        # Told (last_seq, framed records) after each group commit: replication to other processes
        # (gateways mirror the book from these bytes; see persistence/cluster.py).
        self.record_observer: Callable[[int, bytes], None] | None = None
        # Writes and fsyncs one group's bytes in the journal's thread, returning the seconds it
        # took. A seam: tests hold writes back with it (the compiled writer cannot be patched).
        self.write_batch: Callable[[journal.JournalWriter, bytes], float] = _timed_write
        self.stats = {"batches": 0, "records": 0, "commands": 0}

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self, *, redeliver_after: int | None = None) -> None:
        """Recover from the newest snapshot and the journal after it, then start the writer loop.

        Events of replayed records with seq > `redeliver_after` are handed to the listeners once
        more (write-behind consumers are idempotent), so whatever a crash kept them from storing
        is stored now. None: redeliver nothing.
        """
        replayed = await self.recover(redeliver_after)
        log.info("engine recovered", extra={"snapshot_seq": self.snapshot_seq, "replayed": replayed})
        self._writer = journal.JournalWriter(self.journal_dir, self.last_seq + 1, sync=self.sync)
        self._running = True
        self._task = asyncio.create_task(self._run(), name="gavel-engine")
        if self._redeliver is not None:
            batch, self._redeliver = self._redeliver, None
            self._deliver(batch)

    async def recover(self, redeliver_after: int | None = None) -> int:
        self.book = Book()
        self.refs = self.refs.emptied()
        self.last_seq = self.snapshot_seq = 0
        if self.snapshot_sink is not None:
            latest = await self.snapshot_sink.latest()
            if latest is not None:
                self.load_snapshot(latest[1])
        return self.replay(journal.recover(self.journal_dir, self.last_seq), redeliver_after)

    def replay(self, records: Iterable[tuple[int, bytes]], redeliver_after: int | None = None) -> int:
        """Apply journal records exactly as they were first applied; returns how many.

        Written flat for speed (recovery time is downtime): bids take a direct path with no
        command objects, and the cyclic GC is paused since replay allocates millions of
        short-lived tuples and none of them form cycles.
        """
        count = 0
        seq = self.last_seq
        unpack = _unpack_tuples
        book = self.book
        events = book.events
        # Only each bidder's newest references survive in the cache. They are collected flat (record,
        # seq, decision, stamp, record, ...: the decoded record carries the ref and the bid it
        # names) in one list per bidder, trimmed now and then, and the cache is built once at the
        # end: no tuple per bid, no eviction per bid.
        refs = self.refs
        keep = 4 * refs.max_per_user
        high = refs.clock  # the stamp: the highest command time journaled so far, as live
        recent: dict[int, list[Any]] = {}
        redeliver: list[Event] = []
        redeliver_seqs: list[int] = []
        redeliver_from = redeliver_after if redeliver_after is not None else 1 << 62
        place_bid, set_max = _PLACE_BID, _SET_MAX
        gc_was_enabled = gc.isenabled()
        gc.disable()
        # Records up to `redeliver_from` were delivered before: their bids need no events built.
        quiet = redeliver_from > seq
        book.set_quiet(quiet)
        # Seqs as the objects the records carry: the ref lists keep them without boxing anew.
        items: Iterable[tuple[Any, bytes]] = records
        try:
            for seq_object, payload in items:
                seq = seq_object
                if quiet and seq > redeliver_from:
                    quiet = False
                    book.set_quiet(False)
                row = unpack(payload)
                tag: int = row[0]
                at: int = row[1]
                if at > high:
                    high = at
                if tag in (place_bid, set_max):
                    user_id: int = row[3]
                    decision = book.place(row[2], user_id, row[4], tag == set_max, row[1])
                    ref: str = row[5]
                    if ref and decision.accepted:
                        flat = recent.get(user_id)
                        if flat is None:
                            flat = recent[user_id] = []
                        flat.append(row)
                        flat.append(seq_object)
                        flat.append(decision)
                        flat.append(high)
                        if len(flat) >= keep + keep:
                            del flat[:-keep]
                else:
                    row = _unpackb(payload)
                    self._apply(BY_TAG[tag](*row[2:]), row[1], seq)
                count += 1
                if seq > redeliver_from:
                    redeliver_seqs.extend([seq] * len(events))
                    redeliver.extend(events)
                events.clear()
            self.last_seq = seq
            # Still without the cyclic GC: up to a million answers are built here, and with
            # it on, each 700 allocations would traverse everything replay left alive.
            answers = refs.answers
            new = _new  # skips the NamedTuple's Python-level __new__: 250k of these add up
            outcome = _OUTCOME
            refs.clock = high
            packed = refs.packed
            for user_id, flat in recent.items():
                newest = flat[-keep:]
                is_packed = bool(packed) and user_id in packed
                if not is_packed and user_id not in answers:
                    # What one put at a time would have kept (see RefCache), decided at once.
                    del newest[: 4 * (len(newest) // 4 - refs.kept(newest[3::4]))]
                entries: list[tuple[str, Remembered]] = [
                    (
                        bid_row[5],
                        (
                            bid_row[4] * 2 + 1 if bid_row[0] == set_max else bid_row[4] * 2,
                            new(outcome, (True, None, "", ref_seq, decision)),
                            stamp,
                        ),
                    )
                    for bid_row, ref_seq, decision, stamp in zip(
                        newest[0::4], newest[1::4], newest[2::4], newest[3::4], strict=True
                    )
                ]
                if is_packed:
                    # Put after the packed ones, one at a time, when the bidder is unpacked.
                    refs.defer(user_id, entries, keep)
                elif user_id in answers:
                    for ref, (bid_fingerprint, answer, stamp) in entries:
                        refs.put(user_id, ref, bid_fingerprint, answer, stamp)
                else:
                    answers[user_id] = collections.OrderedDict(entries)
        finally:
            book.set_quiet(False)
            if gc_was_enabled:
                gc.enable()
        if redeliver:
            self._redeliver = CommittedBatch(redeliver, redeliver_seqs)
        return count

    def follow(
        self, records: Iterable[tuple[int, bytes]], events_after: int | None = None
    ) -> CommittedBatch | None:
        """Apply records another process committed, as a read-only replica; returns their events.

        Records at or below `last_seq` are skipped, so overlapping deliveries are harmless. The
        replica never journals: its owner's journal is the one that counts. `events_after`: only
        the events of records with a higher seq are returned (all of them when None).
        """
        last = self.last_seq
        after = last if events_after is None else max(last, events_after)
        self.replay([record for record in records if record[0] > last], redeliver_after=after)
        batch, self._redeliver = self._redeliver, None
        return batch

    async def stop(self, *, snapshot: bool = True) -> None:
        """Stop taking commands, answer what was queued, flush the journal, optionally snapshot."""
        if self._task is None:
            return
        if snapshot and self.snapshot_sink is not None:
            await self.snapshot()
        self._running = False
        self._wake.set()
        await self._task
        self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._fsync_pool.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def queue_depth(self) -> int:
        return len(self._inbox)

    # -- input ---------------------------------------------------------------------------------
    def submit(self, command: Command, reply: Reply | None = None) -> None:
        """Queue a command; `reply` is called (on the loop) once its answer is durable."""
        if not self._running:
            if reply is not None:
                reply(Outcome(False, "UNAVAILABLE", "the engine is not running", 0, None))
            return
        self._inbox.append((command, reply))
        if not self._wake.is_set():
            self._wake.set()

    def execute(self, command: Command) -> "asyncio.Future[Outcome]":
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def reply(outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self.submit(command, reply)
        return future

    def poke(self) -> None:
        """Wake the loop (tests that move a fake clock call this so due timers fire)."""
        self._wake.set()

    def snapshot(self) -> "asyncio.Future[int]":
        """Ask for a snapshot at the next loop turn; resolves with the seq it covers once saved."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._snapshot_requests.append(future)
        self._wake.set()
        return future

    # -- the writer loop -----------------------------------------------------------------------
    # Group commits are pipelined: when one group's write + fsync returns, the commands that
    # arrived meanwhile are applied and their write starts at once, before the finished group's
    # answers go out. An answer (and an event) is still released only once its own record is
    # durable, and in order; the fsync thread no longer waits while the loop writes answers.
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        writer = self._writer
        assert writer is not None
        in_flight: _Commit | None = None
        while True:
            finished = None
            if in_flight is None:
                if not self._inbox and not self._snapshot_requests and self._rotate_at is None:
                    if not self._running:
                        break
                    self._wake.clear()
                    timeout = self._seconds_to_next_timer()
                    if timeout is None or timeout > 0:
                        await self._wake.wait(timeout)
            else:
                # Commands arriving meanwhile wait in the inbox and are applied together when the
                # fsync returns (applying each on arrival cost a loop turn per command).
                with contextlib.suppress(Exception):  # raised again just below
                    await in_flight.future
                finished, in_flight = in_flight, None
                finished.future.result()  # a failed write poisons the journal: the engine stops
            # Here everything applied is durable: the moment for rotation and snapshots.
            if self._rotate_at is not None:
                writer.rotate()
                writer.prune(self._rotate_at)
                self._rotate_at = None
            if self._snapshot_requests:
                self._start_snapshot()
            in_flight = self._apply_and_commit(loop, writer)
            if finished is not None:
                self._release(finished)

    def _apply_and_commit(
        self, loop: asyncio.AbstractEventLoop, writer: journal.JournalWriter
    ) -> "_Commit | None":
        """Apply the inbox (after a due timer tick) and start writing its records; None when they
        changed nothing (then answered at once: everything before them is durable)."""
        inbox = self._inbox
        self._inbox = collections.deque()
        now = self.clock.now_ms()
        events = self.book.events
        seqs: list[int] = []
        replies: list[tuple[Reply, Outcome]] = []
        due = self.book.next_due()
        if due is not None and due <= now:
            self._journal_and_apply(Tick(), now)
            seqs.extend([self.last_seq] * len(events))
        for command, reply in inbox:
            outcome = self._handle(command, now)
            if len(events) > len(seqs):
                seqs.extend([outcome.seq] * (len(events) - len(seqs)))
            if reply is not None:
                replies.append((reply, outcome))
        self.stats["batches"] += 1
        self.stats["commands"] += len(inbox)
        records = writer.pending()
        batch = CommittedBatch(self.book.drain_events(), seqs)
        if not records:
            self._answer(replies, batch)
            return None
        self.stats["records"] += records
        data = writer.take_batch()
        future = loop.run_in_executor(self._fsync_pool, self.write_batch, writer, data)
        return _Commit(future, records, data, self.last_seq, replies, batch)

    def _release(self, commit: _Commit) -> None:
        """A group is durable: tell the observers, answer its commands, hand its events on."""
        if self.commit_observer is not None:
            self.commit_observer(commit.records, commit.future.result())
        if self.record_observer is not None:
            self.record_observer(commit.last_seq, commit.data)
        self._answer(commit.replies, commit.batch)

    def _answer(self, replies: list[tuple[Reply, Outcome]], batch: CommittedBatch) -> None:
        for reply, outcome in replies:
            try:
                reply(outcome)
            except Exception:
                log.exception("a reply callback failed")
        if batch.events:
            self._deliver(batch)

    def _deliver(self, batch: CommittedBatch) -> None:
        for listener in self.listeners:
            try:
                listener(batch)
            except Exception:
                log.exception("an engine listener failed")

    def _seconds_to_next_timer(self) -> float | None:
        due = self.book.next_due()
        if due is None:
            return None
        # Re-check at least every 5 s so a clock that jumps is noticed.
        return min(max(due - self.clock.now_ms(), 0) / 1000.0, 5.0)

    def _handle(self, command: Command, now: int) -> Outcome:
        """Apply one live command: idempotency for bids, journaling for whatever changed state."""
        if isinstance(command, (_PLACE_BID_TYPE, _SET_MAX_TYPE)):
            ref = command.ref
            if ref:
                known = self.refs.get(command.user_id, ref)
                bid_fingerprint = fingerprint(command[2], isinstance(command, _SET_MAX_TYPE))
                if known is not None:
                    # A retry gets the first answer; a different bid under a used ref is refused
                    # rather than answered with another bid's outcome.
                    if same_bid(known, command[0], bid_fingerprint):
                        return known[1]
                    return _REF_REUSED
                outcome = self._journal_and_apply(command, now)
                self.refs.put(command.user_id, ref, bid_fingerprint, outcome, self.refs.clock)
                return outcome
        return self._journal_and_apply(command, now)

    def _journal_and_apply(self, command: Command, now: int) -> Outcome:
        writer = self._writer
        assert writer is not None
        seq = writer.next_seq
        try:
            outcome = self._apply(command, now, seq)
        except GavelError as error:
            return Outcome(False, error.code, error.message, 0, None)
        if outcome[0]:
            writer.append(_pack((_TAGS[type(command)], now, *command)))
            self.last_seq = seq
            refs = self.refs
            if now > refs.clock:
                refs.clock = now
        return outcome

    def _apply(self, command: Command, now: int, seq: int) -> Outcome:
        """The one place a command changes the book. Raises GavelError for refused admin commands."""
        book = self.book
        if isinstance(command, (_PLACE_BID_TYPE, _SET_MAX_TYPE)):
            is_max = isinstance(command, _SET_MAX_TYPE)
            decision = book.place(command[0], command.user_id, command[2], is_max, now)
            if not decision.accepted:
                return _new(_OUTCOME, (False, decision.code, decision.code or "", 0, decision))
            return _new(_OUTCOME, (True, None, "", seq, decision))
        if isinstance(command, Tick):
            book.advance(now)
        elif isinstance(command, PutSession):
            book.put_session(
                command.session_id,
                preview_start=command.preview_start,
                preview_end=command.preview_end,
                bidding_start=command.bidding_start,
                bidding_end=command.bidding_end,
                deposit=command.deposit,
                soft_close_ms=command.soft_close_ms,
                soft_close_cap_ms=command.soft_close_cap_ms,
            )
        elif isinstance(command, PutLot):
            book.put_lot(
                command.lot_id,
                command.session_id,
                rule_from_spec(command.rule),
                reserve=command.reserve,
                deposit=command.deposit,
            )
        elif isinstance(command, RegisterDeposit):
            book.register_deposit(command.session_id, command.lot_id, command.user_id)
        elif isinstance(command, OpenLot):
            book.open_lot(command.lot_id, now)
        elif isinstance(command, CloseLot):
            book.close_lot(command.lot_id, now)
        elif isinstance(command, CancelLot):
            book.cancel_lot(command.lot_id, now, command.reason)
        elif isinstance(command, MarkOverdue):
            book.mark_overdue(command.lot_id)
        elif isinstance(command, BlockBidder):
            book.block(command.user_id)
        elif isinstance(command, UnblockBidder):
            book.unblock(command.user_id)
        elif isinstance(command, PauseLot):
            book.pause_lot(command.lot_id, now, command.reason)
        elif isinstance(command, ResumeLot):
            book.resume_lot(command.lot_id, now)
        elif isinstance(command, PauseSession):
            book.pause_session(command.session_id, now, command.reason)
        elif isinstance(command, ResumeSession):
            book.resume_session(command.session_id, now)
        elif isinstance(command, ExtendLot):
            book.extend_lot(command.lot_id, command.ends_at_ms, now)
        elif isinstance(command, VoidBid):
            book.void_bid(command.lot_id, command.bid_index, now, command.reason)
        elif isinstance(command, CompactLots):
            book.compact_lots(list(command.lot_ids))
        else:  # pragma: no cover - the Command union is exhaustive
            raise GavelError(f"unknown command {command!r}")
        return _OK._replace(seq=seq)

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot_bytes(self) -> bytes:
        # Runs on the writer loop, so bids wait for it. The cyclic GC is paused as in replay: the
        # state is millions of new lists, none in a cycle, and with the GC on each 700 of them
        # set off a collection that walks the book and the ref cache (measured: 800k refs took
        # 16.5 s of CPU with it, 3.0 s without, on the busy shared VM).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            state = {
                "seq": self.last_seq,
                "book": self.book.to_state(),
                # Packed per bidder (see RefCache); "refs" stays for the format's older readers.
                "refs": [],
                "refs_packed": self.refs.to_packed_state(),
                "refs_clock": self.refs.clock,
            }
            return msgpack.packb(state)  # type: ignore[no-any-return]
        finally:
            if gc_was_enabled:
                gc.enable()

    def load_snapshot(self, blob: bytes) -> None:
        # Downtime, and millions of new lists none of which is in a cycle: the cyclic GC is paused
        # as in replay and snapshot_bytes (with it on, each 700 allocations set off a collection
        # walking everything loaded so far: 300k refs loaded in 9.2 s with it, 2.1 s without).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            state = msgpack.unpackb(blob, use_list=True, strict_map_key=False)
            self.book = Book.from_state(state["book"])
            self.refs = self.refs.emptied()
            self.refs.load(state["refs"])  # snapshots written before refs were packed
            self.refs.load_packed(state.get("refs_packed", ()))
            self.refs.clock = state.get("refs_clock", 0)  # absent from snapshots older than stamps
            self.last_seq = self.snapshot_seq = state["seq"]
        finally:
            if gc_was_enabled:
                gc.enable()

    def _start_snapshot(self) -> None:
        """Serialize now, between batches (everything before is durable), and save in the background."""
        requests, self._snapshot_requests = self._snapshot_requests, []
        blob = self.snapshot_bytes()
        seq = self.last_seq
        sink = self.snapshot_sink

        async def save() -> None:
            try:
                if sink is not None:
                    if self.before_snapshot is not None:
                        await self.before_snapshot(seq)
                    await sink.save(seq, blob)
                    # Keep the journal back to the previous snapshot too: if the newest one fails
                    # its integrity check at recovery, the sink falls back to the previous one.
                    self._rotate_at = self.snapshot_seq
                    self.snapshot_seq = seq
                    self._wake.set()
                for request in requests:
                    if not request.done():
                        request.set_result(seq)
            except Exception as error:
                log.exception("snapshot failed")
                for request in requests:
                    if not request.done():
                        request.set_exception(error)

        self._snapshot_task = asyncio.get_running_loop().create_task(save())
