"""The shop order's whole life: its states, the one table of legal moves, and the rules of each move.

States (the seed's): `pending` (created, waiting for the provider), `paid`, `refund_requested`,
`refunded`, `cancelled_by_user`, `cancelled_by_timeout`. Orders stored before this module say
`cancelled` (only the sweeper cancelled then): they read as `cancelled_by_timeout`.

    pending ──notify──▶ paid ──owner asks──▶ refund_requested ──admin approves──▶ refunded
       │                 ▲                          │
       │                 └──────admin rejects───────┘
       ├──owner cancels──▶ cancelled_by_user
       └──deadline───────▶ cancelled_by_timeout

Every move is a conditional update on the current status (the store's `move`), so two concurrent
moves out of one state cannot both happen; the money of a move is written in the same unit of
work with a ledger ref per order (`shop-release:`, `shop-refund:`), so it happens at most once.

A pending order may have several provider attempts (`attempts`, each a random `out_trade_no`):
paying again opens a new one and closes the previous one where the provider can. The first
verified notification pays the order (`paid_trade_no`); any other attempt's payment that arrives
after the order left `pending` is refunded through the provider (ref `late:{out_trade_no}`).

A refund is approved in three steps, each idempotent, so a retry or a restart finishes it and never
pays twice: (1) one unit of work: `refund.status` requested -> approved, the balance part credited
(ledger `shop_refund`, ref `shop-refund:{order_no}`), the order's enrolments ended (a degree's
enrolment becomes "refunded"; a degree already started is never refunded: DEGREE_STARTED); (2) the
provider part refunded through the provider (ref `shop-refund:{order_no}`, idempotent there);
(3) `refund_requested -> refunded`. An order left between (1) and (3) is finished by the sweeper.

Pure functions and handlers over the ports of shop/ports.py; shop/service.py runs them.
"""

import datetime
from collections.abc import Mapping
from typing import Final, Literal

from engine.book.errors import GavelError, InvalidInput, NotFound
from shop import degree_buy
from shop.model import Record, as_utc
from shop.ports import ShopUnitOfWork

PENDING: Final = "pending"
PAID: Final = "paid"
REFUND_REQUESTED: Final = "refund_requested"
REFUNDED: Final = "refunded"
CANCELLED_BY_USER: Final = "cancelled_by_user"
CANCELLED_BY_TIMEOUT: Final = "cancelled_by_timeout"
LEGACY_CANCELLED: Final = "cancelled"  # what the sweeper wrote before the states were split

STATUSES: Final = (PENDING, PAID, REFUND_REQUESTED, REFUNDED, CANCELLED_BY_USER, CANCELLED_BY_TIMEOUT)
CANCELLED: Final = (CANCELLED_BY_USER, CANCELLED_BY_TIMEOUT)
# The order holds what it bought (its enrolments run) in these states.
HOLDING: Final = (PAID, REFUND_REQUESTED)

Move = Literal[
    "pay", "cancel_by_user", "cancel_by_timeout", "request_refund", "approve_refund", "reject_refund"
]

# The one table: (from, move) -> to. Anything not here is illegal.
TRANSITIONS: Final[Mapping[tuple[str, str], str]] = {
    (PENDING, "pay"): PAID,
    (PENDING, "cancel_by_user"): CANCELLED_BY_USER,
    (PENDING, "cancel_by_timeout"): CANCELLED_BY_TIMEOUT,
    (PAID, "request_refund"): REFUND_REQUESTED,
    (REFUND_REQUESTED, "approve_refund"): REFUNDED,
    (REFUND_REQUESTED, "reject_refund"): PAID,
}

CANCEL_REASONS: Final[Mapping[str, Move]] = {"user": "cancel_by_user", "timeout": "cancel_by_timeout"}
MAX_REFUND_REASON: Final = 200
RELEASE_KIND: Final = "shop_release"
REFUND_KIND: Final = "shop_refund"


# -- errors (their HTTP statuses are in web/errors.py) ------------------------------------------
class IllegalOrderMove(GavelError):
    """A move the table does not allow from the order's current state."""

    code = "ILLEGAL_STATE"


class OrderNotCancellable(IllegalOrderMove):
    code = "ORDER_NOT_CANCELLABLE"


class OrderNotRefundable(IllegalOrderMove):
    code = "ORDER_NOT_REFUNDABLE"


class OrderNotPayable(IllegalOrderMove):
    code = "ORDER_NOT_PAYABLE"


class RefundNotRequested(IllegalOrderMove):
    code = "REFUND_NOT_REQUESTED"


