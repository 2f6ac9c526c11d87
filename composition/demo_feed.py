"""The community's demo feed that `make run` seeds (issue 23): three topics, alice and bob following
each other, and six posts with pictures, one of them a live card of the demo's live lot."""

from __future__ import annotations

import asyncio
from typing import Final

from community.feed import FeedService, NewPost
from gateway.rest_feed import ContextPurger, EngineLinks, StoreMedia
from persistence.community.blocks import MongoBlocks
from persistence.community.feed import MongoFeedStore, ensure_indexes
from web.context import AppContext

TOPICS: Final = (
    ("拍卖心得 / Auction tips", "出价、保证金与延时规则的经验。Bidding, deposits and the soft close."),
    ("收藏 / Collecting", "晒晒你的藏品。Show what you collect."),
    ("学习打卡 / Study log", "每天学一点。A little every day."),
)

# (author, topic index or None, text, place, pictures, links the live lot)
POSTS: Final = (
    (
        "alice",
        0,
        "第一次参拍：先定好心理价位，别被气氛带着走。First auction: set a limit and keep to it.",
        "",
        2,
        False,
    ),
    ("bob", 1, "新入手的青花小罐，釉色很正。A new blue-and-white jar for the shelf.", "景德镇", 1, False),
    ("alice", None, "这件正在拍，一起来看看！This one is live now: come and bid.", "", 1, True),
    ("bob", 2, "Python for auction engineers 第 3 课打卡。Lesson 3 done.", "", 0, False),
    ("alice", 1, "周末逛古玩市场的收获。What I found at the antiques market.", "杭州", 3, False),
    ("bob", 0, "延时规则：最后一分钟出价会延长结束时间。Soft close: a late bid moves the end.", "", 1, False),
)


class _NoLimit:
    """The demo writes as alice and bob at once: no rate limit for the seed."""

    async def take(self, user_id: int, action: str) -> int | None:
        return None


async def seed_demo_feed(ctx: AppContext) -> None:
    """Idempotent: seeds nothing twice (the first topic's presence says it ran)."""
    await ensure_indexes(ctx.db)
    if await ctx.db.community_topics.count_documents({"title": TOPICS[0][0]}, limit=1):
        return
    users = {
        u["username"]: int(u["_id"]) async for u in ctx.db.users.find({"username": {"$in": ["alice", "bob"]}})
    }
    if len(users) != 2:
        return
    feed = FeedService(
        MongoFeedStore(ctx.db, ctx.read_cache),
        StoreMedia(ctx),
        blocks=MongoBlocks(ctx.db),
        limiter=_NoLimit(),
        links=EngineLinks(ctx),
        purger=ContextPurger(ctx),
    )
    topics = [int((await feed.create_topic(title, intro))["_id"]) for title, intro in TOPICS]
    await feed.follow(users["alice"], users["bob"])
    await feed.follow(users["bob"], users["alice"])
    await feed.follow_topic(users["alice"], topics[0])
    await feed.follow_topic(users["bob"], topics[1])
    live_lot = await _live_lot(ctx)
    for index, (author, topic, text, place, pictures, links_lot) in enumerate(POSTS):
        images = await _pictures(ctx, index, pictures)
        link = links_lot and live_lot is not None
        await feed.create_post(
            users[author],
            NewPost(
                text=text,
                topic_id=topics[topic] if topic is not None else None,
                place=place,
                link_kind="lot" if link else None,
                link_id=live_lot if link else None,
                images=images,
            ),
        )


async def _live_lot(ctx: AppContext) -> int | None:
    """The first lot of the first session (the demo's live one)."""
    session = await ctx.db.sessions.find_one({}, {"_id": 1}, sort=[("_id", 1)])
    if session is None:
        return None
    lot = await ctx.db.lots.find_one({"session_id": session["_id"]}, {"_id": 1}, sort=[("_id", 1)])
    return int(lot["_id"]) if lot is not None and int(lot["_id"]) in ctx.engine.book.lots else None


async def _pictures(ctx: AppContext, post: int, count: int) -> list[bytes]:
    if ctx.media_dir is None or not count:  # as the demo's lots: no pictures without a media directory
        return []
    from composition.demo import demo_picture  # demo.py imports this module

    shapes = ("vase", "jar", "bowl")
    return list(
        await asyncio.gather(
            *(
                asyncio.to_thread(
                    demo_picture, "动态 Feed", f"post {post + 1} - {i + 1}/{count}", post + i, shapes[i % 3]
                )
                for i in range(count)
            )
        )
    )
