"""The settlement's side of lot compaction (engine/compaction.py): which closes it has finished."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from engine.book.types import LotId
from engine.settle.worker import OutboxStatus

_DONE = str(OutboxStatus.DONE)


class MongoSettledCloses:
    """A lot's close is settled once its `settlement_outbox` row is done (the winner's order, the
    won bid's mark and the losers' deposit refunds are recorded)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def settled(self, lot_ids: list[LotId]) -> set[LotId]:
        if not lot_ids:
            return set()
        cursor = self.db.settlement_outbox.find({"_id": {"$in": lot_ids}, "status": _DONE}, {"_id": 1})
        return {int(doc["_id"]) async for doc in cursor}
