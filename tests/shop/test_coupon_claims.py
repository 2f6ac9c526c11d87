"""Claimable shop coupons (shop/claims.py through CommunityService) on in-memory ports: the window,
the quantity, the per-user limit, validity from the claim, expiry shown and refused at checkout."""

import datetime
from typing import Any

import pytest

from engine.book.errors import InvalidInput, NotFound
from shop.claims import CouponAlreadyClaimed, CouponNotClaimable, CouponSoldOut, displayed_status
from shop.community import CommunityService
from shop.model import CouponUnavailable
from tests.shop.community_fakes import community_of
from tests.shop.fakes import World, fake_world

DAY = datetime.timedelta(days=1)


@pytest.fixture
def world() -> World:
    return fake_world()


@pytest.fixture
def community(world: World) -> CommunityService:
    return community_of(world)


def users(world: World, n: int, balance: int = 0) -> list[int]:
    ids = [200 + len(world.store.state.balances) + i for i in range(n)]
    for user_id in ids:
        world.store.state.balances[user_id] = balance
    return ids


async def template(world: World, **terms: Any) -> int:
    now = world.clock()
    fields: dict[str, Any] = {
        "name": "Spring 10 off",
        "kind": "flat",
        "value": 1000,
        "minimum": 0,
        "off_percent": 0,
        "claim_start": now - DAY,
        "claim_end": now + DAY,
        "quantity": 10,
        "per_user_limit": 1,
        "valid_days": 7,
        **terms,
    }
    return int((await world.shop.create_coupon(fields))["_id"])


def issued(world: World, coupon_id: int) -> list[dict[str, Any]]:
    return [c for c in world.store.state.table("user_coupons").values() if c["coupon_id"] == coupon_id]


def assert_books(world: World, coupon_id: int) -> None:
    """left + issued == quantity; each user's claim count equals their coupons of the batch."""
    batch = world.store.state.table("coupons")[coupon_id]
    coupons = issued(world, coupon_id)
    assert batch["left"] + len(coupons) == batch["quantity"] and batch["left"] >= 0
    for claim in world.store.state.table("coupon_claims").values():
        if claim["coupon_id"] == coupon_id:
            mine = [c for c in coupons if c["user_id"] == claim["user_id"]]
            assert claim["count"] == len(mine) <= batch["per_user_limit"]


