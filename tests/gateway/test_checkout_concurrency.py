"""No lost or doubled order: 200 concurrent checkout operations against the running app (real
MongoDB transactions, real Redis, the sandbox provider's signed notifications), mixed:

- 40 users each paying their checkout once (half from the balance alone: paid and enrolled at once;
  half partly: a balance hold and a pending provider payment);
- one user retrying one pay with the same idempotency key 60 times at once: one order, one payment;
- one user's checkout with a coupon chosen, paid 25 times at once under different keys: one order,
  the coupon held once;
- 30 claims (15 users, twice each) of a claimable batch of 5: coupons left + issued = quantity;
- one user's 15 orders placed at once from 15 checkouts (as 15 tabs would; the REST API keeps one
  checkout per user, so these go to the running app's `ShopService`, the code under PayHandler),
  asking more balance than there is: never negative, the ledger sums to the balance;
- 30 copies of one signed notification at once: paid once, enrolled once, one ledger entry.

Then the books: every balance equals the sum of its ledger entries and is never negative, every
order has its one ledger entry (when it used the balance) and its one payment record (when pending).
"""

import asyncio
import collections
import datetime
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest

from persistence.mongo import iso_utc
from tests.gateway.conftest import Answer, AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop

PRICE = 5000


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


async def buyer(s: ShopServer, balance: int, course_id: int, policy_id: int) -> tuple[int, str]:
    """A registered user with `balance` fen and a checkout of the course (through the service)."""
    user_id, token = await s.api.register()
    if balance:
        await s.shop_ctx.accounts.credit(user_id, balance, "test_credit", f"test-credit:{user_id}")
    await s.shop.cart_add(user_id, course_id, policy_id)
    await s.shop.create_checkout(user_id, [course_id])
    return user_id, token


def pay(s: ShopServer, token: str, balance: int, key: str) -> Any:
    return s.call("POST", "/api/v1/checkout/pay", {"balance": balance, "idempotency_key": key}, token=token)


def notify(s: ShopServer, out_trade_no: str, amount: int) -> Any:
    trade = {
        "_id": out_trade_no,
        "notify_id": "n-once",
        "subject": "Courses",
        "amount": amount,
        "trade_no": "SBX-ONCE",
        "status": "TRADE_SUCCESS",
    }
    form = urllib.parse.urlencode(s.provider.notification(trade)).encode()
    return s.call(
        "POST",
        "/api/v1/payments/notify",
        raw=form,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )


