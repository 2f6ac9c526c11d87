"""The course shop's decisions, as functions over the ports of shop/ports.py.

Each money or state decision is here: what may go in a cart, what a checkout offers, what an order
costs and spends (coupons, balance), when it is paid, what a late payment gets (a refund), when an
unpaid order is cancelled and what that gives back, and who gets a coupon (the order's later life,
cancel by its owner, payment retries and refunds: shop/order_life.py). The functions that take
a `ShopUnitOfWork` run inside one transaction (`ShopStore.atomically`) and have no side effect
outside it. A new order's provider payment is made in the order's own transaction when the
provider makes it locally (`uow.payments.open`: the sandbox, Alipay's page pay sign a URL and
store our record of the attempt, no network call), so one commit writes both and an abort leaves
no orphan attempt; a provider that needs the network is called only after the transaction
(`ensure_pay_url`), as are refunds (`refund_late_payment`). shop/service.py runs them.

Money moves only through the ledger port (`debit`/`credit`, idempotent on a ref per order): on
placing `shop_pay:`/`shop_hold:`, on cancelling `shop_release:`.
"""

import dataclasses
import datetime
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from engine.book.errors import GavelError, InvalidInput, NotFound, RefReused
from engine.settle.ports import PaidNotice, PaymentProvider, PaymentRequest
from shop import degree_buy, order_life
from shop.claims import check_claim_terms, user_coupon_record
from shop.learning import grant_enrolment
from shop.model import (
    CartFull,
    CartItemUnavailable,
    CartLine,
    Checkout,
    CheckoutLine,
    CheckoutMissing,
    CouponNotOffered,
    CouponUnavailable,
    CourseNotOnSale,
    CoursePriceChanged,
    InvalidPolicy,
    NotInCart,
    Record,
    ShopConflict,
    coupon_display,
    coupon_terms,
    coupon_valid_at,
    order_no_from,
    to_ms,
)
from shop.ports import (
    CartContents,
    CartStore,
    CatalogueRepository,
    Duplicate,
    OrderRepository,
    ShopUnitOfWork,
)
from shop.pricing import CouponTerms, PricingError, Quote, coupon_applies, price_checkout

log = logging.getLogger("gavel.shop")


# == cart ==================================================================================================
async def sellable(catalogue: CatalogueRepository, course_id: int, policy_id: int) -> tuple[Record, Record]:
    """The course and policy, provided the course is on sale and the policy is one of its own."""
    course = await catalogue.get("courses", course_id)
    if course is None:
        raise NotFound(f"no course {course_id}")
    if course.get("status") != "online":
        raise CourseNotOnSale(f"course {course_id} is not on sale")
    policy = await catalogue.get("price_policies", policy_id)
    if policy is None or policy["target"] != "course" or policy["target_id"] != course_id:
        raise InvalidPolicy(f"price policy {policy_id} does not belong to course {course_id}")
    return course, policy


async def add_to_cart(
    catalogue: CatalogueRepository,
    carts: CartStore,
    user_id: int,
    course_id: int,
    policy_id: int,
    *,
    now: datetime.datetime,
    limit: int,
) -> CartContents:
    """Put a course with its chosen policy in the cart (again: the new choice replaces the old);
    the cart's entries after it."""
    await sellable(catalogue, course_id, policy_id)
    contents = await carts.add(user_id, course_id, policy_id, to_ms(now), limit)
    if contents is None:
        raise CartFull(f"the cart holds at most {limit} courses")
    return contents


async def change_cart_policy(
    catalogue: CatalogueRepository, carts: CartStore, user_id: int, course_id: int, policy_id: int
) -> None:
    await sellable(catalogue, course_id, policy_id)
    if not await carts.change_policy(user_id, course_id, policy_id):
        raise NotInCart(f"course {course_id} is not in the cart")


async def remove_from_cart(carts: CartStore, user_id: int, course_id: int) -> None:
    if not await carts.remove(user_id, course_id):
        raise NotInCart(f"course {course_id} is not in the cart")


