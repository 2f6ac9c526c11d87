"""The back office's one search box: users, orders, lots, sessions and courses, exact hits first."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from backoffice.search import Lookups, ordered_hits, plan, search_text
from persistence.mongo import utc_now
from tests.admin.conftest import AdminClient

XSS = "<script>alert(1)</script>"


def groups(body: bytes) -> dict[str, int]:
    """Each result group shown and its count."""
    found = re.findall(rb'data-group="([a-z_]+)">\s*<h2>[^<]*<span class="count" data-count>\((\d+)\)', body)
    return {kind.decode(): int(count) for kind, count in found}


def rows_of(body: bytes, kind: str) -> str:
    text = body.decode()
    start = text.index(f'data-group="{kind}"')
    return text[start : text.index("</section>", start)]


async def seed(client: AdminClient) -> dict[str, Any]:
    server = client.server
    db = server.ctx.db
    ada, _ = await server.register("ada_lovelace")
    adam, _ = await server.register("adam")
    grace, _ = await server.register("grace")
    await server.register("adamson")  # registered after "adam": newer, yet listed after the exact hit
    await db.users.update_one({"_id": grace}, {"$set": {"display_name": "Admiral Hopper"}})
    await db.addresses.insert_one({"_id": 9001, "user_id": grace, "name": "G", "phone": "13800138000"})
    session_id = await server.create_session(title="Celadon evening")
    lot_id = await server.create_lot(session_id, catalogue_no="K-77", title="Song celadon bowl")
    await db.orders.insert_one(
        {
            "_id": 424242,
            "user_id": ada,
            "lot_id": lot_id,
            "session_id": session_id,
            "price": 1200_00,
            "status": 1,
            "trade_nos": ["GAVEL-T-1"],
        }
    )
    await db.shop_orders.insert_one(
        {
            "_id": "2026120600000042",
            "user_id": grace,
            "status": "paid",
            "payable": 99_00,
            "lines": [{"course_name": "Kiln basics"}],
            "created_at": utc_now(),
            "attempts": [{"out_trade_no": "SHOP-OUT-9"}],
            "out_trade_no": "SHOP-OUT-9",
        }
    )
    await db.payments.insert_one({"_id": "SHOP-OUT-9", "trade_no": "ALIPAY-2026-777", "status": "paid"})
    await db.shop_courses.insert_one(
        {"_id": 31, "name": "Kiln basics 窑炉入门", "status": "online", "price": 99_00}
    )
    return {"ada": ada, "adam": adam, "grace": grace, "session": session_id, "lot": lot_id}


async def test_an_empty_query_shows_a_hint(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    page = await admin_client.get("/admin/search?q=+++")
    assert page.status == 200 and b"data-search-hint" in page.body and groups(page.body) == {}


async def test_users_by_name_prefix_display_name_phone_and_id(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    ids = await seed(client)
    by_prefix = await client.get("/admin/search?q=ADA")  # case-insensitive username prefix
    assert groups(by_prefix.body)["users"] == 3
    users = rows_of(by_prefix.body, "users")
    assert "ada_lovelace" in users and ">adam<" in users and "grace" not in users
    # "adam" is typed exactly: the exact hit comes first, marked, then the other prefixes.
    exact = rows_of((await client.get("/admin/search?q=adam")).body, "users")
    assert "ada_lovelace" not in exact and exact.count("hit-exact") == 1
    assert exact.index("hit-exact") < exact.index(">adam<") < exact.index(">adamson<")
    display = rows_of((await client.get("/admin/search?q=admiral")).body, "users")
    assert "grace" in display
    phone = await client.get("/admin/search?q=13800138000")
    assert "grace" in rows_of(phone.body, "users") and 'class="hit-exact"' in rows_of(phone.body, "users")
    by_id = await client.get(f"/admin/search?q={ids['grace']}&kind=users")
    assert f'href="/admin/users/{ids["grace"]}"' in by_id.body.decode()


async def test_orders_by_number_and_trade_number_lots_sessions_and_courses(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    ids = await seed(client)
    order = await client.get("/admin/search?q=424242")
    assert groups(order.body)["auction_orders"] == 1
    assert "ada_lovelace" in rows_of(order.body, "auction_orders")  # the buyer, linked
    assert groups((await client.get("/admin/search?q=GAVEL-T-1")).body)["auction_orders"] == 1
    shop = await client.get("/admin/search?q=2026120600000042")
    assert "Kiln basics" in rows_of(shop.body, "shop_orders")
    by_provider = await client.get("/admin/search?q=ALIPAY-2026-777")  # the provider's trade number
    assert groups(by_provider.body)["shop_orders"] == 1
    assert groups((await client.get("/admin/search?q=SHOP-OUT-9")).body)["shop_orders"] == 1
    lots = await client.get("/admin/search?q=K-77")
    assert f'href="/admin/lots/{ids["lot"]}"' in rows_of(lots.body, "lots")
    titled = await client.get("/admin/search?q=celadon")
    assert groups(titled.body)["lots"] == 1 and groups(titled.body)["sessions"] == 1
    assert "Kiln basics" in rows_of((await client.get("/admin/search?q=窑炉")).body, "courses")


async def test_each_group_is_paged_twenty_a_page(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    for n in range(23):
        await client.server.register(f"pager{n:02d}")
    overview = await client.get("/admin/search?q=pager")
    assert groups(overview.body) == {"users": 23}  # the kinds with nothing are named in one line
    assert b"Nothing in Auction orders" in overview.body
    assert b'data-all="users"' in overview.body  # the overview shows a few and links to all
    first = await client.get("/admin/search?q=pager&kind=users")
    second = await client.get("/admin/search?q=pager&kind=users&page=2")
    assert list(groups(first.body)) == ["users"]
    first_rows = re.findall(r">(pager\d\d)<", rows_of(first.body, "users"))
    second_rows = re.findall(r">(pager\d\d)<", rows_of(second.body, "users"))
    assert len(first_rows) == 20 and len(second_rows) == 3
    assert sorted(first_rows + second_rows) == [f"pager{n:02d}" for n in range(23)]
    assert b"Page 2 of 2" in second.body


async def test_typed_text_is_literal_and_escaped(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    await seed(client)
    for text in (".*", "^a", "a|g", '{"$where": "1"}', "\\", "(", "[a-z]+"):
        page = await client.get("/admin/search?" + urllib.parse.urlencode({"q": text}))
        assert page.status == 200, text
        assert groups(page.body) == {} and b"0 results" in page.body, (text, groups(page.body))
    await client.server.ctx.db.lots.update_one({}, {"$set": {"title": XSS}})
    page = await client.get("/admin/search?q=script")
    assert XSS.encode() not in page.body and b"&lt;script&gt;" in page.body
    long = await client.get("/admin/search?q=" + "x" * 300)
    assert long.status == 200 and b"x" * 101 not in long.body


def test_the_filters_are_plain_values_ranges_or_escaped_regexes() -> None:
    assert search_text(" \x00 ada\x07 ") == "ada" and len(search_text("y" * 500)) == 100
    plans = plan("a.B", Lookups(phone_user_ids=[7], out_trade_nos=["OUT-1"]))
    assert plans["users"].exact == ({"username_key": "a.b"}, {"_id": {"$in": [7]}})
    assert plans["users"].broad[0] == {"username_key": {"$gte": "a.b", "$lt": "a.b\uffff"}}
    assert {"display_name": {"$gte": "A.B", "$lt": "A.B\uffff"}} in plans["users"].broad
    assert plans["auction_orders"].exact == ({"trade_nos": {"$in": ["a.B", "OUT-1"]}},)
    assert plans["sessions"].exact == () and plans["sessions"].broad == (
        {"title": {"$regex": "a\\.B", "$options": "i"}},
    )
    numeric = plan("42")
    assert {"_id": 42} in numeric["lots"].exact and numeric["shop_orders"].exact[0] == {"_id": "42"}
    assert plan("") == {}
    # exact hits first (newest first), then the rest, each id once
    assert ordered_hits({3, 9}, {1, 9, 5, 3}) == [9, 3, 5, 1]
    assert ordered_hits(set(), ["b", "a"]) == ["b", "a"]
