"""Users (credit, non-payers), settlement (orders, refunds, forfeits), coupons, courses and policies."""

from __future__ import annotations

import re
from typing import Any

from engine.commands import BlockBidder
from persistence.mongo import iso_from_ms, utc_now
from persistence.shop import ensure_shop_indexes
from tests.admin.conftest import AdminClient

HOUR_MS = 3_600_000


async def signed_in(client: AdminClient) -> AdminClient:
    await client.sign_in()
    await client.get("/admin/")
    return client


async def test_credit_goes_through_the_ledger_once(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    user_id, token = await client.server.register("frank")
    page = await client.get(f"/admin/users/{user_id}")
    key = re.search(rb'name="idempotency_key" value="([0-9a-f]+)"', page.body)
    assert page.status == 200 and key
    form = {"amount": "1,234.56", "idempotency_key": key.group(1).decode(), "note": "goodwill"}
    first = await client.post(f"/admin/users/{user_id}/credit", form)
    again = await client.post(f"/admin/users/{user_id}/credit", form)  # a double submit
    assert first.status == again.status == 303
    assert b"already applied" in (await client.get(again.headers["Location"])).body
    me = await client.server.call("GET", "/api/v1/me", token=token)
    assert me.json["balance"] == 1234_56
    ledger = [e async for e in client.server.ctx.db.ledger.find({"user_id": user_id})]
    assert len(ledger) == 1 and ledger[0]["kind"] == "admin_credit"
    entry = await client.server.ctx.db.audit.find_one({"action": "user.credit"})
    assert entry["before"] == {"balance": 0}
    assert entry["after"]["balance"] == 1234_56 and entry["after"]["note"] == "goodwill"
    bad = await client.post(
        f"/admin/users/{user_id}/credit", {**form, "amount": "-5", "idempotency_key": "k2"}
    )
    assert b"Amount: give an amount" in (await client.get(bad.headers["Location"])).body


async def test_clear_a_non_payer(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    server = client.server
    user_id, _ = await server.register("grace")
    await server.ctx.db.users.update_one(
        {"_id": user_id}, {"$set": {"non_payer": True, "non_payer_order_id": 9}}
    )
    assert (await server.engine.execute(BlockBidder(user_id))).ok
    flagged = await client.get("/admin/users?non_payer=1")
    assert b"grace" in flagged.body
    page = await client.get(f"/admin/users/{user_id}")
    assert b"Clear the non-payer flag" in page.body and b"blocked from bidding" in page.body
    answer = await client.post(f"/admin/users/{user_id}/clear-non-payer")
    assert answer.status == 303
    user = await server.ctx.db.users.find_one({"_id": user_id})
    assert user["non_payer"] is False and user_id not in server.engine.book.blocked
    entry = await server.ctx.db.audit.find_one({"action": "user.clear_non_payer"})
    assert entry["before"]["non_payer"] is True and entry["after"]["changed"] is True


async def _order(client: AdminClient, status: int, **extra: Any) -> int:
    server = client.server
    session_id = await server.create_session()
    lot_id = await server.create_lot(session_id, title="Jade disc")
    user_id, _ = await server.register()
    order_id = int(await server.ctx.db.counters.count_documents({})) * 100 + lot_id
    await server.ctx.db.orders.insert_one(
        {
            "_id": order_id,
            "lot_id": lot_id,
            "session_id": session_id,
            "user_id": user_id,
            "price": 88_00,
            "status": status,
            "deadline_ms": server.clock.now_ms() + HOUR_MS,
            "created_at": utc_now(),
            "paid_at_ms": None,
            "shipped_at_ms": None,
            "tracking_no": None,
            "completed_at_ms": None,
            **extra,
        }
    )
    return order_id


async def test_orders_by_status_and_ship_then_complete(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    unpaid = await _order(client, 1)
    paid = await _order(client, 2, paid_at_ms=client.server.clock.now_ms())
    page = await client.get("/admin/orders?status=2")
    assert page.status == 200 and b"Jade disc" in page.body and b"Mark shipped" in page.body
    assert f"/admin/orders/{unpaid}/ship".encode() not in (await client.get("/admin/orders")).body
    answer = await client.post(f"/admin/orders/{paid}/ship", {"tracking_no": "SF123<b>"})
    assert answer.status == 303
    order = await client.server.ctx.db.orders.find_one({"_id": paid})
    assert order["shipped_at_ms"] and order["tracking_no"] == "SF123<b>"
    assert b"SF123&lt;b&gt;" in (await client.get("/admin/orders?status=2")).body
    await client.post(f"/admin/orders/{paid}/complete")
    assert (await client.server.ctx.db.orders.find_one({"_id": paid}))["status"] == 3
    refused = await client.post(f"/admin/orders/{unpaid}/complete")
    assert b"flash error" in (await client.get(refused.headers["Location"])).body
    assert (await client.server.ctx.db.orders.find_one({"_id": unpaid}))["status"] == 1
    actions = [
        e["action"] async for e in client.server.ctx.db.audit.find({"target": f"order:{paid}"}).sort("at", 1)
    ]
    assert actions == ["order.ship", "order.complete"]


async def test_refunds_and_forfeits_pages(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    db = client.server.ctx.db
    overdue = await _order(client, 4, overdue_at_ms=client.server.clock.now_ms())
    order = await db.orders.find_one({"_id": overdue})
    await db.refunds.insert_many(
        [
            {
                "_id": 1,
                "deposit_id": 1,
                "user_id": order["user_id"],
                "session_id": order["session_id"],
                "lot_id": None,
                "amount": 500_00,
                "via": "balance",
                "status": "pending",
                "reason": "outbid",
                "created_at_ms": 1,
                "refunded_at_ms": None,
            },
            {
                "_id": 2,
                "deposit_id": 2,
                "user_id": order["user_id"],
                "session_id": order["session_id"],
                "lot_id": order["lot_id"],
                "amount": 300_00,
                "via": "balance",
                "status": "refunded",
                "reason": "lot_closed",
                "created_at_ms": 1,
                "refunded_at_ms": 2,
            },
        ]
    )
    await db.deductions.insert_one(
        {
            "_id": 1,
            "order_id": overdue,
            "deposit_id": 3,
            "user_id": order["user_id"],
            "session_id": order["session_id"],
            "amount": 200_00,
            "type": "overdue",
            "at_ms": 5,
        }
    )
    pending = await client.get("/admin/refunds")
    assert b"\xc2\xa5500.00" in pending.body and b"\xc2\xa5300.00" not in pending.body
    done = await client.get("/admin/refunds?status=refunded")
    assert b"\xc2\xa5300.00" in done.body and b"Jade disc" in done.body
    forfeits = await client.get("/admin/forfeits")
    assert (
        b"\xc2\xa5200.00" in forfeits.body and b"forfeit" in forfeits.body and b"Jade disc" in forfeits.body
    )
    dashboard = await client.get("/admin/")
    assert re.search(rb"<b>1</b> overdue orders", dashboard.body)
    assert re.search(rb"<b>1</b> refunds pending", dashboard.body)


async def test_auction_coupons(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    session_id = await client.server.create_session()
    now = client.server.clock.now_ms()
    form = {
        "session_id": str(session_id),
        "title": "Welcome <10>",
        "amount": "20",
        "quantity": "50",
        "claim_start": iso_from_ms(now),
        "claim_end": iso_from_ms(now + HOUR_MS),
    }
    await client.get("/admin/coupons")
    answer = await client.post("/admin/coupons/auction", form)
    assert answer.status == 303
    coupon = await client.server.ctx.db.coupons.find_one({})
    assert (coupon["amount"], coupon["quantity"], coupon["left"]) == (20_00, 50, 50)
    page = await client.get("/admin/coupons")
    assert b"Welcome &lt;10&gt;" in page.body and b"claiming" in page.body
    claimable = await client.server.ctx.db.coupons.count_documents({"session_id": session_id})
    assert claimable == 1
    backwards = await client.post("/admin/coupons/auction", {**form, "claim_end": iso_from_ms(now - 1)})
    assert b"Claim start must be before claim end" in (await client.get(backwards.headers["Location"])).body
    assert (await client.server.ctx.db.audit.find_one({"action": "coupon.create"}))["after"][
        "title"
    ] == "Welcome <10>"


async def test_courses_policies_and_course_coupons(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    db = client.server.ctx.db
    await ensure_shop_indexes(db)  # the shop's start-up does this in production
    await client.get("/admin/courses")
    assert (await client.post("/admin/courses/categories", {"name": "Python"})).status == 303
    parent = await db.shop_categories.find_one({"name": "Python"})
    await client.post("/admin/courses/categories", {"name": "Web", "parent_id": str(parent["_id"])})
    sub = await db.shop_categories.find_one({"name": "Web"})
    answer = await client.post(
        "/admin/courses/new",
        {
            "name": "Tornado in depth",
            "sub_category_id": str(sub["_id"]),
            "course_type": "paid",
            "level": "advanced",
            "status": "offline",
            "order": "1",
            "period_days": "30",
            "brief": "async web",
        },
    )
    assert answer.status == 303
    course = await db.shop_courses.find_one({"name": "Tornado in depth"})
    assert course["status"] == "offline" and course["level"] == "advanced"
    await client.post(f"/admin/courses/{course['_id']}/policies", {"valid_days": "30", "price": "199"})
    await client.post(f"/admin/courses/{course['_id']}/policies", {"valid_days": "90", "price": "499.5"})
    policies = [
        p async for p in db.shop_price_policies.find({"target_id": course["_id"]}).sort("valid_days", 1)
    ]
    assert [(p["valid_days"], p["price"]) for p in policies] == [(30, 199_00), (90, 499_50)]
    duplicate = await client.post(
        f"/admin/courses/{course['_id']}/policies", {"valid_days": "30", "price": "1"}
    )
    assert b"flash error" in (await client.get(duplicate.headers["Location"])).body
    await client.post(f"/admin/policies/{policies[1]['_id']}/remove")
    await client.post(f"/admin/courses/{course['_id']}/status", {"status": "online"})
    assert (await db.shop_courses.find_one({"_id": course["_id"]}))["status"] == "online"
    page = await client.get("/admin/courses")
    assert (
        b"Tornado in depth" in page.body
        and b"\xc2\xa5199.00" in page.body
        and b"\xc2\xa5499.50" not in page.body
    )

    await client.get("/admin/coupons")
    answer = await client.post(
        "/admin/coupons/course",
        {
            "name": "Spring 10% off",
            "kind": "percent",
            "off_percent": "10",
            "course_id": str(course["_id"]),
            "valid_days": "30",
        },
    )
    assert answer.status == 303
    template = await db.shop_coupons.find_one({})
    assert template["kind"] == "percent" and template["off_percent"] == 10
    user_id, _ = await client.server.register("heidi")
    await client.post(f"/admin/coupons/course/{template['_id']}/grant", {"user": "heidi"})
    granted = await db.shop_user_coupons.find_one({"user_id": user_id})
    assert granted is not None and granted["status"] == "unused"
    unknown = await client.post(f"/admin/coupons/course/{template['_id']}/grant", {"user": "nobody"})
    assert b"no such user" in (await client.get(unknown.headers["Location"])).body
    actions = {e["action"] async for e in db.audit.find({})}
    assert {
        "shop_category.create",
        "course.create",
        "price_policy.create",
        "price_policy.remove",
        "course.status",
        "shop_coupon.create",
        "shop_coupon.grant",
    } <= actions


async def test_audit_page_filters(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    session_id = await client.server.create_session()
    lot_id = await client.server.create_lot(session_id)
    await client.post(f"/admin/lots/{lot_id}/cancel", {"reason": "damaged in transit"})
    everything = await client.get("/admin/audit")
    assert b"lot.cancel" in everything.body and b"auth.login" in everything.body
    only_lots = await client.get("/admin/audit?action=lot")
    assert (
        b"damaged in transit" in only_lots.body
        and b'<td><a href="/admin/audit?action=auth.login"' not in only_lots.body
    )
    by_target = await client.get(f"/admin/audit?target=lot:{lot_id}")
    assert b"lot.cancel" in by_target.body
    junk = await client.get("/admin/audit?action=%24where&target=%7B%7D")
    assert junk.status == 200  # filters outside the allowed characters are ignored