_REFUSAL: Final[Mapping[str, type[IllegalOrderMove]]] = {
    "cancel_by_user": OrderNotCancellable,
    "cancel_by_timeout": OrderNotCancellable,
    "request_refund": OrderNotRefundable,
    "pay": OrderNotPayable,
    "approve_refund": RefundNotRequested,
    "reject_refund": RefundNotRequested,
}


# -- the table ----------------------------------------------------------------------------------
def status_of(order: Record) -> str:
    """The order's status in today's names (an old `cancelled` was always a timeout)."""
    status = str(order["status"])
    return CANCELLED_BY_TIMEOUT if status == LEGACY_CANCELLED else status


def stored_statuses(status: str) -> tuple[str, ...]:
    """What a status filter must match in storage (old documents included)."""
    return (status, LEGACY_CANCELLED) if status == CANCELLED_BY_TIMEOUT else (status,)


def next_status(status: str, move: Move) -> str:
    """The status after `move`; raises the move's refusal (a 409 code) when the table forbids it."""
    status = CANCELLED_BY_TIMEOUT if status == LEGACY_CANCELLED else status
    target = TRANSITIONS.get((status, move))
    if target is None:
        raise _REFUSAL[move](f"an order that is {status} cannot {move.replace('_', ' ')}")
    return target


# -- provider attempts ----------------------------------------------------------------------------
def trade_numbers(order: Record) -> list[str]:
    """Every provider attempt of the order, oldest first (older orders have just `out_trade_no`)."""
    numbers = [str(a["out_trade_no"]) for a in order.get("attempts") or ()]
    current = order.get("out_trade_no")
    if current and current not in numbers:
        numbers.append(str(current))
    return numbers


def paid_trade_no(order: Record) -> str | None:
    """The attempt that paid the order (older paid orders had one attempt)."""
    if order.get("paid_trade_no"):
        return str(order["paid_trade_no"])
    if status_of(order) in (PAID, REFUND_REQUESTED, REFUNDED) and int(order.get("to_pay", 0)) > 0:
        current = order.get("out_trade_no")
        return str(current) if current else None
    return None


PaymentOutcome = Literal["pay", "duplicate", "refund"]


def payment_outcome(order: Record, out_trade_no: str) -> PaymentOutcome:
    """What a verified payment of `out_trade_no` does to the order: pay it (pending), nothing (the
    attempt that already paid it, notified again), or a refund (the order was paid by another
    attempt, or cancelled: its coupons and balance may be in use elsewhere)."""
    status = status_of(order)
    if status == PENDING:
        return "pay"
    if status in (PAID, REFUND_REQUESTED, REFUNDED) and paid_trade_no(order) == out_trade_no:
        return "duplicate"
    return "refund"


def check_retry(order: Record, now: datetime.datetime) -> None:
    """A new provider attempt is for a pending order whose deadline has not passed."""
    if status_of(order) != PENDING:
        raise OrderNotPayable(f"an order that is {status_of(order)} cannot be paid")
    deadline = order.get("pay_deadline")
    if deadline is not None and as_utc(deadline) <= now:
        raise OrderNotPayable("the order's time to pay is over; it is being cancelled")


# -- refunds --------------------------------------------------------------------------------------
def check_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) > MAX_REFUND_REASON:
        raise InvalidInput(f"the reason is at most {MAX_REFUND_REASON} characters")
    return reason


def refund_request(order: Record, reason: str, now: datetime.datetime) -> Record:
    """The refund record of a request: the balance part back to the balance, the provider part
    back through the provider that collected it."""
    provider_part = int(order.get("to_pay", 0)) if paid_trade_no(order) else 0
    return {
        "status": "requested",
        "reason": check_reason(reason),
        "amount_balance": int(order.get("balance_used", 0)),
        "amount_provider": provider_part,
        "trade_no": paid_trade_no(order),
        "requested_at": now,
        "decided_at": None,
        "decision_reason": "",
        "refunded_at": None,
    }


def refund_ref(order_no: str) -> str:
    return f"shop-refund:{order_no}"


def enrolment_after_refund(enrolment: Record, order_no: str, days: int, now: datetime.datetime) -> Record:
    """The changes that take back what order `order_no` bought of an enrolment.

    An enrolment bought only by this order ends (status `refunded`: never served again). One that
    other orders extended keeps their days: its end moves back by this order's `days`, and it ends
    only if that end is already past."""
    orders = list(enrolment.get("order_nos") or ())
    if not orders and enrolment.get("order_no"):
        orders = [str(enrolment["order_no"])]
    remaining = [o for o in orders if o != order_no]
    refunded = [*(enrolment.get("refunded_order_nos") or ()), order_no]
    if not remaining:
        return {"status": REFUNDED, "ended_at": now, "refunded_order_nos": refunded}
    valid_to = as_utc(enrolment["valid_to"]) - datetime.timedelta(days=days)
    changes: Record = {"valid_to": valid_to, "order_nos": remaining, "refunded_order_nos": refunded}
    if valid_to <= now:
        changes.update(status=REFUNDED, ended_at=now)
    return changes


