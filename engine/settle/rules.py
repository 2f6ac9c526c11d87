"""The payment day of an auction (seed 000), as pure integer rules. No I/O, no clock, no asyncio.

Everything the settlement handlers decide about money is decided here, from numbers the caller
read inside its transaction; `docs/settlement.md` states the same rules in prose.

Vocabulary (fen throughout):
    P  the deal price (成交价) of the lot;
    C  the face value of the coupon (优惠券) the buyer chose, 0 without one;
    D  what remains of the deposit (保证金) that applies to the order: the buyer's per-lot deposit
       for that lot if there is one, else their whole-session deposit, else nothing (0).
"""

import dataclasses
import enum

from engine.book.errors import IllegalTransition
from engine.book.types import Fen, Millis

HOUR_MS: Millis = 3_600_000
DEFAULT_PAYMENT_WINDOW_MS: Millis = 24 * HOUR_MS
"""A winner has this long after the lot closes to pay (configurable per deployment)."""


# -- states (the seed's numbers) -------------------------------------------------------------------
class OrderStatus(enum.IntEnum):
    UNPAID = 1  # 未支付
    AWAITING_DELIVERY = 2  # 待收货 (paid; shipped or not yet)
    COMPLETED = 3  # 已完成
    OVERDUE = 4  # 逾期未支付

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def text(self) -> str:
        return _ORDER_TEXT[self]


_ORDER_TEXT = {
    OrderStatus.UNPAID: "未支付",
    OrderStatus.AWAITING_DELIVERY: "待收货",
    OrderStatus.COMPLETED: "已完成",
    OrderStatus.OVERDUE: "逾期未支付",
}

ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.UNPAID: frozenset({OrderStatus.AWAITING_DELIVERY, OrderStatus.OVERDUE}),
    OrderStatus.AWAITING_DELIVERY: frozenset({OrderStatus.COMPLETED}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.OVERDUE: frozenset(),
}


def check_order_transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """`target` if an order may move there from `current`; IllegalTransition otherwise."""
    if target not in ORDER_TRANSITIONS[current]:
        raise IllegalTransition(f"an order cannot move from {current.key} to {target.key}")
    return target


class BidStatus(enum.IntEnum):
    """The status of a bid record (出价记录); records without one are still 1."""

    BIDDING = 1  # 竞价
    WON = 2  # 成交
    OVERDUE = 3  # 逾期未付款


class DeductionType(enum.StrEnum):
    """扣款类型: why a deposit was (partly) kept by the platform."""

    OVERDUE = "overdue"  # 逾期扣款: the winner did not pay in time (a forfeit)
    PAYMENT = "payment"  # 支付抵扣: the deposit paid (part of) the order


class RefundStatus(enum.StrEnum):
    PENDING = "pending"  # 待退款: decided and recorded, the money has not moved yet
    REFUNDED = "refunded"  # 退款成功


class CouponState(enum.IntEnum):
    NOT_STARTED = 1  # 未开始
    CLAIMING = 2  # 领取中
    ENDED = 3  # 已结束


class UserCouponStatus(enum.IntEnum):
    UNUSED = 1  # 未使用
    USED = 2  # 已使用 (linked to the order it paid)
    EXPIRED = 3  # 已过期


# -- time ----------------------------------------------------------------------------------------
def order_deadline(closed_at: Millis, payment_window: Millis = DEFAULT_PAYMENT_WINDOW_MS) -> Millis:
    """The order must be paid before this instant (close + the payment window)."""
    if payment_window <= 0:
        raise ValueError("the payment window must be positive")
    return closed_at + payment_window


def is_due(deadline: Millis, now: Millis) -> bool:
    """An unpaid order becomes overdue at its deadline, not a millisecond later."""
    return now >= deadline


def coupon_state(now: Millis, claim_start: Millis, claim_end: Millis) -> CouponState:
    """A coupon is claimable in [claim_start, claim_end), judged by the scheduler's clock."""
    if now < claim_start:
        return CouponState.NOT_STARTED
    if now < claim_end:
        return CouponState.CLAIMING
    return CouponState.ENDED


# -- money ---------------------------------------------------------------------------------------
class PaymentCase(enum.Enum):
    """The four cases of the seed's rule "成交价 − 优惠券 − 保证金, then balance"."""

    COUPON_COVERS = "coupon_covers"  # P − C ≤ 0
    DEPOSIT_COVERS_EXACTLY = "deposit_covers_exactly"  # P − C − D = 0
    DEPOSIT_EXCEEDS = "deposit_exceeds"  # P − C − D < 0
    BALANCE_DUE = "balance_due"  # P − C − D > 0


@dataclasses.dataclass(frozen=True, slots=True)
class PaymentSplit:
    """Where every fen of the price and of the deposit goes when an order is paid.

    Always: coupon_used + deposit_deducted + to_pay == price, and
            deposit_deducted + deposit_refunded + deposit_kept == the deposit that applied.
    """

    case: PaymentCase
    coupon_used: Fen  # the discount actually given: min(C, P)
    deposit_deducted: Fen  # 支付抵扣: taken from the deposit towards the price
    deposit_refunded: Fen  # given back now (to the balance or through the provider)
    deposit_kept: Fen  # stays held (a whole-session deposit still needed)
    to_pay: Fen  # what the buyer still pays, from the balance or through the provider

    @property
    def paid_amount(self) -> Fen:
        """The order's real paid amount (实际支付金额): the price less the coupon."""
        return self.deposit_deducted + self.to_pay