async def add_degree_to_cart(
    uow: ShopUnitOfWork,
    carts: CartStore,
    user_id: int,
    degree_course_id: int,
    policy_id: int,
    *,
    now: datetime.datetime,
    limit: int,
) -> CartContents:
    """Put a degree course with one of its policies in the cart, unless the student holds it (or
    has an order for it waiting for payment): a degree is bought once. The cart's entries after it."""
    await degree_buy.sellable_degree(uow.catalogue, degree_course_id, policy_id)
    await degree_buy.check_not_bought(uow, user_id, degree_course_id)
    contents = await carts.add(user_id, degree_course_id, policy_id, to_ms(now), limit, kind="degree")
    if contents is None:
        raise CartFull(f"the cart holds at most {limit} courses")
    return contents


async def change_degree_policy(
    catalogue: CatalogueRepository, carts: CartStore, user_id: int, degree_course_id: int, policy_id: int
) -> None:
    await degree_buy.sellable_degree(catalogue, degree_course_id, policy_id)
    if not await carts.change_policy(user_id, degree_course_id, policy_id, kind="degree"):
        raise NotInCart(f"degree course {degree_course_id} is not in the cart")


async def remove_degree_from_cart(carts: CartStore, user_id: int, degree_course_id: int) -> None:
    if not await carts.remove(user_id, degree_course_id, kind="degree"):
        raise NotInCart(f"degree course {degree_course_id} is not in the cart")


def _cart_line(item: Record | None, on_sale: bool, policy_id: int, own: list[Record], **ids: Any) -> CartLine:
    """One cart line of a course or a degree course (`item`, None when deleted) against its current
    policies: unavailable when missing, off sale or its chosen policy was removed."""
    chosen = next((p for p in own if int(p["_id"]) == policy_id), None)
    reason = None
    if item is None:
        reason = "course_missing"
    elif not on_sale:
        reason = "offline"
    elif chosen is None:
        reason = "policy_removed"
    return CartLine(
        policy_id=policy_id,
        name=item["name"] if item else "",
        image=item.get("image", "") if item else "",
        price=int(chosen["price"]) if chosen else None,
        valid_days=int(chosen["valid_days"]) if chosen else None,
        policies=tuple(own),
        available=reason is None,
        reason=reason,
        **ids,
    )


async def cart_lines(
    catalogue: CatalogueRepository, carts: CartStore, user_id: int, contents: CartContents | None = None
) -> list[CartLine]:
    """The cart (its `contents` when the caller has just read them) against the current catalogue:
    offline courses and removed policies are unavailable. Courses first, then degree courses."""
    entries, degree_entries = await carts.contents(user_id) if contents is None else contents
    course_ids = sorted(entries)
    courses = await catalogue.courses(course_ids)
    policies = await catalogue.policies_by_course(course_ids)
    lines = []
    for course_id in course_ids:
        course = courses.get(course_id)
        on_sale = course is not None and course.get("status") == "online"
        own = policies.get(course_id, [])
        lines.append(_cart_line(course, on_sale, entries[course_id], own, course_id=course_id))
    lines.extend(await _degree_cart_lines(catalogue, degree_entries))
    return lines


async def _degree_cart_lines(catalogue: CatalogueRepository, entries: dict[int, int]) -> list[CartLine]:
    """The cart's degree courses: an offline degree or a removed policy is unavailable."""
    degree_ids = sorted(entries)
    policies = await catalogue.policies_by_degree(degree_ids)
    lines = []
    for degree_course_id in degree_ids:
        degree = await catalogue.get("degree_courses", degree_course_id)
        on_sale = degree is not None and degree_buy.on_sale(degree)
        own = policies.get(degree_course_id, [])
        lines.append(
            _cart_line(
                degree,
                on_sale,
                entries[degree_course_id],
                own,
                course_id=None,
                kind="degree",
                degree_course_id=degree_course_id,
            )
        )
    return lines


