"""The shop order's whole life (shop/order_life.py) on in-memory ports: the transition table, cancel
by the owner, payment attempts and late payments, refunds. Every test ends by checking the books
(tests/shop/test_handlers.py `assert_books`)."""

import contextlib
import datetime
import itertools
from typing import Any

import pytest

from engine.book.errors import InvalidInput, NotFound
from shop import order_life
from shop.order_life import (
    CANCELLED_BY_TIMEOUT,
    CANCELLED_BY_USER,
    PAID,
    PENDING,
    REFUND_REQUESTED,
    REFUNDED,
    STATUSES,
    OrderNotCancellable,
    OrderNotPayable,
    OrderNotRefundable,
    RefundNotRequested,
)
from tests.shop.fakes import World, fake_world
from tests.shop.test_handlers import STARTING, assert_books, coupon, course, user

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
MOVES: tuple[order_life.Move, ...] = (
    "pay",
    "cancel_by_user",
    "cancel_by_timeout",
    "request_refund",
    "approve_refund",
    "reject_refund",
)


@pytest.fixture
def world() -> World:
    STARTING.clear()
    return fake_world()


# -- the table ------------------------------------------------------------------------------------
def test_the_transition_table_allows_exactly_the_seed_moves() -> None:
    allowed = {}
    for status, move in itertools.product(STATUSES, MOVES):
        with contextlib.suppress(order_life.IllegalOrderMove):
            allowed[(status, move)] = order_life.next_status(status, move)
    assert allowed == {
        (PENDING, "pay"): PAID,
        (PENDING, "cancel_by_user"): CANCELLED_BY_USER,
        (PENDING, "cancel_by_timeout"): CANCELLED_BY_TIMEOUT,
        (PAID, "request_refund"): REFUND_REQUESTED,
        (REFUND_REQUESTED, "approve_refund"): REFUNDED,
        (REFUND_REQUESTED, "reject_refund"): PAID,
    }
    # Each refused move raises its own code; the terminal states allow nothing.
    with pytest.raises(OrderNotCancellable):
        order_life.next_status(PAID, "cancel_by_user")
    with pytest.raises(OrderNotRefundable):
        order_life.next_status(PENDING, "request_refund")
    with pytest.raises(RefundNotRequested):
        order_life.next_status(REFUNDED, "approve_refund")
    with pytest.raises(OrderNotPayable):
        order_life.next_status(CANCELLED_BY_USER, "pay")


def test_an_old_cancelled_order_reads_as_cancelled_by_timeout() -> None:
    assert order_life.status_of({"status": "cancelled"}) == CANCELLED_BY_TIMEOUT
    assert order_life.stored_statuses(CANCELLED_BY_TIMEOUT) == (CANCELLED_BY_TIMEOUT, "cancelled")
    with pytest.raises(OrderNotCancellable):
        order_life.next_status("cancelled", "cancel_by_user")


def test_a_late_payment_is_refunded_unless_it_is_the_attempt_that_paid() -> None:
    paid = {"status": PAID, "to_pay": 100, "out_trade_no": "shop-b", "paid_trade_no": "shop-a"}
    assert order_life.payment_outcome(paid, "shop-a") == "duplicate"
    assert order_life.payment_outcome(paid, "shop-b") == "refund"
    assert order_life.payment_outcome({**paid, "status": REFUNDED}, "shop-a") == "duplicate"
    assert order_life.payment_outcome({"status": "cancelled", "out_trade_no": "shop-a"}, "shop-a") == "refund"
    assert order_life.payment_outcome({"status": PENDING, "out_trade_no": "shop-b"}, "shop-a") == "pay"
    legacy = {"status": PAID, "to_pay": 100, "out_trade_no": "shop-a"}  # before attempts existed
    assert order_life.paid_trade_no(legacy) == "shop-a"
    assert order_life.payment_outcome(legacy, "shop-a") == "duplicate"