def _check_amounts(**amounts: Fen) -> None:
    for name, value in amounts.items():
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be a non-negative integer number of fen, not {value!r}")


def split_payment(
    price: Fen,
    coupon: Fen,
    deposit: Fen,
    *,
    deposit_is_session_wide: bool,
    session_deposit_needed: bool,
) -> PaymentSplit:
    """Split paying an order of `price` with a coupon worth `coupon` and a deposit holding `deposit`.

    `session_deposit_needed`: for a whole-session deposit, True while its owner has other unpaid
    orders in the session or the session has not ended (they may still win lots); what the
    payment does not take then stays held instead of being refunded. Ignored for per-lot
    deposits, whose rest is always refunded (the lot is closed: nothing else can need it).
    """
    _check_amounts(price=price, coupon=coupon, deposit=deposit)
    coupon_used = min(coupon, price)
    due = price - coupon_used
    deducted = min(deposit, due)
    to_pay = due - deducted
    rest = deposit - deducted
    keep = deposit_is_session_wide and session_deposit_needed
    if due == 0:
        case = PaymentCase.COUPON_COVERS
    elif to_pay > 0:
        case = PaymentCase.BALANCE_DUE
    elif rest == 0:
        case = PaymentCase.DEPOSIT_COVERS_EXACTLY
    else:
        case = PaymentCase.DEPOSIT_EXCEEDS
    return PaymentSplit(
        case=case,
        coupon_used=coupon_used,
        deposit_deducted=deducted,
        deposit_refunded=0 if keep else rest,
        deposit_kept=rest if keep else 0,
        to_pay=to_pay,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ForfeitSplit:
    """What happens to the applicable deposit when its order becomes overdue.

    deducted + refunded + kept == the deposit that applied.
    """

    deducted: Fen  # 逾期扣款
    refunded: Fen
    kept: Fen


def forfeit(
    price: Fen,
    deposit: Fen,
    *,
    deposit_is_session_wide: bool,
    session_deposit_needed: bool,
) -> ForfeitSplit:
    """A non-payer forfeits the deposit that applies to the order, never more than the deal price.

    Per-lot deposit: min(D, P) is deducted, any rest (only when the deposit exceeded the price)
    is refunded. Whole-session deposit: min(D, P) is deducted from what remains of it; the rest
    stays held while the session deposit is still needed (other unpaid orders, or the session
    has not ended) and is refunded otherwise. The cap keeps a default on a cheap lot from costing
    a whole large session deposit, and mirrors payment, which never takes more than the price.
    """
    _check_amounts(price=price, deposit=deposit)
    deducted = min(deposit, price)
    rest = deposit - deducted
    keep = deposit_is_session_wide and session_deposit_needed
    return ForfeitSplit(deducted=deducted, refunded=0 if keep else rest, kept=rest if keep else 0)


def session_deposit_needed(*, session_ended: bool, other_unpaid_orders: int) -> bool:
    """A whole-session deposit is held until its session has ended and none of its owner's
    (other) orders in the session is unpaid."""
    if other_unpaid_orders < 0:
        raise ValueError("other_unpaid_orders must not be negative")
    return not session_ended or other_unpaid_orders > 0


def session_deposit_release(remaining: Fen, *, session_ended: bool, unpaid_orders: int) -> Fen:
    """How much of a whole-session deposit to refund now: all that remains once the session has
    ended and its owner has no unpaid order in it (won nothing, or paid or forfeited every win);
    nothing before."""
    _check_amounts(remaining=remaining)
    if session_deposit_needed(session_ended=session_ended, other_unpaid_orders=unpaid_orders):
        return 0
    return remaining


def refund_at_close(*, deposit_owner: int, winner: int | None) -> bool:
    """When a lot closes, every per-lot deposit on it is refunded except the winner's (which is held
    against the order). `winner` None: unsold, everyone gets theirs back."""
    return winner is None or deposit_owner != winner


# -- the money invariant ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class MoneyTotals:
    """Sums over the whole platform, for the conservation check in tests and audits."""

    balances: Fen  # Σ users.balance
    deposits_held: Fen  # Σ paid deposits − their deductions − their completed refunds
    paid_to_platform: Fen  # Σ order payments in cash (balance + provider) + Σ deductions
    refunded_through_provider: Fen  # money that left through the provider (refunds done)
    owed_through_provider: Fen  # provider refunds decided but not yet confirmed
    credited: Fen  # Σ admin credits + Σ amounts received through the provider

    @property
    def conserved(self) -> bool:
        """Nothing created, nothing lost: every fen credited is somewhere."""
        return (
            self.balances
            + self.deposits_held
            + self.paid_to_platform
            + self.refunded_through_provider
            + self.owed_through_provider
            == self.credited
        )
