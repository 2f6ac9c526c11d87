"""The shop's persistence over the real embedded MongoDB and Redis: catalogue, cart, checkout,
orders, coupons under concurrency, the balance under concurrency, and the pending-order timeout.

The payment provider is an in-memory fake of the `PaymentProvider` port (the real sandbox is
exercised in tests/gateway/test_payments.py).
"""

import asyncio
import dataclasses
import datetime
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from engine.book.errors import NotFound
from engine.settle.ports import PaymentRequest
from persistence.accounts import Accounts, RefReused, ScryptParams
from persistence.mongo import Database, connect, ensure_indexes, utc_now
from persistence.shop import ensure_shop_indexes, mongo_shop
from shop.model import (
    CART_LIMIT,
    CartFull,
    CartItemUnavailable,
    CheckoutAlreadyOrdered,
    CheckoutMissing,
    CouponNotOffered,
    CouponUnavailable,
    CourseNotOnSale,
    CoursePriceChanged,
    InvalidPolicy,
    NotInCart,
    PolicyExists,
    ShopUnavailable,
)
from shop.service import ShopService

TEST_SCRYPT = ScryptParams(n=2**10, r=8, p=1)
MINUTE = datetime.timedelta(minutes=1)
_names = itertools.count(1)


class FakeProvider:
    """In-memory `PaymentProvider`: remembers payments and refunds."""

    name = "fake"

    def __init__(self) -> None:
        self.payments: dict[str, PaymentRequest] = {}
        self.refunds: dict[str, tuple[str, int]] = {}

    async def create_payment(self, request: PaymentRequest) -> str:
        self.payments[request.out_trade_no] = request
        return f"https://pay.example/{request.out_trade_no}"

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        self.refunds[refund_ref] = (out_trade_no, amount)


@dataclasses.dataclass
class World:
    shop: ShopService
    accounts: Accounts
    provider: FakeProvider
    db: Database
    sub_category_id: int

    async def user(self, balance: int = 0) -> int:
        user_id, _ = await self.accounts.register(f"student{next(_names)}", "correct-horse")
        if balance:
            await self.accounts.credit(user_id, balance, "topup", f"topup:{user_id}")
        return user_id

    async def course(self, *prices: int, status: str = "online") -> tuple[int, list[int]]:
        """A course with one policy per price (validity 30, 60, 90... days); returns (id, policy ids)."""
        course = await self.shop.create_course(
            {
                "name": f"Course {next(_names)}",
                "image": "",
                "sub_category_id": self.sub_category_id,
                "course_type": "paid",
                "degree_course_id": None,
                "brief": "",
                "level": "beginner",
                "status": status,
                "order": 0,
                "period_days": 7,
            }
        )
        policies = [
            await self.shop.add_policy("course", course["_id"], 30 * (i + 1), price)
            for i, price in enumerate(prices)
        ]
        return course["_id"], [p["_id"] for p in policies]

    async def coupon(self, user_id: int, **terms: Any) -> int:
        template = await self.shop.create_coupon(
            {"name": "coupon", "value": 0, "minimum": 0, "off_percent": 0, **terms}
        )
        granted = await self.shop.grant_coupon(template["_id"], user_id)
        return int(granted["_id"])

    async def balance(self, user_id: int) -> int:
        return (await self.accounts.profile(user_id)).balance


@pytest.fixture
async def world(
    mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]], redis_client: aioredis.Redis
) -> AsyncIterator[World]:
    client = connect(mongo_url)  # tz-aware, as in production, on the fixture's fresh database
    db = client[mongo_db.name]
    await ensure_indexes(db)
    await ensure_shop_indexes(db)
    accounts = Accounts(client, db, scrypt=TEST_SCRYPT)
    provider = FakeProvider()
    shop = mongo_shop(
        client, db, redis_client, accounts, provider, checkout_ttl_seconds=600, pending_timeout_seconds=1800
    )
    top = await shop.create_category("Back end", None)
    sub = await shop.create_category("Python", top["_id"])
    try:
        yield World(shop, accounts, provider, db, sub["_id"])
    finally:
        await client.close()


async def ledger_kinds(world: World, user_id: int) -> list[tuple[str, int]]:
    entries = await world.accounts.ledger(user_id)
    return sorted((e.kind, e.amount) for e in entries)