# -- the template's terms ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "terms",
    [
        {"quantity": None},
        {"claim_end": None},
        {"quantity": 0},
        {"per_user_limit": 11},
        {"per_user_limit": 0},
        {"claim_end": datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)},  # before the start
        {"valid_days": None, "valid_to": datetime.datetime(2025, 12, 1, tzinfo=datetime.UTC)},
    ],
)
async def test_claim_terms_are_complete_and_consistent(world: World, terms: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        await template(world, **terms)


async def test_a_template_starts_with_its_whole_quantity_left(world: World) -> None:
    coupon_id = await template(world, quantity=25, per_user_limit=None)
    stored = world.store.state.table("coupons")[coupon_id]
    assert (stored["left"], stored["per_user_limit"]) == (25, 1)


# -- claiming -----------------------------------------------------------------------------------------------
async def test_claim_gives_a_coupon_valid_for_days_from_the_claim(
    world: World, community: CommunityService
) -> None:
    (student,) = users(world, 1)
    coupon_id = await template(world, valid_days=7)
    world.clock.advance(hours=3)
    coupon = await community.claim(student, coupon_id)
    assert coupon["valid_from"] == world.clock() and coupon["valid_to"] == world.clock() + 7 * DAY
    assert (coupon["status"], coupon["value"], coupon["user_id"]) == ("unused", 1000, student)
    listed = await community.claimable(student)
    assert [(c["_id"], c["left"], c["claimed_by_me"]) for c in listed] == [(coupon_id, 9, 1)]
    assert (await community.claimable(None))[0]["claimed_by_me"] == 0
    with pytest.raises(CouponAlreadyClaimed):
        await community.claim(student, coupon_id)
    assert_books(world, coupon_id)


async def test_fixed_validity_is_copied(world: World, community: CommunityService) -> None:
    (student,) = users(world, 1)
    now = world.clock()
    coupon_id = await template(world, valid_days=None, valid_from=now - DAY, valid_to=now + 30 * DAY)
    coupon = await community.claim(student, coupon_id)
    assert (coupon["valid_from"], coupon["valid_to"]) == (now - DAY, now + 30 * DAY)


async def test_only_inside_the_claim_window(world: World, community: CommunityService) -> None:
    (student,) = users(world, 1)
    now = world.clock()
    later = await template(world, claim_start=now + DAY, claim_end=now + 2 * DAY)
    with pytest.raises(CouponNotClaimable):
        await community.claim(student, later)
    world.clock.advance(days=1)
    await community.claim(student, later)
    world.clock.advance(days=1)  # claim_end is exclusive
    (other,) = users(world, 1)
    with pytest.raises(CouponNotClaimable):
        await community.claim(other, later)
    granted_only = int((await world.shop.create_coupon({"name": "g", "kind": "flat", "value": 1}))["_id"])
    with pytest.raises(NotFound):
        await community.claim(student, granted_only)
    assert [c["_id"] for c in await community.claimable(student)] == []  # closed ones are not listed


async def test_a_coupon_that_would_be_born_expired_cannot_be_claimed(
    world: World, community: CommunityService
) -> None:
    (student,) = users(world, 1)
    now = world.clock()
    coupon_id = await template(world, valid_days=None, valid_to=now + DAY, claim_end=now + 3 * DAY)
    world.clock.advance(days=2)
    with pytest.raises(CouponNotClaimable):
        await community.claim(student, coupon_id)


async def test_per_user_limit_and_quantity(world: World, community: CommunityService) -> None:
    """100 claims (two rounds of 50 users) of a 10-coupon batch with a limit of 2 each: exactly 10."""
    students = users(world, 50)
    coupon_id = await template(world, quantity=10, per_user_limit=2)
    outcomes: dict[str, int] = {}
    for _round in range(2):
        for student in students[:5] if _round == 0 else students:
            try:
                await community.claim(student, coupon_id)
                outcomes["ok"] = outcomes.get("ok", 0) + 1
            except (CouponSoldOut, CouponAlreadyClaimed) as refusal:
                outcomes[refusal.code] = outcomes.get(refusal.code, 0) + 1
    assert outcomes["ok"] == 10 and len(issued(world, coupon_id)) == 10
    assert world.store.state.table("coupons")[coupon_id]["left"] == 0
    # A refused claim rolled back its count: a sold-out user's count is still 0.
    assert all(
        c["count"] >= 1
        for c in world.store.state.table("coupon_claims").values()
        if c["coupon_id"] == coupon_id
    )
    assert_books(world, coupon_id)


# -- expiry -------------------------------------------------------------------------------------------------
async def test_an_expired_coupon_is_shown_expired_and_refused_at_checkout(
    world: World, community: CommunityService
) -> None:
    (student,) = users(world, 1, balance=50_000)
    category = await world.shop.create_category("Top", None)
    sub = await world.shop.create_category("Sub", category["_id"])
    course = await world.shop.create_course({"name": "C", "sub_category_id": sub["_id"], "status": "online"})
    policy = await world.shop.add_policy("course", course["_id"], 30, 5000)
    coupon_id = await template(world, valid_days=1, course_id=course["_id"])
    coupon = await community.claim(student, coupon_id)
    await world.shop.cart_add(student, course["_id"], policy["_id"])
    checkout = await world.shop.create_checkout(student, [course["_id"]])
    assert checkout.lines[0].coupon_ids == (coupon["_id"],)
    await world.shop.choose_coupon(student, course["_id"], coupon["_id"])
    world.clock.advance(days=1, seconds=1)
    assert (
        displayed_status(world.store.state.table("user_coupons")[coupon["_id"]], world.clock()) == "expired"
    )
    with pytest.raises(CouponUnavailable):  # chosen while valid, paid after it ended
        await world.shop.pay(student, 50_000, "late")
    assert world.store.state.balances[student] == 50_000 and world.store.state.table("orders") == {}
    again = await world.shop.create_checkout(student, [course["_id"]])
    assert again.lines[0].coupon_ids == ()  # no longer offered
    await world.shop.expire_pending_orders(world.clock())
    assert world.store.state.table("user_coupons")[coupon["_id"]]["status"] == "expired"
