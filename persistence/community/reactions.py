"""The community's reactions on MongoDB (docs/community.md "Views, likes, comments and collections"):
`community_views`, `community_likes`, `community_collections` (one record per user and target,
unique), `community_comments`, and the counters on the targets' documents. It stores and counts;
community/reactions.py decides when a counter moves.

`MongoTargets` answers whether a target is there for readers now (posts and comments not hidden,
articles within their window, courses listed) and what a collected article or course looks like.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any, Final

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from community.articles import is_visible
from community.reactions import COLLECTION_KIND_NO, target_of
from community.rules import Target
from persistence.community.articles import visible_query
from persistence.community.feed import FEED_CACHE_DOMAIN
from persistence.mongo import Database, Document, next_id
from persistence.read_cache import ReadCache
from shop.model import LISTED_STATUSES

RECORDS: Final = {"view": "community_views", "like": "community_likes", "collect": "community_collections"}
# The document each kind of target lives in; its counters are fields of that document.
DOCUMENTS: Final = {
    "post": "community_posts",
    "article": "community_articles",
    "comment": "community_comments",
}
COUNTERS: Final = ("likes", "comments", "views", "collects", "replies")
# With `target`: a comment's post or article, where its live frames go.
COUNTER_PROJECTION: Final = {name: 1 for name in (*COUNTERS, "target")}
LISTED_COURSE_STATUSES: Final = LISTED_STATUSES  # a course readers see (only "online" is sold)


def _indexes() -> dict[str, list[IndexModel]]:
    return {
        "community_views": [
            IndexModel(
                [("target", ASCENDING), ("user_id", ASCENDING)], unique=True, name="target_user_unique"
            ),
            IndexModel([("user_id", ASCENDING)], name="user"),
        ],
        "community_likes": [
            IndexModel(
                [("target", ASCENDING), ("user_id", ASCENDING)], unique=True, name="target_user_unique"
            ),
            IndexModel([("user_id", ASCENDING)], name="user"),
        ],
        "community_collections": [
            IndexModel(
                [("user_id", ASCENDING), ("target", ASCENDING)], unique=True, name="user_target_unique"
            ),
            IndexModel(
                [("user_id", ASCENDING), ("at", DESCENDING), ("kind_no", DESCENDING), ("tid", DESCENDING)],
                name="user_newest",
            ),
            IndexModel([("target", ASCENDING)], name="target"),
        ],
        "community_comments": [
            # Root comments of a target, oldest first: {target, root: None, hidden: False} by _id.
            IndexModel([("target", ASCENDING), ("root", ASCENDING), ("_id", ASCENDING)], name="target_roots"),
            IndexModel([("root", ASCENDING), ("_id", ASCENDING)], name="thread"),
            IndexModel([("user_id", ASCENDING)], name="user"),
        ],
    }


async def ensure_indexes(db: Database) -> None:
    """The unique keys this module's guards rely on."""
    for collection, models in _indexes().items():
        await db[collection].create_indexes(models)


