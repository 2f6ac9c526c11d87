"""MongoDB plumbing shared by the persistence adapters: connecting, indexes, ids, transactions, time.

Every collection named in docs/design.md gets its indexes here, in one place, so a fresh database
(tests, a new deployment) is complete after one `await ensure_indexes(db)`.
"""

import asyncio
import contextlib
import dataclasses
import datetime
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import pymongo
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, InsertOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ClientBulkWriteException,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
)

Document: TypeAlias = dict[str, Any]
Client: TypeAlias = AsyncMongoClient[Document]
Database: TypeAlias = AsyncDatabase[Document]
TxSession: TypeAlias = AsyncClientSession

T = TypeVar("T")

UTC = datetime.UTC
SIGNIN_RETENTION_DAYS = 90  # persistence/signins.py: sign-in history is kept this long

# Deposits that still count: a failed (or later refunded) deposit must not block a new one.
LIVE_DEPOSIT_STATUSES = ("pending", "paid")


def connect(
    url: str, *, app_name: str = "gavel", timeout_ms: int | None = None, max_idle_ms: int | None = None
) -> Client:
    """A client with aware UTC datetimes.

    `timeout_ms` (the request path's DEPENDENCY_TIMEOUT): every operation, server selection
    included, gives up after that long with a timeout error, which the gateway answers 503
    UNAVAILABLE (web/errors.py) instead of holding the request for the socket timeout. Without
    it (background work: snapshots, the write-behind) an operation may wait up to the socket
    timeout, and server selection up to 5 s.

    `max_idle_ms` (MONGODB_MAX_IDLE): a pooled connection idle that long is closed. A burst of
    concurrent operations opens connections up to the pool's 100, each with its socket, buffers
    and futures; without it they stay open for the process's life (docs/performance.md, "the pool
    and the unnamed rest"; a session's close no longer bursts: its winners' order look-ups are one
    query at a time, gateway/order_lookups.py).
    """
    options: dict[str, Any] = {"serverSelectionTimeoutMS": 5_000}
    if timeout_ms is not None:
        options = {"timeoutMS": timeout_ms, "serverSelectionTimeoutMS": timeout_ms}
    if max_idle_ms is not None:
        options["maxIdleTimeMS"] = max_idle_ms
    return AsyncMongoClient(
        url,
        tz_aware=True,
        tzinfo=UTC,
        appname=app_name,
        connectTimeoutMS=5_000 if timeout_ms is None else min(5_000, timeout_ms),
        # Long enough for a slow transaction commit, short enough that a hung server is noticed.
        socketTimeoutMS=30_000,
        retryWrites=True,
        retryReads=True,
        **options,
    )


def timeout_of(client: Client) -> float | None:
    """The client's per-operation bound in seconds (timeoutMS), None when unbounded."""
    timeout = client.options.timeout
    return float(timeout) if timeout else None


async def check_replica_set(client: Client) -> None:
    """Refuse to run against a standalone server: balance changes need multi-document transactions."""
    hello = await client.admin.command("hello")
    if not hello.get("setName"):
        raise RuntimeError(
            "MONGODB_URL must name a replica set (a one-member set is enough): "
            "multi-document transactions need it"
        )


