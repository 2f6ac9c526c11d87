"""Buying a degree course (学位课程) through the shop: what may go in the cart, the one-purchase rule,
the enrolment created when the order is paid, and what a refund does to it (docs/degree.md
"Buying a degree").

A degree is bought at most once per student: its enrolment's `_id` is f"{user_id}:{degree_id}", so
a second one cannot exist. A degree may be bought again only after a refund (status "refunded").
While an order for a degree waits for its payment, no second order for it is placed. Both checks
run inside the order's transaction, after `claim`: a write every order for the same student and
degree makes, so two concurrent orders conflict and the one run again sees the other.

Handlers over the ports of shop/ports.py (they run inside `ShopStore.atomically` where they move
money or state); shop/handlers.py and shop/order_life.py call them.
"""

import datetime
import logging
from collections.abc import Iterable
from typing import Final

from engine.book.errors import GavelError, NotFound
from shop.model import InvalidPolicy, Record, ShopConflict
from shop.ports import CatalogueRepository, ShopUnitOfWork

log = logging.getLogger("gavel.shop")

NOT_STARTED: Final = "not_started"
REFUNDED: Final = "refunded"  # the order was refunded before any module opened
DEGREE_STATUSES: Final = ("online", "offline")  # a degree without `status` is online


class DegreeNotOnSale(GavelError):
    code = "DEGREE_NOT_ON_SALE"


class DegreeAlreadyBought(GavelError):
    code = "DEGREE_ALREADY_BOUGHT"


class DegreeStarted(GavelError):
    code = "DEGREE_STARTED"


def enrolment_id(user_id: int, degree_course_id: int) -> str:
    return f"{user_id}:{degree_course_id}"


def degree_status(degree: Record) -> str:
    return str(degree.get("status") or "online")


def on_sale(degree: Record) -> bool:
    return degree_status(degree) != "offline"


def degree_ids_of(order: Record) -> list[int]:
    """The degrees an order's lines buy (older orders have course lines only)."""
    return [
        int(line["degree_course_id"]) for line in order["lines"] if line.get("degree_course_id") is not None
    ]


async def sellable_degree(
    catalogue: CatalogueRepository, degree_course_id: int, policy_id: int
) -> tuple[Record, Record]:
    """The degree and policy, provided the degree is on sale and the policy is one of its own."""
    degree = await catalogue.get("degree_courses", degree_course_id)
    if degree is None:
        raise NotFound(f"no degree course {degree_course_id}")
    if not on_sale(degree):
        raise DegreeNotOnSale(f"degree course {degree_course_id} is not on sale")
    policy = await catalogue.get("price_policies", policy_id)
    if policy is None or policy["target"] != "degree" or policy["target_id"] != degree_course_id:
        raise InvalidPolicy(f"price policy {policy_id} does not belong to degree course {degree_course_id}")
    return degree, policy


async def check_not_bought(uow: ShopUnitOfWork, user_id: int, degree_course_id: int) -> None:
    """DegreeAlreadyBought when the student holds the degree (any status but refunded) or has an
    order for it waiting for payment."""
    enrolment = await uow.degree_enrolments.get(enrolment_id(user_id, degree_course_id))
    if enrolment is not None and enrolment.get("status") != REFUNDED:
        raise DegreeAlreadyBought(f"you already bought degree course {degree_course_id}")
    pending = await uow.orders.pending_for_degree(user_id, degree_course_id)
    if pending is not None:
        raise DegreeAlreadyBought(
            f"order {pending} for degree course {degree_course_id} is waiting for payment; pay or cancel it"
        )


async def check_order_may_buy(
    uow: ShopUnitOfWork, user_id: int, degree_ids: Iterable[int], order_no: str, now: datetime.datetime
) -> None:
    """Inside the order's transaction: claim each degree, then the one-purchase rule."""
    for degree_course_id in degree_ids:
        await uow.degree_enrolments.claim(enrolment_id(user_id, degree_course_id), order_no, now)
        await check_not_bought(uow, user_id, degree_course_id)


