"""The articles (深科技) on MongoDB: `community_articles` and `community_article_sources` (api.md
"Documents"), the `ArticleStore` port of community/articles.py. It stores and loads; what is valid,
visible or due is decided in community/articles.py.

Indexes: unique title and source name (the guards of ArticleTitleExists / SourceNameExists); the
public list's (status, position, weight, pub_at, _id) and the scheduler's (status, pub_at) and
(status, offline_at).
"""

from __future__ import annotations

import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from community.articles import ArticleTitleExists, SourceNameExists
from persistence.mongo import Database, Document, as_utc, from_ms, next_id

TIMES = ("pub_at", "offline_at", "created_at", "updated_at")
LIST_ORDER = [("weight", DESCENDING), ("pub_at", DESCENDING), ("_id", DESCENDING)]


async def ensure_indexes(db: Database) -> None:
    """The unique keys this module's guards rely on, and the list's and scheduler's indexes."""
    await db.community_articles.create_indexes(
        [
            IndexModel([("title", ASCENDING)], unique=True, name="title_unique"),
            IndexModel(
                [("status", ASCENDING), ("position", ASCENDING), *LIST_ORDER], name="visible_by_position"
            ),
            IndexModel([("status", ASCENDING), *LIST_ORDER], name="visible"),
            IndexModel([("status", ASCENDING), ("pub_at", ASCENDING)], name="due_pub"),
            IndexModel([("status", ASCENDING), ("offline_at", ASCENDING)], name="due_offline"),
        ]
    )
    await db.community_article_sources.create_indexes(
        [IndexModel([("name", ASCENDING)], unique=True, name="name_unique")]
    )


def _loaded(doc: Document | None) -> Document | None:
    """Times as aware UTC whatever the client's tz_aware setting."""
    if doc is None:
        return None
    for name in TIMES:
        if isinstance(doc.get(name), datetime.datetime):
            doc[name] = as_utc(doc[name])
    return doc


def visible_query(now: datetime.datetime) -> Document:
    """api.md: online AND pub_at <= now AND (no offline_at OR now < offline_at)."""
    return {
        "status": "online",
        "pub_at": {"$lte": now},
        "$or": [{"offline_at": None}, {"offline_at": {"$gt": now}}],
    }


def after_query(after: tuple[int, int, int]) -> Document:
    """Strictly after the keys (weight, pub_ms, id) in the list's descending order."""
    weight, pub_ms, article_id = after
    pub_at = from_ms(pub_ms)
    return {
        "$or": [
            {"weight": {"$lt": weight}},
            {"weight": weight, "pub_at": {"$lt": pub_at}},
            {"weight": weight, "pub_at": pub_at, "_id": {"$lt": article_id}},
        ]
    }


class MongoArticleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- sources ----------------------------------------------------------------------------------------
    async def create_source(self, name: str) -> Document:
        doc: Document = {"_id": await next_id(self.db, "community_article_source"), "name": name}
        try:
            await self.db.community_article_sources.insert_one(doc)
        except DuplicateKeyError:
            raise SourceNameExists(f"an article source named {name!r} exists") from None
        return doc

    async def source(self, source_id: int) -> Document | None:
        found: Document | None = await self.db.community_article_sources.find_one({"_id": source_id})
        return found

    async def sources(self) -> list[Document]:
        cursor = self.db.community_article_sources.find({}).sort("name", ASCENDING).limit(1000)
        return [s async for s in cursor]

    async def source_names(self, ids: list[int]) -> dict[int, str]:
        cursor = self.db.community_article_sources.find({"_id": {"$in": sorted(set(ids))}})
        return {int(s["_id"]): str(s["name"]) async for s in cursor}

    # -- articles ---------------------------------------------------------------------------------------
    async def insert(self, fields: Document) -> Document:
        doc: Document = {"_id": await next_id(self.db, "community_article"), **fields}
        try:
            await self.db.community_articles.insert_one(doc)
        except DuplicateKeyError:
            raise ArticleTitleExists(f"an article titled {fields.get('title')!r} exists") from None
        return doc

    async def article(self, article_id: int) -> Document | None:
        return _loaded(await self.db.community_articles.find_one({"_id": article_id}))

    async def update(
        self, article_id: int, changes: Document, *, status_from: str | None = None
    ) -> Document | None:
        query: Document = {"_id": article_id}
        if status_from is not None:
            query["status"] = status_from
        try:
            after = await self.db.community_articles.find_one_and_update(
                query, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            raise ArticleTitleExists(f"an article titled {changes.get('title')!r} exists") from None
        return _loaded(after)

    async def visible_page(
        self,
        now: datetime.datetime,
        position: str | None,
        source_id: int | None,
        after: tuple[int, int, int] | None,
        limit: int,
    ) -> list[Document]:
        query: Document = visible_query(now)
        if position is not None:
            query["position"] = position
        if source_id is not None:
            query["source_id"] = source_id
        if after is not None:
            query = {"$and": [query, after_query(after)]}
        cursor = self.db.community_articles.find(query, {"body_md": 0, "body_html": 0})
        return [_loaded(a) or a async for a in cursor.sort(LIST_ORDER).limit(limit)]

    async def due(self, now: datetime.datetime) -> list[Document]:
        query = {
            "$or": [
                {"status": "scheduled", "pub_at": {"$lte": now}},
                {"status": {"$in": ["scheduled", "online"]}, "offline_at": {"$ne": None, "$lte": now}},
            ]
        }
        cursor = self.db.community_articles.find(query, {"status": 1, "pub_at": 1, "offline_at": 1})
        return [_loaded(a) or a async for a in cursor.limit(1000)]

    # -- what a reader did (records of the reactions service, read here for the article page) -----------
    async def reader_flags(self, user_id: int, article_id: int) -> dict[str, bool]:
        target = f"article:{article_id}"
        liked = await self.db.community_likes.find_one({"target": target, "user_id": user_id}, {"_id": 1})
        collected = await self.db.community_collections.find_one(
            {"target": target, "user_id": user_id}, {"_id": 1}
        )
        return {"liked_by_me": liked is not None, "collected_by_me": collected is not None}
