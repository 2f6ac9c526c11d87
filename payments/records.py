"""Our payment records in MongoDB (the `PaymentRecordStore` port of payments/provider.py):
`payments` (`_id` = out_trade_no, user_id, amount, status pending|paid|closed, handled, refunded) and
`payment_refunds` (`_id` = refund_ref); the sandbox's provider-side `sandbox_trades` gets its index here
too. They store and guard; the provider decides."""

import logging

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from engine.book.errors import IllegalTransition, NotFound
from engine.settle.ports import PaymentRequest
from payments.provider import RefundRefused
from persistence.mongo import (
    Database,
    Document,
    TxSession,
    run_in_transaction,
    unit_writes,
    update_then_read,
    utc_now,
)

log = logging.getLogger("gavel.payments")


# ------------------------------------------------------------------------------
async def ensure_payment_indexes(db: Database) -> None:
    """Indexes of `payments`, `payment_refunds` and `sandbox_trades` (idempotent)."""
    await db.payments.create_indexes([IndexModel([("status", ASCENDING)], name="status")])
    await db.payment_refunds.create_indexes([IndexModel([("out_trade_no", ASCENDING)], name="out_trade_no")])
    await db.sandbox_trades.create_indexes([IndexModel([("notified", ASCENDING)], name="notified")])


def settling_write(
    out_trade_no: str, provider: str, amount: int, trade_no: str, notify_id: str
) -> tuple[Document, Document]:
    """The query and update of `settle_in`: pending|closed -> paid and handled, when it is
    `provider`'s payment of exactly `amount` fen."""
    now = utc_now()
    query = {
        "_id": out_trade_no,
        "provider": provider,
        "amount": amount,
        "status": {"$in": ["pending", "closed"]},
    }
    update = {
        "$set": {
            "status": "paid",
            "trade_no": trade_no,
            "paid_at": now,
            "notify_id": notify_id,
            "handled": True,
            "handled_at": now,
        }
    }
    return query, update


