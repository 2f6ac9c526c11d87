"""The course shop's decisions on in-memory ports (tests/shop/fakes.py): no server, no database.

Every test ends by checking the books: each user's balance is their starting balance plus their
ledger entries; each order's lines add up to what it costs; coupon statuses match the orders that
hold or used them.
"""

import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from engine.book.errors import NotFound, RefReused
from engine.settle.ports import PaidNotice
from shop.model import (
    CART_LIMIT,
    CartFull,
    CheckoutAlreadyOrdered,
    CouponNotOffered,
    CouponUnavailable,
    CourseNotOnSale,
    CoursePriceChanged,
    InvalidPolicy,
    NameExists,
    PolicyExists,
    ShopConflict,
)
from shop.ports import GaveUp, ShopUnitOfWork
from tests.shop.fakes import World, fake_world

STARTING: dict[int, int] = {}


@pytest.fixture
def world() -> World:
    STARTING.clear()
    return fake_world()


async def user(world: World, balance: int = 0) -> int:
    user_id = 100 + len(world.store.state.balances)
    world.store.state.balances[user_id] = balance
    STARTING[user_id] = balance
    return user_id


async def course(world: World, price: int, *, status: str = "online") -> tuple[int, int]:
    shop = world.shop
    categories = world.store.state.table("categories")
    if not categories:
        top = await shop.create_category("Back end", None)
        await shop.create_category("Python", top["_id"])
    sub = next(c["_id"] for c in categories.values() if c["parent_id"] is not None)
    created = await shop.create_course(
        {
            "name": f"course {len(world.store.state.table('courses'))}",
            "sub_category_id": sub,
            "status": status,
        }
    )
    policy = await shop.add_policy("course", created["_id"], 30, price)
    return created["_id"], policy["_id"]


async def coupon(world: World, user_id: int, **terms: Any) -> int:
    template = await world.shop.create_coupon(
        {"name": "c", "value": 0, "minimum": 0, "off_percent": 0, **terms}
    )
    return int((await world.shop.grant_coupon(template["_id"], user_id))["_id"])


def assert_books(world: World) -> None:
    """Money conserved, every order adds up, coupon counts equal their records."""
    state = world.store.state
    for user_id, start in STARTING.items():
        moved = sum(amount for who, amount, _, _ in state.ledger if who == user_id)
        assert state.balances[user_id] == start + moved >= 0
    coupons = state.table("user_coupons")
    for order in state.table("orders").values():
        assert sum(line["paid_price"] for line in order["lines"]) == order["payable"]
        assert order["balance_used"] + order["to_pay"] == order["payable"]
        refs = {ref: amount for _, amount, _, ref in state.ledger}
        no = order["_id"]
        if order["status"] in ("cancelled_by_user", "cancelled_by_timeout"):
            assert refs.get(f"shop-hold:{no}", 0) + refs.get(f"shop-release:{no}", 0) == 0
            expected = "unused"
        else:
            spent = refs.get(f"shop-hold:{no}", 0) + refs.get(f"shop-pay:{no}", 0)
            assert -spent == order["balance_used"]
            # The balance part comes back once, and only with an approved refund.
            refunded = (order.get("refund") or {}).get("status") in ("approved", "refunded")
            assert refs.get(f"shop-refund:{no}", 0) == (order["balance_used"] if refunded else 0)
            expected = "held" if order["status"] == "pending" else "used"
        for coupon_id in order["coupon_ids"]:
            assert coupons[coupon_id]["status"] == expected
    bought = ("paid", "refund_requested", "refunded")  # a refund gives money back, not coupons
    for status, wanted in (("held", ("pending",)), ("used", bought)):
        counted = [c for c in coupons.values() if c["status"] == status]
        of_orders = [
            cid for o in state.table("orders").values() if o["status"] in wanted for cid in o["coupon_ids"]
        ]
        assert sorted(c["_id"] for c in counted) == sorted(of_orders)
        assert all(state.table("orders")[c["order_no"]]["status"] in wanted for c in counted)


# -- cart and checkout --------------------------------------------------------------------------------------
async def test_cart_takes_only_courses_on_sale_with_their_own_policy(world: World) -> None:
    buyer = await user(world)
    on_sale, policy = await course(world, 1000)
    offline, offline_policy = await course(world, 1000, status="offline")
    with pytest.raises(CourseNotOnSale):
        await world.shop.cart_add(buyer, offline, offline_policy)
    with pytest.raises(InvalidPolicy):
        await world.shop.cart_add(buyer, on_sale, offline_policy)
    with pytest.raises(NotFound):
        await world.shop.cart_add(buyer, 999, policy)
    lines = await world.shop.cart_add(buyer, on_sale, policy)
    assert [(line.course_id, line.price, line.available) for line in lines] == [(on_sale, 1000, True)]


