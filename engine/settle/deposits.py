"""Deposits (保证金): which deposit a user owes, how it is paid, and when the engine learns of it.

A deposit is whole-session (lot_id None) or per-lot; paying one lets its payer bid. Paid from the
balance, the debit (ledger ref `deposit:{id}`) and the deposit record are one unit of work; paid
through the provider, the record waits as `pending` until the provider's verified notification
(`mark_paid`) or its closing of the trade (`mark_failed`). Either way the engine learns of it
afterwards through `RegisterDeposit`, which is idempotent, and `reregister_paid` repeats that for
every paid deposit at start-up, so a crash between the two steps loses nothing.

Statuses: pending -> paid | failed (refunds and deductions are settlement's: engine/settle/handlers.py).

The handlers here decide; the ports only store: `DepositRecords` loads, adds (a unique key per live
target and per trade number: Duplicate) and moves status with compare-and-set. MongoDB implements
them in persistence/deposits.py, memory in tests/engine/settle/fakes.py.
"""

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self, TypeVar

from engine.book.book import Book
from engine.book.errors import GavelError, NotFound, SessionEnded
from engine.book.states import CLOSED_LOT_STATES, SessionState
from engine.book.types import Fen, LotId, SessionId, UserId
from engine.commands import Command, Outcome, RegisterDeposit
from engine.settle.model import PayWith
from engine.settle.uow import STALE_RETRIES, BalanceLedger, Duplicate, Ids, atomically

log = logging.getLogger("gavel.deposits")

DEPOSIT_PAYMENT_PREFIX = "dep"
DEPOSIT_LEDGER_KIND = "deposit"

PAY_WITH: tuple[PayWith, ...] = ("balance", "provider")
T = TypeVar("T")


class NoDepositRequired(GavelError):
    code = "NO_DEPOSIT_REQUIRED"


class DepositExists(GavelError):
    code = "DEPOSIT_EXISTS"


class DepositsClosed(GavelError):
    code = "LOT_CLOSED"


class DepositStateConflict(GavelError):
    """E.g. a provider reports `paid` for a deposit it already reported as failed."""

    code = "ILLEGAL_STATE"


@dataclasses.dataclass(frozen=True, slots=True)
class DepositRecord:
    """A deposit as opened and paid (settlement's view, with what it still holds, is
    `engine.settle.model.Deposit`)."""

    id: int
    user_id: UserId
    session_id: SessionId
    lot_id: LotId | None
    amount: Fen
    status: str  # pending | paid | failed (settlement later: consumed | refunded)
    pay_with: PayWith
    payment_id: str | None  # provider payments only: the out_trade_no (payments/trade_numbers.py)
    created_at: datetime.datetime
    paid_at: datetime.datetime | None
    pay_url: str | None = None  # where the payer goes, once the provider gave one


def ledger_ref(deposit_id: int) -> str:
    return f"deposit:{deposit_id}"


# -- ports -------------------------------------------------------------------------------------------
class DepositRecords(Protocol):
    async def get(self, deposit_id: int) -> DepositRecord | None: ...

    async def by_payment_id(self, payment_id: str) -> DepositRecord | None: ...

    async def live_session_deposit(self, user_id: UserId, session_id: SessionId) -> bool:
        """Whether the user has a pending or paid whole-session deposit of the session."""
        ...

    async def add(self, record: DepositRecord) -> None:
        """Duplicate if the user has a live (pending or paid) deposit for the same target, or the
        trade number is taken."""
        ...

    async def mark_paid(self, deposit_id: int, now: datetime.datetime) -> DepositRecord | None:
        """pending -> paid; the record after, None if it was not pending."""
        ...

    async def mark_failed(self, deposit_id: int, now: datetime.datetime) -> DepositRecord | None:
        """pending -> failed; the record after, None if it was not pending."""
        ...

    async def attach_pay_url(self, deposit_id: int, pay_url: str) -> None: ...

    async def list_for_user(
        self, user_id: UserId, skip: int, limit: int, session_id: SessionId | None = None
    ) -> tuple[list[DepositRecord], int]:
        """The user's deposits (of one session, when given), newest first, and how many there are."""
        ...

    async def paid_in_sessions(self, session_ids: list[SessionId]) -> list[DepositRecord]: ...


class DepositUnitOfWork(Protocol):
    """One transaction over the deposit records and the balances (MongoUnitOfWork is one)."""

    deposit_records: DepositRecords
    ledger: BalanceLedger
    ids: Ids

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class DepositEngine(Protocol):
    """What deposits need of the engine: its book (read) and `RegisterDeposit` (submitted)."""

    @property
    def book(self) -> Book: ...

    def execute(self, command: Command) -> "asyncio.Future[Outcome]": ...


