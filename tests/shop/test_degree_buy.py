"""Buying a degree course (shop/degree_buy.py through shop/handlers.py and shop/order_life.py) on
in-memory ports: the cart rules, the one-purchase rule, the enrolment created once when paid, and
refunds (refused once started; a refunded enrolment may be bought again)."""

from typing import Any

import pytest

from engine.book.errors import InvalidInput, NotFound
from shop.degree_buy import DegreeAlreadyBought, DegreeNotOnSale, DegreeStarted
from shop.model import CartItemUnavailable, InvalidPolicy, NotInCart
from tests.shop.fakes import World, fake_world
from tests.shop.test_handlers import STARTING, assert_books, coupon, course, user


@pytest.fixture
def world() -> World:
    STARTING.clear()
    return fake_world()


async def degree(world: World, price: int, **fields: Any) -> tuple[int, int]:
    created = await world.shop.create_degree_course(
        {
            "name": f"degree {len(world.store.state.table('degree_courses'))}",
            "total_scholarship": 40_000,
            "mentor_fee": 15_000,
            "period_days": 150,
            "scholarships": [{"time_percent": 60, "value": 3000}],
            **fields,
        }
    )
    policy = await world.shop.add_policy("degree", created["_id"], 730, price)
    return int(created["_id"]), int(policy["_id"])


def enrolments(world: World) -> dict[str, dict[str, Any]]:
    return world.store.state.table("degree_enrolments")


async def test_cart_takes_a_degree_on_sale_with_its_own_policy(world: World) -> None:
    buyer = await user(world)
    degree_id, policy = await degree(world, 10_000)
    course_id, course_policy = await course(world, 500)
    with pytest.raises(InvalidPolicy):
        await world.shop.cart_add_degree(buyer, degree_id, course_policy)
    with pytest.raises(NotFound):
        await world.shop.cart_add_degree(buyer, 999, policy)
    await world.shop.cart_add(buyer, course_id, course_policy)
    lines = await world.shop.cart_add_degree(buyer, degree_id, policy)
    assert [(ln.kind, ln.course_id, ln.degree_course_id, ln.price) for ln in lines] == [
        ("course", course_id, None, 500),
        ("degree", None, degree_id, 10_000),
    ]
    # A degree with the same number as the course is another line.
    assert degree_id == course_id == 1
    await world.shop.set_degree_status(degree_id, "offline")
    [_, line] = await world.shop.cart(buyer)
    assert (line.available, line.reason) == (False, "offline")
    with pytest.raises(DegreeNotOnSale):
        await world.shop.cart_add_degree(buyer, degree_id, policy)
    with pytest.raises(CartItemUnavailable):
        await world.shop.create_checkout(buyer, [], [degree_id])
    with pytest.raises(InvalidInput):
        await world.shop.set_degree_status(degree_id, "gone")
    lines = await world.shop.cart_remove_degree(buyer, degree_id)
    assert [ln.kind for ln in lines] == ["course"]
    with pytest.raises(NotInCart):
        await world.shop.cart_remove_degree(buyer, degree_id)


async def test_paid_at_once_creates_the_enrolment_with_the_degrees_money(world: World) -> None:
    buyer = await user(world, 20_000)
    degree_id, policy = await degree(world, 12_000)
    course_id, course_policy = await course(world, 3000)
    bound = await coupon(world, buyer, kind="flat", value=500, course_id=course_id)
    global_flat = await coupon(world, buyer, kind="flat", value=1000)
    await world.shop.cart_add(buyer, course_id, course_policy)
    await world.shop.cart_add_degree(buyer, degree_id, policy)
    checkout = await world.shop.create_checkout(buyer, [course_id], [degree_id])
    assert [(ln.kind, ln.coupon_ids) for ln in checkout.lines] == [("course", (bound,)), ("degree", ())]
    await world.shop.choose_coupon(buyer, course_id, bound)
    await world.shop.choose_coupon(buyer, None, global_flat)
    placed = await world.shop.pay(buyer, 20_000, "k1")
    order = placed.order
    assert (order["status"], order["payable"]) == ("paid", 3000 - 500 + 12_000 - 1000)
    assert [(ln["kind"], ln["course_id"], ln["degree_course_id"]) for ln in order["lines"]] == [
        ("course", course_id, None),
        ("degree", None, degree_id),
    ]
    enrolment = enrolments(world)[f"{buyer}:{degree_id}"]
    assert {k: enrolment[k] for k in ("status", "order_no", "total_scholarship", "mentor_fee_balance")} == {
        "status": "not_started",
        "order_no": order["_id"],
        "total_scholarship": 40_000,
        "mentor_fee_balance": 15_000,
    }
    assert enrolment["scholarship_tiers"] == [{"time_percent": 60, "value": 3000}]
    assert len(await world.shop.enrolments(buyer)) == 1  # the course's own enrolment
    assert await world.shop.cart(buyer) == []
    # Later catalogue edits do not change a bought degree.
    world.store.state.table("degree_courses")[degree_id]["total_scholarship"] = 1
    assert enrolments(world)[f"{buyer}:{degree_id}"]["total_scholarship"] == 40_000
    with pytest.raises(DegreeAlreadyBought):
        await world.shop.cart_add_degree(buyer, degree_id, policy)
    assert_books(world)