async def test_cart_is_limited(world: World) -> None:
    buyer = await user(world)
    for _ in range(CART_LIMIT):
        await world.shop.cart_add(buyer, *await course(world, 100))
    with pytest.raises(CartFull):
        await world.shop.cart_add(buyer, *await course(world, 100))


async def test_checkout_offers_only_coupons_that_apply(world: World) -> None:
    buyer = await user(world)
    course_id, policy = await course(world, 10_000)
    reached = await coupon(world, buyer, kind="threshold", value=1000, minimum=10_000, course_id=course_id)
    await coupon(world, buyer, kind="threshold", value=1000, minimum=20_000, course_id=course_id)
    glob = await coupon(world, buyer, kind="percent", off_percent=10)
    await world.shop.cart_add(buyer, course_id, policy)
    checkout = await world.shop.create_checkout(buyer, [course_id])
    assert checkout.lines[0].coupon_ids == (reached,) and checkout.global_coupon_ids == (glob,)
    with pytest.raises(CouponNotOffered):
        await world.shop.choose_coupon(buyer, None, reached)
    chosen = await world.shop.choose_coupon(buyer, course_id, reached)
    chosen = await world.shop.choose_coupon(buyer, None, glob)
    quote = world.shop.quote(chosen, 0, 0)
    assert (quote.course_discount, quote.global_discount, quote.payable) == (1000, 900, 8100)


async def test_a_price_changed_after_checkout_is_never_charged(world: World) -> None:
    buyer = await user(world, 5000)
    course_id, policy = await course(world, 1000)
    await world.shop.cart_add(buyer, course_id, policy)
    checkout = await world.shop.create_checkout(buyer, [course_id])
    world.store.state.table("price_policies")[policy]["price"] = 2000
    with pytest.raises(CoursePriceChanged):
        await world.shop.place_order(checkout, 1000, "k")
    assert world.store.state.table("orders") == {} and world.store.state.ledger == []


# -- paying ----------------------------------------------------------------------------------------
async def test_paid_by_balance_alone_enrols_at_once(world: World) -> None:
    buyer = await user(world, 20_000)
    course_id, policy = await course(world, 10_000)
    flat = await coupon(world, buyer, kind="flat", value=2500, course_id=course_id)
    await world.shop.cart_add(buyer, course_id, policy)
    await world.shop.create_checkout(buyer, [course_id])
    await world.shop.choose_coupon(buyer, course_id, flat)
    placed = await world.shop.pay(buyer, 20_000, "k1")
    order = placed.order
    assert placed.created and order["status"] == "paid" and order["to_pay"] == 0
    assert order["balance_used"] == 7500 and world.store.state.balances[buyer] == 12_500
    assert world.provider.payments == []  # nothing left for the provider
    assert [e["course_id"] for e in await world.shop.enrolments(buyer)] == [course_id]
    assert await world.shop.cart(buyer) == []  # bought courses leave the cart
    assert_books(world)


async def test_pay_is_idempotent_per_key(world: World) -> None:
    buyer = await user(world, 3000)
    course_id, policy = await course(world, 10_000)
    await world.shop.cart_add(buyer, course_id, policy)
    await world.shop.create_checkout(buyer, [course_id])
    first = await world.shop.pay(buyer, 3000, "same-key")
    again = await world.shop.pay(buyer, 3000, "same-key")
    assert first.created and not again.created
    assert again.order["_id"] == first.order["_id"] and again.order["pay_url"] == first.order["pay_url"]
    assert len(world.store.state.table("orders")) == 1 and len(world.provider.payments) == 1
    assert [(amount, kind) for _, amount, kind, _ in world.store.state.ledger] == [(-3000, "shop_hold")]
    with pytest.raises(RefReused):
        await world.shop.pay(buyer, 1000, "same-key")
    assert_books(world)


