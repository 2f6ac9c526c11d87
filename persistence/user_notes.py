"""Support notes on a user: what staff need to know next time ("called about order 12, refund
promised by Friday"). One document per note in `user_notes`: `{user_id, text, at, author_id,
author_username}`; notes are only added (the audit log records each, as `user.note`)."""

from __future__ import annotations

from pymongo import DESCENDING

from persistence.mongo import Database, Document, utc_now


class UserNotes:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_id: int, text: str, author_id: int, author_username: str) -> Document:
        doc: Document = {
            "user_id": user_id,
            "text": text,
            "at": utc_now(),
            "author_id": author_id,
            "author_username": author_username,
        }
        result = await self.db.user_notes.insert_one(doc)
        doc["_id"] = result.inserted_id
        return doc

    async def page(self, user_id: int, skip: int, limit: int) -> tuple[list[Document], int]:
        """A user's notes, newest first, and how many there are."""
        query: Document = {"user_id": user_id}
        total = await self.db.user_notes.count_documents(query)
        cursor = self.db.user_notes.find(query).sort([("at", DESCENDING), ("_id", DESCENDING)])
        return [doc async for doc in cursor.skip(skip).limit(limit)], total
