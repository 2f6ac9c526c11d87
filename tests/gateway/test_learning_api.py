"""Learning over HTTP on the real MongoDB and Redis: 403 codes, the signed content link (expires,
cannot be forged nor moved to another section or user), progress, my courses, the course page's
`my` block, and one enrolment per course extended by a second purchase."""

import asyncio
import datetime
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpclient

from shop.learning import grant_enrolment
from shop.learning_service import LearningService
from shop.ports import ShopUnitOfWork
from tests.gateway.conftest import Answer, AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop

FREE_LINK = "https://example.com/videos/free-intro-7f3a"
PAID_LINK = "https://example.com/videos/paid-deep-dive-91c2"


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


class Clock:
    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.at = now.replace(microsecond=now.microsecond // 1000 * 1000)

    def __call__(self) -> datetime.datetime:
        return self.at


def learning(s: ShopServer) -> LearningService:
    service = s.shop_ctx.learning
    assert service is not None
    return service


async def outline(s: ShopServer, days: int = 30) -> tuple[int, int, int, int]:
    """A course with a free-trial and a paid section: (course, policy, free section, paid section)."""
    sub = await s.category()
    course_id, (policy,) = await s.course(sub, 1000, level="beginner")
    if days != 30:  # s.course's first policy is 30 days
        await s.admin("DELETE", f"/api/v1/admin/shop/policies/{policy}")
        policy = (
            await s.admin(
                "POST",
                f"/api/v1/admin/shop/courses/{course_id}/policies",
                {"valid_days": days, "price": 1000},
            )
        )["id"]
    chapter = await s.admin(
        "POST", f"/api/v1/admin/shop/courses/{course_id}/chapters", {"chapter": 1, "name": "One"}
    )
    sections = []
    for order, (link, free) in enumerate(((FREE_LINK, True), (PAID_LINK, False)), start=1):
        section = await s.admin(
            "POST",
            f"/api/v1/admin/shop/chapters/{chapter['id']}/sections",
            {
                "name": f"Lesson {order}",
                "order": order,
                "link": link,
                "free_trial": free,
                "video_time": "05:00",
            },
        )
        sections.append(int(section["id"]))
    return course_id, int(policy), sections[0], sections[1]


async def buy(
    s: ShopServer, user_id: int, token: str, course_id: int, policy: int, key: str
) -> dict[str, Any]:
    await s.api.credit(user_id, 1000, idempotency_key=f"credit-{key}")
    await s.call("POST", "/api/v1/cart", {"course_id": course_id, "price_policy_id": policy}, token=token)
    await s.call("POST", "/api/v1/checkout", {"course_ids": [course_id]}, token=token)
    paid = await s.call(
        "POST", "/api/v1/checkout/pay", {"balance": 1000, "idempotency_key": key}, token=token
    )
    assert paid.status == 201 and paid.json["order"]["status"] == "paid", paid.body
    order: dict[str, Any] = paid.json["order"]
    return order


async def follow(s: ShopServer, content_url: str) -> Answer:
    """GET a content link without following its redirect (on this test's server)."""
    parts = urllib.parse.urlsplit(content_url)
    assert parts.path.startswith("/api/v1/content/")
    request = tornado.httpclient.HTTPRequest(s.api.base_url + parts.path, follow_redirects=False)
    response = await s.api.http.fetch(request, raise_error=False)
    return Answer(response.code, response.body or b"", dict(response.headers.get_all()))


def token_of(content_url: str) -> str:
    return urllib.parse.urlsplit(content_url).path.rsplit("/", 1)[1]


async def test_content_is_for_free_trials_and_valid_enrolments(shop_server: ShopServer) -> None:
    s = shop_server
    course_id, policy, free, paid = await outline(s)
    student, student_token = await s.api.register()
    _other, other_token = await s.api.register()

    # Signed out: the free trial opens through a signed link of ours; the paid section does not.
    opened = await s.call("GET", f"/api/v1/sections/{free}/content")
    assert opened.status == 200, opened.body
    content = opened.json
    assert (content["section_id"], content["course_id"], content["section_type"]) == (
        free,
        course_id,
        "video",
    )
    assert content["content_url"].startswith(f"{s.shop_ctx.base_url}/api/v1/content/")
    assert FREE_LINK not in opened.body.decode()
    redirect = await follow(s, content["content_url"])
    assert redirect.status == 302 and redirect.headers["Location"] == FREE_LINK
    assert redirect.headers["Referrer-Policy"] == "no-referrer"
    for token in (None, other_token, student_token):
        refused = await s.call("GET", f"/api/v1/sections/{paid}/content", token=token)
        assert (refused.status, refused.code) == (403, "ENROLMENT_REQUIRED")
    assert (await s.call("GET", "/api/v1/sections/999999/content")).status == 404
    refused = await s.call("PUT", f"/api/v1/sections/{paid}/progress", {"done": True}, token=student_token)
    assert (refused.status, refused.code) == (403, "ENROLMENT_REQUIRED")

    # Enrolled: the paid section opens too.
    await buy(s, student, student_token, course_id, policy, "buy-1")
    opened = await s.call("GET", f"/api/v1/sections/{paid}/content", token=student_token)
    assert opened.status == 200 and opened.json["video_time"] == "05:00"
    expires = opened.json["expires_at_ms"] - int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
    assert 0 < expires <= 600_000
    redirect = await follow(s, opened.json["content_url"])
    assert redirect.status == 302 and redirect.headers["Location"] == PAID_LINK
    refused = await s.call("GET", f"/api/v1/sections/{paid}/content", token=other_token)
    assert (refused.status, refused.code) == (403, "ENROLMENT_REQUIRED")


async def test_a_content_link_expires_and_cannot_be_forged_or_moved(shop_server: ShopServer) -> None:
    s = shop_server
    course_id, policy, free, paid = await outline(s)
    student, token = await s.api.register()
    await buy(s, student, token, course_id, policy, "buy-1")
    clock = Clock()
    learning(s).now = clock
    url = (await s.call("GET", f"/api/v1/sections/{paid}/content", token=token)).json["content_url"]
    section, user, expires, signature = token_of(url).split(".")
    assert (int(section), int(user)) == (paid, student)
    base = url[: -len(token_of(url))]
    for forged in (
        f"{free}.{user}.{expires}.{signature}",  # another section
        f"{section}.{student + 1}.{expires}.{signature}",  # another user
        f"{section}.0.{expires}.{signature}",  # nobody (a signed-out free trial's user)
        f"{section}.{user}.{int(expires) + 86_400_000}.{signature}",  # a longer life
        f"{section}.{user}.{expires}.{'A' * 43}",
        "not-a-token",
    ):
        answer = await follow(s, base + forged)
        assert (answer.status, answer.code) == (403, "CONTENT_LINK_INVALID"), forged
        assert PAID_LINK not in answer.body.decode() and "Location" not in answer.headers
    assert (await follow(s, url)).status == 302  # usable again within its minutes
    clock.at += datetime.timedelta(minutes=10)
    answer = await follow(s, url)
    assert (answer.status, answer.code) == (403, "CONTENT_LINK_EXPIRED")
    # A fresh one works again.
    url = (await s.call("GET", f"/api/v1/sections/{paid}/content", token=token)).json["content_url"]
    assert (await follow(s, url)).status == 302


async def test_progress_is_idempotent_and_shown_everywhere(shop_server: ShopServer) -> None:
    s = shop_server
    course_id, policy, free, paid = await outline(s)
    student, token = await s.api.register()
    assert (await s.call("PUT", f"/api/v1/sections/{free}/progress", {"done": True})).status == 401
    bad = await s.call("PUT", f"/api/v1/sections/{free}/progress", {"done": 1}, token=token)
    assert (bad.status, bad.code) == (400, "VALIDATION")
    bad = await s.call("PUT", f"/api/v1/sections/{free}/progress", {"done": True, "x": 1}, token=token)
    assert bad.status == 400
    # A free trial may be marked before buying.
    marked = await s.call("PUT", f"/api/v1/sections/{free}/progress", {"done": True}, token=token)
    assert marked.json == {"section_id": free, "done": True, "progress": {"done": 1, "total": 2}}
    await buy(s, student, token, course_id, policy, "buy-1")
    for _ in range(3):
        marked = await s.call("PUT", f"/api/v1/sections/{paid}/progress", {"done": True}, token=token)
        assert marked.status == 200 and marked.json["progress"] == {"done": 2, "total": 2}
    assert await s.shop_ctx.db.shop_progress.count_documents({"user_id": student}) == 2
    unmarked = await s.call("PUT", f"/api/v1/sections/{free}/progress", {"done": False}, token=token)
    assert unmarked.json == {"section_id": free, "done": False, "progress": {"done": 1, "total": 2}}

    [chapter] = (await s.call("GET", f"/api/v1/courses/{course_id}/chapters", token=token)).json["items"]
    assert [(x["id"], x["locked"], x["done"]) for x in chapter["sections"]] == [
        (free, False, False),
        (paid, False, True),
    ]
    [chapter] = (await s.call("GET", f"/api/v1/courses/{course_id}/chapters")).json["items"]
    assert [(x["locked"], "done" in x) for x in chapter["sections"]] == [(False, False), (True, False)]

    page = (await s.call("GET", f"/api/v1/courses/{course_id}", token=token)).json
    assert page["my"]["progress"] == {"done": 1, "total": 2}
    assert page["my"]["enrolment"]["status"] == "valid"
    assert (
        page["my"]["enrolment"]["valid_to_ms"] - page["my"]["enrolment"]["valid_from_ms"] == 30 * 86_400_000
    )
    assert (await s.call("GET", f"/api/v1/courses/{course_id}")).json["my"] is None

    [item] = (await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]
    assert item["course_id"] == course_id and item["course_name"].startswith("Course ")
    assert item["status"] == "valid" and item["progress"] == {"done": 1, "total": 2}
    assert item["picture"] is None and isinstance(item["valid_to_ms"], int) and item["valid_to"].endswith("Z")


async def test_the_real_link_appears_only_in_the_redirect(shop_server: ShopServer) -> None:
    s = shop_server
    course_id, policy, free, paid = await outline(s)
    student, token = await s.api.register()
    await buy(s, student, token, course_id, policy, "buy-1")
    await s.call("PUT", f"/api/v1/sections/{paid}/progress", {"done": True}, token=token)
    bodies = [
        (await s.call("GET", path, token=who)).body.decode()
        for who in (None, token)
        for path in (
            f"/api/v1/courses/{course_id}",
            f"/api/v1/courses/{course_id}/chapters",
            "/api/v1/courses",
            f"/api/v1/sections/{free}/content",
            f"/api/v1/sections/{paid}/content",
        )
    ]
    bodies.append((await s.call("GET", "/api/v1/shop/enrolments", token=token)).body.decode())
    bodies.append((await s.call("GET", "/api/v1/shop/orders", token=token)).body.decode())
    for body in bodies:
        assert "example.com/videos" not in body, body


async def test_buying_again_extends_one_enrolment_and_expiry_ends_it(shop_server: ShopServer) -> None:
    s = shop_server
    course_id, policy, _free, paid = await outline(s, days=7)
    student, token = await s.api.register()
    first = await buy(s, student, token, course_id, policy, "buy-1")
    [one] = (await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]
    second = await buy(s, student, token, course_id, policy, "buy-2")
    [extended] = (await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]
    assert extended["id"] == one["id"] == f"{student}:{course_id}"
    assert extended["valid_from_ms"] == one["valid_from_ms"]
    assert extended["valid_to_ms"] == one["valid_to_ms"] + 7 * 86_400_000  # from the end, not from now
    stored = await s.shop_ctx.db.shop_enrolments.find_one({"_id": one["id"]})
    assert stored is not None and stored["order_nos"] == [first["order_no"], second["order_no"]]
    assert await s.shop_ctx.db.shop_enrolments.count_documents({"user_id": student}) == 1

    # After the end: refused with ENROLMENT_EXPIRED at once; the sweep marks it, once.
    clock = Clock()
    clock.at += datetime.timedelta(days=15)
    learning(s).now = clock
    refused = await s.call("GET", f"/api/v1/sections/{paid}/content", token=token)
    assert (refused.status, refused.code) == (403, "ENROLMENT_EXPIRED")
    refused = await s.call("PUT", f"/api/v1/sections/{paid}/progress", {"done": True}, token=token)
    assert (refused.status, refused.code) == (403, "ENROLMENT_EXPIRED")
    assert await learning(s).expire_enrolments(clock.at) == 1
    assert await learning(s).expire_enrolments(clock.at) == 0
    [expired] = (await s.call("GET", "/api/v1/shop/enrolments", token=token)).json["items"]
    assert expired["status"] == "expired"
    page = (await s.call("GET", f"/api/v1/courses/{course_id}", token=token)).json
    assert page["my"]["enrolment"]["status"] == "expired"
    [chapter] = (await s.call("GET", f"/api/v1/courses/{course_id}/chapters", token=token)).json["items"]
    assert [x["locked"] for x in chapter["sections"]] == [False, True]


async def test_concurrent_purchases_of_one_course_make_one_enrolment(shop_server: ShopServer) -> None:
    """Five orders of the same course paid at once (say, notifications arriving together): one
    enrolment, every order counted once, validity the sum of the five."""
    s = shop_server
    store = s.shop.store
    now = Clock().at

    async def paid(order_no: str) -> None:
        async def work(uow: ShopUnitOfWork) -> None:
            await grant_enrolment(
                uow.enrolments, user_id=42, course_id=7, course_name="c", order_no=order_no, days=10, now=now
            )

        await store.atomically(work)

    orders = [f"order-{i}" for i in range(5)]
    await asyncio.gather(*(paid(o) for o in orders))
    await paid(orders[0])  # a repeat changes nothing
    [enrolment] = [e async for e in s.shop_ctx.db.shop_enrolments.find({"user_id": 42})]
    assert sorted(enrolment["order_nos"]) == orders
    assert enrolment["valid_to"] == now + datetime.timedelta(days=50)
