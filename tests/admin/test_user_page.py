"""A user's whole page: every section with its count, sign-in history, blocks and support notes."""

from __future__ import annotations

import re

from engine.commands import BlockBidder
from persistence.mongo import utc_now
from tests.admin.conftest import AdminClient

XSS = "<script>alert(1)</script>"


def section(body: bytes, name: str) -> str:
    text = body.decode()
    start = text.index(f'data-section="{name}"')
    return text[start : text.index("</section>", start)]


def count(body: bytes, name: str) -> int:
    found = re.search(r"\((\d+)", section(body, name))
    assert found, name
    return int(found.group(1))


async def test_every_section_shows_what_the_user_has(admin_client: AdminClient) -> None:
    client = admin_client
    server = client.server
    db = server.ctx.db
    await client.sign_in()
    user_id, _ = await server.register("hedy")
    await db.users.update_one({"_id": user_id}, {"$set": {"display_name": "Hedy L."}})
    await db.addresses.insert_one({"_id": 7001, "user_id": user_id, "phone": "13900001111"})
    session_id = await server.create_session()
    lot_id = await server.create_lot(session_id)
    now = utc_now()
    await db.deposits.insert_one(
        {
            "_id": 501,
            "user_id": user_id,
            "session_id": session_id,
            "lot_id": lot_id,
            "amount": 200_00,
            "status": "paid",
            "created_at": now,
        }
    )
    await db.orders.insert_one(
        {
            "_id": 601,
            "user_id": user_id,
            "lot_id": lot_id,
            "session_id": session_id,
            "price": 1234_56,
            "status": 2,
            "created_at": now,
        }
    )
    await db.shop_orders.insert_one(
        {
            "_id": "2026120600000701",
            "user_id": user_id,
            "status": "paid",
            "payable": 88_00,
            "lines": [{"course_name": "Glazes"}],
            "created_at": now,
        }
    )
    await db.shop_enrolments.insert_one(
        {
            "_id": f"{user_id}:5",
            "user_id": user_id,
            "course_id": 5,
            "course_name": "Glazes",
            "status": "valid",
            "valid_from": now,
            "valid_to": None,
            "order_no": "2026120600000701",
            "created_at": now,
        }
    )
    await db.user_coupons.insert_one(
        {
            "_id": 801,
            "coupon_id": 80,
            "user_id": user_id,
            "session_id": session_id,
            "amount": 20_00,
            "status": 1,
        }
    )
    await db.community_reports.insert_many(
        [
            {
                "_id": 901,
                "target": "post:1",
                "target_user": 999,
                "reporter": user_id,
                "reason": "spam",
                "note": XSS,
                "status": "open",
            },
            {
                "_id": 902,
                "target": "post:2",
                "target_user": user_id,
                "reporter": 999,
                "reason": "abuse",
                "status": "open",
            },
        ]
    )
    await server.credit(user_id, 50_00)
    assert (await server.engine.execute(BlockBidder(user_id))).ok

    page = await client.get(f"/admin/users/{user_id}")
    assert page.status == 200
    profile = section(page.body, "profile")
    assert "Hedy L." in profile and "13900001111" in profile
    for name, expected in {
        "deposits": 1,
        "orders": 1,
        "shop_orders": 1,
        "enrolments": 1,
        "auction_coupons": 1,
        "reports_made": 1,
        "reports_about": 1,
        "ledger": 1,
    }.items():
        assert count(page.body, name) == expected, name
    assert "¥200.00" in section(page.body, "deposits") and "¥1,234.56" in section(page.body, "orders")
    assert "2026120600000701" in section(page.body, "shop_orders") and "Glazes" in section(
        page.body, "enrolments"
    )
    assert "unused" in section(page.body, "auction_coupons")
    assert "¥50.00" in section(page.body, "ledger")
    assert "blocked from bidding" in page.body.decode()
    assert XSS not in page.body.decode() and "&lt;script&gt;" in section(page.body, "reports_made")