def _indexes() -> dict[str, list[IndexModel]]:
    return {
        "users": [
            # Usernames are unique regardless of case ("Alice" and "alice" are one account).
            IndexModel([("username_key", ASCENDING)], unique=True, name="username_key_unique"),
            IndexModel([("display_name", ASCENDING)], name="display_name"),  # the search box's prefixes
        ],
        "tokens": [
            # `_id` is the sha256 of the token (lookup by hash); these serve revocation and expiry.
            IndexModel([("user_id", ASCENDING)], name="user_id"),
            IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl"),
        ],
        "ledger": [
            IndexModel([("ref", ASCENDING)], unique=True, name="ref_unique"),
            IndexModel([("user_id", ASCENDING), ("at", DESCENDING)], name="user_at"),
        ],
        "sessions": [
            IndexModel([("bidding_start", DESCENDING)], name="bidding_start"),
        ],
        # One record per distinct viewer of a lot (its 围观 count moves only with a new record).
        "lot_viewers": [
            IndexModel([("lot_id", ASCENDING), ("viewer", ASCENDING)], unique=True, name="lot_viewer_unique"),
        ],
        "lots": [
            IndexModel([("session_id", ASCENDING), ("_id", ASCENDING)], name="session_lots"),
            # A catalogue number (图录号) names one lot within its session.
            IndexModel(
                [("session_id", ASCENDING), ("catalogue_no", ASCENDING)],
                unique=True,
                name="session_catalogue_no_unique",
            ),
            IndexModel([("catalogue_no", ASCENDING)], name="catalogue_no"),  # the search box
        ],
        "deposits": [
            # At most one live (pending or paid) deposit per user and target; `lot_id` None is the
            # whole-session deposit. `$in` in a partial filter needs MongoDB 6.0+ (or SecantusDB).
            IndexModel(
                [("user_id", ASCENDING), ("session_id", ASCENDING), ("lot_id", ASCENDING)],
                unique=True,
                partialFilterExpression={"status": {"$in": list(LIVE_DEPOSIT_STATUSES)}},
                name="one_live_deposit_per_target",
            ),
            IndexModel(
                [("payment_id", ASCENDING)],
                unique=True,
                partialFilterExpression={"payment_id": {"$type": "string"}},
                name="payment_id_unique",
            ),
            IndexModel([("user_id", ASCENDING), ("_id", DESCENDING)], name="user_deposits"),
            IndexModel([("session_id", ASCENDING), ("status", ASCENDING)], name="session_status"),
        ],
        # The write-behind's bid buckets (persistence/archive.py); `bids` held one document per bid
        # before them and is still read (indexes kept for installations that have such records).
        "bid_buckets": [IndexModel([("lot_id", ASCENDING), ("first_seq", ASCENDING)], name="lot_seq")],
        "bids": [
            IndexModel([("lot_id", ASCENDING), ("at", DESCENDING)], name="lot_at"),
            IndexModel([("session_id", ASCENDING)], name="session_id"),
        ],
        # -- the back office's search box and a user's page (issue 24; docs/admin.md) --------------
        # Sign-in history (persistence/signins.py): a user's newest first; kept 90 days (TTL).
        "signins": [
            IndexModel([("user_id", ASCENDING), ("at", DESCENDING)], name="user_at"),
            IndexModel([("at", ASCENDING)], expireAfterSeconds=SIGNIN_RETENTION_DAYS * 86_400, name="at_ttl"),
        ],
        "user_notes": [IndexModel([("user_id", ASCENDING), ("at", DESCENDING)], name="user_at")],
        # Search by phone (the shipping addresses hold the phone numbers), by a provider's trade
        # number, by a lot's catalogue number (without its session).
        "addresses": [IndexModel([("phone", ASCENDING)], name="phone")],
        "payments": [
            IndexModel(
                [("trade_no", ASCENDING)],
                partialFilterExpression={"trade_no": {"$type": "string"}},
                name="trade_no",
            )
        ],
    }


async def ensure_indexes(db: Database) -> None:
    """Create every index the service relies on (idempotent; safe at every start)."""
    for collection, models in _indexes().items():
        await db[collection].create_indexes(models)