# == checkout ==============================================================================================
async def create_checkout(
    uow: ShopUnitOfWork,
    carts: CartStore,
    user_id: int,
    course_ids: Sequence[int],
    *,
    now: datetime.datetime,
    ttl_seconds: int,
    degree_ids: Sequence[int] = (),
    catalogue: CatalogueRepository | None = None,
) -> Checkout:
    """Build the settlement centre for `course_ids` and `degree_ids` (all in the cart, all
    available, no degree the user holds) and store it. The cart's lines are priced through
    `catalogue` (the cart's cached one; default: the unit of work's): what is shown here is checked
    again when paying (`check_prices`).

    Offers, per course, the user's unused, unexpired coupons bound to it (a threshold coupon only
    when the price reaches its minimum) and, globally, the unbound ones; a degree line is offered
    no bound coupon (they are bound to courses) but the global coupon covers it. Replaces any
    earlier checkout of the user (and its choices).
    """
    if not course_ids and not degree_ids:
        raise InvalidInput("course_ids or degree_course_ids must list something to buy")
    if len(set(course_ids)) != len(course_ids) or len(set(degree_ids)) != len(degree_ids):
        raise InvalidInput("course_ids must list distinct courses")
    # Only the lines bought are priced (a full cart holds many more).
    entries, degree_entries = await carts.contents(user_id)
    wanted = (
        {c: entries[c] for c in course_ids if c in entries},
        {d: degree_entries[d] for d in degree_ids if d in degree_entries},
    )
    all_lines = await cart_lines(catalogue or uow.catalogue, carts, user_id, wanted)
    # The balance is shown with the checkout and kept in it (the pay's debit expects it).
    unused, balance_seen = await uow.coupons.unused_with_balance(user_id)
    cart = {line.course_id: line for line in all_lines if line.kind == "course"}
    degree_cart = {line.degree_course_id: line for line in all_lines if line.kind == "degree"}
    lines: list[tuple[CartLine, int, int]] = []
    for course_id in course_ids:
        cart_line = cart.get(course_id)
        if cart_line is None:
            raise NotInCart(f"course {course_id} is not in the cart; add it first")
        if not cart_line.available or cart_line.price is None or cart_line.valid_days is None:
            raise CartItemUnavailable(f"course {course_id} is unavailable ({cart_line.reason})")
        lines.append((cart_line, cart_line.price, cart_line.valid_days))
    for degree_course_id in degree_ids:
        cart_line = degree_cart.get(degree_course_id)
        if cart_line is None:
            raise NotInCart(f"degree course {degree_course_id} is not in the cart; add it first")
        if not cart_line.available or cart_line.price is None or cart_line.valid_days is None:
            raise CartItemUnavailable(f"degree course {degree_course_id} is unavailable ({cart_line.reason})")
        await degree_buy.check_not_bought(uow, user_id, degree_course_id)
        lines.append((cart_line, cart_line.price, cart_line.valid_days))
    coupons = [c for c in unused if coupon_valid_at(c, now)]
    offered: dict[int, Record] = {}
    checkout_lines = []
    for cart_line, price, valid_days in lines:
        ids = []
        for coupon in coupons:
            if cart_line.course_id is None:
                break  # a degree line: bound coupons are bound to courses
            if coupon.get("course_id") == cart_line.course_id and coupon_applies(coupon_terms(coupon), price):
                ids.append(int(coupon["_id"]))
                offered[int(coupon["_id"])] = coupon
        checkout_lines.append(
            CheckoutLine(
                cart_line.course_id,
                cart_line.name,
                cart_line.image,
                cart_line.policy_id,
                valid_days,
                price,
                tuple(ids),
                kind=cart_line.kind,
                degree_course_id=cart_line.degree_course_id,
            )
        )
    global_ids = []
    for coupon in coupons:
        if coupon.get("course_id") is None:
            global_ids.append(int(coupon["_id"]))
            offered[int(coupon["_id"])] = coupon
    checkout = Checkout(
        checkout_id=uuid.uuid4().hex,
        user_id=user_id,
        lines=tuple(checkout_lines),
        global_coupon_ids=tuple(global_ids),
        coupons={cid: coupon_display(doc) for cid, doc in offered.items()},
        chosen={},
        chosen_global=None,
        ttl_seconds=ttl_seconds,
        balance_seen=balance_seen,
    )
    await carts.save_checkout(checkout)
    return checkout