class MongoReactions:
    def __init__(self, db: Database, cache: ReadCache | None = None) -> None:
        # A post's counters show on the feed's cached first pages (persistence/community/feed.py).
        self.cache = cache
        self.db = db

    # -- records -----------------------------------------------------------------------------------
    async def add_record(self, kind: str, target: str, user_id: int, now: datetime.datetime) -> bool:
        record: Document = {"target": target, "user_id": user_id, "at": now}
        if kind == "collect":  # sort keys of "my collections" (newest first)
            tkind, _, tid = target.partition(":")
            record.update(kind=tkind, kind_no=COLLECTION_KIND_NO[tkind], tid=int(tid))
        try:
            await self.db[RECORDS[kind]].insert_one(record)
        except DuplicateKeyError:
            return False
        return True

    async def remove_record(self, kind: str, target: str, user_id: int) -> bool:
        result = await self.db[RECORDS[kind]].delete_one({"target": target, "user_id": user_id})
        return result.deleted_count == 1

    async def has_records(self, kind: str, targets: Sequence[str], user_id: int) -> set[str]:
        cursor = self.db[RECORDS[kind]].find(
            {"target": {"$in": list(targets)}, "user_id": user_id}, {"target": 1, "_id": 0}
        )
        return {str(r["target"]) async for r in cursor}

    async def count_records(self, kind: str, target: str) -> int:
        return await self.db[RECORDS[kind]].count_documents({"target": target})

    async def user_records(self, kind: str, user_id: int) -> list[str]:
        cursor = self.db[RECORDS[kind]].find({"user_id": user_id}, {"target": 1, "_id": 0})
        return [str(r["target"]) async for r in cursor]

    async def purge_records(self, targets: Sequence[str]) -> None:
        if not targets:
            return
        for collection in RECORDS.values():
            await self.db[collection].delete_many({"target": {"$in": list(targets)}})

    # -- counters ----------------------------------------------------------------------------------
    async def inc(self, target: Target, field: str, delta: int) -> Document | None:
        try:
            return await self._inc(target, field, delta)
        finally:
            if target.kind == "post" and self.cache is not None:
                await self.cache.changed(FEED_CACHE_DOMAIN)

    async def _inc(self, target: Target, field: str, delta: int) -> Document | None:
        return await self.db[DOCUMENTS[target.kind]].find_one_and_update(
            {"_id": target.id},
            {"$inc": {field: delta}},
            projection=COUNTER_PROJECTION,
            return_document=ReturnDocument.AFTER,
        )

    async def counters(self, target: Target) -> Document | None:
        collection = DOCUMENTS.get(target.kind)
        if collection is None:
            return None
        return await self.db[collection].find_one({"_id": target.id}, COUNTER_PROJECTION)

    # -- comments ----------------------------------------------------------------------------------
    async def insert_comment(self, comment: Document) -> Document:
        stored = {"_id": await next_id(self.db, "community_comment"), **comment}
        await self.db.community_comments.insert_one(stored)
        return stored

    async def comment(self, comment_id: int) -> Document | None:
        return await self.db.community_comments.find_one({"_id": comment_id})

    async def root_comments(self, target: str, after: int | None, limit: int) -> list[Document]:
        query: Document = {"target": target, "root": None, "hidden": False}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.db.community_comments.find(query).sort("_id", ASCENDING).limit(limit)
        return [c async for c in cursor]

    async def replies(self, root_id: int, after: int | None, limit: int) -> list[Document]:
        query: Document = {"root": root_id, "hidden": False}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.db.community_comments.find(query).sort("_id", ASCENDING).limit(limit)
        return [c async for c in cursor]

    async def reply_previews(self, root_ids: Sequence[int], count: int) -> dict[int, list[Document]]:
        # One small indexed read per root (a page holds at most 50): each thread's first replies,
        # without reading any whole thread.
        found = await asyncio.gather(*(self.replies(root_id, None, count) for root_id in root_ids))
        return dict(zip(root_ids, found, strict=True))

    async def set_comment_hidden(self, comment_id: int, hidden: bool, reason: str) -> Document | None:
        return await self.db.community_comments.find_one_and_update(
            {"_id": comment_id, "hidden": not hidden},
            {"$set": {"hidden": hidden, "hidden_reason": reason if hidden else ""}},
            return_document=ReturnDocument.AFTER,
        )

    async def take_comment(self, comment_id: int) -> Document | None:
        return await self.db.community_comments.find_one_and_delete({"_id": comment_id})

    async def comment_ids(self, *, root: int | None = None, target: str | None = None) -> list[int]:
        query: Document = {"root": root} if root is not None else {"target": target}
        cursor = self.db.community_comments.find(query, {"_id": 1}).sort("_id", ASCENDING)
        return [int(c["_id"]) async for c in cursor]

    async def user_comment_ids(self, user_id: int) -> list[int]:
        # Roots first: deleting a root takes its thread, so its replies need no second pass.
        cursor = self.db.community_comments.find({"user_id": user_id}, {"_id": 1, "root": 1})
        found = [c async for c in cursor]
        found.sort(key=lambda c: (c.get("root") is not None, int(c["_id"])))
        return [int(c["_id"]) for c in found]

    # -- collections -------------------------------------------------------------------------------
    async def collections(
        self, user_id: int, kinds: Sequence[str], after: tuple[int, ...] | None, limit: int
    ) -> list[Document]:
        query: Document = {"user_id": user_id, "kind": {"$in": list(kinds)}}
        if after is not None:
            at_ms, kind_no, tid = after
            at = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(milliseconds=at_ms)
            query["$or"] = [
                {"at": {"$lt": at}},
                {"at": at, "kind_no": {"$lt": kind_no}},
                {"at": at, "kind_no": kind_no, "tid": {"$lt": tid}},
            ]
        cursor = (
            self.db.community_collections.find(query)
            .sort([("at", DESCENDING), ("kind_no", DESCENDING), ("tid", DESCENDING)])
            .limit(limit)
        )
        return [r async for r in cursor]

    # -- repair ------------------------------------------------------------------------------------
    async def recount(self, dry_run: bool) -> dict[str, int]:
        return await recount(self.db, dry_run)


# == repair: every counter recomputed from its records ====================================================
@dataclasses.dataclass(frozen=True, slots=True)
class Recount:
    name: str  # "posts.likes": reported by `repair`
    counted: str  # the collection holding the counter...
    field: str  # ...in this field
    records: str  # the records it counts...
    match: Document  # ...those of them that count
    key: str  # the field naming the counted document: "$target" ("post:12") or an id field
    prefix: str = ""  # with "$target": the kind's "post:"
    create: bool = False  # make a missing counted document (a profile reads as zeros without one)


def _of_targets(name: str, counted: str, field: str, records: str, kind: str, **match: Any) -> Recount:
    prefix = f"{kind}:"
    return Recount(
        name, counted, field, records, {"target": {"$regex": f"^{prefix}"}, **match}, "$target", prefix
    )