# -- decisions ---------------------------------------------------------------------------------------
def amount_due(book: Book, user_id: UserId, session_id: SessionId, lot_id: LotId | None) -> Fen:
    """The deposit the engine will require; refuses targets that need none, are over or are held."""
    session = book.sessions.get(session_id)
    if session is None:
        raise NotFound(f"no session {session_id}")
    if session.state is SessionState.ENDED:
        raise SessionEnded(f"session {session_id} has ended")
    if lot_id is None:
        if user_id in session.depositors:
            raise DepositExists("you already have a deposit for this session")
        amount = session.deposit
    else:
        lot = book.lots.get(lot_id)
        if lot is None or lot.session is not session:
            raise NotFound(f"no lot {lot_id} in session {session_id}")
        if lot.state in CLOSED_LOT_STATES:
            raise DepositsClosed(f"lot {lot_id} is closed")
        if user_id in lot.depositors:
            raise DepositExists("you already have a deposit for this lot")
        amount = lot.deposit
    if amount == 0:
        raise NoDepositRequired("no deposit is required: you may bid without one")
    return amount


async def open_deposit(
    uow: DepositUnitOfWork,
    book: Book,
    deposit_id: int,
    user_id: UserId,
    session_id: SessionId,
    lot_id: LotId | None,
    pay_with: PayWith,
    now: datetime.datetime,
) -> DepositRecord:
    """Open a deposit: paid at once from the balance (debit + record together), or pending for the
    provider. `deposit_id` is allocated outside the unit of work, so a rerun debits the same ref."""
    amount = amount_due(book, user_id, session_id, lot_id)
    if lot_id is not None and await uow.deposit_records.live_session_deposit(user_id, session_id):
        raise DepositExists("your whole-session deposit already covers this lot")
    record = DepositRecord(
        id=deposit_id,
        user_id=user_id,
        session_id=session_id,
        lot_id=lot_id,
        amount=amount,
        status="pending",
        pay_with=pay_with,
        payment_id=None,
        created_at=now,
        paid_at=None,
    )
    if pay_with == "balance":
        record = dataclasses.replace(record, status="paid", paid_at=now)
    else:
        # The provider payment's own number (128 random bits): it names the payment everywhere.
        record = dataclasses.replace(record, payment_id=uow.ids.trade_no(DEPOSIT_PAYMENT_PREFIX))
    try:
        await uow.deposit_records.add(record)
    except Duplicate:
        raise DepositExists("you already have a deposit for this") from None
    if pay_with == "balance":
        await uow.ledger.debit(user_id, amount, DEPOSIT_LEDGER_KIND, ledger_ref(deposit_id))
    return record


async def _existing(uow: DepositUnitOfWork, deposit_id: int) -> DepositRecord:
    record = await uow.deposit_records.get(deposit_id)
    if record is None:
        raise NotFound(f"no deposit {deposit_id}")
    return record


async def mark_paid(uow: DepositUnitOfWork, deposit_id: int, now: datetime.datetime) -> DepositRecord:
    """The provider confirmed payment: pending -> paid. Paid already: unchanged (idempotent)."""
    record = await uow.deposit_records.mark_paid(deposit_id, now) or await _existing(uow, deposit_id)
    if record.status != "paid":
        raise DepositStateConflict(f"deposit {deposit_id} is {record.status}; it cannot be paid")
    return record


async def mark_failed(uow: DepositUnitOfWork, deposit_id: int, now: datetime.datetime) -> DepositRecord:
    """The provider reported a failed payment: pending -> failed. Failed already: unchanged."""
    record = await uow.deposit_records.mark_failed(deposit_id, now) or await _existing(uow, deposit_id)
    if record.status != "failed":
        raise DepositStateConflict(f"deposit {deposit_id} is {record.status}; it cannot fail now")
    return record


def open_session_ids(book: Book) -> list[SessionId]:
    return [sid for sid, s in book.sessions.items() if s.state is not SessionState.ENDED]


def needs_registration(book: Book, record: DepositRecord) -> bool:
    """A paid deposit the engine does not hold yet (its lot still known to the book)."""
    if record.lot_id is None:
        session = book.sessions.get(record.session_id)
        return session is not None and record.user_id not in session.depositors
    lot = book.lots.get(record.lot_id)
    # A compacted lot is closed for good and has let its depositors go: nothing to register.
    return lot is not None and not lot.compacted and record.user_id not in lot.depositors


