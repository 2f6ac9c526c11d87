"""`GET /api/v1/courses` with the storefront's search, filters and sort (issue 21) against the real
app, MongoDB and Redis: the new card fields, every filter, and bad input answered 400 VALIDATION."""

from collections.abc import AsyncIterator

import pytest

from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


async def names(s: ShopServer, query: str) -> list[str]:
    answer = await s.call("GET", "/api/v1/courses?" + query)
    assert answer.status == 200, answer.body
    return [c["name"] for c in answer.json["items"]]


async def test_filters_search_sort_and_card_fields(shop_server: ShopServer) -> None:
    s = shop_server
    sub = await s.category()
    other_sub = await s.category()
    py, _ = await s.course(sub, 9900, 19_900, name="Python basics", level="beginner", order=3)
    await s.course(sub, 29_900, name="Asyncio in depth", level="advanced", order=1)
    await s.course(other_sub, 4900, name="VIP python clinic", course_type="vip", order=2)
    await s.course(other_sub, name="No price yet", order=0)
    await s.admin("PUT", f"/api/v1/admin/shop/courses/{py}/detail", {"hours": 40, "slogan": "From zero"})
    # Review counters as the reviews keep them (two reviews: 5+4, 4+4, 5+4 -> 26 / 6 = 4.33…).
    await s.shop_ctx.db.shop_review_stats.insert_one(
        {"_id": py, "count": 2, "teacher": 9, "content": 8, "clarity": 9}
    )

    listing = (await s.call("GET", "/api/v1/courses")).json
    assert [c["name"] for c in listing["items"]] == [
        "No price yet",
        "Asyncio in depth",
        "VIP python clinic",
        "Python basics",
    ]
    card = listing["items"][3]
    assert card["lowest_price"] == 9900 and card["hours"] == 40 and card["level"] == "beginner"
    assert card["course_type"] == "paid" and card["picture"] is None
    assert (card["review_average"], card["review_count"]) == ("4.3", 2)
    assert [p["price"] for p in card["policies"]] == [9900, 19_900]
    unpriced = listing["items"][0]
    assert unpriced["lowest_price"] is None and unpriced["hours"] is None
    assert (unpriced["review_average"], unpriced["review_count"]) == (None, 0)

    assert await names(s, "q=PYTHON") == ["VIP python clinic", "Python basics"]
    assert await names(s, "q=%20depth%20") == ["Asyncio in depth"]  # trimmed
    assert await names(s, "level=advanced") == ["Asyncio in depth"]
    assert await names(s, "course_type=vip") == ["VIP python clinic"]
    in_range = await names(s, "min_price=9900&max_price=29900&sort=price")
    assert in_range == ["Python basics", "Asyncio in depth"]
    assert await names(s, "max_price=9900") == ["VIP python clinic", "Python basics"]
    assert await names(s, "sort=price") == [
        "VIP python clinic",
        "Python basics",
        "Asyncio in depth",
        "No price yet",
    ]
    assert await names(s, "sort=newest") == [
        "No price yet",
        "VIP python clinic",
        "Asyncio in depth",
        "Python basics",
    ]
    assert await names(s, f"category={other_sub}&q=python") == ["VIP python clinic"]
    # Paging counts the matches, not the catalogue.
    paged = (await s.call("GET", "/api/v1/courses?sort=price&min_price=1&page=2&page_size=2")).json
    assert paged["total"] == 3 and [c["name"] for c in paged["items"]] == ["Asyncio in depth"]


@pytest.mark.parametrize(
    "query",
    [
        "level=expert",
        "course_type=free",
        "sort=rating",
        "min_price=-1",
        "max_price=abc",
        "min_price=100&max_price=99",
        "min_price=100000000001",
        "q=" + "x" * 65,
        "q=a%09b",  # a tab (Tornado itself blanks NUL and most other control characters)
        "category=0",
    ],
)
async def test_bad_filters_are_400_validation(shop_server: ShopServer, query: str) -> None:
    answer = await shop_server.call("GET", "/api/v1/courses?" + query)
    assert (answer.status, answer.code) == (400, "VALIDATION"), (query, answer.body)


async def test_unknown_category_is_404(shop_server: ShopServer) -> None:
    answer = await shop_server.call("GET", "/api/v1/courses?category=999999&q=x")
    assert answer.status == 404
