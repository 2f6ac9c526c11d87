"""The demo feed `make run` seeds (composition/demo_feed.py): topics, mutual follows, six posts with
pictures, one a card of the live lot; counters equal to their records; seeded once."""

from __future__ import annotations

import pathlib

from composition.demo_feed import POSTS, TOPICS, seed_demo_feed
from tests.gateway.conftest import AppServer, app_server

__all__ = ["app_server"]  # the fixture, shared with tests/gateway


async def test_the_demo_feed(app_server: AppServer, tmp_path: pathlib.Path) -> None:
    ctx = app_server.ctx
    ctx.media_dir = tmp_path / "media"
    ctx.media_dir.mkdir()
    session_id = await app_server.create_session()
    lot_id = await app_server.create_lot(session_id, title="Demo lot")
    alice, _ = await app_server.register("alice")
    bob, _ = await app_server.register("bob")
    await seed_demo_feed(ctx)
    await seed_demo_feed(ctx)  # idempotent
    assert await ctx.db.community_topics.count_documents({}) == len(TOPICS)
    assert await ctx.db.community_posts.count_documents({}) == len(POSTS)
    page = (await app_server.call("GET", "/api/v1/posts?limit=50")).json["items"]
    [linked] = [p for p in page if p["link"]]
    assert linked["link"]["id"] == lot_id and linked["link"]["title"] == "Demo lot"
    assert sum(len(p["images"]) for p in page) == sum(p[4] for p in POSTS)
    assert all(i["srcset"] for p in page for i in p["images"])
    for user in (alice, bob):
        profile = (await app_server.call("GET", f"/api/v1/profiles/{user}")).json
        posts = await ctx.db.community_posts.count_documents({"user_id": user})
        assert (profile["followers"], profile["following"], profile["posts"]) == (1, 1, posts)
    topics = (await app_server.call("GET", "/api/v1/topics")).json["items"]
    for topic in topics:
        assert topic["posts"] == await ctx.db.community_posts.count_documents({"topic_id": topic["id"]})
        assert topic["followers"] == await ctx.db.community_topic_follows.count_documents(
            {"topic_id": topic["id"]}
        )
