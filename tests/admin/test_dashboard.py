"""The dashboard's figures against seeded data (admin/pages.py DashboardHandler)."""

from __future__ import annotations

import datetime
import re

from persistence.mongo import from_ms
from tests.admin.conftest import AdminClient

DAY_MS = 86_400_000


def figure(body: bytes, label: str) -> str:
    """The bold number of the tile whose text contains `label`."""
    found = re.search(rb"<b>([^<]*)</b> " + re.escape(label.encode()), body)
    assert found, label
    return found.group(1).decode()


async def seed(client: AdminClient) -> None:
    server = client.server
    db = server.ctx.db
    now_ms = server.clock.now_ms()
    now = from_ms(now_ms)
    user_id, _ = await server.register("wang_wu")
    await db.orders.insert_many(
        [
            {
                "_id": 1,
                "lot_id": 1,
                "session_id": 1,
                "user_id": user_id,
                "price": 1000_00,
                "status": 2,
                "created_at": now,
                "paid_at_ms": now_ms,
                "payment": {"paid_amount": 900_00},
                "shipped_at_ms": None,
            },
            {
                "_id": 2,
                "lot_id": 2,
                "session_id": 1,
                "user_id": user_id,
                "price": 77_00,
                "status": 4,
                "created_at": now,
                "paid_at_ms": None,
                "payment": None,
            },
            {
                "_id": 3,
                "lot_id": 3,
                "session_id": 1,
                "user_id": user_id,
                "price": 5_00,
                "status": 3,
                "created_at": now - datetime.timedelta(days=30),
                "paid_at_ms": now_ms - 30 * DAY_MS,
                "payment": {"paid_amount": 5_00},
            },
        ]
    )
    await db.shop_orders.insert_many(
        [
            {
                "_id": "S1",
                "user_id": user_id,
                "status": "paid",
                "payable": 434_50,
                "paid_at": now,
                "created_at": now,
            },
            {
                "_id": "S2",
                "user_id": user_id,
                "status": "refund_requested",
                "payable": 10_00,
                "paid_at": now,
                "created_at": now,
                "refund": {"status": "requested"},
            },
        ]
    )
    await db.payments.insert_one(
        {
            "_id": "shop-x",
            "provider": "sandbox",
            "user_id": user_id,
            "amount": 66_60,
            "status": "closed",
            "created_at": now,
            "closed_at": now,
        }
    )
    await db.deposits.insert_many(
        [
            {
                "_id": 1,
                "user_id": user_id,
                "session_id": 1,
                "lot_id": None,
                "amount": 500_00,
                "status": "paid",
            },
            {
                "_id": 2,
                "user_id": user_id,
                "session_id": 1,
                "lot_id": 5,
                "amount": 300_00,
                "remaining": 100_00,
                "status": "paid",
            },
            {
                "_id": 3,
                "user_id": user_id,
                "session_id": 1,
                "lot_id": 6,
                "amount": 999_00,
                "status": "refunded",
            },
        ]
    )
    await db.refunds.insert_one(
        {"_id": 1, "deposit_id": 3, "user_id": user_id, "amount": 1, "status": "pending"}
    )


async def test_the_dashboard_shows_the_day_the_week_and_the_backlog(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    await seed(admin_client)
    page = await admin_client.get("/admin/")
    assert page.status == 200
    body = page.body
    assert figure(body, "takings today") == "¥1,344.50"  # 900.00 auction + 434.50 + 10.00 courses
    assert b"auctions \xc2\xa5900.00 (1), courses \xc2\xa5444.50 (2)" in body
    assert figure(body, "takings this week") == "¥1,344.50"  # the 30-day-old order is not this week
    assert figure(body, "overdue orders") == "1"
    assert figure(body, "deposits held") == "¥600.00"  # 500 + the 100 left of 300
    assert figure(body, "failed payments today") == "1" and b"(\xc2\xa566.60)" in body
    assert figure(body, "refunds pending (deposits)") == "1"
    assert figure(body, "course refunds pending") == "1"
    assert b"/admin/exports/payments.csv?status=failed&amp;from=" in body
    assert re.search(rb'id="orders-by-status".*?overdue[^<]*</a></td><td class="num">1<', body, re.S)
    assert re.search(rb'id="shop-by-status".*?<td>paid</td><td class="num">1<', body, re.S)
    # 14 bars per chart; today's takings bar is the tallest (full height)
    chart = body.split(b'id="takings-chart"')[1].split(b"</svg>")[0]
    assert chart.count(b"<rect") == 14
    assert b'height="120.0"' in chart or b'height="120"' in chart


async def test_tiles_follow_the_roles(admin_client: AdminClient) -> None:
    await admin_client.sign_in()
    await seed(admin_client)
    server = admin_client.server
    for role, sees_money, sees_auctions in (
        ("moderator", False, False),
        ("support", True, True),
        ("course_manager", True, False),
    ):
        user_id, _ = await server.register(f"staff_{role}", "staff-password")
        await server.ctx.accounts.set_staff_roles(user_id, [role])
        client = AdminClient(server)
        assert (await client.sign_in(f"staff_{role}", "staff-password")).status == 303
        page = await client.get("/admin/")
        assert page.status == 200, role
        assert (b"takings today" in page.body) is sees_money, role
        assert (b"lots bidding now" in page.body) is sees_auctions, role
