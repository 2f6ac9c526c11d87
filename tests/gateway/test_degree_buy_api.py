"""Buying a degree course over HTTP (real MongoDB and Redis, the sandbox provider): cart, checkout
with a global coupon and the balance, the enrolment created when paid, bought once, the provider
path, an offline degree, the degree page's `my`, and the refund of a not-started degree."""

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop

_names = itertools.count(1)


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


async def degree(s: ShopServer, price: int) -> tuple[int, int]:
    created = await s.admin(
        "POST",
        "/api/v1/admin/shop/degree-courses",
        {
            "name": f"Degree {next(_names)}",
            "total_scholarship": 40_000,
            "mentor_fee": 15_000,
            "period_days": 150,
            "scholarships": [{"time_percent": 50, "value": 5000}, {"time_percent": 100, "value": 1000}],
        },
    )
    policy = await s.admin(
        "POST",
        f"/api/v1/admin/shop/degree-courses/{created['id']}/policies",
        {"valid_days": 730, "price": price},
    )
    return int(created["id"]), int(policy["id"])


async def buy(s: ShopServer, token: str, degree_id: int, policy: int, balance: int, key: str) -> Any:
    added = await s.call(
        "POST", "/api/v1/cart", {"degree_course_id": degree_id, "price_policy_id": policy}, token=token
    )
    assert added.status == 201, added.body
    created = await s.call("POST", "/api/v1/checkout", {"degree_course_ids": [degree_id]}, token=token)
    assert created.status == 201, created.body
    paid = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": balance, "idempotency_key": key}, token=token
    )
    assert paid.status == 201, paid.body
    return paid.json


async def test_buy_a_degree_with_a_global_coupon_and_the_balance(shop_server: ShopServer) -> None:
    s = shop_server
    degree_id, policy = await degree(s, 30_000)
    user_id, token = await s.api.register()
    await s.api.credit(user_id, 50_000)
    sub = await s.category()
    course_id, (course_policy,) = await s.course(sub, 1000)
    bound = await s.coupon(user_id, kind="flat", value=300, course_id=course_id)
    global_flat = await s.coupon(user_id, kind="flat", value=2000)

    # The cart holds a course and a degree (with the same id space apart).
    both = {"degree_course_id": degree_id, "course_id": course_id, "price_policy_id": policy}
    assert (await s.call("POST", "/api/v1/cart", both, token=token)).code == "VALIDATION"
    wrong = await s.call(
        "POST", "/api/v1/cart", {"degree_course_id": degree_id, "price_policy_id": course_policy}, token=token
    )
    assert (wrong.status, wrong.code) == (400, "INVALID_POLICY")
    await s.call(
        "POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": course_policy}, token=token
    )
    added = await s.call(
        "POST", "/api/v1/cart", {"degree_course_id": degree_id, "price_policy_id": policy}, token=token
    )
    assert added.status == 201, added.body
    lines = {line["kind"]: line for line in added.json["items"]}
    assert lines["degree"]["degree_course_id"] == degree_id and lines["degree"]["course_id"] is None
    assert lines["course"]["degree_course_id"] is None and added.json["total"] == 31_000

    created = await s.call("POST", "/api/v1/checkout", {"degree_course_ids": [degree_id]}, token=token)
    assert created.status == 201, created.body
    [line] = created.json["lines"]
    assert (line["kind"], line["degree_course_id"], line["course_id"], line["coupons"]) == (
        "degree",
        degree_id,
        None,
        [],
    )
    assert [c["id"] for c in created.json["global_coupons"]] == [global_flat]  # the bound one never
    assert bound not in [c["id"] for c in created.json["global_coupons"]]
    chosen = await s.call(
        "PATCH", "/api/v1/checkout", {"course_id": None, "coupon_id": global_flat}, token=token
    )
    assert chosen.json["totals"]["payable"] == 28_000
    paid = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": 50_000, "idempotency_key": "d1"}, token=token
    )
    assert paid.status == 201, paid.body
    order = paid.json["order"]
    assert (order["status"], order["balance_used"], order["to_pay"]) == ("paid", 28_000, 0)
    assert [
        (ln["kind"], ln["degree_course_id"], ln["course_id"], ln["paid_price"]) for ln in order["lines"]
    ] == [("degree", degree_id, None, 28_000)]
    cart = (await s.call("GET", "/api/v1/cart", token=token)).json
    assert [item["kind"] for item in cart["items"]] == ["course"]  # the degree left the cart

    enrolment = await s.shop_ctx.db.shop_degree_enrolments.find_one({"_id": f"{user_id}:{degree_id}"})
    assert enrolment is not None
    assert (enrolment["status"], enrolment["order_no"], enrolment["registration"]) == (
        "not_started",
        order["order_no"],
        None,
    )
    assert (enrolment["total_scholarship"], enrolment["mentor_fee"], enrolment["mentor_fee_balance"]) == (
        40_000,
        15_000,
        15_000,
    )
    assert enrolment["scholarship_tiers"] == [
        {"time_percent": 50, "value": 5000},
        {"time_percent": 100, "value": 1000},
    ]
    assert (enrolment["period_days"], enrolment["scholarship_awarded"], enrolment["graduation_award"]) == (
        150,
        0,
        0,
    )

    # Bought once: the cart refuses it now.
    again = await s.call(
        "POST", "/api/v1/cart", {"degree_course_id": degree_id, "price_policy_id": policy}, token=token
    )
    assert (again.status, again.code) == (409, "DEGREE_ALREADY_BOUGHT")

    # The degree page: status and my.
    page = (await s.call("GET", f"/api/v1/degree-courses/{degree_id}", token=token)).json
    assert page["status"] == "online"
    assert page["my"] == {
        "enrolment": {"id": f"{user_id}:{degree_id}", "status": "not_started", "registered": False}
    }
    assert (await s.call("GET", f"/api/v1/degree-courses/{degree_id}")).json["my"] is None
    _, stranger = await s.api.register()
    assert (await s.call("GET", f"/api/v1/degree-courses/{degree_id}", token=stranger)).json["my"] == {
        "enrolment": None
    }


