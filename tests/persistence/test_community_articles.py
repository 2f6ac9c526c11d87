"""The articles' MongoDB adapter with the service over it, on the real server: unique titles and
source names, the visible list's query and cursor, the scheduler's guarded moves, reader flags."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from community.articles import ArticleService, ArticleTitleExists, SourceNameExists
from persistence.community.articles import MongoArticleStore, ensure_indexes

T0 = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime.datetime:
        return self.at


@pytest.fixture
async def setup(mongo_db: AsyncDatabase[dict[str, Any]]) -> tuple[ArticleService, Clock]:
    await ensure_indexes(mongo_db)
    clock = Clock()
    return ArticleService(MongoArticleStore(mongo_db), now=clock), clock


def fields(source_id: int, title: str, **extra: Any) -> dict[str, Any]:
    return {"title": title, "source_id": source_id, "pub_at": T0, "body_md": "**hi**", **extra}


async def test_unique_titles_and_names_hold_under_concurrency(setup: tuple[ArticleService, Clock]) -> None:
    service, _clock = setup
    results = await asyncio.gather(*(service.create_source("Same") for _ in range(8)), return_exceptions=True)
    assert sum(1 for r in results if isinstance(r, dict)) == 1
    assert all(isinstance(r, SourceNameExists) for r in results if not isinstance(r, dict))
    source_id = int(next(r for r in results if isinstance(r, dict))["_id"])
    results = await asyncio.gather(
        *(service.create(fields(source_id, "Same title")) for _ in range(8)), return_exceptions=True
    )
    assert sum(1 for r in results if isinstance(r, dict)) == 1
    assert all(isinstance(r, ArticleTitleExists) for r in results if not isinstance(r, dict))
    other = await service.create(fields(source_id, "Other"))
    with pytest.raises(ArticleTitleExists):
        await service.update(int(other["_id"]), {"title": "Same title"})


async def test_round_trip_keeps_aware_times_and_counters(setup: tuple[ArticleService, Clock]) -> None:
    service, _clock = setup
    source_id = int((await service.create_source("S"))["_id"])
    created = await service.create(fields(source_id, "A", offline_at=T0 + MINUTE), publish=True)
    loaded = await service.article(int(created["_id"]))
    assert loaded["pub_at"] == T0 and loaded["offline_at"] == T0 + MINUTE
    assert loaded["pub_at"].tzinfo is not None
    assert loaded["body_html"] == "<p><strong>hi</strong></p>\n"
    assert [loaded[c] for c in ("views", "likes", "comments", "collects")] == [0, 0, 0, 0]
    assert await service.source_names([source_id, 999]) == {source_id: "S"}


async def test_the_visible_list_and_its_cursor(setup: tuple[ArticleService, Clock]) -> None:
    service, clock = setup
    source_id = int((await service.create_source("S"))["_id"])
    other_id = int((await service.create_source("O"))["_id"])
    specs = [(5, 0), (5, 0), (5, -1), (100, -50), (0, 0), (5, -1), (7, -3)]
    expected = []
    for i, (weight, minutes) in enumerate(specs):
        doc = await service.create(
            fields(source_id, f"A{i}", weight=weight, pub_at=T0 + minutes * MINUTE), publish=True
        )
        expected.append((weight, minutes, int(doc["_id"])))
    ended = await service.create(fields(source_id, "ended", offline_at=T0 + MINUTE), publish=True)
    await service.create(fields(source_id, "draft"))
    await service.create(fields(source_id, "future", pub_at=T0 + MINUTE), publish=True)
    await service.create(fields(other_id, "elsewhere"), publish=True)
    await service.create(fields(source_id, "banner", position="banner_small"), publish=True)

    clock.at = T0 + MINUTE  # "ended" is past its window (status still online: the read checks it)
    order = [i for _, _, i in sorted(expected, reverse=True)]
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        docs, cursor = await service.page(position="feed", source_id=source_id, cursor=cursor, limit=3)
        assert all("body_md" not in d and "body_html" not in d for d in docs)
        seen += [int(d["_id"]) for d in docs]
        if cursor is None:
            break
    assert seen == order
    assert int(ended["_id"]) not in seen
    everything, _ = await service.page(position=None, source_id=None, cursor=None, limit=50)
    # + "elsewhere" and the banner; "future" is still scheduled (no scheduler round yet): not listed.
    assert len(everything) == len(specs) + 2


async def test_the_scheduler_moves_each_article_once(setup: tuple[ArticleService, Clock]) -> None:
    service, clock = setup
    source_id = int((await service.create_source("S"))["_id"])
    ids = []
    for i in range(5):
        doc = await service.create(
            fields(source_id, f"S{i}", pub_at=T0 + MINUTE, offline_at=T0 + 3 * MINUTE), publish=True
        )
        ids.append(int(doc["_id"]))
    clock.at = T0 + MINUTE
    rounds = await asyncio.gather(*(service.apply_schedule() for _ in range(4)))
    assert sorted(i for r in rounds for i in r["online"]) == ids
    assert [(await service.visible(i) or {}).get("_id") for i in ids] == ids
    clock.at = T0 + 3 * MINUTE
    rounds = await asyncio.gather(*(service.apply_schedule() for _ in range(4)))
    assert sorted(i for r in rounds for i in r["offline"]) == ids
    assert [(await service.article(i))["status"] for i in ids] == ["offline"] * len(ids)


async def test_reader_flags_read_the_reactions_records(
    setup: tuple[ArticleService, Clock], mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    service, _clock = setup
    source_id = int((await service.create_source("S"))["_id"])
    article_id = int((await service.create(fields(source_id, "A"), publish=True))["_id"])
    assert await service.reader_flags(7, article_id) == {"liked_by_me": False, "collected_by_me": False}
    await mongo_db.community_likes.insert_one({"target": f"article:{article_id}", "user_id": 7, "at": T0})
    await mongo_db.community_collections.insert_one(
        {"target": f"article:{article_id}", "user_id": 7, "at": T0}
    )
    assert await service.reader_flags(7, article_id) == {"liked_by_me": True, "collected_by_me": True}
    assert await service.reader_flags(8, article_id) == {"liked_by_me": False, "collected_by_me": False}
    assert await service.reader_flags(None, article_id) == {"liked_by_me": False, "collected_by_me": False}


async def test_withdraw_racing_the_scheduler_ends_offline(setup: tuple[ArticleService, Clock]) -> None:
    service, clock = setup
    source_id = int((await service.create_source("S"))["_id"])
    ids = [
        int((await service.create(fields(source_id, f"R{i}", pub_at=T0 + MINUTE), publish=True))["_id"])
        for i in range(10)
    ]
    clock.at = T0 + MINUTE
    await asyncio.gather(
        service.apply_schedule(), *(service.withdraw(i) for i in ids), service.apply_schedule()
    )
    assert [(await service.article(i))["status"] for i in ids] == ["offline"] * len(ids)
    assert await service.apply_schedule() == {"online": [], "offline": []}
