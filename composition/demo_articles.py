"""The community's demo articles that `make run` seeds (issue 23): two sources and five articles,
online now — one big banner, two small banners, two in the feed (one of them a video).

Idempotent: sources are looked up by name and articles by title before anything is created, so a
second run leaves the same data. Writes go through the ArticleService (gateway/rest_articles.py
`articles_of`), so the demo obeys the same rules as an admin; head images go through the media
store like an upload (WebP variants included).
"""

from __future__ import annotations

import datetime
from typing import Final

from gateway.rest_articles import articles_of
from persistence.community.articles import ensure_indexes
from web.context import AppContext

SOURCES: Final = ("Gavel 深科技", "收藏周刊 Collectors Weekly")
# title, source index, kind, vid, position, weight, brief, body (Markdown), picture shape
ARTICLES: Final[tuple[tuple[str, int, str, str, str, int, str, str, str], ...]] = (
    (
        "宋瓷专场预告 · Song porcelain season",
        0,
        "news",
        "",
        "banner_big",
        900,
        "本季宋瓷专场的二十件拍品抢先看。A first look at this season's twenty Song lots.",
        "## 本季亮点 Highlights\n\n- 汝窑天青釉洗 *Ru ware brush washer*\n"
        "- 龙泉青瓷瓶 **Longquan celadon vase**\n\n"
        "预展时间见 [拍卖日历](/#/sessions)。Preview dates are on the [calendar](/#/sessions).",
        "bowl",
    ),
    (
        "如何读懂青花瓷 · Reading blue-and-white",
        1,
        "news",
        "",
        "banner_small",
        500,
        "从钴料发色到款识，五分钟入门。Cobalt, marks and glaze in five minutes.",
        "### 三个要点 Three things to look at\n\n1. 发色 the cobalt's tone\n2. 款识 the reign mark\n"
        "3. 釉面 the glaze\n\n> 先看器形，再看纹饰。Shape first, then decoration.\n\n"
        "| 时代 Era | 特征 Trait |\n|:--|:--|\n| 元 Yuan | 浓艳 deep |\n| 明 Ming | 淡雅 soft |",
        "vase",
    ),
    (
        "拍卖小白的第一次出价 · Your first bid",
        0,
        "news",
        "",
        "banner_small",
        400,
        "保证金、加价幅度与延时规则。Deposits, increments and soft close, explained.",
        "出价前请先缴纳**保证金**。Pay the deposit before you bid.\n\n"
        "最后一分钟的出价会让拍卖**延时**。A bid in the last minute extends the lot.",
        "jar",
    ),
    (
        "Tornado 与 MongoDB 的异步实践 · Async with Tornado and MongoDB",
        0,
        "news",
        "",
        "feed",
        100,
        "一个竞价系统如何做到每秒上千次出价。How a bidding system takes a thousand bids a second.",
        "```python\nasync def bid(lot_id: int, amount: int) -> None:\n    ...\n```\n\n"
        "详见 [Tornado 文档](https://www.tornadoweb.org/)。See the Tornado docs.",
        "vase",
    ),
    (
        "视频：修复一只裂开的碗 · Video: mending a cracked bowl",
        1,
        "video",
        "demo_kintsugi_01",
        "feed",
        50,
        "金缮修复全过程（12 分钟）。Kintsugi from start to finish (12 minutes).",
        "修复师演示金缮的每一步。A restorer shows every step of kintsugi.",
        "bowl",
    ),
)


async def seed_demo_articles(ctx: AppContext) -> None:
    """Idempotent: seeds nothing twice."""
    # composition.demo imports this module; its picture helpers are taken at call time.
    from composition.demo import stored_pictures

    await ensure_indexes(ctx.db)
    service = articles_of(ctx)
    source_ids: list[int] = []
    for name in SOURCES:
        found = await ctx.db.community_article_sources.find_one({"name": name})
        doc = found if found is not None else await service.create_source(name)
        source_ids.append(int(doc["_id"]))
    missing = [
        spec
        for spec in ARTICLES
        if await ctx.db.community_articles.find_one({"title": spec[0]}, {"_id": 1}) is None
    ]
    if not missing:
        return
    drawings = [
        (spec[0].split(" · ")[0], spec[0].split(" · ")[-1], i, spec[8]) for i, spec in enumerate(missing)
    ]
    pictures = await stored_pictures(ctx, drawings)
    pub_at = service.now() - datetime.timedelta(minutes=1)
    for (title, source, kind, vid, position, weight, brief, body, _shape), picture in zip(
        missing, pictures, strict=True
    ):
        doc = await service.create(
            {
                "title": title,
                "source_id": source_ids[source],
                "kind": kind,
                "vid": vid,
                "position": position,
                "weight": weight,
                "brief": brief,
                "body_md": body,
                "pub_at": pub_at,
            },
            publish=True,
        )
        if picture:
            await service.set_head_image(int(doc["_id"]), picture)