# -- catalogue ----------------------------------------------------------------------------------------
async def test_catalogue_listing_pages_and_filters(world: World) -> None:
    shop = world.shop
    other_top = await shop.create_category("Front end", None)
    other_sub = await shop.create_category("Vue", other_top["_id"])
    first, _ = await world.course(100)
    second, _ = await world.course(200, status="pre_online")
    await world.course(300, status="offline")
    vue = await shop.create_course(
        {
            "name": "Vue basics",
            "image": "",
            "sub_category_id": other_sub["_id"],
            "course_type": "paid",
            "degree_course_id": None,
            "brief": "",
            "level": "beginner",
            "status": "online",
            "order": 0,
            "period_days": 7,
        }
    )
    courses, total = await shop.list_courses(None, 0, 10)
    assert total == 3 and {c["_id"] for c in courses} == {first, second, vue["_id"]}  # offline hidden
    top_id = (await shop.categories())[0]["_id"]
    courses, total = await shop.list_courses(top_id, 0, 1)  # a top category covers its subcategories
    assert total == 2 and len(courses) == 1 and courses[0]["policies"][0]["price"] == 100
    courses, total = await shop.list_courses(other_sub["_id"], 0, 10)
    assert [c["_id"] for c in courses] == [vue["_id"]]
    with pytest.raises(NotFound):
        await shop.list_courses(999_999, 0, 10)


async def test_one_policy_per_validity_and_course_pages(world: World) -> None:
    shop = world.shop
    course_id, _ = await world.course(9900)
    with pytest.raises(PolicyExists):
        await shop.add_policy("course", course_id, 30, 5000)
    teacher = await shop.create_teacher(
        {"name": "Alex", "role": "lecturer", "title": "", "image": "", "brief": ""}
    )
    await shop.put_course_detail(
        course_id,
        {"hours": 12, "slogan": "Learn", "teacher_ids": [teacher["_id"]], "recommend_course_ids": []},
    )
    await shop.add_faq("course", course_id, "Is there homework?", "Yes.")
    chapter = await shop.add_chapter(course_id, {"chapter": 1, "name": "Intro", "summary": ""})
    await shop.add_section(chapter["_id"], {"name": "Hello", "order": 2, "free_trial": True, "link": "v1"})
    await shop.add_section(chapter["_id"], {"name": "Setup", "order": 1, "free_trial": False, "link": "v0"})
    page = await shop.course_page(course_id)
    assert page["detail"]["teachers"][0]["name"] == "Alex"
    assert page["faqs"][0]["question"] == "Is there homework?"
    chapters = await shop.chapters(course_id)
    assert [s["name"] for s in chapters[0]["sections"]] == ["Setup", "Hello"]
    offline, _ = await world.course(100, status="offline")
    with pytest.raises(NotFound):
        await shop.course_page(offline)


# -- cart ---------------------------------------------------------------------------------------------
async def test_cart_add_change_remove_and_policy_rules(world: World) -> None:
    shop = world.shop
    user = await world.user()
    course_id, (month, quarter) = await world.course(9900, 19900)
    other_id, (other_policy,) = await world.course(500)
    with pytest.raises(InvalidPolicy):
        await shop.cart_add(user, course_id, other_policy)  # the policy must belong to the course
    lines = await shop.cart_add(user, course_id, month)
    assert [(ln.course_id, ln.price, ln.valid_days, ln.available) for ln in lines] == [
        (course_id, 9900, 30, True)
    ]
    lines = await shop.cart_change_policy(user, course_id, quarter)
    assert lines[0].price == 19900 and lines[0].valid_days == 60
    with pytest.raises(NotInCart):
        await shop.cart_change_policy(user, other_id, other_policy)
    offline_id, (offline_policy,) = await world.course(100, status="offline")
    with pytest.raises(CourseNotOnSale):
        await shop.cart_add(user, offline_id, offline_policy)
    assert [ln.course_id for ln in await shop.cart_remove(user, course_id)] == []
    with pytest.raises(NotInCart):
        await shop.cart_remove(user, course_id)


