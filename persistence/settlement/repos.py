"""Settlement's repositories on MongoDB (the ports of engine/settle/uow.py): loads, saves and guarded
updates inside the unit of work's transaction. No pricing, no splitting, no decisions.

Guards that make a repeated step change nothing:
* `orders`: `lot_id` unique (one order per lot); status moves conditional on the current status;
* `refunds`: `deposit_id` unique (one refund per deposit), `pending` -> `refunded`;
* `deductions`: `order_id` unique (one deduction per order);
* `deposits`: every write conditional on `status: paid` and the `rev` read, and bumps `rev`;
* `user_coupons`: (coupon, user) unique; `provider_payments`: `_id` = the out_trade_no;
* `orders.trade_nos`: every provider attempt's number (indexed), found by `id_for_trade_no`;
* balances through `Accounts.credit/debit` in the same transaction, idempotent on the ledger ref.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from engine.book.states import LotState, SessionState
from engine.book.types import Fen, LotId, Millis, SessionId, UserId
from engine.settle.model import (
    AddressSnapshot,
    CouponOffer,
    Deduction,
    Deposit,
    DepositStatus,
    NewOrder,
    Order,
    OrderPayment,
    PendingCharge,
    ProviderPayment,
    Refund,
    UserCoupon,
)
from engine.settle.rules import BidStatus, OrderStatus, RefundStatus, UserCouponStatus
from engine.settle.uow import Duplicate
from engine.settle.worker import OutboxItem, OutboxStatus
from payments.trade_numbers import new_trade_no
from persistence.accounts import Accounts
from persistence.archive import archived_bids, set_bid_status
from persistence.mongo import Database, Document, TxSession, next_id
from persistence.settlement import documents as d

T = TypeVar("T")

_UNPAID = int(OrderStatus.UNPAID)
_AWAITING = int(OrderStatus.AWAITING_DELIVERY)
_OVERDUE = int(OrderStatus.OVERDUE)
_PENDING = str(RefundStatus.PENDING)
_UNUSED = int(UserCouponStatus.UNUSED)


async def _insert(insert: Callable[[], Awaitable[T]]) -> T:
    """A unique key taken is the port's Duplicate."""
    try:
        return await insert()
    except DuplicateKeyError as error:
        raise Duplicate(str(error)) from error


class _Repo:
    def __init__(self, db: Database, s: TxSession) -> None:
        self.db = db
        self.s = s