class PaymentRecords:
    """The `payments` collection: what we asked a provider to collect, and what it told us."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, request: PaymentRequest, provider: str) -> Document:
        """Idempotent on `out_trade_no`; the same number with a different amount is refused."""
        doc = self._new(request, provider)
        try:
            await self.db.payments.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.get(request.out_trade_no)
            if (
                existing is None
                or existing["amount"] != request.amount
                or existing["provider"] != provider
                or existing.get("user_id") != request.user_id
            ):
                raise IllegalTransition(f"payment {request.out_trade_no} exists with other terms") from None
            return existing
        return doc

    async def create_in(self, request: PaymentRequest, provider: str, session: TxSession) -> Document:
        """A new payment (a new, random `out_trade_no`) in `session`'s transaction: no duplicate to
        answer there (a duplicate key would abort the whole transaction; it is an error)."""
        doc = self._new(request, provider)
        writes = unit_writes(session)
        if writes is not None:  # sent with the unit's other writes: nothing in it reads this record
            writes.insert(self.db.payments, doc)
        else:
            await self.db.payments.insert_one(doc, session=session)
        return doc

    @staticmethod
    def _new(request: PaymentRequest, provider: str) -> Document:
        return {
            "_id": request.out_trade_no,
            "provider": provider,
            "user_id": request.user_id,  # who may read its status (and, in the sandbox, pay it)
            "amount": int(request.amount),
            "subject": request.subject,
            "status": "pending",
            "handled": False,
            "refunded": 0,
            "trade_no": None,
            "created_at": utc_now(),
            "paid_at": None,
        }

    async def get(self, out_trade_no: str) -> Document | None:
        return await self.db.payments.find_one({"_id": out_trade_no})

    async def mark_paid_if(
        self, out_trade_no: str, provider: str, amount: int, trade_no: str, notify_id: str
    ) -> Document | None:
        """pending|closed -> paid in one conditional write, when it is `provider`'s payment of
        exactly `amount` fen; None (nothing changed) when it is not, or is paid already.

        Not read back: the filter says whose payment of what it was, the update what it is now,
        and a payment that was still pending or closed was not handled (handled comes after paid)."""
        changes = {"status": "paid", "trade_no": trade_no, "paid_at": utc_now(), "notify_id": notify_id}
        result = await self.db.payments.update_one(
            {
                "_id": out_trade_no,
                "provider": provider,
                "amount": amount,
                "status": {"$in": ["pending", "closed"]},
            },
            {"$set": changes},
        )
        if result.matched_count != 1:
            return None
        return {"_id": out_trade_no, "provider": provider, "amount": amount, "handled": False, **changes}

    async def mark_paid(self, out_trade_no: str, trade_no: str, notify_id: str) -> Document:
        """pending|closed -> paid (a signed success means the money arrived, even after a close)."""
        doc = await update_then_read(
            self.db.payments,
            {"_id": out_trade_no, "status": {"$in": ["pending", "closed"]}},
            {"$set": {"status": "paid", "trade_no": trade_no, "paid_at": utc_now(), "notify_id": notify_id}},
        )
        if doc is None:
            doc = await self.get(out_trade_no)
            assert doc is not None  # it existed a moment ago; payments are never deleted
            if doc.get("trade_no") not in (None, trade_no):
                log.warning(
                    "payment %s paid as %s, notified again as %s", out_trade_no, doc["trade_no"], trade_no
                )
        return doc

    async def mark_closed(self, out_trade_no: str) -> None:
        """pending -> closed; a late or out-of-order close never undoes a payment."""
        await self.db.payments.update_one(
            {"_id": out_trade_no, "status": "pending"}, {"$set": {"status": "closed", "closed_at": utc_now()}}
        )

    async def settle_in(
        self, out_trade_no: str, provider: str, amount: int, trade_no: str, notify_id: str, session: TxSession
    ) -> bool:
        """pending|closed -> paid and handled in one conditional write in `session`'s transaction
        (the handler's own), when it is `provider`'s payment of exactly `amount` fen."""
        query, update = settling_write(out_trade_no, provider, amount, trade_no, notify_id)
        result = await self.db.payments.update_one(query, update, session=session)
        return result.matched_count == 1

    async def mark_handled(self, out_trade_no: str, session: TxSession | None = None) -> None:
        """The payment's handler succeeded (with `session`: in the handler's own transaction)."""
        await self.db.payments.update_one(
            {"_id": out_trade_no}, {"$set": {"handled": True, "handled_at": utc_now()}}, session=session
        )

    async def record_refund(
        self, out_trade_no: str, amount: int, refund_ref: str, status: str
    ) -> Document | None:
        """One refund, in one transaction with the payment's refunded total (never above the amount).

        Returns None when `refund_ref` was already recorded for this very refund (idempotent).
        """
        if type(amount) is not int or amount < 1:
            raise RefundRefused("a refund is a positive number of fen")

        async def transaction(s: TxSession) -> Document | None:
            existing = await self.db.payment_refunds.find_one({"_id": refund_ref}, session=s)
            if existing is not None:
                if existing["out_trade_no"] != out_trade_no or existing["amount"] != amount:
                    raise RefundRefused(f"refund {refund_ref!r} was recorded with other terms")
                return None
            payment = await self.db.payments.find_one({"_id": out_trade_no}, session=s)
            if payment is None:
                raise NotFound(f"no payment {out_trade_no}")
            if payment["status"] != "paid":
                raise RefundRefused(f"payment {out_trade_no} is {payment['status']}, not paid")
            # Conditional on the refunded total: concurrent refunds never exceed what was paid.
            updated = await self.db.payments.update_one(
                {"_id": out_trade_no, "refunded": {"$lte": int(payment["amount"]) - amount}},
                {"$inc": {"refunded": amount}},
                session=s,
            )
            if updated.matched_count != 1:
                raise RefundRefused(f"refunding {amount} fen would exceed what {out_trade_no} paid")
            doc: Document = {
                "_id": refund_ref,
                "out_trade_no": out_trade_no,
                "amount": amount,
                "status": status,
                "created_at": utc_now(),
            }
            await self.db.payment_refunds.insert_one(doc, session=s)
            return doc

        return await run_in_transaction(self.db.client, transaction)

    async def get_refund(self, refund_ref: str) -> Document | None:
        return await self.db.payment_refunds.find_one({"_id": refund_ref})

    async def set_refund_status(self, refund_ref: str, status: str) -> None:
        await self.db.payment_refunds.update_one({"_id": refund_ref}, {"$set": {"status": status}})