async def current_checkout(carts: CartStore, user_id: int) -> Checkout:
    checkout = await carts.load_checkout(user_id)
    if checkout is None:
        raise CheckoutMissing("there is no checkout (or it expired); POST /api/v1/checkout first")
    return checkout


async def choose_coupon(carts: CartStore, user_id: int, course_id: int | None, coupon_id: int | None) -> None:
    """Choose (or with `coupon_id` None, clear) the coupon of one line, or the global one."""
    checkout = await current_checkout(carts, user_id)
    if course_id is None:
        offered = checkout.global_coupon_ids
    else:
        line = next((ln for ln in checkout.lines if ln.course_id == course_id), None)
        if line is None:
            raise NotFound(f"course {course_id} is not in the checkout")
        offered = line.coupon_ids
    if coupon_id is not None and coupon_id not in offered:
        raise CouponNotOffered(f"coupon {coupon_id} is not offered here")
    if not await carts.choose(user_id, course_id, coupon_id):
        raise CheckoutMissing("the checkout expired; POST /api/v1/checkout again")


def quote(checkout: Checkout, balance_requested: int, balance_available: int) -> Quote:
    """Price a checkout with its choices, from the terms shown to the user."""
    terms = {cid: coupon_terms({"_id": cid, **doc}) for cid, doc in checkout.coupons.items()}
    chosen_global = terms.get(checkout.chosen_global) if checkout.chosen_global is not None else None
    return price_checkout(
        checkout.line_inputs(terms),
        chosen_global,
        balance_requested=balance_requested,
        balance_available=balance_available,
    )


# == orders ================================================================================================
async def order_for_key(
    orders: OrderRepository, user_id: int, idempotency_key: str, balance: int
) -> Record | None:
    """The order an idempotency key made; the same key with another balance is a different payment."""
    order = await orders.for_key(user_id, idempotency_key)
    if order is not None and order["balance_requested"] != balance:
        raise RefReused(f"the idempotency key {idempotency_key!r} was used for a different payment")
    return order


async def check_prices(catalogue: CatalogueRepository, checkout: Checkout) -> None:
    """The catalogue may have changed since the checkout was built: never charge an unseen price.

    Every line's chosen policy with its course or degree course in one read; only a line whose
    policy is gone or no longer its own reads its item, to say which changed."""
    found = await catalogue.policies_with_targets(
        [line.policy_id for line in checkout.lines if line.course_id is not None],
        [line.policy_id for line in checkout.lines if line.course_id is None],
    )
    for line in checkout.lines:
        kind, item_id = (
            ("course", line.course_id) if line.course_id is not None else ("degree", line.degree_course_id)
        )
        policy, item = found.get(line.policy_id, (None, None))
        if policy is None or (policy["target"], policy["target_id"]) != (kind, item_id):
            policy = None
            item = await catalogue.get("courses" if kind == "course" else "degree_courses", int(item_id or 0))
        if kind == "course":
            if item is None or item.get("status") != "online":
                raise CartItemUnavailable(f"course {line.course_id} is no longer on sale")
            if policy is None:
                raise CartItemUnavailable(f"the chosen price policy of course {line.course_id} was removed")
        else:
            if item is None or not degree_buy.on_sale(item):
                raise degree_buy.DegreeNotOnSale(
                    f"degree course {line.degree_course_id} is no longer on sale"
                )
            if policy is None:
                raise CartItemUnavailable(
                    f"the chosen price policy of degree course {line.degree_course_id} was removed"
                )
        if int(policy["price"]) != line.price or int(policy["valid_days"]) != line.valid_days:
            what = "course" if kind == "course" else "degree course"
            raise CoursePriceChanged(f"the price of {what} {item_id} changed; check out again")


