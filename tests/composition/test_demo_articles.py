"""The demo articles (composition/demo_articles.py): two sources, five articles online now in the
positions the app shows (a big banner, two small ones, two in the feed, one a video), head images
stored; seeding twice leaves the same data."""

from __future__ import annotations

import pathlib
from typing import Any

from composition.demo_articles import ARTICLES, SOURCES, seed_demo_articles
from persistence.media import MediaStore
from tests.gateway.conftest import AppServer, app_server

__all__ = ["app_server"]


async def snapshot(db: Any) -> dict[str, list[Any]]:
    names = ("community_articles", "community_article_sources", "media")
    return {name: [d async for d in db[name].find({}).sort("_id", 1)] for name in names}


async def test_the_demo_articles_are_online_and_seeding_is_idempotent(
    app_server: AppServer, tmp_path: pathlib.Path
) -> None:
    s = app_server
    s.ctx.media_dir = tmp_path / "media"
    await seed_demo_articles(s.ctx)
    first = await snapshot(s.ctx.db)
    await seed_demo_articles(s.ctx)
    assert await snapshot(s.ctx.db) == first

    assert sorted(x["name"] for x in first["community_article_sources"]) == sorted(SOURCES)
    assert len(first["community_articles"]) == len(ARTICLES) == 5
    # the head images' variants come from the start's backfill (the seed writes originals only)
    assert await MediaStore(s.ctx.media_dir).backfill(s.ctx.catalog.media) >= 1
    positions: dict[str, int] = {}
    for position in ("banner_big", "banner_small", "feed"):
        answer = await s.call("GET", f"/api/v1/articles?position={position}")
        assert answer.status == 200, answer.body
        positions[position] = len(answer.json["items"])
        for item in answer.json["items"]:
            assert item["head_img"] is not None and item["head_img"]["srcset"]
    assert positions == {"banner_big": 1, "banner_small": 2, "feed": 2}
    feed = (await s.call("GET", "/api/v1/articles?position=feed")).json["items"]
    assert [a["kind"] for a in feed] == ["news", "video"] and feed[1]["vid"]
    page = (await s.call("GET", f"/api/v1/articles/{feed[0]['id']}")).json
    assert "<pre><code" in page["body_html"]