async def test_cart_holds_at_most_50_courses(world: World) -> None:
    shop = world.shop
    user = await world.user()
    courses = [await world.course(100) for _ in range(CART_LIMIT + 1)]
    # Concurrent adds cannot overshoot the limit: the check and the write are one Redis step.
    results = await asyncio.gather(
        *(shop.cart_add(user, cid, policies[0]) for cid, policies in courses), return_exceptions=True
    )
    assert sum(isinstance(r, CartFull) for r in results) == 1
    assert len(await shop.cart(user)) == CART_LIMIT
    # Changing the policy of a course already in the cart is not an addition.
    in_cart = {ln.course_id for ln in await shop.cart(user)}
    cid, policies = next((c, p) for c, p in courses if c in in_cart)
    assert len(await shop.cart_add(user, cid, policies[0])) == CART_LIMIT


async def test_offline_course_and_removed_policy_show_unavailable(world: World) -> None:
    shop = world.shop
    user = await world.user()
    goes_offline, (policy_a,) = await world.course(1000)
    loses_policy, (policy_b,) = await world.course(2000)
    await shop.cart_add(user, goes_offline, policy_a)
    await shop.cart_add(user, loses_policy, policy_b)
    await shop.update_course(goes_offline, {"status": "offline"})
    await shop.remove_policy(policy_b)
    lines = {ln.course_id: ln for ln in await shop.cart(user)}
    assert (lines[goes_offline].available, lines[goes_offline].reason) == (False, "offline")
    assert (lines[loses_policy].available, lines[loses_policy].reason) == (False, "policy_removed")
    for course_id in (goes_offline, loses_policy):
        with pytest.raises(CartItemUnavailable):
            await shop.create_checkout(user, [course_id])


async def test_redis_down_is_unavailable_and_writes_nothing(world: World) -> None:
    shop = world.shop
    user = await world.user()
    course_id, (policy,) = await world.course(1000)
    healthy = shop.carts.redis
    # Nothing listens on port 1; no retries, so the outage surfaces at once.
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    shop.carts.redis = dead
    try:
        with pytest.raises(ShopUnavailable):
            await shop.cart_add(user, course_id, policy)
        with pytest.raises(ShopUnavailable):
            await shop.cart(user)
        with pytest.raises(ShopUnavailable):
            await shop.pay(user, 0, "key-1")
    finally:
        shop.carts.redis = healthy
        await dead.aclose()
    assert await shop.cart(user) == []
    assert await world.db.shop_orders.count_documents({}) == 0


# -- checkout -----------------------------------------------------------------------------------------
async def test_checkout_offers_only_applicable_unused_unexpired_coupons(world: World) -> None:
    shop = world.shop
    user = await world.user()
    cheap, (cheap_policy,) = await world.course(5000)
    dear, (dear_policy,) = await world.course(19_900)
    await shop.cart_add(user, cheap, cheap_policy)
    await shop.cart_add(user, dear, dear_policy)
    for_dear = await world.coupon(user, kind="flat", value=1000, course_id=dear)
    threshold_dear = await world.coupon(user, kind="threshold", value=3000, minimum=10_000, course_id=dear)
    threshold_cheap = await world.coupon(user, kind="threshold", value=3000, minimum=10_000, course_id=cheap)
    global_percent = await world.coupon(user, kind="percent", off_percent=10)
    expired = await world.coupon(user, kind="flat", value=500)
    await world.db.shop_user_coupons.update_one({"_id": expired}, {"$set": {"valid_to": utc_now() - MINUTE}})
    future = await world.coupon(user, kind="flat", value=500)
    await world.db.shop_user_coupons.update_one({"_id": future}, {"$set": {"valid_from": utc_now() + MINUTE}})
    used = await world.coupon(user, kind="flat", value=500)
    await world.db.shop_user_coupons.update_one({"_id": used}, {"$set": {"status": "used"}})
    someone_else = await world.user()
    await world.coupon(someone_else, kind="flat", value=500)

    checkout = await shop.create_checkout(user, [cheap, dear])
    offered = {line.course_id: line.coupon_ids for line in checkout.lines}
    assert offered == {cheap: (), dear: (for_dear, threshold_dear)}  # 50.00 does not reach 满100
    assert threshold_cheap not in checkout.coupons
    assert checkout.global_coupon_ids == (global_percent,)

    with pytest.raises(CouponNotOffered):
        await shop.choose_coupon(user, cheap, for_dear)  # bound to the other course
    with pytest.raises(CouponNotOffered):
        await shop.choose_coupon(user, None, expired)
    checkout = await shop.choose_coupon(user, dear, threshold_dear)
    checkout = await shop.choose_coupon(user, None, global_percent)
    quote = shop.quote(checkout, 0, 0)
    # dear 19900 - 3000 = 16900; cheap 5000; subtotal 21900; 10 % = 2190.
    assert (quote.subtotal, quote.global_discount, quote.to_pay) == (21_900, 2190, 19_710)
    checkout = await shop.choose_coupon(user, dear, None)  # clearing a choice
    assert checkout.chosen == {}

    with pytest.raises(NotInCart):
        await shop.create_checkout(user, [cheap, 999_999])