@dataclasses.dataclass(frozen=True, slots=True)
class OrderTerms:
    """What `place_order` needs besides the checkout (decided by the service before the transaction)."""

    order_no: str
    balance: int
    idempotency_key: str
    now: datetime.datetime
    pending_timeout_seconds: int
    out_trade_no: str  # used only if something is left for the provider to collect


async def place_order(uow: ShopUnitOfWork, checkout: Checkout, terms: OrderTerms) -> Record:
    """One transaction: the order and its lines, the coupons spent (`unused -> used`, or `held`
    while payment is pending), the balance debited with a ledger entry, and, when nothing is left
    to pay, the enrolments; for a pending order, the provider's payment when the provider makes
    it locally (`uow.payments.open`), else afterwards (`ensure_pay_url`)."""
    user_id, order_no, now = checkout.user_id, terms.order_no, terms.now
    # The chosen coupons, read again inside the transaction: the stored checkout is only a display.
    chosen_ids = [*checkout.chosen.values(), *([checkout.chosen_global] if checkout.chosen_global else [])]
    for course_id, coupon_id in checkout.chosen.items():
        line = next((ln for ln in checkout.lines if ln.course_id == course_id), None)
        if line is None or coupon_id not in line.coupon_ids:
            raise CouponNotOffered(f"coupon {coupon_id} is not offered for course {course_id}")
    if checkout.chosen_global is not None and checkout.chosen_global not in checkout.global_coupon_ids:
        raise CouponNotOffered(f"coupon {checkout.chosen_global} is not a global coupon offered")
    docs = await uow.coupons.get_many(chosen_ids) if chosen_ids else {}
    coupon_terms_by_id: dict[int, CouponTerms] = {}
    for coupon_id in chosen_ids:
        doc = docs.get(coupon_id)
        if (
            doc is None
            or doc["user_id"] != user_id
            or doc["status"] != "unused"
            or not coupon_valid_at(doc, now)
        ):
            raise CouponUnavailable(f"coupon {coupon_id} is used, held or expired")
        coupon_terms_by_id[coupon_id] = coupon_terms(doc)
    # A degree is bought once: checked again here, in the order's own transaction.
    degree_ids = [line.degree_course_id for line in checkout.lines if line.degree_course_id is not None]
    await degree_buy.check_order_may_buy(uow, user_id, degree_ids, order_no, now)
    global_terms = (
        coupon_terms_by_id.get(checkout.chosen_global) if checkout.chosen_global is not None else None
    )

    def priced_with(available: int) -> Quote:
        return price_checkout(
            checkout.line_inputs(coupon_terms_by_id),
            global_terms,
            balance_requested=terms.balance,
            balance_available=available,
        )

    # First as if the balance asked for were there: one guarded debit and no read of the balance
    # (the common case). Only a short balance is read, and the order priced again with it.
    priced = priced_with(terms.balance)
    if not await _debit_balance(uow, user_id, order_no, priced, checkout.balance_seen):
        available = await uow.ledger.balance(user_id)
        if available is None:
            raise NotFound(f"no user {user_id}")
        priced = priced_with(available)
        if not await _debit_balance(uow, user_id, order_no, priced):
            raise ShopConflict("the balance changed while paying; try again")
    paid_now = priced.to_pay == 0
    coupon_status = "used" if paid_now else "held"
    for coupon_id in priced.spent_coupon_ids:
        # Conditional: of two concurrent orders only one finds the coupon unused.
        if not await uow.coupons.take(coupon_id, user_id, coupon_status, order_no, now):
            raise CouponUnavailable(f"coupon {coupon_id} was just used by another order")
    order = _order_record(checkout, terms, priced, paid_now)
    if not paid_now:
        # Before the order's insert, so that the order is written once, with its pay URL.
        order["pay_url"] = await uow.payments.open(payment_request(order))
    await uow.orders.add(order)
    if paid_now:
        await enrol(uow, order, now)
    return order


