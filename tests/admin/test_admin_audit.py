"""Every admin UI write goes through the admin-actions service: one audit entry each, by the admin
who signed in, and none for a refusal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.commands import BlockBidder
from persistence.mongo import iso_from_ms
from persistence.shop import ensure_shop_indexes
from tests.admin.conftest import AdminClient, png_bytes

HOUR_MS = 3_600_000


async def test_each_admin_ui_write_leaves_one_audit_entry(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    await client.get("/admin/")
    server = client.server
    db = server.ctx.db
    await ensure_shop_indexes(db)

    async def one_entry(action: str, write: Callable[[], Awaitable[Any]]) -> None:
        before = await db.audit.count_documents({})
        answer = await write()
        assert answer.status in (200, 303), answer.body
        entries = [e async for e in db.audit.find({}).sort("at", 1)][before:]
        assert [e["action"] for e in entries] == [action], answer.headers.get("Location")
        assert entries[0]["admin_username"] == "admin"

    def post(path: str, form: dict[str, str] | None = None) -> Callable[[], Awaitable[Any]]:
        return lambda: client.post(path, form or {})

    now = server.clock.now_ms()
    times = {
        "preview_start": iso_from_ms(now + HOUR_MS),
        "preview_end": iso_from_ms(now + 2 * HOUR_MS),
        "bidding_start": iso_from_ms(now + 2 * HOUR_MS),
        "bidding_end": iso_from_ms(now + 3 * HOUR_MS),
    }
    session_form = {
        "title": "Jade",
        "deposit": "0",
        "soft_close_seconds": "60",
        "soft_close_cap_seconds": "600",
    }
    await one_entry("session.create", post("/admin/sessions/new", {**session_form, **times}))
    session_id = int((await db.sessions.find_one({"title": "Jade"}))["_id"])
    edit = {**session_form, **times, "title": "Jade II"}
    await one_entry("session.update", post(f"/admin/sessions/{session_id}", edit))
    lot_form = {
        "catalogue_no": "J-1",
        "title": "Disc",
        "start_price": "100",
        "unit": "10",
        "reserve_price": "0",
        "highest_price": "0",
        "deposit": "0",
    }
    await one_entry("lot.create", post(f"/admin/sessions/{session_id}/lots/new", lot_form))
    lot_id = int((await db.lots.find_one({"catalogue_no": "J-1"}))["_id"])
    await one_entry("lot.update", post(f"/admin/lots/{lot_id}", {**lot_form, "title": "Disc II"}))
    await one_entry("lot.image_add", lambda: client.upload(f"/admin/lots/{lot_id}/images", png_bytes()))
    image = (await db.lots.find_one({"_id": lot_id}))["images"][0]
    await one_entry("lot.image_remove", post(f"/admin/lots/{lot_id}/images/0/remove", {"url": image}))
    await one_entry(
        "session.cover", lambda: client.upload(f"/admin/sessions/{session_id}/cover", png_bytes())
    )
    await one_entry("session.cover", post(f"/admin/sessions/{session_id}/cover/remove"))
    await one_entry("lot.cancel", post(f"/admin/lots/{lot_id}/cancel", {"reason": "withdrawn"}))

    user_id, _ = await server.register("ivan")
    await one_entry(
        "user.credit", post(f"/admin/users/{user_id}/credit", {"amount": "12", "idempotency_key": "k1"})
    )
    await db.users.update_one({"_id": user_id}, {"$set": {"non_payer": True}})
    assert (await server.engine.execute(BlockBidder(user_id))).ok
    await one_entry("user.clear_non_payer", post(f"/admin/users/{user_id}/clear-non-payer"))

    coupon = {
        "session_id": str(session_id),
        "title": "Welcome",
        "amount": "20",
        "quantity": "5",
        "claim_start": iso_from_ms(now),
        "claim_end": iso_from_ms(now + HOUR_MS),
    }
    await one_entry("coupon.create", post("/admin/coupons/auction", coupon))
    await one_entry("shop_category.create", post("/admin/courses/categories", {"name": "Python"}))
    parent = (await db.shop_categories.find_one({"name": "Python"}))["_id"]
    sub = {"name": "Web", "parent_id": str(parent)}
    await one_entry("shop_category.create", post("/admin/courses/categories", sub))
    category = (await db.shop_categories.find_one({"name": "Web"}))["_id"]
    course_form = {
        "name": "Tornado",
        "sub_category_id": str(category),
        "course_type": "paid",
        "level": "advanced",
        "status": "offline",
        "order": "1",
        "period_days": "30",
    }
    await one_entry("course.create", post("/admin/courses/new", course_form))
    course_id = (await db.shop_courses.find_one({"name": "Tornado"}))["_id"]
    await one_entry("course.status", post(f"/admin/courses/{course_id}/status", {"status": "online"}))
    await one_entry(
        "price_policy.create",
        post(f"/admin/courses/{course_id}/policies", {"valid_days": "30", "price": "9"}),
    )
    policy_id = (await db.shop_price_policies.find_one({"target_id": course_id}))["_id"]
    await one_entry("price_policy.remove", post(f"/admin/policies/{policy_id}/remove"))
    course_coupon = {"name": "Ten off", "kind": "flat", "value": "10", "valid_days": "30"}
    await one_entry("shop_coupon.create", post("/admin/coupons/course", course_coupon))
    template = (await db.shop_coupons.find_one({}))["_id"]
    await one_entry("shop_coupon.grant", post(f"/admin/coupons/course/{template}/grant", {"user": "ivan"}))

    # A refused write (the form is wrong, or the engine says no) records nothing.
    count = await db.audit.count_documents({})
    await client.post(f"/admin/users/{user_id}/credit", {"amount": "-1", "idempotency_key": "k2"})
    await client.post(f"/admin/lots/{lot_id}/open")
    assert await db.audit.count_documents({}) == count
