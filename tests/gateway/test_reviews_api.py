"""Reviews and votes over HTTP on the real MongoDB: the contract, who may write, and exactness under
concurrency (50 concurrent reviews and edits keep the course's sums equal to the records; 50
concurrent agree/disagree clicks keep each review's counters equal to its vote records)."""

import asyncio
import datetime
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop

SCORES = ("teacher", "content", "clarity")


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


async def bought(s: ShopServer, course_id: int, policy_id: int, price: int) -> tuple[int, str]:
    """A new student who bought the course with their balance (the shop's whole flow)."""
    user_id, token = await s.api.register()
    await s.api.credit(user_id, price)
    await s.call("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy_id}, token=token)
    assert (await s.call("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token=token)).status == 201
    paid = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": price, "idempotency_key": "k"}, token=token
    )
    assert paid.status == 201 and paid.json["order"]["status"] == "paid", paid.body
    return user_id, token


async def enrolled_directly(s: ShopServer, course_id: int) -> tuple[int, str]:
    """A student with an enrolment record (as a paid order makes one), without going through a checkout:
    the concurrency tests need fifty of them."""
    user_id, token = await s.api.register()
    now = datetime.datetime.now(datetime.UTC)
    await s.shop_ctx.db.shop_enrolments.insert_one(
        {
            "_id": f"test-{user_id}:{course_id}",
            "user_id": user_id,
            "course_id": course_id,
            "course_name": "",
            "order_no": f"test-{user_id}",
            "valid_from": now - datetime.timedelta(days=1),
            "valid_to": now + datetime.timedelta(days=30),
            "status": "active",
        }
    )
    return user_id, token


async def assert_books(s: ShopServer, course_id: int) -> None:
    db = s.shop_ctx.db
    shown = [r async for r in db.shop_reviews.find({"course_id": course_id, "hidden": False})]
    stats = await db.shop_review_stats.find_one({"_id": course_id}) or {}
    assert stats.get("count", 0) == len(shown)
    for name in SCORES:
        assert stats.get(name, 0) == sum(r["scores"][name] for r in shown)
    async for review in db.shop_reviews.find({"course_id": course_id}):
        votes = [v["vote"] async for v in db.shop_review_votes.find({"review_id": review["_id"]})]
        assert (review["agree"], review["disagree"]) == (votes.count("agree"), votes.count("disagree"))


def review_body(teacher: int = 5, content: int = 4, clarity: int = 3, text: str = "good") -> dict[str, Any]:
    return {"scores": {"teacher": teacher, "content": content, "clarity": clarity}, "text": text}


async def test_review_contract_and_rules(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, (policy,) = await s.course(sub, 990)
    other_id, _ = await s.course(sub, 500)
    _, token = await bought(s, course_id, policy, 990)
    _, stranger = await s.api.register()

    empty = await s.call("GET", f"/api/v1/courses/{course_id}/reviews")
    assert empty.status == 200 and empty.json["items"] == [] and empty.json["total"] == 0
    assert empty.json["averages"] == {
        "teacher": None,
        "content": None,
        "clarity": None,
        "overall": None,
        "count": 0,
    }
    assert (await s.call("POST", f"/api/v1/courses/{course_id}/reviews", review_body())).status == 401
    refused = await s.call("POST", f"/api/v1/courses/{course_id}/reviews", review_body(), token=stranger)
    assert (refused.status, refused.code) == (403, "ENROLMENT_REQUIRED")
    refused = await s.call("POST", f"/api/v1/courses/{other_id}/reviews", review_body(), token=token)
    assert (refused.status, refused.code) == (403, "ENROLMENT_REQUIRED")
    for bad in (
        review_body(teacher=0),
        review_body(clarity=6),
        {"scores": {"teacher": 5, "content": 4}, "text": ""},
        {"scores": {"teacher": 5, "content": 4, "clarity": "3"}},
        review_body(text="x" * 2049),
        {**review_body(), "rating": 5},
    ):
        answer = await s.call("POST", f"/api/v1/courses/{course_id}/reviews", bad, token=token)
        assert (answer.status, answer.code) == (400, "VALIDATION"), bad
    html = "<script>alert(1)</script> & <b>bold</b>"
    created = await s.call(
        "POST", f"/api/v1/courses/{course_id}/reviews", review_body(text=html), token=token
    )
    assert created.status == 201, created.body
    review = created.json
    assert review["text"] == html  # plain text, returned as written; clients render it as text
    assert review["mine"] and review["my_vote"] is None and review["author"]
    assert (review["agree"], review["disagree"], review["recommended"]) == (0, 0, False)
    assert review["created_at_ms"] == review["updated_at_ms"] > 0
    again = await s.call("POST", f"/api/v1/courses/{course_id}/reviews", review_body(), token=token)
    assert (again.status, again.code) == (409, "REVIEW_EXISTS")

    # Editing: the author only; partial.
    rid = review["id"]
    hidden_from = await s.call("PATCH", f"/api/v1/reviews/{rid}", {"text": "mine now"}, token=stranger)
    assert hidden_from.status == 404
    edited = await s.call("PATCH", f"/api/v1/reviews/{rid}", {"scores": {"teacher": 3}}, token=token)
    assert edited.status == 200 and edited.json["scores"] == {"teacher": 3, "content": 4, "clarity": 3}
    assert edited.json["text"] == html
    assert (await s.call("PATCH", "/api/v1/reviews/999999", {"text": "x"}, token=token)).status == 404

    # Votes: once per user, the same again takes it back, the other switches.
    voted = await s.call("POST", f"/api/v1/reviews/{rid}/vote", {"vote": "agree"}, token=stranger)
    assert voted.status == 200 and voted.json == {"agree": 1, "disagree": 0, "my_vote": "agree"}
    switched = await s.call("POST", f"/api/v1/reviews/{rid}/vote", {"vote": "disagree"}, token=stranger)
    assert switched.json == {"agree": 0, "disagree": 1, "my_vote": "disagree"}
    listed = (await s.call("GET", f"/api/v1/courses/{course_id}/reviews", token=stranger)).json
    assert listed["items"][0]["my_vote"] == "disagree" and not listed["items"][0]["mine"]
    back = await s.call("POST", f"/api/v1/reviews/{rid}/vote", {"vote": "disagree"}, token=stranger)
    assert back.json == {"agree": 0, "disagree": 0, "my_vote": None}
    assert (
        await s.call("POST", f"/api/v1/reviews/{rid}/vote", {"vote": "meh"}, token=stranger)
    ).status == 400

    listed = (await s.call("GET", f"/api/v1/courses/{course_id}/reviews?page=1&page_size=5")).json
    assert listed["total"] == 1 and listed["page_size"] == 5
    assert listed["averages"] == {
        "teacher": "3.0",
        "content": "4.0",
        "clarity": "3.0",
        "overall": "3.3",
        "count": 1,
    }
    assert (await s.call("GET", "/api/v1/courses/999999/reviews")).status == 404
    await assert_books(s, course_id)


async def test_admin_hides_and_recommends_audited(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, _ = await s.course(sub, 100)
    ids = []
    for score in (2, 4):
        _, token = await enrolled_directly(s, course_id)
        answer = await s.call(
            "POST", f"/api/v1/courses/{course_id}/reviews", review_body(score, score, score), token=token
        )
        ids.append(answer.json["id"])
    _, student = await s.api.register()
    forbidden = await s.call("POST", f"/api/v1/admin/shop/reviews/{ids[0]}/hide", token=student)
    assert forbidden.status == 403
    recommended = await s.admin("POST", f"/api/v1/admin/shop/reviews/{ids[0]}/recommend")
    assert recommended["recommended"] and not recommended["hidden"]
    listed = (await s.call("GET", f"/api/v1/courses/{course_id}/reviews")).json
    assert [r["id"] for r in listed["items"]] == ids  # recommended first, though older
    await s.admin("POST", f"/api/v1/admin/shop/reviews/{ids[1]}/hide")
    listed = (await s.call("GET", f"/api/v1/courses/{course_id}/reviews")).json
    assert [r["id"] for r in listed["items"]] == [ids[0]]
    assert listed["averages"]["count"] == 1 and listed["averages"]["overall"] == "2.0"
    await s.admin("POST", f"/api/v1/admin/shop/reviews/{ids[1]}/hide")  # again: no change, no entry
    await s.admin("POST", f"/api/v1/admin/shop/reviews/{ids[1]}/show")
    await s.admin("POST", f"/api/v1/admin/shop/reviews/{ids[0]}/unrecommend")
    missing = await s.call("POST", "/api/v1/admin/shop/reviews/999999/hide", token=await s.api.admin_token())
    assert missing.status == 404
    actions = [
        (a["action"], a["target"], a["after"])
        async for a in s.shop_ctx.db.audit.find({"action": {"$regex": "^review\\."}}).sort("_id", 1)
    ]
    assert actions == [
        ("review.recommend", f"review:{ids[0]}", {"hidden": False, "recommended": True}),
        ("review.hide", f"review:{ids[1]}", {"hidden": True, "recommended": False}),
        ("review.show", f"review:{ids[1]}", {"hidden": False, "recommended": False}),
        ("review.unrecommend", f"review:{ids[0]}", {"hidden": False, "recommended": False}),
    ]
    await assert_books(s, course_id)


async def test_fifty_concurrent_reviews_and_edits_keep_the_sums_exact(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, _ = await s.course(sub, 100)
    students = [await enrolled_directly(s, course_id) for _ in range(50)]
    rng = random.Random(21)

    async def write(token: str) -> Any:
        scores = [rng.randint(1, 5) for _ in SCORES]
        return await s.call("POST", f"/api/v1/courses/{course_id}/reviews", review_body(*scores), token=token)

    written = await asyncio.gather(*(write(token) for _, token in students))
    assert [a.status for a in written] == [201] * 50, [a.body for a in written if a.status != 201][:3]
    await assert_books(s, course_id)

    # Fifty concurrent edits (each author twice at once on half of them, so edits of one review race too).
    async def edit(review_id: int, token: str) -> Any:
        scores = {name: rng.randint(1, 5) for name in SCORES if rng.random() < 0.7}
        return await s.call("PATCH", f"/api/v1/reviews/{review_id}", {"scores": scores}, token=token)

    pairs = [(a.json["id"], token) for a, (_, token) in zip(written, students, strict=True)]
    edits = await asyncio.gather(*(edit(rid, token) for rid, token in pairs[:25] * 2))
    assert {a.status for a in edits} == {200}
    await assert_books(s, course_id)
    stats = await s.shop_ctx.db.shop_review_stats.find_one({"_id": course_id})
    assert stats is not None and stats["count"] == 50


async def test_fifty_concurrent_clicks_keep_counters_equal_to_votes(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, _ = await s.course(sub, 100)
    _, author = await enrolled_directly(s, course_id)
    rid = (await s.call("POST", f"/api/v1/courses/{course_id}/reviews", review_body(), token=author)).json[
        "id"
    ]
    voters = [(await s.api.register())[1] for _ in range(20)]
    rng = random.Random(7)
    # 50 clicks from 20 users: many users click more than once at the same moment (take back, switch).
    clicks = [(rng.choice(voters), rng.choice(("agree", "disagree"))) for _ in range(50)]
    answers = await asyncio.gather(
        *(s.call("POST", f"/api/v1/reviews/{rid}/vote", {"vote": v}, token=t) for t, v in clicks)
    )
    assert {a.status for a in answers} == {200}, [a.body for a in answers if a.status != 200][:3]
    await assert_books(s, course_id)
    review = await s.shop_ctx.db.shop_reviews.find_one({"_id": rid})
    assert review is not None
    assert review["agree"] + review["disagree"] == await s.shop_ctx.db.shop_review_votes.count_documents(
        {"review_id": rid}
    )