def enrolment_record(
    user_id: int, degree_course_id: int, degree: Record, order_no: str, now: datetime.datetime
) -> Record:
    """A new enrolment (docs/degree.md `shop_degree_enrolments`): not started, not registered, the money
    copied from the degree so that later catalogue edits never change a bought degree."""
    mentor_fee = int(degree.get("mentor_fee", 0))
    return {
        "_id": enrolment_id(user_id, degree_course_id),
        "user_id": user_id,
        "degree_course_id": degree_course_id,
        "degree_name": str(degree.get("name", "")),
        "order_no": order_no,
        "status": NOT_STARTED,
        "created_at": now,
        "registration": None,
        "mentor_id": None,
        "valid_from": None,
        "valid_to": None,
        "period_days": int(degree.get("period_days", 0)),
        "total_scholarship": int(degree.get("total_scholarship", 0)),
        "scholarship_awarded": 0,
        "mentor_fee": mentor_fee,
        "mentor_fee_balance": mentor_fee,
        "scholarship_tiers": [
            {"time_percent": int(t["time_percent"]), "value": int(t["value"])}
            for t in degree.get("scholarships") or ()
        ],
        "graduated_at": None,
        "graduation_award": 0,
        "updated_at": now,
    }


async def enrol_degree(
    uow: ShopUnitOfWork, user_id: int, line: Record, order_no: str, now: datetime.datetime
) -> None:
    """The paid order's enrolment in the line's degree; idempotent per order (a retried payment
    notification creates nothing more). A refunded enrolment is replaced: the degree is bought again."""
    degree_course_id = int(line["degree_course_id"])
    degree = await uow.catalogue.get("degree_courses", degree_course_id)
    if degree is None:  # never deleted through the API; keep what the order knew
        degree = {"name": line.get("course_name", "")}
    record = enrolment_record(user_id, degree_course_id, degree, order_no, now)
    existing = await uow.degree_enrolments.get(record["_id"])
    if existing is None:
        if not await uow.degree_enrolments.add(record):
            raise ShopConflict("the enrolment was created concurrently; the payment is retried")
        return
    if existing.get("order_no") == order_no:
        return
    if existing.get("status") != REFUNDED:
        # Only an order placed before the one-purchase rule existed can get here: the order stays
        # paid and the enrolment untouched, for an admin to refund.
        log.error("order %s paid degree %s that user %s already holds", order_no, degree_course_id, user_id)
        return
    if not await uow.degree_enrolments.replace_refunded(record):
        raise ShopConflict("the enrolment changed concurrently; the payment is retried")


async def check_refundable(uow: ShopUnitOfWork, order: Record) -> None:
    """A degree whose module was opened (its enrolment is past not_started) is not refunded."""
    for degree_course_id in degree_ids_of(order):
        enrolment = await uow.degree_enrolments.get(enrolment_id(int(order["user_id"]), degree_course_id))
        if enrolment is None or enrolment.get("order_no") != order["_id"]:
            continue
        if enrolment.get("status") not in (NOT_STARTED, REFUNDED):
            raise DegreeStarted(f"degree course {degree_course_id} has started; it cannot be refunded")


async def refund_enrolments(uow: ShopUnitOfWork, order: Record, now: datetime.datetime) -> None:
    """An approved refund: each not-started degree the order bought becomes "refunded" (conditional,
    so a module opened at the same moment makes the approval fail with DegreeStarted instead)."""
    order_no = str(order["_id"])
    for degree_course_id in degree_ids_of(order):
        eid = enrolment_id(int(order["user_id"]), degree_course_id)
        enrolment = await uow.degree_enrolments.get(eid)
        if enrolment is None or enrolment.get("order_no") != order_no or enrolment.get("status") == REFUNDED:
            continue
        changed = await uow.degree_enrolments.change(
            eid,
            {"order_no": order_no, "status": NOT_STARTED},
            {"status": REFUNDED, "refunded_at": now, "updated_at": now},
        )
        if changed is None:
            raise DegreeStarted(f"degree course {degree_course_id} has started; it cannot be refunded")
