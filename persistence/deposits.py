"""Deposits (保证金): whole-session (lot_id None) or per-lot; paying one lets its payer bid.

Paid from the balance, the debit (ledger ref `deposit:{id}`) and the deposit document are one
transaction; paid through the provider, the document waits as `pending` until `mark_paid`. Either
way the engine learns of it afterwards through `RegisterDeposit`, which is idempotent, and
`reregister_paid` repeats that for every paid deposit at start-up, so a crash between the two
steps loses nothing.

Statuses: pending -> paid | failed. (Refunds come with settlement, in a later issue.)
"""

import asyncio
import dataclasses
import datetime
import logging
from typing import Literal

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from engine.book.errors import GavelError, NotFound
from engine.book.states import CLOSED_LOT_STATES, SessionState
from engine.commands import Outcome, RegisterDeposit
from engine.engine import Engine
from payments.trade_numbers import new_trade_no
from persistence.accounts import Accounts
from persistence.catalog import SessionEnded
from persistence.mongo import (
    LIVE_DEPOSIT_STATUSES,
    Client,
    Database,
    Document,
    TxSession,
    as_utc,
    iso_utc,
    next_id,
    run_in_transaction,
    utc_now,
)

log = logging.getLogger("gavel.deposits")
DEPOSIT_PAYMENT_PREFIX = "dep"

PayWith = Literal["balance", "provider"]
PAY_WITH: tuple[PayWith, ...] = ("balance", "provider")


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
class Deposit:
    id: int
    user_id: int
    session_id: int
    lot_id: int | None
    amount: int  # fen
    status: str  # pending | paid | failed
    pay_with: PayWith
    payment_id: str | None  # provider payments only: the out_trade_no (payments/trade_numbers.py)
    created_at: datetime.datetime
    paid_at: datetime.datetime | None
    pay_url: str | None = None  # where the payer goes, once the provider gave one

    @classmethod
    def from_document(cls, doc: Document) -> "Deposit":
        paid_at = doc.get("paid_at")
        return cls(
            id=int(doc["_id"]),
            user_id=int(doc["user_id"]),
            session_id=int(doc["session_id"]),
            lot_id=None if doc.get("lot_id") is None else int(doc["lot_id"]),
            amount=int(doc["amount"]),
            status=doc["status"],
            pay_with=doc["pay_with"],
            payment_id=doc.get("payment_id"),
            created_at=as_utc(doc["created_at"]),
            paid_at=None if paid_at is None else as_utc(paid_at),
            pay_url=doc.get("pay_url"),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "session_id": self.session_id,
            "lot_id": self.lot_id,
            "amount": self.amount,
            "status": self.status,
            "pay_with": self.pay_with,
            "created_at": iso_utc(self.created_at),
            "paid_at": None if self.paid_at is None else iso_utc(self.paid_at),
        }


def ledger_ref(deposit_id: int) -> str:
    return f"deposit:{deposit_id}"


