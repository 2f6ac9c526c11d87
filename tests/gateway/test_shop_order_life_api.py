"""The shop order's whole life over HTTP (real MongoDB and Redis, the sandbox provider): cancel by
the owner (once, even racing the sweeper), paying again (a late payment of another attempt is
refunded once), refunds approved (idempotent, with ledger entries) or rejected by an admin."""

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.gateway.conftest import AppServer
from tests.gateway.test_payments import notification, order_status, pending_order, post_notify, signed
from tests.gateway.test_shop_api import ShopServer, running_shop


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


async def ledger_of(s: ShopServer, user_id: int) -> list[tuple[str, int, str]]:
    cursor = s.shop_ctx.db.ledger.find({"user_id": user_id}).sort("at", 1)
    return [(e["kind"], e["amount"], e["ref"]) async for e in cursor]


async def user_id_of(s: ShopServer, token: str) -> int:
    return int((await s.call("GET", "/api/v1/me", token=token)).json["user_id"])


async def paid_order(s: ShopServer) -> tuple[str, str, dict[str, Any]]:
    """A paid order: 20.00 coupon, 15.00 of balance, 65.00 paid on the sandbox's page."""
    token, trade_no, order = await pending_order(s, balance=1500, coupon=True)
    pressed = await s.call("POST", f"/api/v1/sandbox/payments/{trade_no}", {"outcome": "paid"}, token=token)
    assert pressed.status == 200, pressed.body
    await s.provider.idle()
    assert await order_status(s, token, order["order_no"]) == "paid"
    return token, trade_no, order


# -- cancel -----------------------------------------------------------------------------------------
async def test_the_owner_cancels_a_pending_order_and_gets_coupon_and_balance_back_once(
    shop_server: ShopServer,
) -> None:
    s = shop_server
    token, trade_no, order = await pending_order(s, balance=1500, coupon=True)
    no = order["order_no"]
    _, stranger = await s.api.register()
    assert (await s.call("POST", f"/api/v1/shop/orders/{no}/cancel", token=stranger)).status == 404
    answer = await s.call("POST", f"/api/v1/shop/orders/{no}/cancel", token=token)
    assert answer.status == 200, answer.body
    assert (answer.json["status"], answer.json["pay_url"]) == ("cancelled_by_user", None)
    again = await s.call("POST", f"/api/v1/shop/orders/{no}/cancel", token=token)
    assert (again.status, again.json["status"]) == (200, "cancelled_by_user")
    user_id = await user_id_of(s, token)
    assert (await ledger_of(s, user_id))[1:] == [
        ("shop_hold", -1500, f"shop-hold:{no}"),
        ("shop_release", 1500, f"shop-release:{no}"),
    ]
    coupons = (await s.call("GET", "/api/v1/shop/coupons", token=token)).json["items"]
    assert [(c["status"], c["order_no"]) for c in coupons] == [("unused", None)]
    # The sandbox attempt is closed: its page can no longer pay it.
    pressed = await s.call("POST", f"/api/v1/sandbox/payments/{trade_no}", {"outcome": "paid"}, token=token)
    assert (pressed.status, pressed.code) == (409, "ILLEGAL_STATE")
    payment = await s.shop_ctx.db.payments.find_one({"_id": trade_no})
    assert payment is not None and payment["status"] == "closed"
    # Paid or pending again? Neither: a cancelled order cannot be paid nor cancelled differently.
    retry = await s.call("POST", f"/api/v1/shop/orders/{no}/pay", token=token)
    assert (retry.status, retry.code) == (409, "ORDER_NOT_PAYABLE")


