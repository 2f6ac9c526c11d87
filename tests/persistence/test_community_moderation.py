"""The moderation adapters on the real MongoDB: one open report per target and reporter (also when
many arrive at once), closing a target's reports together, the grouped queue, blocks, erase."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from persistence.community.blocks import MongoBlocks
from persistence.community.moderation import MongoBlockStore, MongoContents, MongoReports, ensure_indexes

T0 = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


async def reports_of(db: Any) -> MongoReports:
    await ensure_indexes(db)
    return MongoReports(db)


async def test_twenty_identical_reports_at_once_make_one(mongo_db: Any) -> None:
    reports = await reports_of(mongo_db)
    ids = await asyncio.gather(*(reports.insert("post:1", 7, 8, "spam", "", T0) for _ in range(20)))
    made = [i for i in ids if i is not None]
    assert len(made) == 1
    assert await mongo_db.community_reports.count_documents({}) == 1
    assert await reports.open_count("post:1") == 1


async def test_a_closed_report_lets_the_same_user_report_again(mongo_db: Any) -> None:
    reports = await reports_of(mongo_db)
    first = await reports.insert("post:1", 7, 8, "spam", "ads", T0)
    assert first is not None
    assert await reports.insert("post:1", 7, 8, "abuse", "", T0) is None
    assert await reports.close_target("post:1", "dismissed", 99, "dismiss: fine", T0) == 1
    second = await reports.insert("post:1", 7, 8, "abuse", "", T0)
    assert second is not None and second != first
    doc = await reports.report(first)
    assert doc is not None
    assert (doc["status"], doc["resolved_by"], doc["resolution"]) == ("dismissed", 99, "dismiss: fine")


async def test_close_target_moves_only_that_targets_open_reports(mongo_db: Any) -> None:
    reports = await reports_of(mongo_db)
    for reporter in (2, 3, 4):
        await reports.insert("post:1", 1, reporter, "spam", "", T0)
    await reports.insert("comment:5", 2, 1, "abuse", "", T0)
    assert await reports.close_target("post:1", "resolved", 99, "hide: ads", T0) == 3
    assert await reports.close_target("post:1", "resolved", 99, "hide: ads", T0) == 0
    assert await reports.open_count("comment:5") == 1


async def test_the_queue_groups_by_target_and_pages_by_key(mongo_db: Any) -> None:
    reports = await reports_of(mongo_db)
    await reports.insert("post:1", 1, 2, "spam", "buy now", T0)
    await reports.insert("comment:5", 2, 1, "abuse", "", T0 + datetime.timedelta(minutes=1))
    await reports.insert("post:1", 1, 3, "abuse", "", T0 + datetime.timedelta(minutes=2))
    await reports.insert("post:2", 2, 1, "other", "", T0 + datetime.timedelta(minutes=3))
    page = await reports.queue("open", None, 2)
    assert [(g["target"], g["count"]) for g in page] == [("post:1", 2), ("comment:5", 1)]
    group = page[0]
    assert group["reasons"] == {"spam": 1, "abuse": 1}
    assert (group["notes"], group["reporters"], group["target_user"]) == (["buy now"], [2, 3], 1)
    assert group["first_at"].replace(tzinfo=datetime.UTC) == T0
    rest = await reports.queue("open", page[-1]["first_id"], 2)
    assert [g["target"] for g in rest] == ["post:2"]
    await reports.close_target("post:1", "resolved", 99, "hide: x", T0)
    await reports.close_target("post:2", "resolved", 99, "delete: y", T0)
    done = await reports.queue("resolved", None, 1)
    assert [(g["target"], g["resolution"]) for g in done] == [("post:2", "delete: y")]
    older = await reports.queue("resolved", done[0]["last_id"], 5)
    assert [g["target"] for g in older] == ["post:1"]


async def test_erase_deletes_a_users_reports_and_closes_those_about_them(mongo_db: Any) -> None:
    reports = await reports_of(mongo_db)
    await reports.insert("post:1", 1, 2, "spam", "", T0)  # by 2 about 1
    await reports.insert("post:2", 2, 1, "spam", "", T0)  # by 1 about 2
    await reports.insert("post:3", 2, 3, "spam", "", T0)  # by 3 about 2
    assert await reports.erase_reporter(2) == 1
    assert await reports.close_about_user(2, "resolved", 99, "erase", T0) == 2
    left = [d async for d in mongo_db.community_reports.find({}).sort("_id", 1)]
    assert [(d["reporter"], d["status"]) for d in left] == [(1, "resolved"), (3, "resolved")]


async def test_blocks_are_replaced_lifted_and_read_by_the_write_guard(mongo_db: Any) -> None:
    blocks = MongoBlockStore(mongo_db)
    guard = MongoBlocks(mongo_db)
    until = T0 + datetime.timedelta(days=2)
    assert await blocks.block(5, until, "abuse", 99, T0) is None
    assert await guard.blocked(5, T0)
    assert not await guard.blocked(5, until)
    before = await blocks.block(5, None, "worse", 99, T0)
    assert before is not None and before["reason"] == "abuse"
    assert await guard.blocked(5, T0 + datetime.timedelta(days=5000))
    block = await blocks.block_of(5)
    assert block is not None and block["until"] is None and block["by"] == 99
    removed = await blocks.unblock(5)
    assert removed is not None and removed["reason"] == "worse"
    assert await blocks.unblock(5) is None
    assert not await guard.blocked(5, T0)


async def test_contents_reads_posts_and_comments_hidden_or_not(mongo_db: Any) -> None:
    await mongo_db.community_posts.insert_one({"_id": 1, "user_id": 3, "hidden": True})
    await mongo_db.community_comments.insert_one({"_id": 1, "user_id": 4, "hidden": False})
    contents = MongoContents(mongo_db)
    post = await contents.content("post", 1)
    comment = await contents.content("comment", 1)
    assert post is not None and post["user_id"] == 3
    assert comment is not None and comment["user_id"] == 4
    assert await contents.content("post", 2) is None
    assert await contents.content("article", 1) is None
