"""The demo degree (composition/demo_degree.py): on sale with its policy, two modules of two chapters with
two homework each, two mentor accounts that can sign in; seeding twice leaves the same data."""

from __future__ import annotations

from typing import Any

from composition.demo_degree import DEGREE_NAME, DEMO_MENTORS, seed_demo_degree
from tests.gateway.conftest import AppServer, app_server
from tests.gateway.test_shop_api import running_shop

__all__ = ["app_server"]

COLLECTIONS = (
    "shop_degree_courses",
    "shop_price_policies",
    "shop_courses",
    "shop_chapters",
    "shop_homework",
    "shop_mentors",
    "users",
)


async def snapshot(db: Any) -> dict[str, list[Any]]:
    return {name: [d async for d in db[name].find({}).sort("_id", 1)] for name in COLLECTIONS}


async def test_the_demo_degree_is_complete_and_seeding_is_idempotent(app_server: AppServer) -> None:
    async with running_shop(app_server) as shop:
        ctx = shop.shop_ctx
        db = ctx.db
        degree_id = await seed_demo_degree(ctx)
        first = await snapshot(db)
        assert await seed_demo_degree(ctx) == degree_id
        assert await snapshot(db) == first  # run twice: the same documents, nothing added

        degree = await db.shop_degree_courses.find_one({"_id": degree_id})
        assert degree["name"] == DEGREE_NAME and degree.get("status", "online") == "online"
        assert (degree["total_scholarship"], degree["mentor_fee"], degree["period_days"]) == (
            40_000,
            15_000,
            150,
        )
        assert degree["scholarships"] == [
            {"time_percent": 60, "value": 10_000},
            {"time_percent": 80, "value": 6_000},
            {"time_percent": 100, "value": 3_000},
        ]
        policies = [
            p async for p in db.shop_price_policies.find({"target": "degree", "target_id": degree_id})
        ]
        assert [(p["valid_days"], p["price"]) for p in policies] == [(180, 1999_00)]

        modules = [m async for m in db.shop_courses.find({"degree_course_id": degree_id}).sort("order", 1)]
        assert len(modules) == 2 and {m["course_type"] for m in modules} == {"degree"}
        total_value = 0
        for module in modules:
            chapters = [
                c async for c in db.shop_chapters.find({"course_id": module["_id"]}).sort("chapter", 1)
            ]
            assert [c["chapter"] for c in chapters] == [1, 2]
            for chapter in chapters:
                homework = [h async for h in db.shop_homework.find({"chapter_id": chapter["_id"]})]
                assert len(homework) == 2
                for item in homework:
                    assert item["course_id"] == module["_id"] and item["enabled"]
                    assert item["kind"] in ("assignment", "exam")
                    assert 3 <= item["recommended_days"] <= 7 and 2000 <= item["scholarship_value"] <= 4000
                    total_value += item["scholarship_value"]
        assert total_value <= degree["total_scholarship"]

        mentors = {m["_id"]: m async for m in db.shop_mentors.find({"active": True})}
        assert len(mentors) == 2
        for username, password, name, _intro in DEMO_MENTORS:
            login = await app_server.call(
                "POST", "/api/v1/auth/login", {"username": username, "password": password}
            )
            assert login.status == 200, login.body
            assert mentors[login.json["user_id"]]["name"] == name

        # The storefront sells it: the degree page lists its policy and modules.
        page = await shop.call("GET", f"/api/v1/degree-courses/{degree_id}")
        assert page.status == 200 and len(page.json["policies"]) == 1 and len(page.json["modules"]) == 2
