"""Settlement's storage ports: small repositories and the unit of work that groups them.

Handlers (engine/settle/handlers.py) decide; repositories only load, save and make guarded updates
(compare-and-set on `rev` or status; a False answer means "changed since you read it"). A unit of
work is one transaction: `async with uow: ...; await uow.commit()`; leaving without commit rolls
back. `atomically` runs a handler in a fresh unit of work and runs it again when a guarded write
found the data changed (StaleRead) or the store reports a transient conflict (Transient).

Implementations: persistence/settlement/ (MongoDB, one multi-document transaction per unit of
work) and tests/engine/settle/fakes.py (in memory).
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self, TypeVar

from engine.book.types import Fen, LotId, Millis, SessionId, UserId
from engine.settle.model import (
    AddressSnapshot,
    Conflict,
    CouponOffer,
    Deduction,
    Deposit,
    DepositStatus,
    NewOrder,
    Order,
    OrderPayment,
    PendingCharge,
    ProviderPayment,
    Refund,
    UserCoupon,
)
from engine.settle.worker import OutboxItem

T = TypeVar("T")


class Retry(Exception):
    """The unit of work must run again from the start (nothing it wrote was kept)."""


class StaleRead(Retry):
    """A guarded write found the data changed since this unit of work read it."""


class Transient(Retry):
    """The store could not commit now (a write conflict, a failover); running again may succeed."""


class Duplicate(Exception):
    """A unique key (one refund per deposit, one coupon per user, one record per trade number) is
    taken: a concurrent unit of work did this first. Raised by `add` methods."""


# -- repositories --------------------------------------------------------------------------------------
class OrderRepository(Protocol):
    async def get(self, order_id: int) -> Order | None: ...

    async def get_for_user(self, order_id: int, user_id: UserId) -> Order | None: ...

    async def id_for_lot(self, lot_id: LotId) -> int | None: ...

    async def id_for_trade_no(self, out_trade_no: str) -> int | None:
        """The order one of whose provider charges (any attempt) carried `out_trade_no`."""
        ...

    async def add(self, order: NewOrder) -> None: ...

    async def count_unpaid(self, user_id: UserId, session_id: SessionId, exclude: int = 0) -> int: ...

    async def users_with_unpaid(self, session_id: SessionId) -> list[UserId]: ...

    async def due(self, now_ms: Millis, limit: int) -> list[int]:
        """Unpaid orders whose deadline has come, oldest deadline first."""
        ...

    async def unsynced_overdue(self, limit: int) -> list[Order]:
        """Overdue orders whose engine sync is not confirmed."""
        ...

    async def mark_engine_synced(self, order_id: int) -> None: ...

    async def open_charge(self, order_id: int, expected_attempts: int, charge: PendingCharge) -> bool:
        """Set the pending charge, bump `attempts` and keep the charge's trade number among the
        order's (for `id_for_trade_no`) if the order is unpaid with `expected_attempts`."""
        ...

    async def attach_pay_url(self, order_id: int, out_trade_no: str, pay_url: str) -> None: ...

    async def mark_paid(
        self, order_id: int, payment: OrderPayment, address: AddressSnapshot, now_ms: Millis
    ) -> bool:
        """unpaid -> awaiting delivery (clears the pending charge); False if not unpaid."""
        ...

    async def mark_overdue(self, order_id: int, forfeit: Fen, deposit_id: int | None, now_ms: Millis) -> bool:
        """unpaid -> overdue, engine sync pending; False if not unpaid."""
        ...

    async def mark_shipped(self, order_id: int, tracking_no: str | None, now_ms: Millis) -> bool:
        """Set shipped if awaiting delivery and not shipped yet."""
        ...

    async def mark_completed(self, order_id: int, now_ms: Millis) -> bool:
        """awaiting delivery and shipped -> completed."""
        ...