def test_refunding_an_extension_keeps_the_other_orders_days() -> None:
    end = NOW + datetime.timedelta(days=60)
    alone = {"order_no": "o1", "valid_to": end}
    assert order_life.enrolment_after_refund(alone, "o1", 30, NOW) == {
        "status": REFUNDED,
        "ended_at": NOW,
        "refunded_order_nos": ["o1"],
    }
    shared = {"order_nos": ["o1", "o2"], "valid_to": end}
    assert order_life.enrolment_after_refund(shared, "o2", 30, NOW) == {
        "valid_to": NOW + datetime.timedelta(days=30),
        "order_nos": ["o1"],
        "refunded_order_nos": ["o2"],
    }
    ended = order_life.enrolment_after_refund(shared, "o2", 90, NOW)
    assert ended["status"] == REFUNDED  # nothing of the other order's time is left either


def test_a_refund_reason_is_at_most_200_characters() -> None:
    assert order_life.check_reason("  changed my mind ") == "changed my mind"
    with pytest.raises(InvalidInput):
        order_life.check_reason("x" * 201)


# -- on the fakes --------------------------------------------------------------------------------
async def pending_order(world: World, *, balance: int = 2000) -> tuple[int, dict[str, Any], int]:
    """A user with a pending order of 100.00: a 15.00 coupon held, `balance` held, the rest to pay."""
    buyer = await user(world, balance)
    course_id, policy = await course(world, 10_000)
    held = await coupon(world, buyer, kind="flat", value=1500, course_id=course_id)
    await world.shop.cart_add(buyer, course_id, policy)
    await world.shop.create_checkout(buyer, [course_id])
    await world.shop.choose_coupon(buyer, course_id, held)
    placed = await world.shop.pay(buyer, balance, f"key-{buyer}")
    assert placed.order["status"] == PENDING and placed.order["to_pay"] == 8500 - balance
    return buyer, placed.order, held


def stored(world: World, order_no: str) -> dict[str, Any]:
    return world.store.state.table("orders")[order_no]


async def test_the_owner_cancels_a_pending_order_once(world: World) -> None:
    buyer, order, held = await pending_order(world)
    stranger = await user(world)
    with pytest.raises(NotFound):
        await world.shop.cancel_order(stranger, order["_id"])
    cancelled = await world.shop.cancel_order(buyer, order["_id"])
    assert cancelled["status"] == CANCELLED_BY_USER and cancelled["cancel_reason"] == "user"
    again = await world.shop.cancel_order(buyer, order["_id"])  # a repeated click changes nothing
    assert again["status"] == CANCELLED_BY_USER
    assert world.store.state.table("user_coupons")[held]["status"] == "unused"
    assert world.store.state.balances[buyer] == 2000
    assert [(kind, amount) for _, amount, kind, _ in world.store.state.ledger] == [
        ("shop_hold", -2000),
        ("shop_release", 2000),
    ]
    assert world.provider.closed == {order["out_trade_no"]}  # the provider attempt is closed
    # The sweeper finds nothing left to do; the order cannot be paid nor cancelled by timeout now.
    world.clock.advance(hours=1)
    assert await world.shop.expire_pending_orders(world.clock.at) == 0
    assert stored(world, order["_id"])["status"] == CANCELLED_BY_USER
    assert_books(world)


async def test_a_timed_out_order_cannot_be_cancelled_by_its_owner(world: World) -> None:
    buyer, order, _ = await pending_order(world)
    world.clock.advance(seconds=1800)
    assert await world.shop.expire_pending_orders(world.clock.at) == 1
    with pytest.raises(OrderNotCancellable):
        await world.shop.cancel_order(buyer, order["_id"])
    assert stored(world, order["_id"])["status"] == CANCELLED_BY_TIMEOUT
    assert world.store.state.balances[buyer] == 2000  # released once, by the sweeper
    assert_books(world)