async def test_expired_checkout_cannot_be_chosen_on_or_paid(world: World) -> None:
    shop = world.shop
    user = await world.user()
    course_id, (policy,) = await world.course(1000)
    await shop.cart_add(user, course_id, policy)
    await shop.create_checkout(user, [course_id])
    await shop.carts.redis.pexpire(shop.carts.checkout_key(user), 1)
    await asyncio.sleep(0.02)
    with pytest.raises(CheckoutMissing):
        await shop.choose_coupon(user, course_id, None)
    assert not await shop.carts.redis.exists(shop.carts.checkout_key(user))  # not re-created half-way
    with pytest.raises(CheckoutMissing):
        await shop.pay(user, 0, "k")


# -- paying ---------------------------------------------------------------------------------------------
async def test_paid_with_coupons_and_balance_enrols_at_once(world: World) -> None:
    """The worked example of docs/shop.md, but with enough balance to pay everything."""
    shop = world.shop
    user = await world.user(balance=30_000)
    a, (pa,) = await world.course(19_900)
    b, (pb,) = await world.course(9_990)
    c, (pc,) = await world.course(4_990)
    for course_id, policy in ((a, pa), (b, pb), (c, pc)):
        await shop.cart_add(user, course_id, policy)
    ca = await world.coupon(user, kind="percent", off_percent=15, course_id=a)
    cb = await world.coupon(user, kind="threshold", value=2000, minimum=9900, course_id=b)
    cc = await world.coupon(user, kind="flat", value=5000, course_id=c)
    cg = await world.coupon(user, kind="percent", off_percent=10)
    await shop.create_checkout(user, [a, b, c])
    choices: list[tuple[int | None, int]] = [(a, ca), (b, cb), (c, cc), (None, cg)]
    for target, coupon_id in choices:
        await shop.choose_coupon(user, target, coupon_id)

    placed = await shop.pay(user, 30_000, "pay-1")
    order = placed.order
    assert placed.created and order["status"] == "paid"
    assert (order["original_total"], order["course_discount"], order["global_discount"]) == (
        34_880,
        9975,
        2491,
    )
    assert (order["payable"], order["balance_used"], order["to_pay"]) == (22_414, 22_414, 0)
    assert [ln["paid_price"] for ln in order["lines"]] == [15_223, 7191, 0]
    assert order["pay_url"] is None and world.provider.payments == {}
    assert await world.balance(user) == 30_000 - 22_414
    assert await ledger_kinds(world, user) == [("shop_pay", -22_414), ("topup", 30_000)]
    coupons = {c["_id"]: c for c in await shop.user_coupons(user)}
    assert all(
        coupons[cid]["status"] == "used" and coupons[cid]["order_no"] == order["_id"]
        for cid in (ca, cb, cc, cg)
    )
    enrolments = await shop.enrolments(user)
    assert sorted(e["course_id"] for e in enrolments) == sorted([a, b, c])
    first = enrolments[0]
    assert first["valid_to"] - first["valid_from"] == datetime.timedelta(days=30)
    # The checkout is gone and the courses left the cart; the same key returns the same order.
    assert await shop.cart(user) == []
    again = await shop.pay(user, 30_000, "pay-1")
    assert not again.created and again.order["_id"] == order["_id"]
    with pytest.raises(RefReused):
        await shop.pay(user, 100, "pay-1")