async def test_a_cancel_racing_the_sweeper_releases_once(shop_server: ShopServer) -> None:
    s = shop_server
    token, _, order = await pending_order(s, balance=1500, coupon=True)
    no = order["order_no"]
    later = s.shop.now() + datetime.timedelta(seconds=s.shop.pending_timeout_seconds)
    results = await asyncio.gather(
        *(s.call("POST", f"/api/v1/shop/orders/{no}/cancel", token=token) for _ in range(3)),
        *(s.shop.expire_pending_orders(later) for _ in range(3)),
    )
    answers, swept = results[:3], results[3:]
    final = await order_status(s, token, no)
    assert final in ("cancelled_by_user", "cancelled_by_timeout")
    for answer in answers:
        assert answer.status in (200, 409), answer.body
        if answer.status == 409:
            assert answer.code == "ORDER_NOT_CANCELLABLE" and final == "cancelled_by_timeout"
    assert sum(swept) == (1 if final == "cancelled_by_timeout" else 0)
    user_id = await user_id_of(s, token)
    releases = [e for e in await ledger_of(s, user_id) if e[0] == "shop_release"]
    assert releases == [("shop_release", 1500, f"shop-release:{no}")]
    assert (await s.call("GET", "/api/v1/me", token=token)).json["balance"] == 1500
    coupons = (await s.call("GET", "/api/v1/shop/coupons", token=token)).json["items"]
    assert [c["status"] for c in coupons] == ["unused"]


# -- paying again -------------------------------------------------------------------------------------
async def test_paying_again_closes_the_old_attempt_and_a_late_one_is_refunded_once(
    shop_server: ShopServer,
) -> None:
    s = shop_server
    token, first, order = await pending_order(s, balance=1500, coupon=True)
    no = order["order_no"]
    retried = await s.call("POST", f"/api/v1/shop/orders/{no}/pay", token=token)
    assert retried.status == 200, retried.body
    second = retried.json["out_trade_no"]
    assert second != first and retried.json["pay_url"].endswith(f"/sandbox/pay/{second}")
    assert retried.json["order_no"] == no
    # The first attempt was closed (never paid): its page refuses to pay it.
    pressed = await s.call("POST", f"/api/v1/sandbox/payments/{first}", {"outcome": "paid"}, token=token)
    assert (pressed.status, pressed.code) == (409, "ILLEGAL_STATE")

    # The second attempt is collected by the provider but its notification is slow; the payer
    # gives up and pays again: the second cannot be closed any more, a third attempt is opened.
    await s.shop_ctx.db.sandbox_trades.update_one(
        {"_id": second},
        {"$set": {"status": "TRADE_SUCCESS", "trade_no": "SBX-second", "notify_id": "n-second"}},
    )
    third = (await s.call("POST", f"/api/v1/shop/orders/{no}/pay", token=token)).json["out_trade_no"]
    assert len({first, second, third}) == 3
    detail = (await s.call("GET", f"/api/v1/shop/orders/{no}", token=token)).json
    assert (detail["attempts"], detail["to_pay"], detail["out_trade_no"]) == (3, 6500, third)
    pressed = await s.call("POST", f"/api/v1/sandbox/payments/{third}", {"outcome": "paid"}, token=token)
    assert pressed.status == 200
    await s.provider.idle()
    assert await order_status(s, token, no) == "paid"

    # Now the second attempt's notification arrives (twice): refunded through the provider, once.
    user_id = await user_id_of(s, token)
    ledger = await ledger_of(s, user_id)
    for notify_id in ("late-1", "late-2"):
        late = signed(notification(second, "65.00", trade_no="SBX-second", notify_id=notify_id))
        answer = await post_notify(s, late)
        assert (answer.status, answer.body) == (200, b"success")
    refunds = [r async for r in s.shop_ctx.db.payment_refunds.find({"out_trade_no": second})]
    assert [(r["_id"], r["amount"], r["status"]) for r in refunds] == [(f"late:{second}", 6500, "refunded")]
    assert await s.shop_ctx.db.payment_refunds.count_documents({"out_trade_no": third}) == 0
    stored = await s.shop_ctx.db.shop_orders.find_one({"_id": no})
    assert stored is not None and stored["paid_trade_no"] == third and len(stored["late_payments"]) == 1
    assert await order_status(s, token, no) == "paid"
    assert await ledger_of(s, user_id) == ledger  # the balance is not touched by a late payment
    assert len((await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]) == 1


