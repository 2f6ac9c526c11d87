"""The admin's review moderation, FAQ management and claimable course coupons (admin/community.py,
admin/shop.py): every write through the admin-actions service, audited; review text shown escaped."""

from __future__ import annotations

import datetime

from persistence.mongo import iso_utc
from persistence.shop import ensure_shop_indexes
from persistence.shop.community import mongo_community
from tests.admin.conftest import AdminClient


async def signed_in(client: AdminClient) -> AdminClient:
    await client.sign_in()
    await client.get("/admin/")
    await ensure_shop_indexes(client.server.ctx.db)  # the shop's start-up does this in production
    return client


async def a_course(client: AdminClient, name: str = "Tornado in depth") -> int:
    db = client.server.ctx.db
    await client.get("/admin/courses")
    await client.post("/admin/courses/categories", {"name": f"Top {name}"})
    parent = await db.shop_categories.find_one({"name": f"Top {name}"})
    await client.post("/admin/courses/categories", {"name": f"Sub {name}", "parent_id": str(parent["_id"])})
    sub = await db.shop_categories.find_one({"name": f"Sub {name}"})
    form = {"name": name, "sub_category_id": str(sub["_id"]), "course_type": "paid", "level": "advanced"}
    assert (await client.post("/admin/courses/new", {**form, "status": "online"})).status == 303
    course = await db.shop_courses.find_one({"name": name})
    return int(course["_id"])


async def flash_of(client: AdminClient, answer_location: str) -> bytes:
    return (await client.get(answer_location)).body


async def test_reviews_page_moderates_through_audited_actions(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    db = client.server.ctx.db
    course_id = await a_course(client)
    community = mongo_community(client.server.ctx.client, db)
    ids = []
    for name, score in (("ivy", 2), ("jack", 5)):
        user_id, _ = await client.server.register(name)
        await db.shop_enrolments.insert_one(
            {
                "_id": f"t:{user_id}",
                "user_id": user_id,
                "course_id": course_id,
                "valid_from": datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
                "valid_to": datetime.datetime(2025, 2, 1, tzinfo=datetime.UTC),
                "status": "expired",
            }
        )
        scores: dict[str, object] = {"teacher": score, "content": score, "clarity": score}
        review = await community.write_review(user_id, course_id, scores, f"<script>x()</script> by {name}")
        ids.append(int(review["_id"]))

    courses = await client.get("/admin/courses")
    assert f'href="/admin/courses/{course_id}/reviews"'.encode() in courses.body
    page = await client.get(f"/admin/courses/{course_id}/reviews")
    assert page.status == 200
    assert b"&lt;script&gt;x()&lt;/script&gt; by ivy" in page.body and b"<script>x()" not in page.body
    assert b"Overall 3.5" in page.body and b"2 review(s)" in page.body

    hidden = await client.post(f"/admin/reviews/{ids[1]}/hide")
    assert hidden.status == 303 and hidden.headers["Location"] == f"/admin/courses/{course_id}/reviews"
    await client.post(f"/admin/reviews/{ids[0]}/recommend")
    stored = {r["_id"]: r async for r in db.shop_reviews.find({"course_id": course_id})}
    assert stored[ids[1]]["hidden"] and stored[ids[0]]["recommended"]
    page = await client.get(f"/admin/courses/{course_id}/reviews")
    assert b"hidden" in page.body and b"Overall 2.0" in page.body and b"1 review(s)" in page.body
    audit = [(e["action"], e["target"]) async for e in db.audit.find({"action": {"$regex": "^review\\."}})]
    assert audit == [("review.hide", f"review:{ids[1]}"), ("review.recommend", f"review:{ids[0]}")]
    assert (await client.get("/admin/courses/999999/reviews")).status == 404


async def test_faqs_of_courses_and_degree_courses(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    db = client.server.ctx.db
    course_id = await a_course(client, "Go services")
    await db.shop_degree_courses.insert_one({"_id": 77, "name": "Back-end degree"})
    listing = await client.get("/admin/faqs")
    assert listing.status == 200 and b"Go services" in listing.body and b"Back-end degree" in listing.body

    await client.get(f"/admin/faqs?target=course&id={course_id}")
    form = {
        "target": "course",
        "target_id": str(course_id),
        "question": "Refunds?",
        "answer": "Within 7 days.",
    }
    added = await client.post("/admin/faqs/new", form)
    assert added.status == 303
    duplicate = await client.post("/admin/faqs/new", form)
    assert b"flash error" in await flash_of(client, duplicate.headers["Location"])
    await client.post(
        "/admin/faqs/new", {"target": "degree", "target_id": "77", "question": "Mentors?", "answer": "Yes."}
    )
    faq = await db.shop_faqs.find_one({"target": "course", "target_id": course_id})
    assert faq is not None and faq["answer"] == "Within 7 days."
    assert await db.shop_faqs.count_documents({"target": "degree", "target_id": 77}) == 1

    page = await client.get(f"/admin/faqs?target=course&id={course_id}")
    assert b"Refunds?" in page.body and f'data-faq="{faq["_id"]}"'.encode() in page.body
    edited = await client.post(
        f"/admin/faqs/{faq['_id']}/edit", {"question": "Refunds?", "answer": "14 days."}
    )
    assert edited.status == 303
    assert (await db.shop_faqs.find_one({"_id": faq["_id"]}))["answer"] == "14 days."
    empty = await client.post(f"/admin/faqs/{faq['_id']}/edit", {"question": "", "answer": "x"})
    assert b"flash error" in await flash_of(client, empty.headers["Location"])
    await client.post(f"/admin/faqs/{faq['_id']}/delete")
    assert await db.shop_faqs.find_one({"_id": faq["_id"]}) is None
    missing = await client.post(f"/admin/faqs/{faq['_id']}/delete")
    assert b"flash error" in await flash_of(client, missing.headers["Location"])
    bad_target = await client.post(
        "/admin/faqs/new", {"target": "degree", "target_id": "999", "question": "q", "answer": "a"}
    )
    assert b"flash error" in await flash_of(client, bad_target.headers["Location"])
    actions = [e["action"] async for e in db.audit.find({"action": {"$regex": "^faq\\."}}).sort("_id", 1)]
    assert actions == ["faq.create", "faq.create", "faq.update", "faq.delete"]


async def test_claimable_course_coupon_form(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    db = client.server.ctx.db
    now = datetime.datetime.now(datetime.UTC)
    await client.get("/admin/coupons")
    form = {
        "name": "Claim me",
        "kind": "flat",
        "value": "10",
        "valid_days": "7",
        "claim_start": iso_utc(now),
        "claim_end": iso_utc(now + datetime.timedelta(days=3)),
        "quantity": "100",
        "per_user_limit": "2",
    }
    assert (await client.post("/admin/coupons/course", form)).status == 303
    template = await db.shop_coupons.find_one({"name": "Claim me"})
    assert template is not None
    assert (template["quantity"], template["left"], template["per_user_limit"]) == (100, 100, 2)
    page = await client.get("/admin/coupons")
    assert b"100 / 100 left" in page.body
    no_quantity = await client.post("/admin/coupons/course", {**form, "name": "Broken", "quantity": ""})
    assert b"flash error" in await flash_of(client, no_quantity.headers["Location"])
    assert await db.shop_coupons.find_one({"name": "Broken"}) is None
    audit = await db.audit.find_one({"action": "shop_coupon.create"})
    assert audit is not None and audit["after"]["quantity"] == 100