class Deposits:
    def __init__(self, client: Client, db: Database, accounts: Accounts, engine: Engine) -> None:
        self.client = client
        self.db = db
        self.accounts = accounts
        self.engine = engine

    async def create(self, user_id: int, session_id: int, lot_id: int | None, pay_with: PayWith) -> Deposit:
        """Open a deposit for the whole session (`lot_id` None) or one lot, and pay it from the balance
        or leave it pending for the payment provider."""
        amount = self._amount_due(user_id, session_id, lot_id)
        if lot_id is not None and await self._covered_by_session_deposit(user_id, session_id):
            raise DepositExists("your whole-session deposit already covers this lot")
        deposit_id = await next_id(self.db, "deposits")
        now = utc_now()
        doc: Document = {
            "_id": deposit_id,
            "user_id": user_id,
            "session_id": session_id,
            "lot_id": lot_id,
            "amount": amount,
            "pay_with": pay_with,
            "created_at": now,
        }
        if pay_with == "balance":
            doc.update(status="paid", paid_at=now, payment_id=None)

            async def pay(s: TxSession) -> None:
                await self.db.deposits.insert_one(doc, session=s)
                await self.accounts.debit(user_id, amount, "deposit", ledger_ref(deposit_id), session=s)

            try:
                await run_in_transaction(self.client, pay)
            except DuplicateKeyError:
                raise DepositExists("you already have a deposit for this") from None
            deposit = Deposit.from_document(doc)
            await self.register(deposit)
            return deposit
        # The provider payment's own number (128 random bits): it names the payment everywhere.
        doc.update(status="pending", paid_at=None, payment_id=new_trade_no(DEPOSIT_PAYMENT_PREFIX))
        try:
            await self.db.deposits.insert_one(doc)
        except DuplicateKeyError:
            raise DepositExists("you already have a deposit for this") from None
        return Deposit.from_document(doc)

    def amount_due(self, user_id: int, session_id: int, lot_id: int | None) -> int:
        """The deposit due, or the refusal `create` would give (without opening anything)."""
        return self._amount_due(user_id, session_id, lot_id)

    def _amount_due(self, user_id: int, session_id: int, lot_id: int | None) -> int:
        """The deposit the engine will require; refuses targets that need none or are over."""
        book = self.engine.book
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

    async def _covered_by_session_deposit(self, user_id: int, session_id: int) -> bool:
        found = await self.db.deposits.find_one(
            {
                "user_id": user_id,
                "session_id": session_id,
                "lot_id": None,
                "status": {"$in": list(LIVE_DEPOSIT_STATUSES)},
            },
            {"_id": 1},
        )
        return found is not None

    async def register(self, deposit: Deposit) -> bool:
        """Tell the engine the deposit is paid; a failure is logged and repaired at the next start."""
        outcome = await self.engine.execute(
            RegisterDeposit(deposit.session_id, deposit.lot_id, deposit.user_id)
        )
        if not outcome.ok:
            log.error(
                "the engine did not register paid deposit %s: %s %s",
                deposit.id,
                outcome.code,
                outcome.message,
            )
        return outcome.ok

    async def get(self, deposit_id: int) -> Deposit:
        doc = await self.db.deposits.find_one({"_id": deposit_id})
        if doc is None:
            raise NotFound(f"no deposit {deposit_id}")
        return Deposit.from_document(doc)

    async def attach_pay_url(self, deposit_id: int, pay_url: str) -> None:
        await self.db.deposits.update_one({"_id": deposit_id}, {"$set": {"pay_url": pay_url}})

    async def by_payment_id(self, payment_id: str) -> Deposit:
        doc = await self.db.deposits.find_one({"payment_id": payment_id})
        if doc is None:
            raise NotFound("no such payment")
        return Deposit.from_document(doc)

    async def mark_paid(self, deposit_id: int) -> Deposit:
        """The provider confirmed payment: pending -> paid, then register. Idempotent."""
        doc = await self.db.deposits.find_one_and_update(
            {"_id": deposit_id, "status": "pending"},
            {"$set": {"status": "paid", "paid_at": utc_now()}},
            return_document=ReturnDocument.AFTER,
        )
        deposit = Deposit.from_document(doc) if doc is not None else await self.get(deposit_id)
        if deposit.status != "paid":
            raise DepositStateConflict(f"deposit {deposit_id} is {deposit.status}; it cannot be paid")
        # Registering again on a repeated notification is harmless and heals a lost first attempt.
        await self.register(deposit)
        return deposit

    async def mark_failed(self, deposit_id: int) -> Deposit:
        """The provider reported a failed payment: pending -> failed. Idempotent."""
        doc = await self.db.deposits.find_one_and_update(
            {"_id": deposit_id, "status": "pending"},
            {"$set": {"status": "failed", "failed_at": utc_now()}},
            return_document=ReturnDocument.AFTER,
        )
        deposit = Deposit.from_document(doc) if doc is not None else await self.get(deposit_id)
        if deposit.status != "failed":
            raise DepositStateConflict(f"deposit {deposit_id} is {deposit.status}; it cannot fail now")
        return deposit

    async def list_for_user(self, user_id: int, skip: int, limit: int) -> tuple[list[Deposit], int]:
        """The user's deposits, newest first."""
        query = {"user_id": user_id}
        total = await self.db.deposits.count_documents(query)
        cursor = self.db.deposits.find(query).sort("_id", -1).skip(skip).limit(limit)
        return [Deposit.from_document(doc) async for doc in cursor], total


async def reregister_paid(engine: Engine, db: Database) -> int:
    """Start-up: submit RegisterDeposit for every paid deposit of a session that has not ended and
    that the engine does not already hold; returns how many were submitted."""
    book = engine.book
    open_sessions = [sid for sid, s in book.sessions.items() if s.state is not SessionState.ENDED]
    if not open_sessions:
        return 0
    pending: list[tuple[int, asyncio.Future[Outcome]]] = []
    cursor = db.deposits.find(
        {"status": "paid", "session_id": {"$in": open_sessions}}, {"user_id": 1, "session_id": 1, "lot_id": 1}
    )
    async for doc in cursor:
        user_id, session_id, lot_id = int(doc["user_id"]), int(doc["session_id"]), doc.get("lot_id")
        if lot_id is None:
            if user_id in book.sessions[session_id].depositors:
                continue
        else:
            lot = book.lots.get(int(lot_id))
            if lot is None or user_id in lot.depositors:
                continue
            lot_id = int(lot_id)
        # Submitted together, the engine applies them all in one group commit.
        pending.append((int(doc["_id"]), engine.execute(RegisterDeposit(session_id, lot_id, user_id))))
    submitted = 0
    for deposit_id, future in pending:
        outcome = await future
        if outcome.ok:
            submitted += 1
        else:
            log.error("could not re-register deposit %s: %s %s", deposit_id, outcome.code, outcome.message)
    return submitted