class DepositRepository(Protocol):
    async def paid_for_lot(self, user_id: UserId, lot_id: LotId) -> Deposit | None: ...

    async def paid_for_session(self, user_id: UserId, session_id: SessionId) -> Deposit | None:
        """The user's paid whole-session deposit (lot None) of the session."""
        ...

    async def get_paid(self, deposit_id: int) -> Deposit | None: ...

    async def paid_on_lot(self, lot_id: LotId) -> list[Deposit]: ...

    async def paid_session_wide(self, session_id: SessionId, user_id: UserId | None) -> list[int]: ...

    async def paid_lot_deposits(self, limit: int) -> list[Deposit]: ...

    async def paid_session_wide_in(self, session_ids: list[SessionId], limit: int) -> list[Deposit]: ...

    async def set_remaining(self, deposit: Deposit, remaining: Fen, status: DepositStatus) -> bool:
        """Write what the deposit still holds if it is paid with the `rev` read (always bumps rev)."""
        ...


class RefundRepository(Protocol):
    async def for_deposit(self, deposit_id: int) -> Refund | None: ...

    async def get(self, refund_id: int) -> Refund | None: ...

    async def add(self, refund: Refund) -> None:
        """Duplicate if the deposit has a refund already."""
        ...

    async def pending(self, limit: int) -> list[Refund]: ...

    async def mark_refunded(self, refund_id: int, now_ms: Millis, ledger_ref: str | None) -> bool:
        """pending -> refunded."""
        ...


class DeductionRepository(Protocol):
    async def add(self, deduction: Deduction) -> None:
        """Duplicate if the order has a deduction already."""
        ...


class CouponRepository(Protocol):
    async def offer(self, coupon_id: int) -> CouponOffer | None: ...

    async def add_offer(self, offer: CouponOffer) -> None: ...

    async def take_one(self, coupon_id: int) -> bool:
        """left -= 1, claimed += 1 if any is left."""
        ...

    async def add_user_coupon(self, coupon: UserCoupon) -> None:
        """Duplicate if the user has this coupon already."""
        ...

    async def unused(
        self, user_coupon_id: int, user_id: UserId, session_id: SessionId
    ) -> UserCoupon | None: ...

    async def unused_of(self, user_id: UserId, session_id: SessionId) -> list[UserCoupon]:
        """The user's unused coupons of the session, largest first."""
        ...

    async def mark_used(self, user_coupon_id: int, order_id: int, now_ms: Millis) -> bool:
        """unused -> used by `order_id`."""
        ...

    async def expire_unused(
        self, session_id: SessionId, user_id: UserId | None, spare: list[UserId], now_ms: Millis
    ) -> int:
        """Expire the unused coupons of the session (of one user, or all but `spare`)."""
        ...


class ProviderPaymentRepository(Protocol):
    async def get(self, out_trade_no: str) -> ProviderPayment | None: ...

    async def add(self, payment: ProviderPayment) -> None:
        """Duplicate if the trade number was recorded already."""
        ...

    async def refunds_due(self, limit: int) -> list[ProviderPayment]: ...

    async def mark_refunded(self, out_trade_no: str, now_ms: Millis) -> None:
        """refund_pending -> refunded."""
        ...


class BalanceLedger(Protocol):
    """Users' balances; every movement writes a ledger entry (with the balance after it) and is
    idempotent on `ref`."""

    async def credit(self, user_id: UserId, amount: Fen, kind: str, ref: str) -> Fen:
        """Returns the balance after."""
        ...

    async def debit(self, user_id: UserId, amount: Fen, kind: str, ref: str) -> Fen:
        """Never below zero (raises INSUFFICIENT_BALANCE). Returns the balance after."""
        ...

    async def balance(self, user_id: UserId) -> Fen: ...