async def test_one_checkout_becomes_one_order_and_the_second_attempt_leaves_nothing(world: World) -> None:
    buyer = await user(world, 10_000)
    course_id, policy = await course(world, 4000)
    await world.shop.cart_add(buyer, course_id, policy)
    checkout = await world.shop.create_checkout(buyer, [course_id])
    await world.shop.place_order(checkout, 1000, "tab-1")
    with pytest.raises(CheckoutAlreadyOrdered):
        await world.shop.place_order(checkout, 1000, "tab-2")
    assert len(world.store.state.table("orders")) == 1
    assert world.store.state.balances[buyer] == 9000  # the second debit was rolled back
    assert_books(world)


async def test_a_coupon_in_two_checkouts_is_spent_once(world: World) -> None:
    buyer = await user(world, 10_000)
    first, p1 = await course(world, 10_000)
    second, p2 = await course(world, 20_000)
    glob = await coupon(world, buyer, kind="flat", value=3000)
    await world.shop.cart_add(buyer, first, p1)
    await world.shop.cart_add(buyer, second, p2)
    await world.shop.create_checkout(buyer, [first])
    one = await world.shop.choose_coupon(buyer, None, glob)
    await world.shop.create_checkout(buyer, [second])
    two = await world.shop.choose_coupon(buyer, None, glob)
    await world.shop.place_order(one, 5000, "device-1")
    with pytest.raises(CouponUnavailable):
        await world.shop.place_order(two, 5000, "device-2")
    assert world.store.state.balances[buyer] == 5000  # the loser's debit was rolled back
    assert_books(world)


# -- provider notifications and expiry -------------------------------------------------------------------
async def _pending(world: World, buyer: int) -> tuple[dict[str, Any], int]:
    course_id, policy = await course(world, 10_000)
    held = await coupon(world, buyer, kind="threshold", value=1500, minimum=10_000, course_id=course_id)
    await world.shop.cart_add(buyer, course_id, policy)
    await world.shop.create_checkout(buyer, [course_id])
    await world.shop.choose_coupon(buyer, course_id, held)
    placed = await world.shop.pay(buyer, 2000, "pending-key")
    assert placed.order["status"] == "pending" and placed.order["to_pay"] == 6500
    return placed.order, held


async def test_paid_notification_completes_the_order_once(world: World) -> None:
    buyer = await user(world, 2000)
    order, held = await _pending(world, buyer)
    for _ in range(2):  # the provider may notify more than once
        await world.shop.on_paid(order["out_trade_no"], 6500)
    stored = world.store.state.table("orders")[order["_id"]]
    assert stored["status"] == "paid"
    assert world.store.state.table("user_coupons")[held]["status"] == "used"
    assert len(await world.shop.enrolments(buyer)) == 1
    assert world.store.state.balances[buyer] == 0
    # Our payment record is marked handled by the shop itself (in the order's unit of work).
    assert list(world.store.state.table("handled_payments")) == [order["out_trade_no"]]
    assert await world.shop.expire_pending_orders(world.clock.at.replace(year=2030)) == 0
    assert_books(world)


async def test_a_settled_notification_pays_the_pending_order_once(world: World) -> None:
    """`settle_paid`: the common case in one unit of work; anything else is left to `on_paid`."""
    buyer = await user(world, 2000)
    order, held = await _pending(world, buyer)
    notice = PaidNotice(order["out_trade_no"], "fake", 6500, "T1", "n1")
    assert not await world.shop.settle_paid(notice._replace(amount=6400))  # not this order's amount
    assert world.store.state.table("orders")[order["_id"]]["status"] == "pending"
    assert await world.shop.settle_paid(notice)
    stored = world.store.state.table("orders")[order["_id"]]
    assert (stored["status"], stored["paid_trade_no"]) == ("paid", order["out_trade_no"])
    assert world.store.state.table("user_coupons")[held]["status"] == "used"
    assert len(await world.shop.enrolments(buyer)) == 1
    assert not await world.shop.settle_paid(notice)  # paid already: on_paid's "duplicate" path
    assert not await world.shop.settle_paid(notice._replace(out_trade_no="shop-unknown"))
    assert len(await world.shop.enrolments(buyer)) == 1
    assert_books(world)