async def test_price_change_or_withdrawal_after_checkout_is_refused(world: World) -> None:
    shop = world.shop
    user = await world.user()
    course_id, (policy,) = await world.course(1000)
    await shop.cart_add(user, course_id, policy)
    await shop.create_checkout(user, [course_id])
    await world.db.shop_price_policies.update_one({"_id": policy}, {"$set": {"price": 1200}})
    with pytest.raises(CoursePriceChanged):
        await shop.pay(user, 0, "k1")
    await world.db.shop_price_policies.update_one({"_id": policy}, {"$set": {"price": 1000}})
    await shop.update_course(course_id, {"status": "offline"})
    with pytest.raises(CartItemUnavailable):
        await shop.pay(user, 0, "k2")
    assert await world.db.shop_orders.count_documents({}) == 0


async def test_a_coupon_used_by_two_concurrent_checkouts_is_spent_once(world: World) -> None:
    shop = world.shop
    user = await world.user()
    first, (p1,) = await world.course(10_000)
    second, (p2,) = await world.course(20_000)
    coupon = await world.coupon(user, kind="flat", value=3000)  # global
    await shop.cart_add(user, first, p1)
    await shop.cart_add(user, second, p2)
    # Two devices: each builds its own checkout and picks the same global coupon.
    await shop.create_checkout(user, [first])
    checkout_one = await shop.choose_coupon(user, None, coupon)
    await shop.create_checkout(user, [second])
    checkout_two = await shop.choose_coupon(user, None, coupon)

    results = await asyncio.gather(
        shop.place_order(checkout_one, 0, "device-1"),
        shop.place_order(checkout_two, 0, "device-2"),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and len(losers) == 1 and isinstance(losers[0], CouponUnavailable)
    order = winners[0].order
    assert order["global_discount"] == 3000 and order["coupon_ids"] == [coupon]
    stored = await world.db.shop_user_coupons.find_one({"_id": coupon})
    assert stored is not None and stored["status"] == "held" and stored["order_no"] == order["_id"]
    assert await world.db.shop_orders.count_documents({}) == 1


async def test_one_checkout_becomes_at_most_one_order(world: World) -> None:
    shop = world.shop
    user = await world.user()
    course_id, (policy,) = await world.course(1000)
    await shop.cart_add(user, course_id, policy)
    checkout = await shop.create_checkout(user, [course_id])
    results = await asyncio.gather(
        shop.place_order(checkout, 0, "tab-1"), shop.place_order(checkout, 0, "tab-2"), return_exceptions=True
    )
    assert sum(isinstance(r, CheckoutAlreadyOrdered) for r in results) == 1
    assert await world.db.shop_orders.count_documents({}) == 1


async def test_balance_spent_by_two_concurrent_orders_never_goes_negative(world: World) -> None:
    shop = world.shop
    user = await world.user(balance=10_000)
    first, (p1,) = await world.course(9000)
    second, (p2,) = await world.course(9000)
    await shop.cart_add(user, first, p1)
    await shop.cart_add(user, second, p2)
    checkout_one = await shop.create_checkout(user, [first])
    checkout_two = await shop.create_checkout(user, [second])

    placed = await asyncio.gather(
        shop.place_order(checkout_one, 8000, "order-1"), shop.place_order(checkout_two, 8000, "order-2")
    )
    used = sorted(p.order["balance_used"] for p in placed)
    assert used == [2000, 8000]  # the later one gets what is left, never more
    assert sorted(p.order["to_pay"] for p in placed) == [1000, 7000]
    assert all(p.order["status"] == "pending" for p in placed)
    assert await world.balance(user) == 0
    entries = await world.accounts.ledger(user)
    assert sum(e.amount for e in entries) == 0 and all(e.balance_after >= 0 for e in entries)
    assert sorted(e.amount for e in entries if e.kind == "shop_hold") == [-8000, -2000]


# -- pending orders: payment and timeout ----------------------------------------------------------------
async def _pending_order(world: World, user: int, *, balance: int) -> tuple[dict[str, Any], int]:
    shop = world.shop
    course_id, (policy,) = await world.course(10_000)
    await shop.cart_add(user, course_id, policy)
    coupon = await world.coupon(user, kind="threshold", value=1500, minimum=10_000, course_id=course_id)
    await shop.create_checkout(user, [course_id])
    await shop.choose_coupon(user, course_id, coupon)
    placed = await shop.pay(user, balance, f"pending-{next(_names)}")
    return placed.order, coupon


async def test_pending_order_holds_coupon_and_balance_then_is_paid(world: World) -> None:
    shop = world.shop
    user = await world.user(balance=3000)
    order, coupon = await _pending_order(world, user, balance=3000)
    assert order["status"] == "pending" and (order["balance_used"], order["to_pay"]) == (3000, 5500)
    assert order["pay_url"] == f"https://pay.example/{order['out_trade_no']}"
    assert world.provider.payments[order["out_trade_no"]].amount == 5500
    held = await world.db.shop_user_coupons.find_one({"_id": coupon})
    assert held is not None and held["status"] == "held"
    assert await ledger_kinds(world, user) == [("shop_hold", -3000), ("topup", 3000)]
    assert await shop.enrolments(user) == []

    await shop.on_paid(order["out_trade_no"], 5500)
    await shop.on_paid(order["out_trade_no"], 5500)  # a duplicate changes nothing
    paid = await shop.find_order(user, order["_id"])
    assert paid["status"] == "paid"
    used = await world.db.shop_user_coupons.find_one({"_id": coupon})
    assert used is not None and used["status"] == "used"
    assert len(await shop.enrolments(user)) == 1
    # Too late for the sweeper: a paid order is never cancelled.
    assert await shop.expire_pending_orders(utc_now() + 60 * MINUTE) == 0
    assert await world.balance(user) == 0


async def test_pending_order_timeout_releases_coupons_and_balance_once(world: World) -> None:
    shop = world.shop
    user = await world.user(balance=3000)
    order, coupon = await _pending_order(world, user, balance=2500)
    assert await world.balance(user) == 500
    deadline = order["pay_deadline"]
    assert deadline - order["created_at"] == 30 * MINUTE

    assert await shop.expire_pending_orders(deadline - datetime.timedelta(seconds=1)) == 0
    assert await shop.expire_pending_orders(deadline + MINUTE) == 1
    assert await shop.expire_pending_orders(deadline + 2 * MINUTE) == 0  # once only

    cancelled = await shop.find_order(user, order["_id"])
    assert cancelled["status"] == "cancelled_by_timeout" and cancelled["cancel_reason"] == "timeout"
    back = await world.db.shop_user_coupons.find_one({"_id": coupon})
    assert back is not None and (back["status"], back["order_no"]) == ("unused", None)
    assert await world.balance(user) == 3000
    entries = await world.accounts.ledger(user)
    reversal = {(e.kind, e.amount, e.ref) for e in entries}
    assert ("shop_hold", -2500, f"shop-hold:{order['_id']}") in reversal
    assert ("shop_release", 2500, f"shop-release:{order['_id']}") in reversal
    assert sum(e.amount for e in entries) == 3000

    # A payment that arrives after the cancellation is refunded, never kept.
    await shop.on_paid(order["out_trade_no"], order["to_pay"])
    late = await shop.find_order(user, order["_id"])
    assert late["status"] == "cancelled_by_timeout" and late["late_payment"]["amount"] == order["to_pay"]
    assert world.provider.refunds == {
        f"late:{order['out_trade_no']}": (order["out_trade_no"], order["to_pay"])
    }
    assert await shop.enrolments(user) == []
    # The released coupon can be used again.
    checkout_coupons = await shop.user_coupons(user, "unused")
    assert [c["_id"] for c in checkout_coupons] == [coupon]


async def test_sweeper_marks_expired_coupons(world: World) -> None:
    user = await world.user()
    coupon = await world.coupon(user, kind="flat", value=100, valid_days=1)
    stored = await world.db.shop_user_coupons.find_one({"_id": coupon})
    assert stored is not None
    await world.shop.expire_pending_orders(stored["valid_to"] + MINUTE)
    assert [c["_id"] for c in await world.shop.user_coupons(user, "expired")] == [coupon]


async def test_grant_is_idempotent_with_a_key(world: World) -> None:
    user = await world.user()
    template = await world.shop.create_coupon({"name": "welcome", "kind": "flat", "value": 500})
    one = await world.shop.grant_coupon(template["_id"], user, idempotency_key="welcome")
    two = await world.shop.grant_coupon(template["_id"], user, idempotency_key="welcome")
    assert one["_id"] == two["_id"] and len(await world.shop.user_coupons(user)) == 1
    with pytest.raises(NotFound):
        await world.shop.grant_coupon(template["_id"], 999_999)