async def test_sections_are_paged(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    user_id, _ = await client.server.register("paged")
    await client.server.ctx.db.orders.insert_many(
        [{"_id": 1000 + n, "user_id": user_id, "lot_id": n, "price": n, "status": 1} for n in range(12)]
    )
    first = await client.get(f"/admin/users/{user_id}")
    assert (
        count(first.body, "orders") == 12 and section(first.body, "orders").count("<tr>") == 11
    )  # 10 + head
    second = await client.get(f"/admin/users/{user_id}?orders_page=2")
    rows = section(second.body, "orders")
    assert ">1001<" in rows and ">1000<" in rows and ">1011<" not in rows


async def test_sign_ins_are_recorded_at_both_doors(admin_client: AdminClient) -> None:
    client = admin_client
    server = client.server
    user_id, _ = await server.register("kim")
    right = await server.call("POST", "/api/v1/auth/login", {"username": "kim", "password": "correct-horse"})
    assert right.status == 200
    await client.sign_in()
    wrong = await server.call(
        "POST",
        "/api/v1/auth/login",
        {"username": "kim", "password": "not-it"},
        headers={"User-Agent": "GavelApp/2.1 (iPhone)"},
    )
    assert wrong.status == 401
    refused = await AdminClient(server).sign_in("admin", "wrong password")  # another browser
    assert refused.status == 401
    admin = await server.ctx.db.users.find_one({"username_key": "admin"}, {"_id": 1})
    admin_id = admin["_id"]
    stored = [d async for d in server.ctx.db.signins.find({}).sort("_id", 1)]
    assert [(d["user_id"], d["surface"], d["ok"]) for d in stored] == [
        (user_id, "app", True),
        (admin_id, "admin", True),
        (user_id, "app", False),
        (admin_id, "admin", False),
    ]
    assert stored[2]["user_agent"] == "GavelApp/2.1 (iPhone)" and stored[2]["ip"] == "127.0.0.1"
    assert stored[2]["detail"] == "BAD_CREDENTIALS"
    page = await client.get(f"/admin/users/{user_id}")
    history = section(page.body, "signins")
    assert history.count('data-signin="failed"') == 1 and history.count('data-signin="ok"') == 1
    assert "GavelApp/2.1 (iPhone)" in history
    unknown = await server.call("POST", "/api/v1/auth/login", {"username": "nobody", "password": "x"})
    assert unknown.status == 401
    assert await server.ctx.db.signins.find_one({"username": "nobody", "user_id": None, "ok": False})
    indexes = await server.ctx.db.signins.index_information()
    assert indexes["at_ttl"]["expireAfterSeconds"] == 90 * 86_400


async def test_support_notes_are_added_audited_and_listed_newest_first(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    user_id, _ = await client.server.register("lin")
    await client.get(f"/admin/users/{user_id}")
    for text in ("Called about order 12", XSS):
        answer = await client.post(f"/admin/users/{user_id}/notes", {"text": text})
        assert answer.status == 303
    empty = await client.post(f"/admin/users/{user_id}/notes", {"text": "   "})
    assert empty.status == 303
    assert b"note is empty" in (await client.get(empty.headers["Location"].split("#")[0])).body
    page = await client.get(f"/admin/users/{user_id}")
    notes = section(page.body, "notes")
    assert count(page.body, "notes") == 2
    assert notes.index("&lt;script&gt;") < notes.index("Called about order 12") and XSS not in notes
    entries = [e async for e in client.server.ctx.db.audit.find({"action": "user.note"}).sort("_id", 1)]
    assert len(entries) == 2 and entries[0]["target"] == f"user:{user_id}"
    assert (
        entries[0]["after"] == {"text": "Called about order 12"} and entries[0]["admin_username"] == "admin"
    )
    missing = await client.post("/admin/users/999999/notes", {"text": "x"})
    assert missing.status == 404


async def test_an_unknown_user_is_a_404_page(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    page = await admin_client.get("/admin/users/424242")
    assert page.status == 404 and b"no user 424242" in page.body