async def _debit_balance(
    uow: ShopUnitOfWork, user_id: int, order_no: str, priced: Quote, expected_balance: int | None = None
) -> bool:
    """Debit the balance the quote uses (under the order's own, new ref); False when it is short."""
    if priced.balance_used == 0:
        return True
    kind, ref = (
        ("shop_pay", f"shop-pay:{order_no}") if priced.to_pay == 0 else ("shop_hold", f"shop-hold:{order_no}")
    )
    return await uow.ledger.debit_new(user_id, priced.balance_used, kind, ref, expected_balance)


def _order_record(checkout: Checkout, terms: OrderTerms, priced: Quote, paid_now: bool) -> Record:
    now = terms.now
    return {
        "_id": terms.order_no,
        "user_id": checkout.user_id,
        "checkout_id": checkout.checkout_id,
        "idempotency_key": terms.idempotency_key,
        "status": "paid" if paid_now else "pending",
        # `price_checkout` prices the lines in the checkout's order.
        "lines": [
            {
                "kind": shown.kind,
                "course_id": shown.course_id,
                "degree_course_id": shown.degree_course_id,
                "course_name": shown.name,  # the degree's name on a degree line
                "policy_id": shown.policy_id,
                "valid_days": shown.valid_days,
                "original_price": line.original_price,
                "coupon_id": line.coupon_id,
                "coupon_discount": line.coupon_discount,
                "global_discount_share": line.global_discount_share,
                "paid_price": line.paid_price,
            }
            for shown, line in zip(checkout.lines, priced.lines, strict=True)
        ],
        "original_total": priced.original_total,
        "course_discount": priced.course_discount,
        "global_coupon_id": priced.global_coupon_id,
        "global_discount": priced.global_discount,
        "payable": priced.payable,
        "balance_requested": terms.balance,
        "balance_used": priced.balance_used,
        "to_pay": priced.to_pay,
        "coupon_ids": list(priced.spent_coupon_ids),
        # A random number names the payment; `_id` stays the readable number the user sees.
        "out_trade_no": None if paid_now else terms.out_trade_no,
        # Every provider attempt (paying again adds one); the one that paid is `paid_trade_no`.
        "attempts": [] if paid_now else [{"out_trade_no": terms.out_trade_no, "created_at": now}],
        "paid_trade_no": None,
        "pay_url": None,
        "created_at": now,
        "pay_deadline": None if paid_now else now + datetime.timedelta(seconds=terms.pending_timeout_seconds),
        "paid_at": now if paid_now else None,
        "cancelled_at": None,
        "refund": None,
    }


async def enrol(uow: ShopUnitOfWork, order: Record, now: datetime.datetime) -> None:
    """Each line's course for the policy's days: a new enrolment, or the student's current one
    extended from max(now, its end) (shop/learning.py; idempotent per order). Each degree line:
    the degree's enrolment, not started (shop/degree_buy.py; idempotent per order)."""
    for line in order["lines"]:
        if line.get("degree_course_id") is not None:
            await degree_buy.enrol_degree(uow, int(order["user_id"]), line, str(order["_id"]), now)
            continue
        await grant_enrolment(
            uow.enrolments,
            user_id=int(order["user_id"]),
            course_id=int(line["course_id"]),
            course_name=str(line["course_name"]),
            order_no=str(order["_id"]),
            days=int(line["valid_days"]),
            now=now,
        )


def payment_request(order: Record) -> PaymentRequest:
    """What the provider is asked to collect for a pending order's current attempt."""
    names = ", ".join(str(line.get("course_name") or "") for line in order["lines"])
    return PaymentRequest(
        order["out_trade_no"], int(order["to_pay"]), f"Courses: {names}"[:120], int(order["user_id"])
    )