async def test_provider_payment_and_one_pending_order(shop_server: ShopServer) -> None:
    s = shop_server
    degree_id, policy = await degree(s, 20_000)
    user_id, token = await s.api.register()
    await s.api.credit(user_id, 5000)
    paid = await buy(s, token, degree_id, policy, 5000, "p1")
    order = paid["order"]
    assert (order["status"], order["to_pay"]) == ("pending", 15_000)
    # While it waits for the payment, no second order for the degree.
    again = await s.call(
        "POST", "/api/v1/cart", {"degree_course_id": degree_id, "price_policy_id": policy}, token=token
    )
    assert (again.status, again.code) == (409, "DEGREE_ALREADY_BOUGHT")
    assert await s.shop_ctx.db.shop_degree_enrolments.count_documents({"user_id": user_id}) == 0

    trade_no = paid["pay_url"].rsplit("/", 1)[1]
    pressed = await s.call("POST", f"/api/v1/sandbox/payments/{trade_no}", {"outcome": "paid"}, token=token)
    assert pressed.status == 200, pressed.body
    await s.provider.idle()
    detail = (await s.call("GET", f"/api/v1/shop/orders/{order['order_no']}", token=token)).json
    assert detail["status"] == "paid"
    enrolments = [e async for e in s.shop_ctx.db.shop_degree_enrolments.find({"user_id": user_id})]
    assert [(e["status"], e["order_no"]) for e in enrolments] == [("not_started", order["order_no"])]
    # A repeated notification creates nothing more.
    await s.shop.on_paid(trade_no, 15_000)
    assert await s.shop_ctx.db.shop_degree_enrolments.count_documents({"user_id": user_id}) == 1


async def test_an_offline_degree_is_not_sold_and_the_switch_is_audited(shop_server: ShopServer) -> None:
    s = shop_server
    degree_id, policy = await degree(s, 1000)
    _, token = await s.api.register()
    path = f"/api/v1/admin/shop/degree-courses/{degree_id}"
    assert (await s.call("PATCH", path, {"status": "offline"}, token=token)).status == 403
    bad = await s.call("PATCH", path, {"status": "gone"}, token=await s.api.admin_token())
    assert (bad.status, bad.code) == (400, "VALIDATION")
    changed = await s.admin("PATCH", path, {"status": "offline"})
    assert changed["status"] == "offline"
    audit = [a async for a in s.shop_ctx.db.audit.find({"action": "degree_course.status"})]
    assert [(a["before"], a["after"]) for a in audit] == [({"status": "online"}, {"status": "offline"})]
    refused = await s.call(
        "POST", "/api/v1/cart", {"degree_course_id": degree_id, "price_policy_id": policy}, token=token
    )
    assert (refused.status, refused.code) == (409, "DEGREE_NOT_ON_SALE")
    assert (await s.call("GET", f"/api/v1/degree-courses/{degree_id}")).json["status"] == "offline"
    missing = await s.call(
        "PATCH",
        "/api/v1/admin/shop/degree-courses/999999",
        {"status": "online"},
        token=await s.api.admin_token(),
    )
    assert missing.status == 404


async def test_refund_of_a_not_started_degree_and_buying_again(shop_server: ShopServer) -> None:
    s = shop_server
    degree_id, policy = await degree(s, 8000)
    user_id, token = await s.api.register()
    await s.api.credit(user_id, 20_000)
    order = (await buy(s, token, degree_id, policy, 8000, "r1"))["order"]
    no = order["order_no"]
    requested = await s.call(
        "POST", f"/api/v1/shop/orders/{no}/refund", {"reason": "changed my mind"}, token=token
    )
    assert requested.status == 200, requested.body
    approved = await s.admin("POST", f"/api/v1/admin/shop/orders/{no}/refund/approve", {"reason": "ok"})
    assert approved["status"] == "refunded"
    enrolment = await s.shop_ctx.db.shop_degree_enrolments.find_one({"_id": f"{user_id}:{degree_id}"})
    assert enrolment is not None and enrolment["status"] == "refunded"
    assert (await s.call("GET", "/api/v1/me", token=token)).json["balance"] == 20_000

    # Bought again after the refund: a fresh, not-started enrolment of the new order.
    second = (await buy(s, token, degree_id, policy, 8000, "r2"))["order"]
    enrolment = await s.shop_ctx.db.shop_degree_enrolments.find_one({"_id": f"{user_id}:{degree_id}"})
    assert enrolment is not None and (enrolment["status"], enrolment["order_no"]) == (
        "not_started",
        second["order_no"],
    )

    # Once a module opened (CORE sets the status), the refund is refused.
    await s.shop_ctx.db.shop_degree_enrolments.update_one(
        {"_id": enrolment["_id"]}, {"$set": {"status": "studying"}}
    )
    started = await s.call(
        "POST", f"/api/v1/shop/orders/{second['order_no']}/refund", {"reason": "x"}, token=token
    )
    assert (started.status, started.code) == (409, "DEGREE_STARTED")