P, A, C = "community_posts", "community_articles", "community_comments"
VISIBLE: Final = {"hidden": False}
REPAIRS: Final = (
    _of_targets("posts.likes", P, "likes", "community_likes", "post"),
    _of_targets("posts.comments", P, "comments", C, "post", hidden=False),
    _of_targets("posts.views", P, "views", "community_views", "post"),
    _of_targets("comments.likes", C, "likes", "community_likes", "comment"),
    Recount("comments.replies", C, "replies", C, {"root": {"$ne": None}, **VISIBLE}, "$root"),
    _of_targets("articles.likes", A, "likes", "community_likes", "article"),
    _of_targets("articles.comments", A, "comments", C, "article", hidden=False),
    _of_targets("articles.views", A, "views", "community_views", "article"),
    _of_targets("articles.collects", A, "collects", "community_collections", "article"),
    Recount(
        "profiles.followers",
        "community_profiles",
        "followers",
        "community_follows",
        {},
        "$followee",
        create=True,
    ),
    Recount(
        "profiles.following",
        "community_profiles",
        "following",
        "community_follows",
        {},
        "$follower",
        create=True,
    ),
    Recount("profiles.posts", "community_profiles", "posts", P, VISIBLE, "$user_id", create=True),
    Recount("topics.followers", "community_topics", "followers", "community_topic_follows", {}, "$topic_id"),
    Recount(
        "topics.posts", "community_topics", "posts", P, {"topic_id": {"$ne": None}, **VISIBLE}, "$topic_id"
    ),
)


async def _expected(db: Database, spec: Recount) -> dict[int, int]:
    pipeline = [{"$match": spec.match}, {"$group": {"_id": spec.key, "n": {"$sum": 1}}}]
    expected: dict[int, int] = {}
    async for row in await db[spec.records].aggregate(pipeline):
        key = row["_id"]
        if spec.prefix:
            if not (isinstance(key, str) and key.startswith(spec.prefix)):
                continue
            key = int(key[len(spec.prefix) :])
        if isinstance(key, int):
            expected[key] = expected.get(key, 0) + int(row["n"])
    return expected


async def recount(db: Database, dry_run: bool = False) -> dict[str, int]:
    """Recompute every counter (docs/community.md "The counter rule"); {counter: documents that were wrong}.

    Each fix is a compare-and-set on the value read (`{_id, field: seen}` → `$set`), so a like
    landing during the repair is never overwritten: that document is simply left for the next run."""
    wrong: dict[str, int] = {}
    for spec in REPAIRS:
        counted, field = spec.counted, spec.field
        expected = await _expected(db, spec)
        fixes: list[UpdateOne] = []
        seen: set[int] = set()
        async for doc in db[counted].find({}, {field: 1}):
            doc_id = doc["_id"]
            seen.add(doc_id)
            want = expected.get(doc_id, 0)
            have = doc.get(field)  # None: no such field yet, which reads as 0
            if (have or 0) != want:
                fixes.append(UpdateOne({"_id": doc_id, field: have}, {"$set": {field: want}}))
        if spec.create:  # a profile reads as zeros without its document: make those that count
            for doc_id, want in expected.items():
                if doc_id not in seen and want:
                    fixes.append(UpdateOne({"_id": doc_id}, {"$set": {field: want}}, upsert=True))
        wrong[spec.name] = len(fixes)
        if fixes and not dry_run:
            await db[counted].bulk_write(fixes, ordered=False)
    return wrong


# == targets ===============================================================================================
class MongoTargets:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def visible(self, target: Target, now: datetime.datetime) -> bool:
        """A comment is visible when it and its post or article are."""
        if target.kind == "comment":
            comment = await self.db.community_comments.find_one(
                {"_id": target.id, "hidden": False}, {"target": 1}
            )
            if comment is None:
                return False
            return await self.visible(target_of(str(comment["target"])), now)
        query: Document = {"_id": target.id}
        if target.kind == "post":
            query["hidden"] = False
            collection = DOCUMENTS[target.kind]
        elif target.kind == "article":
            query.update(visible_query(now))
            collection = "community_articles"
        else:
            query["status"] = {"$in": list(LISTED_COURSE_STATUSES)}
            collection = "shop_courses"
        return await self.db[collection].find_one(query, {"_id": 1}) is not None

    async def describe(self, targets: Sequence[Target], now: datetime.datetime) -> dict[Target, Document]:
        found: dict[Target, Document] = {}
        articles = [t.id for t in targets if t.kind == "article"]
        if articles:
            cursor = self.db.community_articles.find(
                {"_id": {"$in": articles}},
                {"title": 1, "head_img": 1, "status": 1, "pub_at": 1, "offline_at": 1},
            )
            async for doc in cursor:
                found[Target("article", int(doc["_id"]))] = {
                    "title": doc.get("title", ""),
                    "image": doc.get("head_img") or "",
                    "available": is_visible(doc, now),
                }
        courses = [t.id for t in targets if t.kind == "course"]
        if courses:
            cursor = self.db.shop_courses.find(
                {"_id": {"$in": courses}}, {"name": 1, "image": 1, "status": 1}
            )
            async for doc in cursor:
                found[Target("course", int(doc["_id"]))] = {
                    "title": doc.get("name", ""),
                    "image": doc.get("image") or "",
                    "available": doc.get("status") in LISTED_COURSE_STATUSES,
                }
        return found