async def ensure_pay_url(orders: OrderRepository, provider: PaymentProvider, order: Record) -> Record:
    """A pending order's provider payment, unless its transaction made it (idempotent on
    `out_trade_no`)."""
    if order["status"] != "pending" or order.get("pay_url"):
        return order
    order["pay_url"] = await provider.create_payment(payment_request(order))
    await orders.set_pay_url(str(order["_id"]), order["pay_url"], str(order["out_trade_no"]))
    return order


# == payment outcome and timeout ===========================================================================
async def order_of_payment(orders: OrderRepository, out_trade_no: str) -> Record:
    """The order a provider payment names: new numbers are random and stored on the order; an older
    installation's `shop-{order_no}` names its order."""
    order = await orders.for_trade_no(out_trade_no)
    if order is not None:
        return order
    order_no = order_no_from(out_trade_no)
    if order_no is None:
        raise NotFound(f"{out_trade_no!r} is not a shop payment")
    order = await orders.get(order_no)
    if order is None:
        raise NotFound(f"no shop order {order_no}")
    return order


async def mark_paid(
    uow: ShopUnitOfWork, out_trade_no: str, amount: int, now: datetime.datetime
) -> tuple[str, str]:
    """A verified payment of attempt `out_trade_no`: a pending order becomes paid by it (held
    coupons used, the balance hold stays spent, enrolments start) and "now_paid" is returned;
    otherwise order_life.payment_outcome decides: "duplicate" (changes nothing) or "refund" (the
    order was paid by another attempt, or cancelled). Idempotent. Returns (outcome, order_no)."""
    order = await order_of_payment(uow.orders, out_trade_no)
    order_no = str(order["_id"])
    outcome = order_life.payment_outcome(order, out_trade_no)
    if outcome != "pay":
        return outcome, order_no
    if int(order["to_pay"]) != amount:
        # The notify endpoint checks the amount against the payment record; this is a bug.
        raise GavelError(f"order {order_no} costs {order['to_pay']} fen, paid {amount}")
    # Not read back: in this transaction the order read above is the one the guarded update moves.
    paid = await uow.orders.advance(
        order_no,
        {"status": order_life.PENDING},
        {
            "status": order_life.next_status(order_life.PENDING, "pay"),
            "paid_at": now,
            "paid_trade_no": out_trade_no,
        },
    )
    if not paid:
        raise ShopConflict(f"order {order_no} changed while being paid; the notification is retried")
    if order.get("coupon_ids"):  # the coupons it spent are held while it is pending; none: no write
        await uow.coupons.use_held(order_no, now)
    await enrol(uow, order, now)
    return "now_paid", order_no


async def settle_paid(uow: ShopUnitOfWork, notice: PaidNotice, now: datetime.datetime) -> bool:
    """`mark_paid`'s common case with our payment record's pending -> paid (and handled) in the same
    transaction: a pending order of this attempt, of this amount, whose record is still unpaid.
    False, nothing written, for anything else (the provider's own checks and `mark_paid` decide)."""
    order = await uow.orders.for_trade_no(notice.out_trade_no)
    if order is None or order_life.payment_outcome(order, notice.out_trade_no) != "pay":
        return False
    if int(order["to_pay"]) != notice.amount:
        return False
    # Not settled: NotSettled aborts the unit (the service answers False, nothing written). The
    # record's write and the order's below may go with the enrolment's, one command for all three.
    await uow.payments.settle_or_abort(notice)
    order_no = str(order["_id"])

    # By `_id` alone, no `status` condition: the order was read pending in this transaction, and a
    # transaction's write to a document changed since its snapshot is a write conflict (retried,
    # and the retry reads the change), so the condition could not fail here. On SecantusDB an
    # update by `_id` alone is a point lookup, while each further field of the filter costs a
    # planning pass over the collection's indexes (~1 ms of its CPU with shop_orders' indexes).
    def gone() -> ShopConflict:  # the order is gone (never expected): retried like a conflict
        return ShopConflict(f"order {order_no} changed while being paid")

    await uow.orders.advance_or(
        order_no,
        {},
        {
            "status": order_life.next_status(order_life.PENDING, "pay"),
            "paid_at": now,
            "paid_trade_no": notice.out_trade_no,
        },
        gone,
    )
    if order.get("coupon_ids"):
        await uow.coupons.use_held(order_no, now)
    await enrol(uow, order, now)
    return True