async def test_two_hundred_concurrent_checkouts_lose_and_double_nothing(shop_server: ShopServer) -> None:
    s = shop_server
    db = s.shop_ctx.db
    sub = await s.category()
    course_id, (policy_id,) = await s.course(sub, PRICE)

    # -- set-up (not concurrent with the operations below) ---------------------------------------
    many = await asyncio.gather(
        *(buyer(s, PRICE if i % 2 else 2000, course_id, policy_id) for i in range(40))
    )
    retry_user, retry_token = await buyer(s, 10_000, course_id, policy_id)
    coupon_user, coupon_token = await buyer(s, 0, course_id, policy_id)
    coupon = await s.coupon(coupon_user, kind="flat", value=1000, course_id=course_id)
    await s.shop.create_checkout(coupon_user, [course_id])  # now offering the coupon
    await s.shop.choose_coupon(coupon_user, course_id, coupon)
    now = datetime.datetime.now(datetime.UTC)
    batch = await s.admin(
        "POST",
        "/api/v1/admin/shop/coupons",
        {
            "name": "Five only",
            "kind": "flat",
            "value": 500,
            "claim_start": iso_utc(now - datetime.timedelta(days=1)),
            "claim_end": iso_utc(now + datetime.timedelta(days=1)),
            "quantity": 5,
            "per_user_limit": 1,
            "valid_days": 7,
        },
    )
    claimers = [token for _user, token in many[:15]]
    tabs_user, _tabs_token = await buyer(s, 10_000, course_id, policy_id)
    tabs = [await s.shop.create_checkout(tabs_user, [course_id]) for _ in range(15)]
    notified_user, _ = await buyer(s, 1000, course_id, policy_id)
    pending = (await s.shop.pay(notified_user, 1000, "to-notify")).order

    # -- 200 at once ------------------------------------------------------------------------------
    operations: list[Any] = []
    operations += [pay(s, token, PRICE if i % 2 else 2000, f"once-{i}") for i, (_u, token) in enumerate(many)]
    operations += [pay(s, retry_token, 2000, "same-key") for _ in range(60)]
    operations += [pay(s, coupon_token, 0, f"coupon-tab-{i}") for i in range(25)]
    operations += [s.call("POST", f"/api/v1/shop/coupons/{batch['id']}/claim", token=t) for t in claimers * 2]
    operations += [s.shop.place_order(tab, 3000, f"tab-{i}") for i, tab in enumerate(tabs)]
    operations += [notify(s, pending["out_trade_no"], pending["to_pay"]) for _ in range(30)]
    assert len(operations) == 200
    results = await asyncio.gather(*operations, return_exceptions=True)
    answers = [r for r in results if isinstance(r, Answer)]
    assert all(a.status < 500 or a.body == b"failure" for a in answers), [
        a.body for a in answers if a.status >= 500
    ]
    once, same_key, coupon_tabs, claims, placed, notifies = (
        results[:40],
        results[40:100],
        results[100:125],
        results[125:155],
        results[155:170],
        results[170:],
    )

    # Each of the 40 users: one order, paid from the balance alone or pending with a hold.
    assert [a.status for a in once] == [201] * 40, [a.body for a in once if a.status != 201]
    for i, answer in enumerate(once):
        assert answer.json["order"]["status"] == ("paid" if i % 2 else "pending")

    # The same key 60 times: one order (201 once, the same order 200 otherwise), one payment.
    assert collections.Counter(a.status for a in same_key) == {201: 1, 200: 59}
    assert len({a.json["order"]["order_no"] for a in same_key}) == 1
    assert await db.shop_orders.count_documents({"user_id": retry_user}) == 1
    assert await db.payments.count_documents({"user_id": retry_user}) == 1

    # One checkout, 25 keys: one order, and its coupon held by it alone.
    assert sum(a.status == 201 for a in coupon_tabs) == 1
    assert {(a.status, a.code) for a in coupon_tabs if a.status != 201} <= {
        (409, "CHECKOUT_ALREADY_ORDERED"),
        (409, "COUPON_UNAVAILABLE"),
        (404, "CHECKOUT_MISSING"),
    }
    [coupon_order] = [o async for o in db.shop_orders.find({"user_id": coupon_user})]
    held = await db.shop_user_coupons.find_one({"_id": coupon})
    assert held is not None and (held["status"], held["order_no"]) == ("held", coupon_order["_id"])

    # The batch of 5: exactly 5 issued, left + issued = quantity.
    assert sum(a.status == 201 for a in claims) == 5
    template = await db.shop_coupons.find_one({"_id": batch["id"]})
    issued = await db.shop_user_coupons.count_documents({"coupon_id": batch["id"]})
    assert template is not None and (template["left"], issued) == (0, 5)

    # One user's 15 tabs asking 3000 each from 10,000: never below zero, every fen accounted for.
    orders = [p.order for p in placed if not isinstance(p, BaseException)]
    assert all(type(p).__name__ == "ShopConflict" for p in placed if isinstance(p, BaseException))
    balance_user = await db.users.find_one({"_id": tabs_user})
    assert balance_user is not None and balance_user["balance"] >= 0
    assert sum(o["balance_used"] for o in orders) == 10_000 - balance_user["balance"]

    # 30 copies of one notification: paid once, enrolled once, one ledger entry for the order.
    assert {a.body for a in notifies} <= {b"success", b"failure"} and any(
        a.body == b"success" for a in notifies
    )
    paid = await db.shop_orders.find_one({"_id": pending["_id"]})
    assert paid is not None and (paid["status"], paid["paid_trade_no"]) == ("paid", pending["out_trade_no"])
    enrolments = [e async for e in db.shop_enrolments.find({"user_id": notified_user})]
    assert len(enrolments) == 1 and enrolments[0]["order_no"] == pending["_id"]
    assert await db.ledger.count_documents({"ref": {"$regex": f":{pending['_id']}$"}}) == 1
    payment = await db.payments.find_one({"_id": pending["out_trade_no"]})
    assert payment is not None and (payment["status"], payment["handled"]) == ("paid", True)

    # The books of everyone involved.
    users = [u for u, _t in many] + [retry_user, coupon_user, tabs_user, notified_user]
    async for user in db.users.find({"_id": {"$in": users}}, {"balance": 1}):
        entries = [e async for e in db.ledger.find({"user_id": user["_id"]})]
        assert user["balance"] >= 0 and sum(e["amount"] for e in entries) == user["balance"]
        assert all(e["balance_after"] >= 0 for e in entries)
    async for order in db.shop_orders.find({"user_id": {"$in": users}}):
        refs = await db.ledger.count_documents(
            {"ref": {"$in": [f"shop-pay:{order['_id']}", f"shop-hold:{order['_id']}"]}}
        )
        assert refs == (1 if order["balance_used"] else 0), order["_id"]
        if order["status"] == "pending":
            assert await db.payments.count_documents({"_id": order["out_trade_no"]}) == 1
    keys = [
        (o["user_id"], o["idempotency_key"]) async for o in db.shop_orders.find({"user_id": {"$in": users}})
    ]
    per_key = collections.Counter(keys)
    assert max(per_key.values()) == 1
