"""Settlement's domain records: what the handlers (engine/settle/handlers.py) read and write through
the repositories of engine/settle/uow.py. Plain frozen values; no I/O.

Money is integer fen throughout. The storage formats (MongoDB documents) are the adapters' business
(persistence/settlement/); these records carry exactly what a decision needs.
"""

import dataclasses
import re
from typing import Any, Literal

from engine.book.errors import GavelError
from engine.book.types import Fen, LotId, Millis, SessionId, UserId
from engine.settle.rules import DeductionType, OrderStatus, PaymentSplit, UserCouponStatus

PayWith = Literal["balance", "provider"]
AddressSnapshot = dict[str, Any]
"""The delivery address as it was when an order was paid (the order keeps its own copy)."""

ADDRESS_FIELDS = ("name", "phone", "province", "city", "district", "detail")
MAX_COUPON_QUANTITY = 1_000_000
PHONE_PATTERN = re.compile(r"\+?[0-9][0-9 -]{4,19}")
NOT_USABLE = "that coupon is not yours, already used, expired, or for another session"


# -- errors a handler raises (each a stable 4xx code at the REST edge) ------------------------------
class Conflict(GavelError):
    """Concurrent changes kept a transaction from committing; the client may retry."""

    code = "CONFLICT"


class CouponNotClaimable(GavelError):
    code = "COUPON_NOT_CLAIMABLE"


class CouponSoldOut(GavelError):
    code = "COUPON_SOLD_OUT"


class CouponAlreadyClaimed(GavelError):
    code = "COUPON_ALREADY_CLAIMED"


class AddressLimit(GavelError):
    code = "ADDRESS_LIMIT"


class InvalidSettlementInput(GavelError):
    code = "VALIDATION"


# -- orders ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class NewOrder:
    """The order a sold lot becomes (status unpaid)."""

    id: int
    lot_id: LotId
    session_id: SessionId
    user_id: UserId
    price: Fen
    closed_at_ms: Millis
    deadline_ms: Millis


@dataclasses.dataclass(frozen=True, slots=True)
class PendingCharge:
    """A provider payment opened for an order: what it pays for, fixed when it was opened."""

    out_trade_no: str
    amount: Fen
    subject: str
    idempotency_key: str
    coupon_id: int | None
    address: AddressSnapshot
    deposit_id: int | None
    split: PaymentSplit
    pay_url: str | None
    created_at_ms: Millis


@dataclasses.dataclass(frozen=True, slots=True)
class OrderPayment:
    """How a paid order was paid: the split carried out and where its cash came from."""

    split: PaymentSplit
    pay_with: PayWith
    idempotency_key: str
    coupon_id: int | None
    deposit_id: int | None
    deposit_session_wide: bool
    cash_source: PayWith | None  # None when nothing was paid in cash
    out_trade_no: str | None

    @property
    def cash_amount(self) -> Fen:
        return self.split.to_pay


@dataclasses.dataclass(frozen=True, slots=True)
class Order:
    id: int
    lot_id: LotId
    session_id: SessionId
    user_id: UserId
    price: Fen
    status: OrderStatus
    deadline_ms: Millis
    attempts: int  # provider charges opened so far
    pending: PendingCharge | None
    payment: OrderPayment | None
    shipped: bool
    forfeit: Fen = 0  # deducted from the deposit when it became overdue


# -- deposits, refunds, deductions -------------------------------------------------------------------
DepositStatus = Literal["paid", "refunded", "consumed"]


@dataclasses.dataclass(frozen=True, slots=True)
class Deposit:
    """A paid deposit as read inside a unit of work; `rev` guards every write made from it."""

    id: int
    user_id: UserId
    session_id: SessionId
    lot_id: LotId | None  # None: the whole-session deposit
    amount: Fen
    remaining: Fen  # fen still held
    rev: int | None
    pay_with: PayWith
    # Its provider payment's trade number (`dep-` + 128 random bits); None when paid from the
    # balance or by an older installation, whose number was `dep-{id}`.
    out_trade_no: str | None = None

    @property
    def session_wide(self) -> bool:
        return self.lot_id is None


@dataclasses.dataclass(frozen=True, slots=True)
class Refund:
    """A refund record (pending until the money has moved); at most one per deposit."""

    id: int
    deposit_id: int
    user_id: UserId
    session_id: SessionId
    lot_id: LotId | None
    amount: Fen
    via: PayWith  # back the way the deposit was paid
    reason: str
    created_at_ms: Millis
    pending: bool = True
    out_trade_no: str | None = None  # the deposit's trade number, for a refund through the provider


@dataclasses.dataclass(frozen=True, slots=True)
class Deduction:
    """Part of a deposit kept by the platform (paying the order, or forfeited); one per order."""

    id: int
    order_id: int
    deposit_id: int
    user_id: UserId
    session_id: SessionId
    amount: Fen
    type: DeductionType
    at_ms: Millis


# -- coupons ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class CouponOffer:
    """An auction coupon (优惠券) of a session, claimable `quantity` times in its window."""

    id: int
    session_id: SessionId
    title: str
    amount: Fen
    quantity: int
    left: int
    claim_start_ms: Millis
    claim_end_ms: Millis


@dataclasses.dataclass(frozen=True, slots=True)
class UserCoupon:
    """A claimed coupon; pays (part of) one order of its session."""

    id: int
    coupon_id: int
    user_id: UserId
    session_id: SessionId
    title: str
    amount: Fen
    status: UserCouponStatus
    claimed_at_ms: Millis


# -- provider payments -------------------------------------------------------------------------------
ProviderOutcome = Literal["applied", "refund_pending", "refunded"]


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderPayment:
    """A verified provider notification, recorded once per out_trade_no."""

    out_trade_no: str
    order_id: int | None
    amount: Fen
    outcome: ProviderOutcome
    reason: str
    received_at_ms: Millis


# -- addresses -------------------------------------------------------------------------------------
def address_snapshot(address: dict[str, Any]) -> AddressSnapshot:
    """What the order keeps: the address as it was when paid, whatever happens to it later."""
    snapshot: AddressSnapshot = {name: address.get(name, "") for name in ADDRESS_FIELDS}
    snapshot["address_id"] = address["_id"]
    return snapshot


def check_address(fields: dict[str, Any], *, partial: bool = False) -> None:
    """A delivery address's fields: known names, the required ones (unless `partial`), a phone."""
    unknown = set(fields) - set(ADDRESS_FIELDS)
    if unknown:
        raise InvalidSettlementInput(f"unknown address field(s): {', '.join(sorted(unknown))}")
    if not partial:
        missing = [name for name in ("name", "phone", "detail") if not fields.get(name)]
        if missing:
            raise InvalidSettlementInput(f"missing address field(s): {', '.join(missing)}")
    if "phone" in fields and not PHONE_PATTERN.fullmatch(str(fields["phone"])):
        raise InvalidSettlementInput("phone must be 5-20 digits, spaces or dashes, optionally after '+'")