# -- refunds ------------------------------------------------------------------------------------------
async def test_an_approved_refund_pays_back_once_and_ends_the_enrolment(shop_server: ShopServer) -> None:
    s = shop_server
    token, trade_no, order = await paid_order(s)
    no = order["order_no"]
    _, stranger = await s.api.register()
    path = f"/api/v1/shop/orders/{no}/refund"
    assert (await s.call("POST", path, {"reason": "x"}, token=stranger)).status == 404
    too_long = await s.call("POST", path, {"reason": "x" * 201}, token=token)
    assert (too_long.status, too_long.code) == (400, "VALIDATION"), too_long.body
    requested = await s.call("POST", path, {"reason": "Wrong course"}, token=token)
    assert requested.status == 200, requested.body
    assert requested.json["status"] == "refund_requested"
    refund = requested.json["refund"]
    assert (refund["status"], refund["reason"], refund["amount_balance"], refund["amount_provider"]) == (
        "requested",
        "Wrong course",
        1500,
        6500,
    )
    assert refund["requested_at_ms"] > 0 and refund["decided_at_ms"] is None
    again = await s.call("POST", path, {"reason": ""}, token=token)
    assert (again.status, again.code) == (409, "ORDER_NOT_REFUNDABLE")
    listed = (await s.call("GET", "/api/v1/shop/orders?status=refund_requested", token=token)).json
    assert [o["order_no"] for o in listed["items"]] == [no]

    # Not an admin: refused. Three admins (or retries) at once: paid back once.
    path = f"/api/v1/admin/shop/orders/{no}/refund/approve"
    assert (await s.call("POST", path, {"reason": "ok"}, token=token)).status == 403
    admin = await s.api.admin_token()
    answers = await asyncio.gather(*(s.call("POST", path, {"reason": "ok"}, token=admin) for _ in range(3)))
    assert [a.status for a in answers] == [200, 200, 200], [a.body for a in answers]
    assert all(a.json["status"] == "refunded" for a in answers)
    assert (await s.call("POST", path, token=admin)).json["refund"]["status"] == "refunded"

    user_id = await user_id_of(s, token)
    refunds = [e for e in await ledger_of(s, user_id) if e[0] == "shop_refund"]
    assert refunds == [("shop_refund", 1500, f"shop-refund:{no}")]
    assert (await s.call("GET", "/api/v1/me", token=token)).json["balance"] == 1500
    provider = [
        (r["_id"], r["amount"], r["status"])
        async for r in s.shop_ctx.db.payment_refunds.find({"out_trade_no": trade_no})
    ]
    assert provider == [(f"shop-refund:{no}", 6500, "refunded")]
    trade = await s.shop_ctx.db.sandbox_trades.find_one({"_id": trade_no})
    assert trade is not None and trade["refunded"] == 6500
    enrolments = [e async for e in s.shop_ctx.db.shop_enrolments.find({"user_id": user_id})]
    assert [e["status"] for e in enrolments] == ["refunded"]
    audit = [a async for a in s.shop_ctx.db.audit.find({"action": "shop_refund.approve"})]
    assert len(audit) == 1 and audit[0]["target"] == f"shop_order:{no}"
    assert audit[0]["before"]["status"] == "refund_requested" and audit[0]["after"]["status"] == "refunded"
    detail = (await s.call("GET", f"/api/v1/shop/orders/{no}", token=token)).json
    assert detail["status"] == "refunded" and detail["refund"]["refunded_at_ms"] >= refund["requested_at_ms"]
    reject = await s.call("POST", f"/api/v1/admin/shop/orders/{no}/refund/reject", token=admin)
    assert (reject.status, reject.code) == (409, "REFUND_NOT_REQUESTED")


