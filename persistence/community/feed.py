"""The feed on MongoDB (community/feed.py decides; this stores): `community_profiles`,
`community_follows`, `community_topics`, `community_topic_follows`, `community_posts`.

Every write that a counter depends on reports whether it changed the record (a unique insert, a
`deleted_count`, a guarded `modified` update), so the service moves the counter only then.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from community.feed import TopicTitleTaken
from persistence.community.cache import TtlCache
from persistence.mongo import Database, Document, next_id, to_ms
from persistence.read_cache import ReadCache


async def ensure_indexes(db: Database) -> None:
    """The unique keys this module's guards rely on, and the feeds' keyset indexes."""
    await db.community_follows.create_indexes(
        [
            IndexModel([("follower", ASCENDING), ("followee", ASCENDING)], unique=True),
            IndexModel([("follower", ASCENDING), ("at", DESCENDING), ("followee", DESCENDING)]),
            IndexModel([("followee", ASCENDING), ("at", DESCENDING), ("follower", DESCENDING)]),
        ]
    )
    await db.community_topics.create_indexes([IndexModel([("title", ASCENDING)], unique=True)])
    await db.community_topic_follows.create_indexes(
        [IndexModel([("user_id", ASCENDING), ("topic_id", ASCENDING)], unique=True)]
    )
    await db.community_posts.create_indexes(
        [
            IndexModel([("hidden", ASCENDING), ("_id", DESCENDING)]),
            IndexModel([("topic_id", ASCENDING), ("_id", DESCENDING)]),
            IndexModel([("user_id", ASCENDING), ("_id", DESCENDING)]),
        ]
    )


# How stale an author's name or avatar, or a topic's title, may be on another process's feed pages.
PEOPLE_TTL_S = 2.0
TOPICS_TTL_S = 5.0


# The read cache's domain of the feed's shared first pages (gateway/rest_feed.py): every write
# to a post (new, hidden, deleted, a counter) empties it, here and in the other processes.
FEED_CACHE_DOMAIN = "feed"


class MongoFeedStore:
    def __init__(self, db: Database, cache: ReadCache | None = None) -> None:
        self.db = db
        self.cache = cache
        self._people: TtlCache[int, Document] = TtlCache(PEOPLE_TTL_S)
        self._topics: TtlCache[int, Document] = TtlCache(TOPICS_TTL_S)

    async def _posts_changed(self) -> None:
        if self.cache is not None:
            await self.cache.changed(FEED_CACHE_DOMAIN)

    # -- users and profiles --------------------------------------------------------------------------
    async def user_exists(self, user_id: int) -> bool:
        return await self.db.users.count_documents({"_id": user_id}, limit=1) > 0

    async def profile(self, user_id: int) -> Document | None:
        return await self.db.community_profiles.find_one({"_id": user_id})

    async def people(self, user_ids: Iterable[int], *, cached: bool = True) -> dict[int, Document]:
        """Names and avatars (cached for PEOPLE_TTL_S: every feed page names its authors; a
        profile page asks for `cached=False`)."""
        wanted = set(user_ids)
        found, ids = self._people.get_many(wanted) if cached else ({}, list(wanted))
        if not ids:
            return {key: dict(value) for key, value in found.items()}
        users = self.db.users.find({"_id": {"$in": ids}}, {"username": 1, "display_name": 1})
        people = {
            int(u["_id"]): {"name": u.get("display_name") or u.get("username", ""), "avatar": ""}
            async for u in users
        }
        async for profile in self.db.community_profiles.find({"_id": {"$in": ids}}, {"avatar": 1}):
            if int(profile["_id"]) in people:
                people[int(profile["_id"])]["avatar"] = profile.get("avatar", "")
        for user_id, person in people.items():
            self._people.put(user_id, dict(person))
        return {**{key: dict(value) for key, value in found.items()}, **people}

    async def set_bio(self, user_id: int, bio: str, now: datetime.datetime) -> None:
        await self._upsert(user_id, {"$set": {"bio": bio, "updated_at": now}})

    async def set_avatar(self, user_id: int, url: str, now: datetime.datetime) -> str:
        self._people.drop(user_id)
        before = await self._upsert(
            user_id, {"$set": {"avatar": url, "updated_at": now}}, return_document=ReturnDocument.BEFORE
        )
        return str(before.get("avatar", "")) if before else ""

    async def delete_profile(self, user_id: int) -> bool:
        self._people.drop(user_id)
        result = await self.db.community_profiles.delete_one({"_id": user_id})
        return result.deleted_count == 1

    async def inc_profile(self, user_id: int, field: str, by: int) -> None:
        await self._upsert(user_id, {"$inc": {field: by}})

    async def _upsert(
        self, user_id: int, update: Document, return_document: bool = ReturnDocument.AFTER
    ) -> Document | None:
        # Two first writes to a new profile may both upsert: one loses with a duplicate key, and
        # the document exists then, so the second try updates it.
        for attempt in range(2):
            try:
                return await self.db.community_profiles.find_one_and_update(
                    {"_id": user_id}, update, upsert=True, return_document=return_document
                )
            except DuplicateKeyError:
                if attempt:
                    raise
        return None

    # -- follows between users -----------------------------------------------------------------------
    async def add_follow(self, follower: int, followee: int, now: datetime.datetime) -> bool:
        try:
            await self.db.community_follows.insert_one(
                {"follower": follower, "followee": followee, "at": now}
            )
        except DuplicateKeyError:
            return False
        return True

    async def remove_follow(self, follower: int, followee: int) -> bool:
        result = await self.db.community_follows.delete_one({"follower": follower, "followee": followee})
        return result.deleted_count == 1

    async def following_among(self, follower: int, user_ids: Iterable[int]) -> set[int]:
        ids = list(user_ids)
        cursor = self.db.community_follows.find(
            {"follower": follower, "followee": {"$in": ids}}, {"followee": 1, "_id": 0}
        )
        return {int(f["followee"]) async for f in cursor}

    async def follow_page(
        self, user_id: int, direction: str, after: tuple[int, ...] | None, limit: int
    ) -> list[tuple[int, int]]:
        mine, other = ("followee", "follower") if direction == "followers" else ("follower", "followee")
        query: Document = {mine: user_id}
        if after is not None:
            at = datetime.datetime.fromtimestamp(after[0] / 1000, datetime.UTC)
            query["$or"] = [{"at": {"$lt": at}}, {"at": at, other: {"$lt": after[1]}}]
        cursor = (
            self.db.community_follows.find(query, {other: 1, "at": 1, "_id": 0})
            .sort([("at", DESCENDING), (other, DESCENDING)])
            .limit(limit)
        )
        return [(int(f[other]), to_ms(f["at"])) async for f in cursor]

    async def followees(self, user_id: int, cap: int) -> list[int]:
        cursor = self.db.community_follows.find({"follower": user_id}, {"followee": 1, "_id": 0}).limit(cap)
        return [int(f["followee"]) async for f in cursor]

    async def followers_of(self, user_id: int, cap: int) -> list[int]:
        cursor = self.db.community_follows.find({"followee": user_id}, {"follower": 1, "_id": 0}).limit(cap)
        return [int(f["follower"]) async for f in cursor]

    # -- topics --------------------------------------------------------------------------------------
    async def topics(self, *, include_hidden: bool, limit: int) -> list[Document]:
        query: Document = {} if include_hidden else {"hidden": {"$ne": True}}
        cursor = self.db.community_topics.find(query).sort("_id", ASCENDING).limit(limit)
        return [t async for t in cursor]

    async def topic(self, topic_id: int) -> Document | None:
        return await self.db.community_topics.find_one({"_id": topic_id})

    async def topics_by_id(self, topic_ids: Iterable[int]) -> dict[int, Document]:
        """Topics for the post views' chips (cached for TOPICS_TTL_S: their counters may lag that
        much here; pages that show counters read `topic`/`topics`)."""
        found, ids = self._topics.get_many(set(topic_ids))
        if ids:
            async for topic in self.db.community_topics.find({"_id": {"$in": ids}}):
                found[int(topic["_id"])] = topic
                self._topics.put(int(topic["_id"]), topic)
        return dict(found)

    async def insert_topic(self, title: str, intro: str, now: datetime.datetime) -> Document:
        if await self.db.community_topics.count_documents({"title": title}, limit=1):
            raise TopicTitleTaken(f"a topic titled {title!r} exists")
        topic: Document = {
            "_id": await next_id(self.db, "community_topic"),
            "title": title,
            "intro": intro,
            "followers": 0,
            "posts": 0,
            "created_at": now,
            "hidden": False,
        }
        try:
            await self.db.community_topics.insert_one(topic)
        except DuplicateKeyError:
            raise TopicTitleTaken(f"a topic titled {title!r} exists") from None
        return topic

    async def update_topic(self, topic_id: int, changes: Document) -> Document | None:
        self._topics.drop(topic_id)
        try:
            return await self.db.community_topics.find_one_and_update(
                {"_id": topic_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            raise TopicTitleTaken(f"a topic titled {changes.get('title')!r} exists") from None

    async def inc_topic(self, topic_id: int, field: str, by: int) -> None:
        await self.db.community_topics.update_one({"_id": topic_id}, {"$inc": {field: by}})

    async def add_topic_follow(self, user_id: int, topic_id: int, now: datetime.datetime) -> bool:
        try:
            await self.db.community_topic_follows.insert_one(
                {"user_id": user_id, "topic_id": topic_id, "at": now}
            )
        except DuplicateKeyError:
            return False
        return True

    async def remove_topic_follow(self, user_id: int, topic_id: int) -> bool:
        result = await self.db.community_topic_follows.delete_one({"user_id": user_id, "topic_id": topic_id})
        return result.deleted_count == 1

    async def topic_follows(self, user_id: int, topic_ids: Iterable[int] | None = None) -> set[int]:
        query: Document = {"user_id": user_id}
        if topic_ids is not None:
            query["topic_id"] = {"$in": list(topic_ids)}
        cursor = self.db.community_topic_follows.find(query, {"topic_id": 1, "_id": 0})
        return {int(f["topic_id"]) async for f in cursor}

    # -- posts ---------------------------------------------------------------------------------------
    async def new_post_id(self) -> int:
        return await next_id(self.db, "community_post")

    async def insert_post(self, post: Document) -> None:
        try:
            await self.db.community_posts.insert_one(post)
        finally:
            await self._posts_changed()

    async def post(self, post_id: int) -> Document | None:
        return await self.db.community_posts.find_one({"_id": post_id})

    async def posts(
        self,
        *,
        before: int | None,
        limit: int,
        authors: list[int] | None = None,
        topic_id: int | None = None,
        include_hidden: bool = False,
    ) -> list[Document]:
        query: dict[str, Any] = {} if include_hidden else {"hidden": False}
        if before is not None:
            query["_id"] = {"$lt": before}
        if authors is not None:
            query["user_id"] = authors[0] if len(authors) == 1 else {"$in": authors}
        if topic_id is not None:
            query["topic_id"] = topic_id
        cursor = self.db.community_posts.find(query).sort("_id", DESCENDING).limit(limit)
        return [p async for p in cursor]

    async def set_post_hidden(self, post_id: int, hidden: bool, reason: str) -> Document | None:
        # Guarded on the current value: of two concurrent hides only one changes the post, so the
        # counters move once.
        try:
            return await self.db.community_posts.find_one_and_update(
                {"_id": post_id, "hidden": not hidden},
                {"$set": {"hidden": hidden, "hidden_reason": reason if hidden else ""}},
                return_document=ReturnDocument.BEFORE,
            )
        finally:
            await self._posts_changed()

    async def delete_post(self, post_id: int) -> Document | None:
        try:
            return await self.db.community_posts.find_one_and_delete({"_id": post_id})
        finally:
            await self._posts_changed()

    async def post_ids_of(self, user_id: int) -> list[int]:
        cursor = self.db.community_posts.find({"user_id": user_id}, {"_id": 1})
        return [int(p["_id"]) async for p in cursor]

    async def liked(self, user_id: int, targets: Iterable[str]) -> set[str]:
        cursor = self.db.community_likes.find(
            {"user_id": user_id, "target": {"$in": list(targets)}}, {"target": 1, "_id": 0}
        )
        return {str(like["target"]) async for like in cursor}