async def test_a_degree_in_two_checkouts_is_bought_once(world: World) -> None:
    buyer = await user(world, 50_000)
    degree_id, policy = await degree(world, 10_000)
    await world.shop.cart_add_degree(buyer, degree_id, policy)
    first = await world.shop.create_checkout(buyer, [], [degree_id])
    second = await world.shop.create_checkout(buyer, [], [degree_id])  # another tab
    placed = await world.shop.place_order(first, 50_000, "a")
    assert placed.order["status"] == "paid"
    with pytest.raises(DegreeAlreadyBought):
        await world.shop.place_order(second, 50_000, "b")
    assert len(enrolments(world)) == 1 and len(world.store.state.table("orders")) == 1
    assert_books(world)


async def test_provider_payment_creates_the_enrolment_once(world: World) -> None:
    buyer = await user(world, 0)
    degree_id, policy = await degree(world, 8000)
    await world.shop.cart_add_degree(buyer, degree_id, policy)
    await world.shop.create_checkout(buyer, [], [degree_id])
    order = (await world.shop.pay(buyer, 0, "p")).order
    assert order["status"] == "pending" and enrolments(world) == {}
    # A pending order for the degree: no second one.
    with pytest.raises(DegreeAlreadyBought):
        await world.shop.cart_add_degree(buyer, degree_id, policy)
    for _ in range(2):  # a retried notification creates no second enrolment
        await world.shop.on_paid(order["out_trade_no"], 8000)
    assert [e["order_no"] for e in enrolments(world).values()] == [order["_id"]]
    assert world.provider.payments[0].subject.startswith("Courses: degree")
    assert_books(world)


async def test_an_unpaid_order_cancelled_or_timed_out_creates_nothing(world: World) -> None:
    buyer = await user(world, 0)
    degree_id, policy = await degree(world, 8000)
    for key in ("t", "u"):
        await world.shop.cart_add_degree(buyer, degree_id, policy)
        await world.shop.create_checkout(buyer, [], [degree_id])
        order = (await world.shop.pay(buyer, 0, key)).order
        if key == "t":
            assert await world.shop.expire_pending_orders(world.clock.at.replace(year=2030)) == 1
        else:
            await world.shop.cancel_order(buyer, order["_id"])
    assert enrolments(world) == {}
    assert_books(world)


async def _bought(world: World, buyer: int, degree_id: int, policy: int, key: str) -> str:
    await world.shop.cart_add_degree(buyer, degree_id, policy)
    await world.shop.create_checkout(buyer, [], [degree_id])
    return str((await world.shop.pay(buyer, 10_000, key)).order["_id"])


async def test_refund_of_a_not_started_degree_then_bought_again(world: World) -> None:
    buyer = await user(world, 10_000)
    degree_id, policy = await degree(world, 6000)
    first = await _bought(world, buyer, degree_id, policy, "a")
    await world.shop.request_refund(buyer, first, "not for me")
    order, approved = await world.shop.approve_refund(first)
    assert approved and order["status"] == "refunded"
    eid = f"{buyer}:{degree_id}"
    assert enrolments(world)[eid]["status"] == "refunded"
    assert world.store.state.balances[buyer] == 10_000
    second = await _bought(world, buyer, degree_id, policy, "b")
    assert (enrolments(world)[eid]["status"], enrolments(world)[eid]["order_no"]) == ("not_started", second)
    assert_books(world)


async def test_a_started_degree_is_not_refunded(world: World) -> None:
    buyer = await user(world, 10_000)
    degree_id, policy = await degree(world, 6000)
    no = await _bought(world, buyer, degree_id, policy, "a")
    eid = f"{buyer}:{degree_id}"
    enrolments(world)[eid]["status"] = "studying"  # a module opened (CORE)
    with pytest.raises(DegreeStarted):
        await world.shop.request_refund(buyer, no, "")
    # Requested while not started, a module opened before the approval: the approval is refused.
    enrolments(world)[eid]["status"] = "not_started"
    await world.shop.request_refund(buyer, no, "")
    enrolments(world)[eid]["status"] = "studying"
    with pytest.raises(DegreeStarted):
        await world.shop.approve_refund(no)
    assert world.store.state.table("orders")[no]["refund"]["status"] == "requested"
    assert world.store.state.balances[buyer] == 4000
    assert_books(world)