async def test_a_rejected_refund_goes_back_to_paid(shop_server: ShopServer) -> None:
    s = shop_server
    token, _, order = await paid_order(s)
    no = order["order_no"]
    admin = await s.api.admin_token()
    early = await s.call("POST", f"/api/v1/admin/shop/orders/{no}/refund/reject", token=admin)
    assert (early.status, early.code) == (409, "REFUND_NOT_REQUESTED")
    await s.call("POST", f"/api/v1/shop/orders/{no}/refund", {"reason": "Too hard"}, token=token)
    path = f"/api/v1/admin/shop/orders/{no}/refund/reject"
    rejected = await s.call("POST", path, {"reason": "Half watched"}, token=admin)
    assert rejected.status == 200, rejected.body
    assert rejected.json["status"] == "paid"
    assert (rejected.json["refund"]["status"], rejected.json["refund"]["decision_reason"]) == (
        "rejected",
        "Half watched",
    )
    assert (await s.call("POST", path, {"reason": "Half watched"}, token=admin)).status == 200
    assert await s.shop_ctx.db.audit.count_documents({"action": "shop_refund.reject"}) == 1
    approve = await s.call("POST", f"/api/v1/admin/shop/orders/{no}/refund/approve", token=admin)
    assert (approve.status, approve.code) == (409, "REFUND_NOT_REQUESTED")
    user_id = await user_id_of(s, token)
    assert not [e for e in await ledger_of(s, user_id) if e[0] == "shop_refund"]
    enrolments = [e async for e in s.shop_ctx.db.shop_enrolments.find({"user_id": user_id})]
    assert [e["status"] for e in enrolments] != ["refunded"]


async def test_pending_orders_are_not_refundable_and_orders_filter_by_status(shop_server: ShopServer) -> None:
    s = shop_server
    token, _, order = await pending_order(s)
    no = order["order_no"]
    refused = await s.call("POST", f"/api/v1/shop/orders/{no}/refund", {"reason": ""}, token=token)
    assert (refused.status, refused.code) == (409, "ORDER_NOT_REFUNDABLE")
    listed = (await s.call("GET", "/api/v1/shop/orders?status=pending", token=token)).json
    item = listed["items"][0]
    assert listed["total"] == 1 and item["order_no"] == no and item["pay_url"]
    totals = (item["total"], item["payable"], item["balance_used"], item["to_pay"])
    assert totals == (10_000, 10_000, 0, 10_000)
    assert item["pay_deadline_ms"] > item["created_at_ms"] > 0 and item["refund"] is None
    [line] = item["lines"]
    assert (line["price"], line["policy_days"], line["coupon_discount"], line["global_discount"]) == (
        10_000,
        30,
        0,
        0,
    )
    assert line["paid_price"] == 10_000 and line["course_name"]
    await s.call("POST", f"/api/v1/shop/orders/{no}/cancel", token=token)
    assert (await s.call("GET", "/api/v1/shop/orders?status=pending", token=token)).json["total"] == 0
    mine = (await s.call("GET", "/api/v1/shop/orders?status=cancelled_by_user", token=token)).json
    assert [o["order_no"] for o in mine["items"]] == [no]
    # An order stored by an older version as "cancelled" is listed as cancelled_by_timeout.
    await s.shop_ctx.db.shop_orders.update_one({"_id": no}, {"$set": {"status": "cancelled"}})
    old = (await s.call("GET", "/api/v1/shop/orders?status=cancelled_by_timeout", token=token)).json
    assert [(o["order_no"], o["status"]) for o in old["items"]] == [(no, "cancelled_by_timeout")]
    bad = await s.call("GET", "/api/v1/shop/orders?status=cancelled", token=token)
    assert (bad.status, bad.code) == (400, "VALIDATION")