async def next_id(db: Database, name: str, count: int = 1) -> int:
    """Allocate the next `count` integer ids of `name` from `counters` and return the last of them
    (gaps are possible, repeats never)."""
    # Two first calls for a new counter may both try the upsert: one loses with a duplicate key
    # (or, on SecantusDB, gets no document back). The counter exists then; ask again.
    for _attempt in range(5):
        try:
            counter = await db.counters.find_one_and_update(
                {"_id": name},
                {"$inc": {"seq": count}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            continue
        if counter is not None:
            return int(counter["seq"])
    raise RuntimeError(f"could not allocate an id from counter {name!r}")


class IdBlocks:
    """The ids of counter `name` taken `size` at a time: one `counters` write per `size` ids
    instead of one per id. Unique across processes (each takes blocks of its own) and increasing
    within one process; the ids left in a process's block when it stops are never used (gaps)."""

    def __init__(self, db: Database, name: str, size: int) -> None:
        if size < 1:
            raise ValueError("a block holds at least one id")
        self.db = db
        self.name = name
        self.size = size
        self._next = 0
        self._end = 0  # exclusive: the block is empty when _next == _end
        self._refill = asyncio.Lock()  # one counter write at a time when many requests find it empty

    async def next(self) -> int:
        while self._next >= self._end:
            async with self._refill:
                if self._next >= self._end:
                    last = await next_id(self.db, self.name, self.size)
                    self._next, self._end = last - self.size + 1, last + 1
        taken = self._next
        self._next += 1
        return taken


async def update_then_read(
    collection: Any,
    query: Document,
    update: Document,
    *,
    projection: Document | None = None,
    session: TxSession | None = None,
) -> Document | None:
    """`find_one_and_update(query, update, return_document=AFTER)` as a conditional `update_one`
    and a read by `_id` (`query` names one): the document after, None when `query` matched none.

    SecantusDB answers a findAndModify by scanning the whole collection (~250 ms at 4,000
    documents, growing with every document), an update and a read by `_id` through its index.
    Inside a transaction the read sees the update: one step. Outside one, it may also show a
    later change (never an earlier state)."""
    result = await collection.update_one(query, update, session=session)
    if result.matched_count == 0:
        return None
    found: Document | None = await collection.find_one({"_id": query["_id"]}, projection, session=session)
    return found


_DUPLICATE_KEY = 11000
_WRITE_CONFLICT = 112
_BULK_WRITE_NEEDS = "requires MongoDB server version 8.0"


@dataclasses.dataclass(frozen=True)
class _UnitWrite:
    collection: AsyncCollection[Document]
    document: Document  # an insert's document, an update's changes
    query: Document | None = None  # None: an insert
    upsert: bool = False
    # An update that must match: what to raise (the unit then aborts) when it matched nothing.
    unmatched: Callable[[], Exception] | None = None
    # An insert's duplicate key as the caller's own error (None: DuplicateKeyError as it is).
    on_duplicate: Callable[[DuplicateKeyError], Exception] | None = None

    def model(self) -> InsertOne[Document] | UpdateOne:
        namespace = self.collection.full_name
        if self.query is None:
            return InsertOne(self.document, namespace=namespace)
        return UpdateOne(self.query, self.document, upsert=self.upsert, namespace=namespace)


@dataclasses.dataclass(frozen=True)
class UpdateOutcome:
    matched: int
    upserted_id: Any


class UnitWrites:
    """The writes of one transaction's unit of work that need no answer on the spot, sent together
    with the unit's next write that does (`update_now`) or at the unit's end, before the commit: one
    `bulkWrite` command (MongoDB 8.0+) for all of them instead of one command each.

    Each command costs the driver and the server the same bookkeeping whatever it carries (the
    session, the transaction, the wire message): a checkout's four inserts in one command save three
    of it. A deferred write is not seen by the unit's reads until it is sent, so only a unit's last
    write to a document is deferred. Its failure is raised when it is sent, still inside the unit:
    the transaction aborts as it would have on the spot (a duplicate key as the caller's error, an
    update that had to match as the caller's exception). On a server older than 8.0 the writes go
    one command each, in the same order."""

    def __init__(self, session: TxSession) -> None:
        self.session = session
        self._pending: list[_UnitWrite] = []

    def insert(
        self,
        collection: AsyncCollection[Document],
        document: Document,
        on_duplicate: Callable[[DuplicateKeyError], Exception] | None = None,
    ) -> None:
        self._pending.append(_UnitWrite(collection, document, on_duplicate=on_duplicate))

    def update(
        self,
        collection: AsyncCollection[Document],
        query: Document,
        update: Document,
        unmatched: Callable[[], Exception],
    ) -> None:
        self._pending.append(_UnitWrite(collection, update, query, unmatched=unmatched))

    async def update_now(
        self,
        collection: AsyncCollection[Document],
        query: Document,
        update: Document,
        *,
        upsert: bool = False,
    ) -> UpdateOutcome:
        """`update_one` sent at once with the writes waiting: its outcome."""
        outcomes = await self._send([*self._pending, _UnitWrite(collection, update, query, upsert)])
        self._pending.clear()
        return outcomes[-1]

    async def flush(self) -> None:
        if self._pending:
            await self._send(self._pending)
            self._pending.clear()

    async def _send(self, writes: list[_UnitWrite]) -> list[UpdateOutcome]:
        client = self.session.client
        if len(writes) > 1 and client not in _SINGLE_WRITES:
            try:
                outcomes = await self._send_bulk(client, writes)
            except InvalidOperation as error:
                if _BULK_WRITE_NEEDS not in str(error):
                    raise
                _SINGLE_WRITES.add(client)  # nothing was sent: the writes go one by one
            else:
                return outcomes
        outcomes = []
        for write in writes:
            outcomes.append(await self._send_one(write))
        return outcomes

    async def _send_bulk(self, client: Client, writes: list[_UnitWrite]) -> list[UpdateOutcome]:
        try:
            result = await client.bulk_write(
                [write.model() for write in writes], session=self.session, ordered=True, verbose_results=True
            )
        except ClientBulkWriteException as error:
            raise _unit_write_error(error, writes) from None
        outcomes = []
        for index, write in enumerate(writes):
            outcome = UpdateOutcome(1, None)
            if write.query is not None:
                updated = result.update_results[index]
                outcome = UpdateOutcome(updated.matched_count, updated.upserted_id)
            _check(write, outcome)
            outcomes.append(outcome)
        return outcomes

    async def _send_one(self, write: _UnitWrite) -> UpdateOutcome:
        if write.query is None:
            try:
                await write.collection.insert_one(write.document, session=self.session)
            except DuplicateKeyError as error:
                raise (write.on_duplicate(error) if write.on_duplicate is not None else error) from None
            return UpdateOutcome(1, None)
        updated = await write.collection.update_one(
            write.query, write.document, upsert=write.upsert, session=self.session
        )
        outcome = UpdateOutcome(updated.matched_count, updated.upserted_id)
        _check(write, outcome)
        return outcome


def _check(write: _UnitWrite, outcome: UpdateOutcome) -> None:
    if write.unmatched is not None and outcome.matched == 0:
        raise write.unmatched()


def _unit_write_error(error: ClientBulkWriteException, writes: list[_UnitWrite]) -> Exception:
    """A failed `bulkWrite` as the error its failing write would have raised alone, so that the
    transaction's retry rules (TransientTransactionError) and the callers' duplicate answers hold."""
    if isinstance(error.error, PyMongoError):
        return error.error  # the whole command failed: its own labels decide a retry
    # The raw reply's entries (dicts; the ordered command stops at its first).
    failed: list[Document] = list((error.details or {}).get("writeErrors") or [])
    if not failed:
        return error
    first = min(failed, key=lambda entry: int(entry.get("idx", 0)))
    code = int(first.get("code", 0))
    if code == _DUPLICATE_KEY:
        duplicate = DuplicateKeyError(str(first.get("errmsg", "")), code, first)
        translate = writes[int(first["idx"])].on_duplicate
        return translate(duplicate) if translate is not None else duplicate
    if code == _WRITE_CONFLICT:
        # Alone, this write's conflict is the transaction's transient error: the unit runs again.
        return OperationFailure(
            str(first.get("errmsg", "")), code, {**first, "errorLabels": ["TransientTransactionError"]}
        )
    return error


# Clients whose server has no `bulkWrite` (older than MongoDB 8.0), as the driver found.
_SINGLE_WRITES: weakref.WeakSet[Client] = weakref.WeakSet()
# The writes of the unit each session runs now (`Transaction.run`), by the session's id().
_UNITS: dict[int, UnitWrites] = {}


def unit_writes(session: TxSession | None) -> UnitWrites | None:
    """The writes of the unit of work `session` runs in `Transaction.run`; None outside one (a
    write then goes on the spot)."""
    return _UNITS.get(id(session)) if session is not None else None


class Transaction:
    """A session that runs callbacks as transactions with the driver's retry rules.

    An `async with` body cannot be re-run by Python, so the retried unit is a callback: on
    TransientTransactionError the whole callback runs again, on UnknownTransactionCommitResult the
    commit is retried (pymongo's `with_transaction`, up to 120 s). Callbacks must therefore be safe
    to run more than once: no side effects outside MongoDB.
    """

    def __init__(self, session: TxSession) -> None:
        self.session = session

    async def run(self, callback: Callable[[TxSession], Awaitable[T]]) -> T:
        async def unit(session: TxSession) -> T:
            # Each run of the callback (a retry too) starts with no write waiting.
            writes = _UNITS[id(session)] = UnitWrites(session)
            try:
                result = await callback(session)
                await writes.flush()
                return result
            finally:
                _UNITS.pop(id(session), None)

        bound = timeout_of(self.session.client)
        if bound is None:
            return await self.session.with_transaction(unit)
        # With a bounded client each operation is bounded, but with_transaction retries a
        # transient failure (a stalled or absent server is one) for 120 s: the whole unit, retries
        # included, gets the one bound instead.
        try:
            with pymongo.timeout(bound):
                return await self.session.with_transaction(unit)
        except PyMongoError as error:
            if error.timeout:
                await self._end_on_server(bound)
            raise

    async def _end_on_server(self, bound: float) -> None:
        """Abort, on the server, the transaction of a unit that ran out of time.

        The driver's own abort runs under the spent bound, so it is never sent: the server keeps
        the transaction open, and every document it wrote locked against other writers, until it
        reaps it (60 s idle by default, on MongoDB too). A retry of the same unit (a provider's
        resent notification, the next sweep) then meets its own earlier writes: plain writes wait,
        transactional ones conflict, for the whole minute. `killSessions` aborts it now."""
        with contextlib.suppress(PyMongoError), pymongo.timeout(bound):
            await self.session.client.admin.command("killSessions", [self.session.session_id])


@contextlib.asynccontextmanager
async def transaction(client: Client) -> AsyncIterator[Transaction]:
    """`async with transaction(client) as txn: result = await txn.run(callback)`."""
    async with client.start_session() as session:
        yield Transaction(session)


async def run_in_transaction(client: Client, callback: Callable[[TxSession], Awaitable[T]]) -> T:
    """Run `callback(session)` in one retried transaction on a fresh session."""
    async with transaction(client) as txn:
        return await txn.run(callback)


# -- time -------------------------------------------------------------------------------------------
# BSON dates keep milliseconds; values are truncated to that on the way in so what we hand back equals
# what a later read returns.


def utc_now() -> datetime.datetime:
    return from_ms(to_ms(datetime.datetime.now(UTC)))


def as_utc(value: datetime.datetime) -> datetime.datetime:
    """Aware UTC, whatever the client's tz_aware setting (naive BSON dates are UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_ms(value: datetime.datetime) -> int:
    """Epoch milliseconds of an aware (or naive-UTC) datetime, with integer arithmetic only."""
    delta = as_utc(value) - datetime.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime.datetime:
    return datetime.datetime(1970, 1, 1, tzinfo=UTC) + datetime.timedelta(milliseconds=ms)


def iso_utc(value: datetime.datetime) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, e.g. `2025-05-01T12:00:00.000Z`."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.") + f"{as_utc(value).microsecond // 1000:03d}Z"


def iso_from_ms(ms: int) -> str:
    return iso_utc(from_ms(ms))
