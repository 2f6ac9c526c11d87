"""Deposits on MongoDB: the `deposits` collection behind `engine.settle.deposits.DepositRecords`.

Only loading, storing and guarded status updates live here: a unique index allows one live (pending
or paid) deposit per user and target and one record per trade number (`add` raises Duplicate), and
`mark_paid`/`mark_failed` move a deposit only while it is pending (compare-and-set on status).
Which deposit is owed, how it is paid and when the engine learns of it are decided in
engine/settle/deposits.py. Each repository works inside the unit of work's transaction
(persistence/settlement/uow.py).
"""

import datetime

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from engine.book.types import SessionId, UserId
from engine.settle.deposits import DepositRecord
from engine.settle.model import PayWith
from engine.settle.uow import Duplicate
from persistence.mongo import LIVE_DEPOSIT_STATUSES, Database, Document, TxSession, as_utc


def _pay_with(value: object) -> PayWith:
    return "provider" if value == "provider" else "balance"


def record_from(doc: Document) -> DepositRecord:
    paid_at = doc.get("paid_at")
    return DepositRecord(
        id=int(doc["_id"]),
        user_id=int(doc["user_id"]),
        session_id=int(doc["session_id"]),
        lot_id=None if doc.get("lot_id") is None else int(doc["lot_id"]),
        amount=int(doc["amount"]),
        status=str(doc["status"]),
        pay_with=_pay_with(doc["pay_with"]),
        payment_id=doc.get("payment_id"),
        created_at=as_utc(doc["created_at"]),
        paid_at=None if paid_at is None else as_utc(paid_at),
        pay_url=doc.get("pay_url"),
    )


def record_document(record: DepositRecord) -> Document:
    doc: Document = {
        "_id": record.id,
        "user_id": record.user_id,
        "session_id": record.session_id,
        "lot_id": record.lot_id,
        "amount": record.amount,
        "pay_with": record.pay_with,
        "created_at": record.created_at,
        "status": record.status,
        "paid_at": record.paid_at,
        "payment_id": record.payment_id,
    }
    if record.pay_url is not None:
        doc["pay_url"] = record.pay_url
    return doc


class MongoDepositRecords:
    def __init__(self, db: Database, s: TxSession | None) -> None:
        self.db = db
        self.s = s

    async def get(self, deposit_id: int) -> DepositRecord | None:
        doc = await self.db.deposits.find_one({"_id": deposit_id}, session=self.s)
        return None if doc is None else record_from(doc)

    async def by_payment_id(self, payment_id: str) -> DepositRecord | None:
        doc = await self.db.deposits.find_one({"payment_id": payment_id}, session=self.s)
        return None if doc is None else record_from(doc)

    async def live_session_deposit(self, user_id: UserId, session_id: SessionId) -> bool:
        found = await self.db.deposits.find_one(
            {
                "user_id": user_id,
                "session_id": session_id,
                "lot_id": None,
                "status": {"$in": list(LIVE_DEPOSIT_STATUSES)},
            },
            {"_id": 1},
            session=self.s,
        )
        return found is not None

    async def add(self, record: DepositRecord) -> None:
        try:
            await self.db.deposits.insert_one(record_document(record), session=self.s)
        except DuplicateKeyError as error:
            raise Duplicate(str(error)) from error

    async def _move(
        self, deposit_id: int, status: str, stamp: str, now: datetime.datetime
    ) -> DepositRecord | None:
        doc = await self.db.deposits.find_one_and_update(
            {"_id": deposit_id, "status": "pending"},
            {"$set": {"status": status, stamp: now}},
            return_document=ReturnDocument.AFTER,
            session=self.s,
        )
        return None if doc is None else record_from(doc)

    async def mark_paid(self, deposit_id: int, now: datetime.datetime) -> DepositRecord | None:
        return await self._move(deposit_id, "paid", "paid_at", now)

    async def mark_failed(self, deposit_id: int, now: datetime.datetime) -> DepositRecord | None:
        return await self._move(deposit_id, "failed", "failed_at", now)

    async def attach_pay_url(self, deposit_id: int, pay_url: str) -> None:
        await self.db.deposits.update_one({"_id": deposit_id}, {"$set": {"pay_url": pay_url}}, session=self.s)

    async def list_for_user(
        self, user_id: UserId, skip: int, limit: int, session_id: SessionId | None = None
    ) -> tuple[list[DepositRecord], int]:
        query: Document = {"user_id": user_id}
        if session_id is not None:
            query["session_id"] = session_id
        total = await self.db.deposits.count_documents(query, session=self.s)
        cursor = self.db.deposits.find(query, session=self.s).sort("_id", -1).skip(skip).limit(limit)
        return [record_from(doc) async for doc in cursor], total

    async def paid_in_sessions(self, session_ids: list[SessionId]) -> list[DepositRecord]:
        cursor = self.db.deposits.find({"status": "paid", "session_id": {"$in": session_ids}}, session=self.s)
        return [record_from(doc) async for doc in cursor]