async def test_paying_again_opens_a_new_attempt_and_a_late_one_is_refunded_once(world: World) -> None:
    buyer, order, held = await pending_order(world)
    first = order["out_trade_no"]
    retried = await world.shop.retry_payment(buyer, order["_id"])
    second = retried["out_trade_no"]
    assert second != first and retried["pay_url"].endswith(second)
    assert [a["out_trade_no"] for a in stored(world, order["_id"])["attempts"]] == [first, second]
    assert [(p.out_trade_no, p.amount) for p in world.provider.payments] == [(first, 6500), (second, 6500)]
    assert world.provider.closed == {first}
    # The new attempt pays the order; the old one (paid anyway, e.g. in another tab) is refunded.
    await world.shop.on_paid(second, 6500)
    for _ in range(2):  # the provider may notify more than once
        await world.shop.on_paid(first, 6500)
        await world.shop.on_paid(second, 6500)
    paid = stored(world, order["_id"])
    assert (paid["status"], paid["paid_trade_no"]) == (PAID, second)
    assert world.provider.refunds == {f"late:{first}": (first, 6500)}
    assert [p["refund_ref"] for p in paid["late_payments"]] == [f"late:{first}"]
    assert world.store.state.table("user_coupons")[held]["status"] == "used"
    assert len(await world.shop.enrolments(buyer)) == 1
    assert_books(world)


async def test_only_a_pending_order_in_time_can_be_paid_again(world: World) -> None:
    buyer, order, _ = await pending_order(world)
    stranger = await user(world)
    with pytest.raises(NotFound):
        await world.shop.retry_payment(stranger, order["_id"])
    world.clock.advance(seconds=1800)
    with pytest.raises(OrderNotPayable):
        await world.shop.retry_payment(buyer, order["_id"])
    await world.shop.expire_pending_orders(world.clock.at)
    with pytest.raises(OrderNotPayable):
        await world.shop.retry_payment(buyer, order["_id"])
    assert len(world.provider.payments) == 1


async def paid_order(world: World) -> tuple[int, dict[str, Any]]:
    buyer, order, _ = await pending_order(world)
    await world.shop.on_paid(order["out_trade_no"], 6500)
    return buyer, stored(world, order["_id"])


async def test_an_approved_refund_pays_back_both_parts_once_and_ends_the_enrolment(world: World) -> None:
    buyer, order = await paid_order(world)
    no = order["_id"]
    stranger = await user(world)
    with pytest.raises(NotFound):
        await world.shop.request_refund(stranger, no, "")
    with pytest.raises(RefundNotRequested):
        await world.shop.approve_refund(no)
    requested = await world.shop.request_refund(buyer, no, "not for me")
    assert requested["status"] == REFUND_REQUESTED
    assert requested["refund"] | {"requested_at": None} == {
        "status": "requested",
        "reason": "not for me",
        "amount_balance": 2000,
        "amount_provider": 6500,
        "trade_no": order["out_trade_no"],
        "requested_at": None,
        "decided_at": None,
        "decision_reason": "",
        "refunded_at": None,
    }
    with pytest.raises(OrderNotRefundable):
        await world.shop.request_refund(buyer, no, "again")
    refunded, changed = await world.shop.approve_refund(no, "ok")
    assert changed and refunded["status"] == REFUNDED and refunded["refund"]["status"] == "refunded"
    again, changed_again = await world.shop.approve_refund(no, "ok")
    assert not changed_again and again["status"] == REFUNDED
    assert world.store.state.balances[buyer] == 2000
    assert [(kind, amount, ref) for _, amount, kind, ref in world.store.state.ledger][-1] == (
        "shop_refund",
        2000,
        f"shop-refund:{no}",
    )
    assert world.provider.refunds == {f"shop-refund:{no}": (order["out_trade_no"], 6500)}
    [enrolment] = await world.shop.enrolments(buyer)
    assert enrolment["status"] == REFUNDED  # content is no longer served
    with pytest.raises(RefundNotRequested):
        await world.shop.reject_refund(no, "too late")
    assert_books(world)