class AuctionRecords(Protocol):
    """What settlement writes beside its own collections: lots, sessions, bid records, users and the
    outbox of closed lots the archiver fills."""

    async def outbox_batch(self, limit: int) -> list[OutboxItem]: ...

    async def outbox_pending(self, lot_id: LotId) -> bool: ...

    async def session_has_pending_closes(self, session_id: SessionId) -> bool: ...

    async def mark_outbox_recorded(self, lot_id: LotId, order_id: int | None) -> None: ...

    async def mark_outbox_done(self, lot_id: LotId) -> None: ...

    async def done_closes(self, lot_ids: list[LotId]) -> dict[LotId, OutboxItem]: ...

    async def lot_sold(self, lot_id: LotId, price: Fen, winner_id: UserId, order_id: int) -> None: ...

    async def lot_unsold(self, lot_id: LotId) -> None:
        """Unsold, unless the lot is marked overdue already."""
        ...

    async def lot_overdue(self, lot_id: LotId) -> None: ...

    async def lot_title(self, lot_id: LotId) -> str: ...

    async def session_sold(self, session_id: SessionId, price: Fen, bid_count: int) -> None: ...

    async def session_unsold(self, session_id: SessionId, bid_count: int) -> None: ...

    async def session_exists(self, session_id: SessionId) -> bool: ...

    async def session_ended(self, session_id: SessionId) -> bool: ...

    async def sessions_to_settle(self, limit: int) -> list[SessionId]: ...

    async def settled_sessions(self) -> list[SessionId]: ...

    async def mark_deposits_settled(self, session_id: SessionId) -> None: ...

    async def mark_bid_won(self, lot_id: LotId, bidder: UserId, price: Fen) -> bool:
        """Mark the winner's latest bid record at `price` won; False if there is none."""
        ...

    async def mark_bids_overdue(self, lot_id: LotId, bidder: UserId) -> None:
        """The bidder's won bid records on the lot become overdue."""
        ...

    async def flag_non_payer(self, user_id: UserId, order_id: int) -> None: ...

    async def clear_non_payer(self, user_id: UserId) -> bool:
        """False if the user was not flagged."""
        ...

    async def user_exists(self, user_id: UserId) -> bool: ...

    async def address(self, address_id: int, user_id: UserId) -> AddressSnapshot | None:
        """The user's delivery address (with its `_id`), None if not theirs or missing."""
        ...


class Ids(Protocol):
    async def next(self, name: str) -> int:
        """The next id of `name` (gaps possible, repeats never; not rolled back with the unit of work)."""
        ...

    def trade_no(self, prefix: str) -> str:
        """A new provider trade number `{prefix}-…` that cannot be guessed (payments/trade_numbers.py
        in production): the record it pays for stores it."""
        ...


class UnitOfWork(Protocol):
    orders: OrderRepository
    deposits: DepositRepository
    refunds: RefundRepository
    deductions: DeductionRepository
    coupons: CouponRepository
    provider_payments: ProviderPaymentRepository
    ledger: BalanceLedger
    auction: AuctionRecords
    ids: Ids

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Roll back unless committed (an exception leaves nothing written)."""
        ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]

STALE_RETRIES = 20
TRANSIENT_BUDGET_S = 120.0  # as long as the MongoDB driver's own transaction retry
_BACKOFF_INITIAL_S = 0.005
_BACKOFF_MAX_S = 0.5


class Transaction(Protocol):
    """What `atomically` needs of a unit of work (settlement's, or deposits' in engine/settle/deposits.py)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...


U = TypeVar("U", bound=Transaction)


async def atomically(
    new_uow: Callable[[], U],
    work: Callable[[U], Awaitable[T]],
    *,
    stale_retries: int = STALE_RETRIES,
    transient_budget_s: float = TRANSIENT_BUDGET_S,
) -> T:
    """Run `work` in a unit of work and commit; run it again on StaleRead (at most `stale_retries`
    times) or Transient (with backoff, for up to `transient_budget_s`). Still failing: Conflict."""
    started = time.monotonic()
    stale = transient = 0
    while True:
        try:
            async with new_uow() as uow:
                result = await work(uow)
                await uow.commit()
            return result
        except StaleRead:
            stale += 1
            if stale >= stale_retries:
                raise Conflict("too many concurrent changes; try again") from None
        except Transient as error:
            transient += 1
            # Jittered exponential backoff, as the driver does: concurrent writers spread out.
            backoff = random.random() * min(_BACKOFF_INITIAL_S * 1.5**transient, _BACKOFF_MAX_S)
            if time.monotonic() + backoff - started >= transient_budget_s:
                raise Conflict("too many concurrent changes; try again") from error
            await asyncio.sleep(backoff)
