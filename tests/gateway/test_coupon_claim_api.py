"""Claimable shop coupons over HTTP on the real MongoDB: the contract, the window, and the race
(100 concurrent claims of a 10-coupon batch by 50 users: exactly 10 issued, each user within its
limit, `left` equal to the quantity minus the coupons issued)."""

import asyncio
import collections
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from persistence.mongo import iso_utc
from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop

DAY = datetime.timedelta(days=1)


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


async def batch(s: ShopServer, **terms: Any) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    body = {
        "name": "Spring 10 off",
        "kind": "flat",
        "value": 1000,
        "claim_start": iso_utc(now - DAY),
        "claim_end": iso_utc(now + DAY),
        "quantity": 10,
        "per_user_limit": 1,
        "valid_days": 7,
        **terms,
    }
    created: dict[str, Any] = await s.admin("POST", "/api/v1/admin/shop/coupons", body)
    return created


async def assert_books(s: ShopServer, coupon_id: int) -> list[dict[str, Any]]:
    db = s.shop_ctx.db
    template = await db.shop_coupons.find_one({"_id": coupon_id})
    assert template is not None
    issued = [c async for c in db.shop_user_coupons.find({"coupon_id": coupon_id})]
    assert template["left"] + len(issued) == template["quantity"] and template["left"] >= 0
    per_user = collections.Counter(c["user_id"] for c in issued)
    assert max(per_user.values(), default=0) <= template["per_user_limit"]
    async for claim in db.shop_coupon_claims.find({"coupon_id": coupon_id}):
        assert claim["count"] == per_user[claim["user_id"]]
    return issued


async def test_claim_contract(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    course_id, _ = await s.course(sub, 5000)
    template = await batch(
        s, course_id=course_id, quantity=3, per_user_limit=2, kind="threshold", minimum=3000
    )
    assert (template["left"], template["quantity"], template["per_user_limit"]) == (3, 3, 2)
    now = datetime.datetime.now(datetime.UTC)
    later = await batch(s, claim_start=iso_utc(now + DAY), claim_end=iso_utc(now + 2 * DAY))
    await s.admin("POST", "/api/v1/admin/shop/coupons", {"name": "grant only", "kind": "flat", "value": 1})
    bad = await s.call(
        "POST",
        "/api/v1/admin/shop/coupons",
        {"name": "x", "kind": "flat", "value": 1, "claim_start": iso_utc(now)},
        token=await s.api.admin_token(),
    )
    assert (bad.status, bad.code) == (400, "VALIDATION")

    user_id, token = await s.api.register()
    listed = (await s.call("GET", "/api/v1/shop/coupons/claimable", token=token)).json["items"]
    assert [c["id"] for c in listed] == [template["id"], later["id"]]  # closing first; grant-only not listed
    first = listed[0]
    assert first["title"] == "Spring 10 off" and first["course_name"] and first["course_id"] == course_id
    assert (first["kind"], first["value"], first["minimum"], first["left"]) == ("threshold", 1000, 3000, 3)
    assert (first["per_user_limit"], first["claimed_by_me"], first["valid_days"]) == (2, 0, 7)
    assert first["claim_start_ms"] < first["claim_end_ms"] and first["valid_to_ms"] is None
    anonymous = await s.call("GET", "/api/v1/shop/coupons/claimable")
    assert anonymous.status == 200 and anonymous.json["items"][0]["claimed_by_me"] == 0

    assert (await s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim")).status == 401
    claimed = await s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=token)
    assert claimed.status == 201, claimed.body
    coupon = claimed.json
    assert (coupon["status"], coupon["coupon_id"], coupon["course_id"]) == (
        "unused",
        template["id"],
        course_id,
    )
    assert coupon["valid_to_ms"] - coupon["valid_from_ms"] == 7 * 86_400_000
    assert "user_id" not in coupon and "grant_ref" not in coupon
    await s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=token)
    limit = await s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=token)
    assert (limit.status, limit.code) == (409, "COUPON_ALREADY_CLAIMED")
    _, other = await s.api.register()
    await s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=other)
    sold_out = await s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=other)
    assert (sold_out.status, sold_out.code) == (409, "COUPON_SOLD_OUT")
    early = await s.call("POST", f"/api/v1/shop/coupons/{later['id']}/claim", token=token)
    assert (early.status, early.code) == (409, "COUPON_NOT_CLAIMABLE")
    assert (await s.call("POST", "/api/v1/shop/coupons/999999/claim", token=token)).status == 404

    mine = (await s.call("GET", "/api/v1/shop/coupons", token=token)).json["items"]
    assert [(c["coupon_id"], c["status"]) for c in mine] == [(template["id"], "unused")] * 2
    listed = (await s.call("GET", "/api/v1/shop/coupons/claimable", token=token)).json["items"]
    assert (listed[0]["left"], listed[0]["claimed_by_me"]) == (0, 2)
    issued = await assert_books(s, template["id"])
    assert sorted(c["user_id"] for c in issued).count(user_id) == 2


async def test_an_expired_coupon_is_listed_as_expired_at_once(shop_server: ShopServer) -> None:
    s = shop_server
    now = datetime.datetime.now(datetime.UTC)
    template = await batch(s, valid_days=None, valid_to=iso_utc(now + DAY))
    user_id, token = await s.api.register()
    claimed = await s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=token)
    assert claimed.status == 201
    # Its validity ends (moved into the past here; the sweeper has not run).
    await s.shop_ctx.db.shop_user_coupons.update_one(
        {"_id": claimed.json["id"]}, {"$set": {"valid_to": now - datetime.timedelta(seconds=1)}}
    )
    mine = (await s.call("GET", "/api/v1/shop/coupons", token=token)).json["items"]
    assert [c["status"] for c in mine] == ["expired"]
    assert (await s.call("GET", "/api/v1/shop/coupons?status=unused", token=token)).json["items"] == []
    assert len((await s.call("GET", "/api/v1/shop/coupons?status=expired", token=token)).json["items"]) == 1
    assert user_id


async def test_a_hundred_concurrent_claims_of_ten_coupons(shop_server: ShopServer) -> None:
    s = shop_server
    template = await batch(s, quantity=10, per_user_limit=1)
    students = [(await s.api.register())[1] for _ in range(50)]
    claims = [token for token in students for _ in range(2)]  # each user claims twice at once
    answers = await asyncio.gather(
        *(s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=t) for t in claims)
    )
    outcomes = collections.Counter((a.status, a.code) for a in answers)
    assert outcomes[(201, None)] == 10, outcomes
    assert set(outcomes) <= {(201, None), (409, "COUPON_SOLD_OUT"), (409, "COUPON_ALREADY_CLAIMED")}, outcomes
    issued = await assert_books(s, template["id"])
    assert len(issued) == 10 and len({c["user_id"] for c in issued}) == 10


async def test_concurrent_claims_with_a_limit_of_two(shop_server: ShopServer) -> None:
    s = shop_server
    template = await batch(s, quantity=10, per_user_limit=2)
    students = [(await s.api.register())[1] for _ in range(4)]
    claims = [token for token in students for _ in range(5)]  # 20 claims, 4 users, at most 2 each
    answers = await asyncio.gather(
        *(s.call("POST", f"/api/v1/shop/coupons/{template['id']}/claim", token=t) for t in claims)
    )
    assert sum(1 for a in answers if a.status == 201) == 8
    issued = await assert_books(s, template["id"])
    assert collections.Counter(c["user_id"] for c in issued).most_common(1)[0][1] == 2