async def test_expiry_releases_coupon_and_balance_exactly_once(world: World) -> None:
    buyer = await user(world, 2000)
    order, held = await _pending(world, buyer)
    assert await world.shop.expire_pending_orders(world.clock.at) == 0  # not due yet
    world.clock.advance(seconds=1800)
    assert await world.shop.expire_pending_orders(world.clock.at) == 1
    assert await world.shop.expire_pending_orders(world.clock.at) == 0
    assert world.store.state.table("orders")[order["_id"]]["status"] == "cancelled_by_timeout"
    assert (
        world.store.state.table("user_coupons")[held] | {"status": "unused", "order_no": None}
        == (world.store.state.table("user_coupons")[held])
    )
    assert world.store.state.balances[buyer] == 2000
    kinds = [kind for _, _, kind, _ in world.store.state.ledger]
    assert kinds == ["shop_hold", "shop_release"]
    assert_books(world)


async def test_late_payment_is_refunded_and_does_not_revive_the_order(world: World) -> None:
    buyer = await user(world, 2000)
    order, held = await _pending(world, buyer)
    world.clock.advance(seconds=1800)
    await world.shop.expire_pending_orders(world.clock.at)
    world.provider.fail_refunds = True  # the refund fails: not handled, the provider notifies again
    with pytest.raises(RuntimeError):
        await world.shop.on_paid(order["out_trade_no"], 6500)
    assert world.store.state.table("handled_payments") == {}
    world.provider.fail_refunds = False
    for _ in range(2):
        await world.shop.on_paid(order["out_trade_no"], 6500)
    assert list(world.store.state.table("handled_payments")) == [order["out_trade_no"]]
    stored = world.store.state.table("orders")[order["_id"]]
    assert stored["status"] == "cancelled_by_timeout" and stored["late_payment"]["amount"] == 6500
    assert world.provider.refunds == {f"late:{order['out_trade_no']}": (order["out_trade_no"], 6500)}
    assert world.store.state.table("user_coupons")[held]["status"] == "unused"
    assert await world.shop.enrolments(buyer) == []
    assert world.store.state.balances[buyer] == 2000  # released once, not again
    assert_books(world)


async def test_unknown_payment_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.shop.on_paid("ord-123", 100)


async def test_conflicts_the_store_gives_up_on_become_shop_conflict(world: World) -> None:
    buyer = await user(world, 2000)
    order, _ = await _pending(world, buyer)
    course_id, policy = await course(world, 100)
    await world.shop.cart_add(buyer, course_id, policy)
    checkout = await world.shop.create_checkout(buyer, [course_id])

    async def give_up(work: Callable[[ShopUnitOfWork], Awaitable[Any]]) -> Any:
        raise GaveUp("write conflict")

    world.store.atomically = give_up  # type: ignore[method-assign]
    with pytest.raises(ShopConflict):
        await world.shop.place_order(checkout, 0, "k")
    with pytest.raises(ShopConflict):
        await world.shop.on_paid(order["out_trade_no"], 6500)
    world.clock.advance(seconds=1800)
    assert await world.shop.expire_pending_orders(world.clock.at) == 0  # the next sweep retries


# -- coupons and catalogue ---------------------------------------------------------------------------------
async def test_grant_copies_the_terms_and_is_idempotent_with_a_key(world: World) -> None:
    buyer = await user(world)
    template = await world.shop.create_coupon({"name": "ten", "kind": "flat", "value": 1000, "valid_days": 7})
    first = await world.shop.grant_coupon(template["_id"], buyer, idempotency_key="g1")
    again = await world.shop.grant_coupon(template["_id"], buyer, idempotency_key="g1")
    other = await world.shop.grant_coupon(template["_id"], buyer, idempotency_key="g2")
    assert first["_id"] == again["_id"] != other["_id"]
    assert first["valid_to"] == world.clock.at + datetime.timedelta(days=7)  # counted from the grant
    world.store.state.table("coupons")[template["_id"]]["value"] = 5
    assert world.store.state.table("user_coupons")[first["_id"]]["value"] == 1000
    with pytest.raises(NotFound):
        await world.shop.grant_coupon(template["_id"], 9999)
    assert len(await world.shop.user_coupons(buyer)) == 2


async def test_catalogue_rules(world: World) -> None:
    course_id, _ = await course(world, 100)
    with pytest.raises(NameExists):
        await world.shop.create_category("Back end", None)
    with pytest.raises(PolicyExists):
        await world.shop.add_policy("course", course_id, 30, 500)
    with pytest.raises(NotFound):
        await world.shop.add_policy("course", 999, 30, 500)
    with pytest.raises(NotFound):  # a subcategory's parent must be top level
        sub = next(c for c in world.store.state.table("categories").values() if c["parent_id"])
        await world.shop.create_category("Deeper", sub["_id"])
