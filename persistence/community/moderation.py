"""The community's moderation on MongoDB: reports (`community_reports`) and blocks
(`community_blocks`), the `ReportStore`, `BlockStore` and `Contents` ports of community/ports.py.

They store and read; what a report or a resolution is, is decided in community/moderation.py.
One open report per target and reporter is a partial unique index, so two reports at once make
one, and a closed report lets the same user report again.
"""

from __future__ import annotations

import datetime
from typing import Final

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from persistence.community.blocks import MongoBlocks
from persistence.mongo import Database, Document, next_id

REPORT_COUNTER: Final = "community_report"
# What the queue shows of each group's reports (the rest is counted).
GROUP_NOTES_MAX: Final = 20


async def ensure_indexes(db: Database) -> None:
    """The unique keys this module's guards rely on, and the queue's and the erase's lookups."""
    await db.community_reports.create_indexes(
        [
            IndexModel(
                [("target", ASCENDING), ("reporter", ASCENDING)],
                unique=True,
                partialFilterExpression={"status": "open"},
                name="one_open_report_per_target_and_reporter",
            ),
            IndexModel([("status", ASCENDING), ("target", ASCENDING), ("_id", ASCENDING)], name="queue"),
            IndexModel([("reporter", ASCENDING)], name="by_reporter"),
            IndexModel([("target_user", ASCENDING), ("status", ASCENDING)], name="about_user"),
        ]
    )


class MongoReports:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self, target: str, target_user: int, reporter: int, reason: str, note: str, now: datetime.datetime
    ) -> int | None:
        # Checked first so a repeat does not burn a counter value; the unique index decides races.
        if await self.db.community_reports.find_one(
            {"target": target, "reporter": reporter, "status": "open"}, {"_id": 1}
        ):
            return None
        report_id = await next_id(self.db, REPORT_COUNTER)
        try:
            await self.db.community_reports.insert_one(
                {
                    "_id": report_id,
                    "target": target,
                    "target_user": target_user,
                    "reporter": reporter,
                    "reason": reason,
                    "note": note,
                    "status": "open",
                    "created_at": now,
                    "resolved_by": None,
                    "resolved_at": None,
                    "resolution": "",
                }
            )
        except DuplicateKeyError:
            return None
        return report_id

    async def report(self, report_id: int) -> Document | None:
        doc: Document | None = await self.db.community_reports.find_one({"_id": report_id})
        return doc

    async def open_count(self, target: str) -> int:
        return int(await self.db.community_reports.count_documents({"target": target, "status": "open"}))

    async def _close(
        self, query: Document, status: str, by: int, resolution: str, now: datetime.datetime
    ) -> int:
        result = await self.db.community_reports.update_many(
            {**query, "status": "open"},
            {"$set": {"status": status, "resolved_by": by, "resolved_at": now, "resolution": resolution}},
        )
        return int(result.modified_count)

    async def close_target(
        self, target: str, status: str, by: int, resolution: str, now: datetime.datetime
    ) -> int:
        return await self._close({"target": target}, status, by, resolution, now)

    async def close_about_user(
        self, target_user: int, status: str, by: int, resolution: str, now: datetime.datetime
    ) -> int:
        return await self._close({"target_user": target_user}, status, by, resolution, now)

    async def queue(self, status: str, after: int | None, limit: int) -> list[Document]:
        open_queue = status == "open"
        pipeline: list[Document] = [
            {"$match": {"status": status}},
            {"$sort": {"_id": 1}},
            {
                "$group": {
                    "_id": "$target",
                    "target_user": {"$first": "$target_user"},
                    "count": {"$sum": 1},
                    "reasons": {"$push": "$reason"},
                    "notes": {"$push": "$note"},
                    "reporters": {"$push": "$reporter"},
                    "first_id": {"$min": "$_id"},
                    "last_id": {"$max": "$_id"},
                    "first_at": {"$min": "$created_at"},
                    "last_at": {"$max": "$created_at"},
                    "resolution": {"$last": "$resolution"},
                    "resolved_by": {"$last": "$resolved_by"},
                    "resolved_at": {"$last": "$resolved_at"},
                }
            },
        ]
        if after is not None:
            pipeline.append(
                {"$match": {"first_id": {"$gt": after}} if open_queue else {"last_id": {"$lt": after}}}
            )
        pipeline += [{"$sort": {"first_id": 1} if open_queue else {"last_id": -1}}, {"$limit": limit}]
        groups: list[Document] = []
        async for row in await self.db.community_reports.aggregate(pipeline):
            reasons: dict[str, int] = {}
            for reason in row["reasons"]:
                reasons[reason] = reasons.get(reason, 0) + 1
            groups.append(
                {
                    "target": row["_id"],
                    "target_user": row["target_user"],
                    "count": row["count"],
                    "reasons": reasons,
                    "notes": [n for n in row["notes"] if n][:GROUP_NOTES_MAX],
                    "reporters": row["reporters"][:GROUP_NOTES_MAX],
                    "first_id": row["first_id"],
                    "last_id": row["last_id"],
                    "first_at": row["first_at"],
                    "last_at": row["last_at"],
                    "status": status,
                    "resolution": row.get("resolution") or "",
                    "resolved_by": row.get("resolved_by"),
                    "resolved_at": row.get("resolved_at"),
                }
            )
        return groups

    async def erase_reporter(self, user_id: int) -> int:
        result = await self.db.community_reports.delete_many({"reporter": user_id})
        return int(result.deleted_count)


class MongoBlockStore(MongoBlocks):
    """`community_blocks`: `{_id: user_id, until: datetime | None, reason, by, at}`; MongoBlocks
    (persistence/community/blocks.py) reads it for every community write."""

    async def block(
        self, user_id: int, until: datetime.datetime | None, reason: str, by: int, now: datetime.datetime
    ) -> Document | None:
        before: Document | None = await self.db.community_blocks.find_one_and_replace(
            {"_id": user_id},
            {"_id": user_id, "until": until, "reason": reason, "by": by, "at": now},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return before

    async def unblock(self, user_id: int) -> Document | None:
        removed: Document | None = await self.db.community_blocks.find_one_and_delete({"_id": user_id})
        return removed

    async def block_of(self, user_id: int) -> Document | None:
        doc: Document | None = await self.db.community_blocks.find_one({"_id": user_id})
        return doc


class MongoContents:
    """Reads the feed's posts and the reactions' comments (their owners write them)."""

    COLLECTIONS: Final = {"post": "community_posts", "comment": "community_comments"}

    def __init__(self, db: Database) -> None:
        self.db = db

    async def content(self, kind: str, content_id: int) -> Document | None:
        name = self.COLLECTIONS.get(kind)
        if name is None:
            return None
        doc: Document | None = await self.db[name].find_one({"_id": content_id})
        return doc
