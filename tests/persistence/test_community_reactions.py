"""The reactions on the real MongoDB: the counter rule under concurrency (counters == records after
hundreds of simultaneous likes, unlikes, collects, views and comments from 50 users), the unique
keys, the targets' visibility, and `repair` (dry run, fix, and the CLI)."""

from __future__ import annotations

import asyncio
import datetime
import random
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from community.errors import TargetNotFound
from community.reactions import BadReply, ReactionService
from community.rules import Target
from persistence.community import repair
from persistence.community.blocks import MongoBlocks
from persistence.community.reactions import MongoReactions, MongoTargets, ensure_indexes, recount
from tests.community.fakes_reactions import FakeLimiter

Db = AsyncDatabase[dict[str, Any]]
POST, ARTICLE, COURSE = Target("post", 1), Target("article", 3), Target("course", 7)
USERS = range(1, 51)


def now() -> datetime.datetime:
    at = datetime.datetime.now(datetime.UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


async def seed(db: Db) -> ReactionService:
    await ensure_indexes(db)
    at = now()
    await db.community_posts.insert_one(
        {"_id": 1, "user_id": 99, "text": "hello", "hidden": False, "likes": 0, "comments": 0, "views": 0}
    )
    await db.community_articles.insert_one(
        {
            "_id": 3,
            "title": "Chips",
            "head_img": "/media/chip.png",
            "status": "online",
            "pub_at": at - datetime.timedelta(hours=1),
            "offline_at": None,
            "likes": 0,
            "comments": 0,
            "views": 0,
            "collects": 0,
        }
    )
    await db.shop_courses.insert_one({"_id": 7, "name": "Go", "image": "", "status": "online"})
    store = MongoReactions(db)
    return ReactionService(store, MongoTargets(db), MongoBlocks(db), FakeLimiter(), now=now)


async def assert_counters_equal_records(db: Db) -> None:
    post = await db.community_posts.find_one({"_id": 1})
    article = await db.community_articles.find_one({"_id": 3})
    assert post is not None and article is not None
    assert post["likes"] == await db.community_likes.count_documents({"target": "post:1"})
    assert post["views"] == await db.community_views.count_documents({"target": "post:1"})
    assert post["comments"] == await db.community_comments.count_documents(
        {"target": "post:1", "hidden": False}
    )
    assert article["likes"] == await db.community_likes.count_documents({"target": "article:3"})
    assert article["views"] == await db.community_views.count_documents({"target": "article:3"})
    assert article["collects"] == await db.community_collections.count_documents({"target": "article:3"})
    async for comment in db.community_comments.find({}):
        likes = await db.community_likes.count_documents({"target": f"comment:{comment['_id']}"})
        assert comment["likes"] == likes
        replies = await db.community_comments.count_documents({"root": comment["_id"], "hidden": False})
        assert comment["replies"] == replies
    wrong = await recount(
        db, dry_run=True
    )  # and repair agrees (the feed's counters aside: no profiles seeded)
    assert {name: n for name, n in wrong.items() if not name.startswith(("profiles.", "topics."))} == {
        name: 0 for name in wrong if not name.startswith(("profiles.", "topics."))
    }


async def test_counters_equal_records_after_hundreds_of_concurrent_reactions(mongo_db: Db) -> None:
    service = await seed(mongo_db)
    root = await service.add_comment(99, POST, "the root", None)
    comment = Target("comment", int(root["_id"]))
    rng = random.Random(23)
    ops: list[Awaitable[Any]] = []
    for _ in range(100):  # per target kind: 100 likes/unlikes, views, collects... from 50 users
        user = rng.choice(USERS)
        ops.append(service.like(user, POST, rng.random() < 0.6))
        ops.append(service.like(rng.choice(USERS), ARTICLE, rng.random() < 0.6))
        ops.append(service.like(rng.choice(USERS), comment, rng.random() < 0.6))
        ops.append(service.view(rng.choice(USERS), POST))
        ops.append(service.view(rng.choice(USERS), ARTICLE))
        ops.append(service.collect(rng.choice(USERS), ARTICLE, rng.random() < 0.6))
        ops.append(service.collect(rng.choice(USERS), COURSE, rng.random() < 0.6))
    rng.shuffle(ops)
    answers = await asyncio.gather(*ops)
    assert len(answers) == 700
    await assert_counters_equal_records(mongo_db)
    liked = await mongo_db.community_likes.count_documents({"target": "post:1"})
    assert 0 < liked <= 50  # one record per user at most: the unique key held
    course = await service.collect(1, COURSE, True)
    assert course["collects"] == await mongo_db.community_collections.count_documents({"target": "course:7"})


async def test_counters_hold_with_comments_added_hidden_and_deleted_at_once(mongo_db: Db) -> None:
    service = await seed(mongo_db)
    roots = [await service.add_comment(u, POST, f"root {u}", None) for u in range(1, 6)]
    rng = random.Random(7)
    ops: list[Awaitable[Any]] = []
    for n in range(60):
        root = rng.choice(roots)
        ops.append(service.add_comment(rng.choice(USERS), POST, f"reply {n}", int(root["_id"])))
        ops.append(service.like(rng.choice(USERS), Target("comment", int(root["_id"])), True))
    ops += [service.set_comment_hidden(int(roots[0]["_id"]), True, "spam") for _ in range(5)]
    ops += [service.delete_comment(int(roots[1]["_id"])) for _ in range(3)]
    results = await asyncio.gather(*ops, return_exceptions=True)
    # Replies and likes racing the hiding or deletion of their root are refused; nothing else fails.
    assert all(not isinstance(r, Exception) or isinstance(r, BadReply | TargetNotFound) for r in results)
    await assert_counters_equal_records(mongo_db)


async def test_one_record_per_user_and_target(mongo_db: Db) -> None:
    service = await seed(mongo_db)
    await asyncio.gather(*(service.like(5, POST, True) for _ in range(20)))
    assert await mongo_db.community_likes.count_documents({}) == 1
    post = await mongo_db.community_posts.find_one({"_id": 1})
    assert post is not None and post["likes"] == 1


async def test_targets_are_visible_only_within_their_rules(mongo_db: Db) -> None:
    service = await seed(mongo_db)
    targets = MongoTargets(mongo_db)
    at = now()
    assert await targets.visible(POST, at) and await targets.visible(ARTICLE, at)
    assert await targets.visible(COURSE, at)
    assert not await targets.visible(Target("post", 2), at)
    await mongo_db.community_articles.update_one({"_id": 3}, {"$set": {"offline_at": at}})
    assert not await targets.visible(ARTICLE, at)
    await mongo_db.community_articles.update_one(
        {"_id": 3}, {"$set": {"offline_at": None, "pub_at": at + datetime.timedelta(minutes=1)}}
    )
    assert not await targets.visible(ARTICLE, at)
    await mongo_db.shop_courses.update_one({"_id": 7}, {"$set": {"status": "offline"}})
    assert not await targets.visible(COURSE, at)
    described = await targets.describe([ARTICLE, COURSE, Target("article", 404)], at)
    assert described == {
        ARTICLE: {"title": "Chips", "image": "/media/chip.png", "available": False},
        COURSE: {"title": "Go", "image": "", "available": False},
    }
    comment = Target("comment", int((await service.add_comment(5, POST, "hi", None))["_id"]))
    assert await targets.visible(comment, at)
    await mongo_db.community_posts.update_one({"_id": 1}, {"$set": {"hidden": True}})
    assert not await targets.visible(comment, at)  # a hidden post takes its comments with it
    with pytest.raises(TargetNotFound, match="no post 1"):
        await service.like(1, POST, True)


async def test_collections_page_newest_first_across_kinds(mongo_db: Db) -> None:
    service = await seed(mongo_db)
    await service.collect(1, ARTICLE, True)
    await service.collect(1, COURSE, True)
    first = await service.collections(1, "all", None, 1)
    assert first.next_keys is not None
    second = await service.collections(1, "all", first.next_keys, 1)
    got = [(i["kind"], i["id"]) for i in first.items + second.items]
    assert sorted(got) == [("article", 3), ("course", 7)] and second.next_keys is None


async def test_repair_finds_and_fixes_broken_counters(
    mongo_db: Db, mongo_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    service = await seed(mongo_db)
    root = await service.add_comment(2, POST, "root", None)
    await service.add_comment(3, POST, "reply", int(root["_id"]))
    for user in (1, 2, 3):
        await service.like(user, POST, True)
    await service.collect(1, ARTICLE, True)
    await mongo_db.community_follows.insert_many(
        [{"follower": 1, "followee": 2}, {"follower": 3, "followee": 2}]
    )
    await mongo_db.community_profiles.insert_one({"_id": 2, "followers": 0, "following": 0, "posts": 0})
    await mongo_db.community_topics.insert_one({"_id": 4, "title": "t", "followers": 0, "posts": 9})
    # A crash between a record's write and its counter's, simulated:
    await mongo_db.community_posts.update_one({"_id": 1}, {"$set": {"likes": 7, "comments": 0}})
    await mongo_db.community_comments.update_one({"_id": root["_id"]}, {"$set": {"replies": 5}})
    await mongo_db.community_articles.update_one({"_id": 3}, {"$inc": {"collects": 1}})

    wrong = await service.repair(dry_run=True)
    assert wrong["posts.likes"] == 1 and wrong["posts.comments"] == 1
    assert wrong["comments.replies"] == 1 and wrong["articles.collects"] == 1
    assert wrong["profiles.followers"] == 1  # user 2's profile said 0
    assert wrong["profiles.following"] == 2  # users 1 and 3 have no profile yet: made
    assert wrong["profiles.posts"] == 1  # user 99 posted, user 2's says 0 (right): only 99's is made
    assert wrong["topics.posts"] == 1
    assert wrong["posts.views"] == 0
    post = await mongo_db.community_posts.find_one({"_id": 1})
    assert post is not None and post["likes"] == 7  # a dry run changes nothing

    # The CLI does the fix and prints the same JSON.
    argv = ["--mongodb-url", mongo_url, "--database", mongo_db.name]
    assert await asyncio.to_thread(repair.main, argv) == 0  # its own event loop, as from a shell
    printed = orjson.loads(capsys.readouterr().out)
    assert printed == wrong
    await assert_counters_equal_records(mongo_db)
    profile = await mongo_db.community_profiles.find_one({"_id": 2})
    assert profile is not None and profile["followers"] == 2
    follower = await mongo_db.community_profiles.find_one({"_id": 1})
    assert follower is not None and follower["following"] == 1
    topic = await mongo_db.community_topics.find_one({"_id": 4})
    assert topic is not None and topic["posts"] == 0
    assert set((await service.repair()).values()) == {0}