async def refund_late_payment(
    orders: OrderRepository,
    provider: PaymentProvider,
    order_no: str,
    out_trade_no: str,
    amount: int,
    now: datetime.datetime,
) -> None:
    """A payment for an order already cancelled, or already paid by another attempt, is refunded,
    never silently kept nor reviving the order (a cancelled order's coupons and balance were given
    back). The provider refund is idempotent on its ref, so a repeated notification refunds once."""
    refund_ref = f"late:{out_trade_no}"
    log.warning("late payment %s for shop order %s; refunding %s fen", out_trade_no, order_no, amount)
    await provider.refund(out_trade_no, amount, refund_ref)
    await orders.set_late_payment(order_no, {"amount": amount, "refund_ref": refund_ref, "refunded_at": now})


async def cancel_pending(uow: ShopUnitOfWork, order_no: str, now: datetime.datetime, reason: str) -> bool:
    """pending -> cancelled_by_{reason} with coupons and held balance back once (order_life.cancel);
    False when it was no longer pending."""
    return await order_life.cancel(uow, order_no, now, reason) is not None


# == coupons ===============================================================================================
async def create_coupon(uow: ShopUnitOfWork, fields: Record, now: datetime.datetime) -> Record:
    """A coupon template (优惠券生成规则). `course_id` binds it to a course; else it is global."""
    doc = dict(fields)
    try:
        coupon_terms({"_id": 0, **doc})
    except (PricingError, ValueError) as exc:
        raise InvalidInput(str(exc)) from None
    if doc.get("course_id") is not None and not await uow.catalogue.existing("courses", [doc["course_id"]]):
        raise NotFound(f"no course {doc['course_id']}")
    valid_from, valid_to = doc.get("valid_from"), doc.get("valid_to")
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise InvalidInput("valid_to must be later than valid_from")
    check_claim_terms(doc)
    doc["created_at"] = now
    return await uow.catalogue.insert("coupons", doc)


async def grant_coupon(
    uow: ShopUnitOfWork, coupon_id: int, user_id: int, idempotency_key: str | None, now: datetime.datetime
) -> Record:
    """Give `user_id` one coupon of template `coupon_id`. The terms are copied, so later edits of
    the template never change a granted coupon. Validity: the template's window, or `valid_days`
    from now (seed: coupon_valid_days, counted from the grant). With `idempotency_key`, a repeated
    grant returns the first one."""
    template = await uow.catalogue.get("coupons", coupon_id)
    if template is None:
        raise NotFound(f"no coupon {coupon_id}")
    if not await uow.catalogue.existing("users", [user_id]):
        raise NotFound(f"no user {user_id}")
    grant_ref = f"{coupon_id}:{user_id}:{idempotency_key}" if idempotency_key is not None else None
    if grant_ref is not None:
        existing = await uow.coupons.by_grant_ref(grant_ref)
        if existing is not None:
            return existing
    doc = user_coupon_record(template, user_id, now)
    if grant_ref is not None:
        doc["grant_ref"] = grant_ref
    try:
        return await uow.coupons.add(doc)
    except Duplicate:
        # A concurrent grant with the same key won: return its coupon.
        existing = await uow.coupons.by_grant_ref(grant_ref) if grant_ref is not None else None
        if existing is None:
            raise
        return existing


async def order_of(orders: OrderRepository, user_id: int, order_no: str) -> Record:
    order = await orders.get(order_no)
    if order is None or order["user_id"] != user_id:
        raise NotFound(f"no order {order_no}")
    return order