async def test_a_provider_failure_leaves_the_refund_approved_and_a_retry_finishes_it(world: World) -> None:
    buyer, order = await paid_order(world)
    no = order["_id"]
    await world.shop.request_refund(buyer, no, "")
    world.provider.fail_refunds = True
    with pytest.raises(RuntimeError):
        await world.shop.approve_refund(no)
    half = stored(world, no)
    assert (half["status"], half["refund"]["status"]) == (REFUND_REQUESTED, "approved")
    assert world.store.state.balances[buyer] == 2000  # the balance part is back already
    with pytest.raises(RefundNotRequested):
        await world.shop.reject_refund(no, "")  # an approval is not taken back
    assert await world.shop.finish_approved_refunds() == 0  # the sweeper tries, the provider fails
    world.provider.fail_refunds = False
    assert await world.shop.finish_approved_refunds() == 1  # ... and finishes it later
    finished, changed = await world.shop.approve_refund(no)
    assert finished["status"] == REFUNDED and not changed
    assert world.store.state.balances[buyer] == 2000  # credited once
    assert len(world.provider.refunds) == 1
    assert_books(world)


async def test_a_rejected_refund_goes_back_to_paid(world: World) -> None:
    buyer, order = await paid_order(world)
    no = order["_id"]
    await world.shop.request_refund(buyer, no, "please")
    rejected, changed = await world.shop.reject_refund(no, "used most of it")
    assert changed and rejected["status"] == PAID
    assert (rejected["refund"]["status"], rejected["refund"]["decision_reason"]) == (
        "rejected",
        "used most of it",
    )
    _, changed_again = await world.shop.reject_refund(no, "used most of it")
    assert not changed_again
    with pytest.raises(RefundNotRequested):
        await world.shop.approve_refund(no)
    assert [e["status"] for e in await world.shop.enrolments(buyer)] == ["valid"]
    assert world.provider.refunds == {}
    assert world.store.state.balances[buyer] == 0
    assert_books(world)


async def test_orders_filter_by_status(world: World) -> None:
    buyer, order, _ = await pending_order(world)
    world.clock.advance(seconds=1800)
    await world.shop.expire_pending_orders(world.clock.at)
    world.store.state.table("orders")[order["_id"]]["status"] = "cancelled"  # stored by an older version
    found, total = await world.shop.orders(buyer, 0, 10, CANCELLED_BY_TIMEOUT)
    assert total == 1 and found[0]["_id"] == order["_id"]
    assert await world.shop.orders(buyer, 0, 10, PENDING) == ([], 0)


async def test_refunding_a_second_purchase_of_a_course_takes_back_only_its_days(world: World) -> None:
    buyer = await user(world, 20_000)
    course_id, policy = await course(world, 5000)  # 30 days
    orders = []
    for key in ("first", "second"):
        await world.shop.cart_add(buyer, course_id, policy)
        await world.shop.create_checkout(buyer, [course_id])
        orders.append((await world.shop.pay(buyer, 5000, key)).order)
    [enrolment] = await world.shop.enrolments(buyer)
    assert enrolment["valid_to"] == world.clock.at + datetime.timedelta(days=60)  # extended
    await world.shop.request_refund(buyer, orders[1]["_id"], "bought twice")
    await world.shop.approve_refund(orders[1]["_id"])
    [enrolment] = await world.shop.enrolments(buyer)
    assert enrolment["status"] == "valid"
    assert enrolment["valid_to"] == world.clock.at + datetime.timedelta(days=30)
    assert world.store.state.balances[buyer] == 15_000
    await world.shop.request_refund(buyer, orders[0]["_id"], "")
    await world.shop.approve_refund(orders[0]["_id"])
    [enrolment] = await world.shop.enrolments(buyer)
    assert enrolment["status"] == REFUNDED and world.store.state.balances[buyer] == 20_000
    assert_books(world)