# -- the service -------------------------------------------------------------------------------------
class DepositService:
    """Every deposit decision, each in its own unit of work (retried by `atomically`), then the
    engine told of what was paid. The typed object REST, the payment notifications and start-up call."""

    def __init__(
        self,
        new_uow: Callable[[], DepositUnitOfWork],
        engine: DepositEngine,
        *,
        clock: Callable[[], datetime.datetime],  # aware UTC, to the millisecond (what storage keeps)
        stale_retries: int = STALE_RETRIES,
    ) -> None:
        self.new_uow = new_uow
        self.engine = engine
        self.clock = clock
        self.stale_retries = stale_retries

    async def _run(self, work: Callable[[DepositUnitOfWork], Awaitable[T]]) -> T:
        return await atomically(self.new_uow, work, stale_retries=self.stale_retries)

    def amount_due(self, user_id: UserId, session_id: SessionId, lot_id: LotId | None) -> Fen:
        """The deposit due, or the refusal `create` would give (without opening anything)."""
        return amount_due(self.engine.book, user_id, session_id, lot_id)

    async def create(
        self, user_id: UserId, session_id: SessionId, lot_id: LotId | None, pay_with: PayWith
    ) -> DepositRecord:
        """Open a deposit for the whole session (`lot_id` None) or one lot, and pay it from the
        balance (the engine learns of it at once) or leave it pending for the payment provider."""
        amount_due(self.engine.book, user_id, session_id, lot_id)  # refuse before taking an id
        deposit_id = await self._run(lambda uow: uow.ids.next("deposits"))
        now = self.clock()
        record = await self._run(
            lambda uow: open_deposit(
                uow, self.engine.book, deposit_id, user_id, session_id, lot_id, pay_with, now
            )
        )
        if record.status == "paid":
            await self.register(record)
        return record

    async def get(self, deposit_id: int) -> DepositRecord:
        return await self._run(lambda uow: _existing(uow, deposit_id))

    async def by_payment_id(self, payment_id: str) -> DepositRecord:
        record = await self._run(lambda uow: uow.deposit_records.by_payment_id(payment_id))
        if record is None:
            raise NotFound("no such payment")
        return record

    async def attach_pay_url(self, deposit_id: int, pay_url: str) -> None:
        await self._run(lambda uow: uow.deposit_records.attach_pay_url(deposit_id, pay_url))

    async def list_for_user(
        self, user_id: UserId, skip: int, limit: int, session_id: SessionId | None = None
    ) -> tuple[list[DepositRecord], int]:
        return await self._run(
            lambda uow: uow.deposit_records.list_for_user(user_id, skip, limit, session_id)
        )

    async def mark_paid(self, deposit_id: int) -> DepositRecord:
        """pending -> paid, then register. Idempotent: registering again on a repeated notification
        is harmless and heals a lost first attempt."""
        now = self.clock()
        record = await self._run(lambda uow: mark_paid(uow, deposit_id, now))
        await self.register(record)
        return record

    async def mark_failed(self, deposit_id: int) -> DepositRecord:
        now = self.clock()
        return await self._run(lambda uow: mark_failed(uow, deposit_id, now))

    async def register(self, record: DepositRecord) -> bool:
        """Tell the engine the deposit is paid; a failure is logged and repaired at the next start."""
        outcome = await self.engine.execute(RegisterDeposit(record.session_id, record.lot_id, record.user_id))
        if not outcome.ok:
            log.error(
                "the engine did not register paid deposit %s: %s %s", record.id, outcome.code, outcome.message
            )
        return outcome.ok

    async def reregister_paid(self) -> int:
        """Start-up: submit RegisterDeposit for every paid deposit of a session that has not ended
        and that the engine does not already hold; returns how many were registered."""
        book = self.engine.book
        sessions = open_session_ids(book)
        if not sessions:
            return 0
        records = await self._run(lambda uow: uow.deposit_records.paid_in_sessions(sessions))
        # Submitted together, the engine applies them all in one group commit.
        pending = [
            (r.id, self.engine.execute(RegisterDeposit(r.session_id, r.lot_id, r.user_id)))
            for r in records
            if needs_registration(book, r)
        ]
        submitted = 0
        for deposit_id, future in pending:
            outcome = await future
            if outcome.ok:
                submitted += 1
            else:
                log.error(
                    "could not re-register deposit %s: %s %s", deposit_id, outcome.code, outcome.message
                )
        return submitted