# -- handlers over the ports (each runs in one unit of work) ---------------------------------------
async def cancel(uow: ShopUnitOfWork, order_no: str, now: datetime.datetime, reason: str) -> Record | None:
    """pending -> cancelled_by_user / cancelled_by_timeout (conditional, so a concurrent payment or
    a concurrent cancel wins or loses cleanly), held coupons back to unused, the held balance
    credited back (ref `shop-release:{order_no}`: the same for both cancels, so at most once).
    Returns the order after, or None when it was no longer pending."""
    move = CANCEL_REASONS[reason]
    order = await uow.orders.move(
        order_no,
        {"status": PENDING},
        {"status": next_status(PENDING, move), "cancelled_at": now, "cancel_reason": reason},
    )
    if order is None:
        return None
    await uow.coupons.release_held(order_no)
    if int(order["balance_used"]) > 0:
        await uow.ledger.credit(
            int(order["user_id"]), int(order["balance_used"]), RELEASE_KIND, f"shop-release:{order_no}"
        )
    return order


async def request_refund(
    uow: ShopUnitOfWork, user_id: int, order_no: str, reason: str, now: datetime.datetime
) -> Record:
    """The owner asks for a refund of a paid order: paid -> refund_requested."""
    order = await uow.orders.get(order_no)
    if order is None or order["user_id"] != user_id:
        raise NotFound(f"no order {order_no}")
    target = next_status(status_of(order), "request_refund")
    await degree_buy.check_refundable(uow, order)  # a started degree is not refunded
    moved = await uow.orders.move(
        order_no, {"status": PAID}, {"status": target, "refund": refund_request(order, reason, now)}
    )
    if moved is None:
        raise OrderNotRefundable("the order changed meanwhile; look at it again")
    return moved


async def approve_refund(
    uow: ShopUnitOfWork, order_no: str, reason: str, now: datetime.datetime
) -> Record | None:
    """Step (1) of an approval: requested -> approved, the balance part back (ledger `shop_refund`,
    ref `shop-refund:{order_no}`), the order's enrolments ended. None when it was already approved
    (or decided) by someone else."""
    order = await uow.orders.move(
        order_no,
        {"status": REFUND_REQUESTED, "refund.status": "requested"},
        {
            "refund.status": "approved",
            "refund.decided_at": now,
            "refund.decision_reason": check_reason(reason),
        },
    )
    if order is None:
        return None
    amount = int(order["refund"]["amount_balance"])
    if amount > 0:
        await uow.ledger.credit(int(order["user_id"]), amount, REFUND_KIND, refund_ref(order_no))
    days = {
        int(line["course_id"]): int(line["valid_days"])
        for line in order["lines"]
        if line.get("course_id") is not None
    }
    for enrolment in await uow.enrolments.of_order(order_no):
        changes = enrolment_after_refund(enrolment, order_no, days.get(int(enrolment["course_id"]), 0), now)
        await uow.enrolments.change(str(enrolment["_id"]), changes)
    await degree_buy.refund_enrolments(uow, order, now)
    return order


async def finish_refund(uow: ShopUnitOfWork, order_no: str, now: datetime.datetime) -> Record | None:
    """Step (3): approved (and the provider part refunded) -> refunded. None if not (or no longer)
    waiting for it."""
    return await uow.orders.move(
        order_no,
        {"status": REFUND_REQUESTED, "refund.status": "approved"},
        {
            "status": next_status(REFUND_REQUESTED, "approve_refund"),
            "refund.status": "refunded",
            "refund.refunded_at": now,
        },
    )


async def reject_refund(
    uow: ShopUnitOfWork, order_no: str, reason: str, now: datetime.datetime
) -> Record | None:
    """refund_requested -> paid, the refund marked rejected; None when not a requested refund."""
    return await uow.orders.move(
        order_no,
        {"status": REFUND_REQUESTED, "refund.status": "requested"},
        {
            "status": next_status(REFUND_REQUESTED, "reject_refund"),
            "refund.status": "rejected",
            "refund.decided_at": now,
            "refund.decision_reason": check_reason(reason),
        },
    )
