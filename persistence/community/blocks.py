"""Admins' blocks on a user's community writes: `community_blocks`, one document per blocked user
({_id: user_id, until: datetime | None (None: until lifted), reason, by, at}). Written by the
moderation service (issue 23, persistence/community/moderation.py); read here by every write."""

from __future__ import annotations

import datetime

from persistence.mongo import Database, as_utc


class MongoBlocks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def blocked(self, user_id: int, now: datetime.datetime) -> bool:
        doc = await self.db.community_blocks.find_one({"_id": user_id}, {"until": 1})
        if doc is None:
            return False
        until = doc.get("until")
        return until is None or as_utc(until) > now
