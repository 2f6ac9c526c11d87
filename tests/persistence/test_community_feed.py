"""The feed on the real MongoDB (persistence/community/feed.py): unique follows and topic titles,
counters equal to their records under concurrent follow/unfollow from many users, keyset pages,
and a deleted post's files gone from the media store."""

from __future__ import annotations

import asyncio
import io
import pathlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from community.feed import FeedService, NewPost, TopicTitleTaken
from persistence.community.feed import MongoFeedStore, ensure_indexes
from persistence.community.reactions import recount
from persistence.media import MediaIndex, MediaStore
from persistence.mongo import Database, connect
from tests.community.feed_fakes import Clock, FakeBlocks, FakeLimiter, FakeLinks, FakePurger

USERS = 50


def files(root: pathlib.Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (400, 300), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def db(mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Database]:
    client = connect(mongo_url)  # tz-aware, as in production
    database = client[mongo_db.name]
    await ensure_indexes(database)
    await database.users.insert_many([{"_id": u, "username": f"user{u}"} for u in range(1, USERS + 2)])
    try:
        yield database
    finally:
        await client.close()


class Media:
    def __init__(self, store: MediaStore) -> None:
        self.store = store

    async def save(self, data: bytes) -> str:
        return (await self.store.save(data)).path

    async def delete(self, url: str) -> bool:
        return await self.store.delete(url)


@pytest.fixture
def media(db: Database, tmp_path: pathlib.Path) -> MediaStore:
    return MediaStore(tmp_path, index=MediaIndex(db))


@pytest.fixture
def purger() -> FakePurger:
    return FakePurger()


@pytest.fixture
def feed(db: Database, media: MediaStore, purger: FakePurger) -> FeedService:
    links = FakeLinks()
    links.known.add(("lot", 1))
    return FeedService(
        MongoFeedStore(db),
        Media(media),
        blocks=FakeBlocks(),
        limiter=FakeLimiter(),
        links=links,
        purger=purger,
        now=Clock(),
    )


async def test_unique_keys(db: Database, feed: FeedService) -> None:
    await db.community_follows.insert_one({"follower": 1, "followee": 2})
    with pytest.raises(DuplicateKeyError):
        await db.community_follows.insert_one({"follower": 1, "followee": 2})
    await db.community_topic_follows.insert_one({"user_id": 1, "topic_id": 2})
    with pytest.raises(DuplicateKeyError):
        await db.community_topic_follows.insert_one({"user_id": 1, "topic_id": 2})
    await feed.create_topic("收藏")
    with pytest.raises(TopicTitleTaken):
        await feed.create_topic("收藏")
    other = await feed.create_topic("学习打卡")
    with pytest.raises(TopicTitleTaken):
        await feed.update_topic(other["_id"], {"title": "收藏"})


async def test_concurrent_follows_from_50_users_leave_counters_equal_to_records(
    db: Database, feed: FeedService
) -> None:
    star = USERS + 1
    rng = random.Random(23)
    calls = []
    for user in range(1, USERS + 1):
        for _ in range(4):  # each user flips several times, some twice the same way at once
            calls.append(feed.follow(user, star) if rng.random() < 0.6 else feed.unfollow(user, star))
            calls.append(feed.follow(star, user) if rng.random() < 0.5 else feed.unfollow(star, user))
    rng.shuffle(calls)
    await asyncio.gather(*calls)
    followers = await db.community_follows.count_documents({"followee": star})
    following = await db.community_follows.count_documents({"follower": star})
    profile = await db.community_profiles.find_one({"_id": star})
    assert profile is not None
    assert (profile.get("followers", 0), profile.get("following", 0)) == (followers, following)
    async for p in db.community_profiles.find({"_id": {"$ne": star}}):
        user = p["_id"]
        assert p.get("following", 0) == await db.community_follows.count_documents({"follower": user})
        assert p.get("followers", 0) == await db.community_follows.count_documents({"followee": user})
    # The repair (persistence/community/reactions.py) recounts the same records: nothing to fix.
    wrong = await recount(db, dry_run=True)
    assert (wrong["profiles.followers"], wrong["profiles.following"]) == (0, 0)


async def test_concurrent_topic_follows_and_posts_keep_topic_counters(
    db: Database, feed: FeedService
) -> None:
    topic = await feed.create_topic("拍卖心得")
    tid = topic["_id"]
    calls = [
        (feed.follow_topic(u, tid) if i % 3 else feed.unfollow_topic(u, tid))
        for u in range(1, USERS + 1)
        for i in range(3)
    ]
    calls += [feed.create_post(u, NewPost(text=f"p{u}", topic_id=tid)) for u in range(1, 21)]
    await asyncio.gather(*calls)
    posts = [p["_id"] async for p in db.community_posts.find({"topic_id": tid})]
    await asyncio.gather(*(feed.set_post_hidden(p, True, "x") for p in posts[:5] * 3))
    after = await db.community_topics.find_one({"_id": tid})
    assert after is not None
    assert after["followers"] == await db.community_topic_follows.count_documents({"topic_id": tid})
    assert (
        after["posts"] == await db.community_posts.count_documents({"topic_id": tid, "hidden": False}) == 15
    )
    wrong = await recount(db, dry_run=True)
    assert (wrong["topics.followers"], wrong["topics.posts"], wrong["profiles.posts"]) == (0, 0, 0)


async def test_delete_post_removes_its_files_and_counters(
    db: Database, feed: FeedService, media: MediaStore, tmp_path: pathlib.Path, purger: FakePurger
) -> None:
    created = await feed.create_post(
        1,
        NewPost(
            text="with pictures",
            cover=png(),
            images=[png((1, 2, 3)), png((4, 5, 6))],
            link_kind="lot",
            link_id=1,
        ),
    )
    assert len(files(tmp_path)) == 3 * 2  # each original and its 320 variant (400 px wide)
    assert await db.media.count_documents({}) == 3
    assert await feed.delete_post(int(created["_id"])) is True
    assert files(tmp_path) == []
    assert await db.media.count_documents({}) == 0
    assert await db.community_posts.count_documents({}) == 0
    assert purger.purged == [f"post:{created['_id']}"]
    profile = await db.community_profiles.find_one({"_id": 1})
    assert profile is not None and profile["posts"] == 0


async def test_pages_and_hidden_posts_on_mongodb(db: Database, feed: FeedService) -> None:
    ids = [int((await feed.create_post(u % 3 + 1, NewPost(text=f"p{u}")))["_id"]) for u in range(9)]
    await feed.set_post_hidden(ids[4], True, "spam")
    seen: list[int] = []
    cursor: str | None = None
    while True:
        page = await feed.feed(None, "latest", cursor=cursor, limit=2)
        seen += [int(p["_id"]) for p in page.posts]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [i for i in reversed(ids) if i != ids[4]]
    by_user = await feed.user_posts(None, 1)
    assert [p["_id"] for p in by_user.posts] == [i for i in reversed(ids[0::3])]
    await db.community_likes.insert_one({"target": f"post:{ids[0]}", "user_id": 2})
    assert (await feed.user_posts(2, 1)).liked == {f"post:{ids[0]}"}


async def test_follower_pages_on_mongodb(db: Database, feed: FeedService) -> None:
    clock = feed.now
    assert isinstance(clock, Clock)
    for user in range(2, 9):
        await feed.follow(user, 1)
        if user % 2:
            clock.tick()  # some share a time: the user id breaks the tie
    seen: list[int] = []
    cursor: str | None = None
    while True:
        items, cursor = await feed.follow_list(1, "followers", cursor, 3)
        seen += [i["user_id"] for i in items]
        if cursor is None:
            break
    assert sorted(seen) == list(range(2, 9)) and len(seen) == 7
    assert seen == sorted(seen, key=lambda u: (u // 2, u), reverse=True)


async def test_erase_user_on_mongodb(db: Database, feed: FeedService, tmp_path: pathlib.Path) -> None:
    await feed.set_avatar(1, png())
    await feed.create_post(1, NewPost(text="x", images=[png()]))
    await feed.follow(1, 2)
    await feed.follow(2, 1)
    counts = await feed.erase_user(1)
    assert counts == {"posts": 1, "following": 1, "followers": 1, "topic_follows": 0, "avatar": 1}
    assert files(tmp_path) == []
    assert await db.community_follows.count_documents({}) == 0
    assert await db.community_profiles.find_one({"_id": 1}) is None
    other = await db.community_profiles.find_one({"_id": 2})
    assert other is not None and (other["followers"], other["following"]) == (0, 0)