class MongoOrders(_Repo):
    async def get(self, order_id: int) -> Order | None:
        doc = await self.db.orders.find_one({"_id": order_id}, session=self.s)
        return None if doc is None else d.order_from(doc)

    async def get_for_user(self, order_id: int, user_id: UserId) -> Order | None:
        doc = await self.db.orders.find_one({"_id": order_id, "user_id": user_id}, session=self.s)
        return None if doc is None else d.order_from(doc)

    async def id_for_lot(self, lot_id: LotId) -> int | None:
        doc = await self.db.orders.find_one({"lot_id": lot_id}, {"_id": 1}, session=self.s)
        return None if doc is None else int(doc["_id"])

    async def id_for_trade_no(self, out_trade_no: str) -> int | None:
        doc = await self.db.orders.find_one({"trade_nos": out_trade_no}, {"_id": 1}, session=self.s)
        return None if doc is None else int(doc["_id"])

    async def add(self, order: NewOrder) -> None:
        await _insert(lambda: self.db.orders.insert_one(d.new_order_document(order), session=self.s))

    async def count_unpaid(self, user_id: UserId, session_id: SessionId, exclude: int = 0) -> int:
        return await self.db.orders.count_documents(
            {"user_id": user_id, "session_id": session_id, "status": _UNPAID, "_id": {"$ne": exclude}},
            session=self.s,
        )

    async def users_with_unpaid(self, session_id: SessionId) -> list[UserId]:
        users = await self.db.orders.distinct(
            "user_id", {"session_id": session_id, "status": _UNPAID}, session=self.s
        )
        return [int(user) for user in users]

    async def due(self, now_ms: Millis, limit: int) -> list[int]:
        cursor = (
            self.db.orders.find(
                {"status": _UNPAID, "deadline_ms": {"$lte": now_ms}}, {"_id": 1}, session=self.s
            )
            .sort([("deadline_ms", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [int(doc["_id"]) async for doc in cursor]

    async def unsynced_overdue(self, limit: int) -> list[Order]:
        cursor = self.db.orders.find({"engine_synced": False, "status": _OVERDUE}, session=self.s).limit(
            limit
        )
        return [d.order_from(doc) async for doc in cursor]

    async def mark_engine_synced(self, order_id: int) -> None:
        await self.db.orders.update_one({"_id": order_id}, {"$set": {"engine_synced": True}}, session=self.s)

    async def open_charge(self, order_id: int, expected_attempts: int, charge: PendingCharge) -> bool:
        # Documents written before `attempts` existed have none: 0 matches them too.
        attempts: Document = {"$in": [0, None]} if expected_attempts == 0 else {"$eq": expected_attempts}
        result = await self.db.orders.update_one(
            {"_id": order_id, "status": _UNPAID, "attempts": attempts},
            {
                "$set": {"pending_payment": d.charge_document(charge), "attempts": expected_attempts + 1},
                # Every attempt's number stays (indexed): a late notification finds its order.
                "$push": {"trade_nos": charge.out_trade_no},
            },
            session=self.s,
        )
        return result.modified_count == 1

    async def attach_pay_url(self, order_id: int, out_trade_no: str, pay_url: str) -> None:
        await self.db.orders.update_one(
            {"_id": order_id, "pending_payment.out_trade_no": out_trade_no},
            {"$set": {"pending_payment.pay_url": pay_url}},
            session=self.s,
        )

    async def mark_paid(
        self, order_id: int, payment: OrderPayment, address: AddressSnapshot, now_ms: Millis
    ) -> bool:
        result = await self.db.orders.update_one(
            {"_id": order_id, "status": _UNPAID},
            {
                "$set": {
                    "status": _AWAITING,
                    "payment": d.payment_document(payment),
                    "address": address,
                    "paid_at_ms": now_ms,
                    "pending_payment": None,
                }
            },
            session=self.s,
        )
        return result.modified_count == 1

    async def mark_overdue(self, order_id: int, forfeit: Fen, deposit_id: int | None, now_ms: Millis) -> bool:
        result = await self.db.orders.update_one(
            {"_id": order_id, "status": _UNPAID},
            {
                "$set": {
                    "status": _OVERDUE,
                    "overdue_at_ms": now_ms,
                    "forfeit": forfeit,
                    "forfeit_deposit_id": deposit_id,
                    "engine_synced": False,
                }
            },
            session=self.s,
        )
        return result.modified_count == 1

    async def mark_shipped(self, order_id: int, tracking_no: str | None, now_ms: Millis) -> bool:
        result = await self.db.orders.update_one(
            {"_id": order_id, "status": _AWAITING, "shipped_at_ms": None},
            {"$set": {"shipped_at_ms": now_ms, "tracking_no": tracking_no}},
            session=self.s,
        )
        return result.modified_count == 1

    async def mark_completed(self, order_id: int, now_ms: Millis) -> bool:
        result = await self.db.orders.update_one(
            {"_id": order_id, "status": _AWAITING, "shipped_at_ms": {"$ne": None}},
            {"$set": {"status": int(OrderStatus.COMPLETED), "completed_at_ms": now_ms}},
            session=self.s,
        )
        return result.modified_count == 1


class MongoDeposits(_Repo):
    async def _one(self, query: Document) -> Deposit | None:
        doc = await self.db.deposits.find_one(query, session=self.s)
        return None if doc is None else d.deposit_from(doc)

    async def paid_for_lot(self, user_id: UserId, lot_id: LotId) -> Deposit | None:
        return await self._one({"user_id": user_id, "lot_id": lot_id, "status": "paid"})

    async def paid_for_session(self, user_id: UserId, session_id: SessionId) -> Deposit | None:
        return await self._one(
            {"user_id": user_id, "session_id": session_id, "lot_id": None, "status": "paid"}
        )

    async def get_paid(self, deposit_id: int) -> Deposit | None:
        return await self._one({"_id": deposit_id, "status": "paid"})

    async def paid_on_lot(self, lot_id: LotId) -> list[Deposit]:
        return [
            d.deposit_from(doc)
            async for doc in self.db.deposits.find({"lot_id": lot_id, "status": "paid"}, session=self.s)
        ]

    async def paid_session_wide(self, session_id: SessionId, user_id: UserId | None) -> list[int]:
        query: Document = {"session_id": session_id, "lot_id": None, "status": "paid"}
        if user_id is not None:
            query["user_id"] = user_id
        return [int(doc["_id"]) async for doc in self.db.deposits.find(query, {"_id": 1}, session=self.s)]

    async def paid_lot_deposits(self, limit: int) -> list[Deposit]:
        cursor = self.db.deposits.find({"status": "paid", "lot_id": {"$ne": None}}, session=self.s).limit(
            limit
        )
        return [d.deposit_from(doc) async for doc in cursor]

    async def paid_session_wide_in(self, session_ids: list[SessionId], limit: int) -> list[Deposit]:
        cursor = self.db.deposits.find(
            {"status": "paid", "lot_id": None, "session_id": {"$in": session_ids}}, session=self.s
        ).limit(limit)
        return [d.deposit_from(doc) async for doc in cursor]

    async def set_remaining(self, deposit: Deposit, remaining: Fen, status: DepositStatus) -> bool:
        result = await self.db.deposits.update_one(
            {"_id": deposit.id, "status": "paid", "rev": deposit.rev},
            {"$set": {"remaining": remaining, "status": status}, "$inc": {"rev": 1}},
            session=self.s,
        )
        return result.modified_count == 1


class MongoRefunds(_Repo):
    async def for_deposit(self, deposit_id: int) -> Refund | None:
        doc = await self.db.refunds.find_one({"deposit_id": deposit_id}, session=self.s)
        return None if doc is None else d.refund_from(doc)

    async def get(self, refund_id: int) -> Refund | None:
        doc = await self.db.refunds.find_one({"_id": refund_id}, session=self.s)
        return None if doc is None else d.refund_from(doc)

    async def add(self, refund: Refund) -> None:
        await _insert(lambda: self.db.refunds.insert_one(d.refund_document(refund), session=self.s))

    async def pending(self, limit: int) -> list[Refund]:
        cursor = (
            self.db.refunds.find({"status": _PENDING}, session=self.s).sort("_id", ASCENDING).limit(limit)
        )
        return [d.refund_from(doc) async for doc in cursor]

    async def mark_refunded(self, refund_id: int, now_ms: Millis, ledger_ref: str | None) -> bool:
        changes: Document = {"status": str(RefundStatus.REFUNDED), "refunded_at_ms": now_ms}
        if ledger_ref is not None:
            changes["ledger_ref"] = ledger_ref
        result = await self.db.refunds.update_one(
            {"_id": refund_id, "status": _PENDING}, {"$set": changes}, session=self.s
        )
        return result.modified_count == 1


class MongoDeductions(_Repo):
    async def add(self, deduction: Deduction) -> None:
        await _insert(lambda: self.db.deductions.insert_one(d.deduction_document(deduction), session=self.s))


class MongoCoupons(_Repo):
    async def offer(self, coupon_id: int) -> CouponOffer | None:
        doc = await self.db.coupons.find_one({"_id": coupon_id}, session=self.s)
        return None if doc is None else d.offer_from(doc)

    async def add_offer(self, offer: CouponOffer) -> None:
        await _insert(lambda: self.db.coupons.insert_one(d.offer_document(offer), session=self.s))

    async def take_one(self, coupon_id: int) -> bool:
        result = await self.db.coupons.update_one(
            {"_id": coupon_id, "left": {"$gt": 0}}, {"$inc": {"left": -1, "claimed": 1}}, session=self.s
        )
        return result.modified_count == 1

    async def add_user_coupon(self, coupon: UserCoupon) -> None:
        await _insert(lambda: self.db.user_coupons.insert_one(d.user_coupon_document(coupon), session=self.s))

    async def unused(self, user_coupon_id: int, user_id: UserId, session_id: SessionId) -> UserCoupon | None:
        doc = await self.db.user_coupons.find_one(
            {"_id": user_coupon_id, "user_id": user_id, "session_id": session_id, "status": _UNUSED},
            session=self.s,
        )
        return None if doc is None else d.user_coupon_from(doc)

    async def unused_of(self, user_id: UserId, session_id: SessionId) -> list[UserCoupon]:
        cursor = self.db.user_coupons.find(
            {"user_id": user_id, "session_id": session_id, "status": _UNUSED}, session=self.s
        ).sort("amount", DESCENDING)
        return [d.user_coupon_from(doc) async for doc in cursor]

    async def mark_used(self, user_coupon_id: int, order_id: int, now_ms: Millis) -> bool:
        result = await self.db.user_coupons.update_one(
            {"_id": user_coupon_id, "status": _UNUSED},
            {"$set": {"status": int(UserCouponStatus.USED), "order_id": order_id, "used_at_ms": now_ms}},
            session=self.s,
        )
        return result.modified_count == 1

    async def expire_unused(
        self, session_id: SessionId, user_id: UserId | None, spare: list[UserId], now_ms: Millis
    ) -> int:
        query: Document = {"session_id": session_id, "status": _UNUSED, "user_id": {"$nin": spare}}
        if user_id is not None:
            query["user_id"] = user_id
        result = await self.db.user_coupons.update_many(
            query,
            {"$set": {"status": int(UserCouponStatus.EXPIRED), "expired_at_ms": now_ms}},
            session=self.s,
        )
        return result.modified_count


class MongoProviderPayments(_Repo):
    async def get(self, out_trade_no: str) -> ProviderPayment | None:
        doc = await self.db.provider_payments.find_one({"_id": out_trade_no}, session=self.s)
        return None if doc is None else d.provider_payment_from(doc)

    async def add(self, payment: ProviderPayment) -> None:
        await _insert(
            lambda: self.db.provider_payments.insert_one(d.provider_payment_document(payment), session=self.s)
        )

    async def refunds_due(self, limit: int) -> list[ProviderPayment]:
        cursor = (
            self.db.provider_payments.find({"outcome": "refund_pending"}, session=self.s)
            .sort("_id", ASCENDING)
            .limit(limit)
        )
        return [d.provider_payment_from(doc) async for doc in cursor]

    async def mark_refunded(self, out_trade_no: str, now_ms: Millis) -> None:
        await self.db.provider_payments.update_one(
            {"_id": out_trade_no, "outcome": "refund_pending"},
            {"$set": {"outcome": "refunded", "refunded_at_ms": now_ms}},
            session=self.s,
        )


class MongoLedger:
    """Balances through `Accounts` (ledger entry with the balance after, idempotent on ref)."""

    def __init__(self, accounts: Accounts, s: TxSession) -> None:
        self.accounts = accounts
        self.s = s

    async def credit(self, user_id: UserId, amount: Fen, kind: str, ref: str) -> Fen:
        return (await self.accounts.credit(user_id, amount, kind, ref, session=self.s)).balance_after

    async def debit(self, user_id: UserId, amount: Fen, kind: str, ref: str) -> Fen:
        return (await self.accounts.debit(user_id, amount, kind, ref, session=self.s)).balance_after

    async def balance(self, user_id: UserId) -> Fen:
        doc = await self.db_user(user_id)
        return 0 if doc is None else int(doc.get("balance", 0))

    async def db_user(self, user_id: UserId) -> Document | None:
        return await self.accounts.db.users.find_one({"_id": user_id}, {"balance": 1}, session=self.s)


_ENDED = int(SessionState.ENDED)
_DONE = str(OutboxStatus.DONE)
_RECORDED = str(OutboxStatus.RECORDED)
_OUTBOX_PENDING = str(OutboxStatus.PENDING)


class MongoAuctionRecords(_Repo):
    async def outbox_batch(self, limit: int) -> list[OutboxItem]:
        cursor = (
            # The unfinished statuses named (not `$ne: done`): an equality set walks the
            # status_closed_at index, where `$ne` made SecantusDB scan every close ever settled
            # (1.7 s at 100,000 rows, on every round and at every start).
            self.db.settlement_outbox.find({"status": {"$in": [_OUTBOX_PENDING, _RECORDED]}}, session=self.s)
            .sort([("closed_at_ms", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [d.outbox_item_from(doc) async for doc in cursor]

    async def outbox_pending(self, lot_id: LotId) -> bool:
        doc = await self.db.settlement_outbox.find_one(
            {"_id": lot_id, "status": _OUTBOX_PENDING}, {"_id": 1}, session=self.s
        )
        return doc is not None

    async def session_has_pending_closes(self, session_id: SessionId) -> bool:
        doc = await self.db.settlement_outbox.find_one(
            {"session_id": session_id, "status": _OUTBOX_PENDING}, {"_id": 1}, session=self.s
        )
        return doc is not None

    async def mark_outbox_recorded(self, lot_id: LotId, order_id: int | None) -> None:
        await self.db.settlement_outbox.update_one(
            {"_id": lot_id, "status": _OUTBOX_PENDING},
            {"$set": {"status": _RECORDED, "order_id": order_id}},
            session=self.s,
        )

    async def mark_outbox_done(self, lot_id: LotId) -> None:
        await self.db.settlement_outbox.update_one(
            {"_id": lot_id, "status": _RECORDED}, {"$set": {"status": _DONE}}, session=self.s
        )

    async def done_closes(self, lot_ids: list[LotId]) -> dict[LotId, OutboxItem]:
        cursor = self.db.settlement_outbox.find({"_id": {"$in": lot_ids}, "status": _DONE}, session=self.s)
        return {int(doc["_id"]): d.outbox_item_from(doc) async for doc in cursor}

    async def lot_sold(self, lot_id: LotId, price: Fen, winner_id: UserId, order_id: int) -> None:
        await self.db.lots.update_one(
            {"_id": lot_id},
            {"$set": {"deal_price": price, "winner_id": winner_id, "order_id": order_id}},
            session=self.s,
        )

    async def lot_unsold(self, lot_id: LotId) -> None:
        await self.db.lots.update_one(
            {"_id": lot_id, "state": {"$ne": int(LotState.OVERDUE)}},
            {"$set": {"state": int(LotState.UNSOLD), "deal_price": None}},
            session=self.s,
        )

    async def lot_overdue(self, lot_id: LotId) -> None:
        await self.db.lots.update_one(
            {"_id": lot_id}, {"$set": {"state": int(LotState.OVERDUE)}}, session=self.s
        )

    async def lot_title(self, lot_id: LotId) -> str:
        lot = await self.db.lots.find_one({"_id": lot_id}, {"title": 1}, session=self.s)
        return str(lot.get("title", "")) if lot else ""

    async def session_sold(self, session_id: SessionId, price: Fen, bid_count: int) -> None:
        await self.db.sessions.update_one(
            {"_id": session_id},
            {"$inc": {"deal_total": price, "bid_count": bid_count, "sold_count": 1}},
            session=self.s,
        )

    async def session_unsold(self, session_id: SessionId, bid_count: int) -> None:
        await self.db.sessions.update_one(
            {"_id": session_id}, {"$inc": {"bid_count": bid_count, "unsold_count": 1}}, session=self.s
        )

    async def session_exists(self, session_id: SessionId) -> bool:
        return await self.db.sessions.find_one({"_id": session_id}, {"_id": 1}, session=self.s) is not None

    async def session_ended(self, session_id: SessionId) -> bool:
        doc = await self.db.sessions.find_one({"_id": session_id}, {"state": 1}, session=self.s)
        return doc is not None and doc.get("state") == _ENDED

    async def sessions_to_settle(self, limit: int) -> list[SessionId]:
        cursor = self.db.sessions.find(
            {"state": _ENDED, "deposits_settled": {"$ne": True}}, {"_id": 1}, session=self.s
        ).limit(limit)
        return [int(doc["_id"]) async for doc in cursor]

    async def settled_sessions(self) -> list[SessionId]:
        cursor = self.db.sessions.find({"deposits_settled": True}, {"_id": 1}, session=self.s)
        return [int(doc["_id"]) async for doc in cursor]

    async def mark_deposits_settled(self, session_id: SessionId) -> None:
        await self.db.sessions.update_one(
            {"_id": session_id}, {"$set": {"deposits_settled": True}}, session=self.s
        )

    async def mark_bid_won(self, lot_id: LotId, bidder: UserId, price: Fen) -> bool:
        bids = await archived_bids(self.db, lot_id, session=self.s)
        won = next((b for b in reversed(bids) if b.bidder == bidder and b.price == price), None)
        if won is None:
            return False
        await set_bid_status(self.db, won, int(BidStatus.WON), session=self.s)
        return True

    async def mark_bids_overdue(self, lot_id: LotId, bidder: UserId) -> None:
        for bid in await archived_bids(self.db, lot_id, session=self.s):
            if bid.bidder == bidder and bid.status == BidStatus.WON:
                await set_bid_status(self.db, bid, int(BidStatus.OVERDUE), session=self.s)

    async def flag_non_payer(self, user_id: UserId, order_id: int) -> None:
        await self.db.users.update_one(
            {"_id": user_id}, {"$set": {"non_payer": True, "non_payer_order_id": order_id}}, session=self.s
        )

    async def clear_non_payer(self, user_id: UserId) -> bool:
        result = await self.db.users.update_one(
            {"_id": user_id, "non_payer": True},
            {"$set": {"non_payer": False}, "$unset": {"non_payer_order_id": ""}},
            session=self.s,
        )
        return result.modified_count == 1

    async def user_exists(self, user_id: UserId) -> bool:
        return await self.db.users.find_one({"_id": user_id}, {"_id": 1}, session=self.s) is not None

    async def address(self, address_id: int, user_id: UserId) -> AddressSnapshot | None:
        return await self.db.addresses.find_one({"_id": address_id, "user_id": user_id}, session=self.s)


class MongoIds:
    """Ids from `counters`, outside the transaction: a retried unit of work leaves a gap, never a repeat."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def next(self, name: str) -> int:
        return await next_id(self.db, name)

    def trade_no(self, prefix: str) -> str:
        return new_trade_no(prefix)
