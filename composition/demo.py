"""The demo data `make run` seeds on first start (SEED_DEMO): a session, two courses, two bidders."""

from __future__ import annotations

import datetime

from persistence.catalog import LotSpec, SessionSpec
from web.context import AppContext

DEMO_BIDDERS = (("alice", "alice-demo-pass"), ("bob", "bob-demo-pass"))


async def seed_demo(ctx: AppContext) -> int | None:
    """A demo session with four lots and two funded bidders, on first start only."""
    if await ctx.db.sessions.count_documents({}, limit=1):
        return None
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    session = await ctx.catalog.create_session(
        SessionSpec(
            title="Demo session — spring ceramics",
            preview_start=now,
            preview_end=now,
            bidding_start=now + datetime.timedelta(seconds=5),
            bidding_end=now + datetime.timedelta(hours=2),
            deposit=0,
            soft_close_seconds=60,
            soft_close_cap_seconds=600,
            description="Seeded by make run; bid as alice or bob.",
        )
    )
    session_id = int(session["_id"])
    lots = [
        LotSpec("001", "Celadon bowl, Song style", 100_00, 10_00, reserve_price=300_00, highest_price=800_00),
        LotSpec("002", "Blue-and-white vase", 500_00, 50_00, reserve_price=0, highest_price=2_000_00),
        LotSpec("003", "Tea set for four", 80_00, 5_00, highest_price=300_00),
        LotSpec(
            "004",
            "Large jar (per-lot deposit)",
            1_000_00,
            None,
            reserve_price=2_000_00,
            deposit=200_00,
            increment_bands=((1_000_00, 5_00), (5_000_00, 20_00), (None, 100_00)),
        ),
    ]
    for spec in lots:
        await ctx.catalog.create_lot(session_id, spec)
    await seed_demo_courses(ctx)
    for username, password in DEMO_BIDDERS:
        user_id, _token = await ctx.accounts.register(username, password)
        await ctx.accounts.credit(user_id, 10_000_00, "admin_credit", f"demo-credit:{username}")
    return session_id


async def seed_demo_courses(ctx: AppContext) -> None:
    """Two online courses with price policies, so the shop has something to sell on first start."""
    shop = ctx.shop
    assert shop is not None  # built by start_shop before the demo is seeded
    top = await shop.create_category("Programming", None)
    sub = await shop.create_category("Python", int(top["_id"]))
    courses = (
        ("Python for auction engineers", "beginner", ((30, 99_00), (90, 249_00))),
        ("Asyncio in depth", "advanced", ((60, 199_00),)),
    )
    for order, (name, level, policies) in enumerate(courses):
        course = await shop.create_course(
            {
                "name": name,
                "image": "",
                "sub_category_id": int(sub["_id"]),
                "course_type": "paid",
                "degree_course_id": None,
                "brief": "Seeded by make run.",
                "level": level,
                "status": "online",
                "order": order,
                "period_days": 7,
                "attachment_path": "",
            }
        )
        for valid_days, price in policies:
            await shop.add_policy("course", int(course["_id"]), valid_days, price)
