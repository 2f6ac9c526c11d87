"""Settlement's unit of work on MongoDB: one multi-document transaction on its own session.

`async with MongoUnitOfWork(...) as uow: ...; await uow.commit()` — leaving without commit aborts.
Errors MongoDB labels transient (write conflicts, a primary stepping down) leave as the port's
`Transient`, so `engine.settle.uow.atomically` runs the unit of work again; a commit whose outcome
is unknown is retried as the driver's `with_transaction` does.
"""

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import pymongo
from pymongo.errors import OperationFailure, PyMongoError

from engine.settle.deposits import DepositRecords, DepositUnitOfWork
from engine.settle.model import Conflict
from engine.settle.uow import (
    AuctionRecords,
    BalanceLedger,
    CouponRepository,
    DeductionRepository,
    DepositRepository,
    Ids,
    OrderRepository,
    ProviderPaymentRepository,
    RefundRepository,
    Transient,
    UnitOfWorkFactory,
)
from persistence.accounts import Accounts
from persistence.deposits import MongoDepositRecords
from persistence.mongo import Client, Database, TxSession, timeout_of
from persistence.settlement.repos import (
    MongoAuctionRecords,
    MongoCoupons,
    MongoDeductions,
    MongoDeposits,
    MongoIds,
    MongoLedger,
    MongoOrders,
    MongoProviderPayments,
    MongoRefunds,
)

_WRITE_CONFLICT = 112
_COMMIT_RETRIES = 10


class MongoUnitOfWork:
    orders: OrderRepository
    deposits: DepositRepository
    refunds: RefundRepository
    deductions: DeductionRepository
    coupons: CouponRepository
    provider_payments: ProviderPaymentRepository
    ledger: BalanceLedger
    auction: AuctionRecords
    ids: Ids
    deposit_records: DepositRecords  # deposits' unit of work (engine/settle/deposits.py) is this one too

    def __init__(self, client: Client, db: Database, accounts: Accounts) -> None:
        self.client = client
        self.db = db
        self.accounts = accounts
        self._session: TxSession | None = None
        self._committed = False
        self._deadline: Any = None  # the entered pymongo.timeout(...), when the client is bounded

    async def __aenter__(self) -> Self:
        # A bounded client (run.py's request path) bounds the whole unit, commit retries included:
        # MongoDB stalled, it ends in a timeout (503 UNAVAILABLE), not in minutes of retries.
        bound = timeout_of(self.client)
        self._deadline = pymongo.timeout(bound) if bound is not None else None
        if self._deadline is not None:
            self._deadline.__enter__()
        try:
            session = self.client.start_session()
            await session.start_transaction()
        except BaseException:
            self._leave_deadline()
            raise
        self._session = session
        self._committed = False
        db, s = self.db, session
        self.orders = MongoOrders(db, s)
        self.deposits = MongoDeposits(db, s)
        self.refunds = MongoRefunds(db, s)
        self.deductions = MongoDeductions(db, s)
        self.coupons = MongoCoupons(db, s)
        self.provider_payments = MongoProviderPayments(db, s)
        self.ledger = MongoLedger(self.accounts, s)
        self.auction = MongoAuctionRecords(db, s)
        self.ids = MongoIds(db)
        self.deposit_records = MongoDepositRecords(db, s)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        session = self._session
        self._session = None
        if session is None:
            return
        try:
            if not self._committed and session.in_transaction:
                # The server drops an abandoned transaction anyway.
                with contextlib.suppress(PyMongoError):
                    await session.abort_transaction()
        finally:
            await session.end_session()
            self._leave_deadline()
        if isinstance(error, PyMongoError):
            _translate(error)

    def _leave_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None:
            deadline.__exit__(None, None, None)

    async def commit(self) -> None:
        session = self._session
        assert session is not None, "commit outside `async with`"
        for _attempt in range(_COMMIT_RETRIES):
            try:
                await session.commit_transaction()
            except PyMongoError as error:
                if error.has_error_label("UnknownTransactionCommitResult") and not error.timeout:
                    continue
                _translate(error)
                raise
            self._committed = True
            return
        raise Conflict("the outcome of a transaction stayed unknown; try again")

    async def rollback(self) -> None:
        session = self._session
        if session is not None and session.in_transaction:
            await session.abort_transaction()


def _translate(error: PyMongoError) -> None:
    """Raise the port's exception for a MongoDB error a retry may cure; return for the rest.

    A timeout is not one: the bound (DEPENDENCY_TIMEOUT) ran out, and the caller answers 503
    UNAVAILABLE (web/errors.py) instead of retrying for `TRANSIENT_BUDGET_S`."""
    if error.timeout:
        return
    if error.has_error_label("TransientTransactionError"):
        raise Transient(str(error)) from error
    if isinstance(error, OperationFailure) and error.code == _WRITE_CONFLICT:
        raise Conflict("too many concurrent changes; try again") from error


def mongo_uow_factory(client: Client, db: Database, accounts: Accounts) -> UnitOfWorkFactory:
    return lambda: MongoUnitOfWork(client, db, accounts)


def mongo_deposit_uow_factory(
    client: Client, db: Database, accounts: Accounts
) -> Callable[[], DepositUnitOfWork]:
    return lambda: MongoUnitOfWork(client, db, accounts)
