"""Settlement in MongoDB: orders, deposit refunds and deductions, auction coupons, addresses, the outbox.

Implements `engine.settle.worker.SettlementStore`. Each method is one transaction whose writes are
guarded so that running it twice changes nothing the second time:

* `orders`: `_id` from the `orders` counter, `lot_id` unique (at most one order per lot);
* `refunds`: `deposit_id` unique (at most one refund per deposit), `pending` -> `refunded`;
* `deductions`: `order_id` unique (at most one deduction per order);
* `settlement_outbox` (written by the archiver): `pending` -> `recorded` -> `done`, each move
  conditional on the previous status and made in the same transaction as the work it stands for;
* balances move only through `Accounts.credit/debit` inside the same transaction, with unique
  ledger refs: `deposit-refund:{deposit_id}`, `order-pay:{order_id}`;
* `provider_payments`: `_id` = the provider's out_trade_no, so a notification is applied once.

Deposit documents (persistence/deposits.py) gain `remaining` (fen still held; absent means the
whole amount) and `rev` (bumped by every settlement write, so two transactions that read the same
deposit cannot both act on it), and the statuses `refunded` (the rest went to a refund record) and
`consumed` (deductions took it all).

The money decisions come from the pure `engine.settle.rules`; this module only reads the inputs
and writes the outcome, inside one transaction.
"""

import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from engine.book.errors import GavelError, IllegalTransition, NotFound
from engine.book.states import LotState, SessionState
from engine.settle import rules
from engine.settle.rules import (
    BidStatus,
    DeductionType,
    MoneyTotals,
    OrderStatus,
    PaymentCase,
    PaymentSplit,
    RefundStatus,
    UserCouponStatus,
)
from engine.settle.worker import (
    AddressRequired,
    CouponNotUsable,
    OrderNotPayable,
    OutboxItem,
    OutboxStatus,
    OverdueResult,
    PaymentResult,
    PayRequest,
    PayWith,
    ProviderCharge,
    ProviderReceipt,
    RefundTask,
    SessionRelease,
    StrayDeposit,
    order_trade_no,
    parse_order_trade_no,
)
from persistence.accounts import Accounts
from persistence.archive import archived_bids, set_bid_status
from persistence.mongo import Client, Database, Document, Session, next_id, run_in_transaction, utc_now

log = logging.getLogger("gavel.settlement")

T = TypeVar("T")

MAX_ADDRESSES = 20
MAX_COUPON_QUANTITY = 1_000_000
PHONE_PATTERN = re.compile(r"\+?[0-9][0-9 -]{4,19}")
_ENDED = int(SessionState.ENDED)
_SOLD = int(LotState.SOLD)
_UNSOLD = int(LotState.UNSOLD)
_OVERDUE_LOT = int(LotState.OVERDUE)
_UNPAID = int(OrderStatus.UNPAID)
_AWAITING = int(OrderStatus.AWAITING_DELIVERY)
_COMPLETED = int(OrderStatus.COMPLETED)
_OVERDUE = int(OrderStatus.OVERDUE)
_WRITE_CONFLICT = 112
NOT_USABLE = "that coupon is not yours, already used, expired, or for another session"


# -- errors -----------------------------------------------------------------------------------------
class Conflict(GavelError):
    """Concurrent changes kept a transaction from committing; the client may retry."""

    code = "CONFLICT"


class CouponNotClaimable(GavelError):
    code = "COUPON_NOT_CLAIMABLE"


class CouponSoldOut(GavelError):
    code = "COUPON_SOLD_OUT"


class CouponAlreadyClaimed(GavelError):
    code = "COUPON_ALREADY_CLAIMED"


class AddressLimit(GavelError):
    code = "ADDRESS_LIMIT"


class InvalidSettlementInput(GavelError):
    code = "VALIDATION"


class _StaleRead(Exception):
    """A guarded write found the document changed since this transaction read it: run it again."""


class _Recorded(Exception):
    """The provider notification was recorded by a concurrent call: answer from that record."""


class _Refuse(Exception):
    """A provider payment cannot be applied to its order; it is recorded for refunding instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- indexes ----------------------------------------------------------------------------------------
def settlement_indexes() -> dict[str, list[IndexModel]]:
    return {
        "orders": [
            IndexModel([("lot_id", ASCENDING)], unique=True, name="one_order_per_lot"),
            IndexModel([("user_id", ASCENDING), ("_id", DESCENDING)], name="user_orders"),
            IndexModel([("status", ASCENDING), ("deadline_ms", ASCENDING)], name="status_deadline"),
            IndexModel(
                [("user_id", ASCENDING), ("session_id", ASCENDING), ("status", ASCENDING)],
                name="user_session_status",
            ),
            IndexModel(
                [("engine_synced", ASCENDING)],
                partialFilterExpression={"engine_synced": False},
                name="engine_unsynced",
            ),
        ],
        "refunds": [
            IndexModel([("deposit_id", ASCENDING)], unique=True, name="one_refund_per_deposit"),
            IndexModel([("status", ASCENDING), ("_id", ASCENDING)], name="status"),
            IndexModel([("user_id", ASCENDING), ("_id", DESCENDING)], name="user_refunds"),
        ],
        "deductions": [
            IndexModel([("order_id", ASCENDING)], unique=True, name="one_deduction_per_order"),
            IndexModel([("deposit_id", ASCENDING)], name="deposit_id"),
        ],
        "coupons": [IndexModel([("session_id", ASCENDING), ("_id", ASCENDING)], name="session_coupons")],
        "user_coupons": [
            IndexModel([("coupon_id", ASCENDING), ("user_id", ASCENDING)], unique=True, name="one_per_user"),
            IndexModel([("user_id", ASCENDING), ("status", ASCENDING)], name="user_status"),
            IndexModel([("session_id", ASCENDING), ("status", ASCENDING)], name="session_status"),
        ],
        "addresses": [IndexModel([("user_id", ASCENDING), ("_id", ASCENDING)], name="user_addresses")],
        "provider_payments": [IndexModel([("outcome", ASCENDING)], name="outcome")],
        "settlement_outbox": [
            IndexModel([("status", ASCENDING), ("closed_at_ms", ASCENDING)], name="status_closed_at"),
            IndexModel([("session_id", ASCENDING), ("status", ASCENDING)], name="session_status"),
        ],
        "sessions": [IndexModel([("state", ASCENDING), ("deposits_settled", ASCENDING)], name="settling")],
        "deposits": [IndexModel([("lot_id", ASCENDING), ("status", ASCENDING)], name="lot_status")],
    }


async def ensure_settlement_indexes(db: Database) -> None:
    """Create settlement's indexes (idempotent; call at start beside `ensure_indexes`)."""
    for collection, models in settlement_indexes().items():
        await db[collection].create_indexes(models)


# -- small helpers ----------------------------------------------------------------------------------
def _remaining(deposit: Document) -> int:
    """Fen still held by a deposit; documents settlement has not touched yet hold all of it."""
    remaining = deposit.get("remaining")
    return int(deposit["amount"] if remaining is None else remaining)


def _refund_task(doc: Document) -> RefundTask:
    return RefundTask(
        refund_id=int(doc["_id"]),
        deposit_id=int(doc["deposit_id"]),
        user_id=int(doc["user_id"]),
        amount=int(doc["amount"]),
        via="provider" if doc["via"] == "provider" else "balance",
        pending=doc["status"] == RefundStatus.PENDING,
    )


def _outbox_item(doc: Document) -> OutboxItem:
    winner = doc.get("winner_id")
    return OutboxItem(
        lot_id=int(doc["_id"]),
        session_id=int(doc["session_id"]),
        result=LotState(int(doc["result"])),
        winner_id=None if winner is None else int(winner),
        price=int(doc["price"]),
        bid_count=int(doc.get("bid_count", 0)),
        closed_at_ms=int(doc["closed_at_ms"]),
        status=OutboxStatus(doc["status"]),
    )


def _split_document(split: PaymentSplit) -> Document:
    return {
        "case": split.case.value,
        "coupon_used": split.coupon_used,
        "deposit_deducted": split.deposit_deducted,
        "deposit_refunded": split.deposit_refunded,
        "deposit_kept": split.deposit_kept,
        "to_pay": split.to_pay,
    }


def _split_from(doc: Document) -> PaymentSplit:
    return PaymentSplit(
        case=PaymentCase(doc["case"]),
        coupon_used=int(doc["coupon_used"]),
        deposit_deducted=int(doc["deposit_deducted"]),
        deposit_refunded=int(doc["deposit_refunded"]),
        deposit_kept=int(doc["deposit_kept"]),
        to_pay=int(doc["to_pay"]),
    )


def _pay_with(value: Any) -> PayWith:
    return "provider" if value == "provider" else "balance"


def _receipt(doc: Document, payment: PaymentResult | None = None) -> ProviderReceipt:
    order_id = doc.get("order_id")
    return ProviderReceipt(
        out_trade_no=doc["_id"],
        order_id=None if order_id is None else int(order_id),
        amount=int(doc["amount"]),
        outcome=doc["outcome"],
        reason=doc.get("reason", ""),
        payment=payment,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _DepositPlan:
    """The applicable deposit of an order as read inside a transaction, and what becomes of it."""

    doc: Document
    remaining: int
    session_wide: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Checkout:
    """What the pay page shows: the order, its lot, coupons, deposit, balance and a quote."""

    order: Document
    lot: Document
    coupons: list[Document]  # usable user coupons
    deposit: Document | None  # the deposit that applies, with `remaining`
    deposit_session_wide: bool
    balance: int
    addresses: list[Document]
    quote: PaymentSplit
    quote_coupon_id: int | None


class MongoSettlementStore:
    """The MongoDB implementation of `SettlementStore`, plus the reads and simple writes the REST
    layer needs (listings, coupons, addresses, shipping)."""

    def __init__(self, client: Client, db: Database, accounts: Accounts, *, stale_retries: int = 20) -> None:
        self.client = client
        self.db = db
        self.accounts = accounts
        self.stale_retries = stale_retries

    # -- transactions --------------------------------------------------------------------------------
    async def _txn(self, callback: Callable[[Session], Awaitable[T]]) -> T:
        """Run `callback` as one transaction; the driver retries transient errors (write conflicts),
        we retry guarded writes that found the data changed. Still failing: a 409 CONFLICT."""
        for _attempt in range(self.stale_retries):
            try:
                return await run_in_transaction(self.client, callback)
            except _StaleRead:
                continue
            except OperationFailure as error:
                if error.timeout:
                    raise  # MongoDB stalled: 503 UNAVAILABLE (gateway/errors.py), not a conflict
                if error.code == _WRITE_CONFLICT or error.has_error_label("TransientTransactionError"):
                    raise Conflict("too many concurrent changes; try again") from error
                raise
        raise Conflict("too many concurrent changes; try again")

    async def _applicable_deposit(
        self, s: Session | None, user_id: int, session_id: int, lot_id: int
    ) -> _DepositPlan | None:
        """The buyer's paid per-lot deposit for the lot, else their paid whole-session deposit."""
        doc = await self.db.deposits.find_one(
            {"user_id": user_id, "lot_id": lot_id, "status": "paid"}, session=s
        )
        if doc is None:
            doc = await self.db.deposits.find_one(
                {"user_id": user_id, "session_id": session_id, "lot_id": None, "status": "paid"}, session=s
            )
        if doc is None:
            return None
        return _DepositPlan(doc, _remaining(doc), doc.get("lot_id") is None)

    async def _session_ended(self, s: Session | None, session_id: int) -> bool:
        doc = await self.db.sessions.find_one({"_id": session_id}, {"state": 1}, session=s)
        return doc is not None and doc.get("state") == _ENDED

    async def _unpaid_orders(self, s: Session | None, user_id: int, session_id: int, exclude: int = 0) -> int:
        return await self.db.orders.count_documents(
            {"user_id": user_id, "session_id": session_id, "status": _UNPAID, "_id": {"$ne": exclude}},
            session=s,
        )

    async def _set_deposit(self, s: Session, doc: Document, remaining: int, *, refunded: bool) -> None:
        """Write a deposit's new remaining amount, guarded by the `rev` this transaction read.

        Always bumps `rev`, even when nothing else changes: a payment that decided from this deposit
        then conflicts with any other transaction that decided from it too.
        """
        if refunded:
            assert remaining == 0, "a refund always takes all that a deposit still holds"
            status = "refunded"
        else:
            status = "paid" if remaining > 0 else "consumed"
        result = await self.db.deposits.update_one(
            {"_id": doc["_id"], "status": "paid", "rev": doc.get("rev")},
            {"$set": {"remaining": remaining, "status": status}, "$inc": {"rev": 1}},
            session=s,
        )
        if result.modified_count != 1:
            raise _StaleRead()

    async def _insert_refund(
        self, s: Session, deposit: Document, amount: int, reason: str, now_ms: int
    ) -> RefundTask:
        refund_id = await next_id(self.db, "refunds")  # outside the transaction: a retry leaves a gap
        doc = {
            "_id": refund_id,
            "deposit_id": deposit["_id"],
            "user_id": deposit["user_id"],
            "session_id": deposit["session_id"],
            "lot_id": deposit.get("lot_id"),
            "amount": amount,
            "via": _pay_with(deposit.get("pay_with")),
            "status": str(RefundStatus.PENDING),
            "reason": reason,
            "created_at_ms": now_ms,
            "refunded_at_ms": None,
        }
        await self.db.refunds.insert_one(doc, session=s)
        return _refund_task(doc)

    async def _insert_deduction(
        self, s: Session, order: Document, deposit: Document, amount: int, kind: DeductionType, now_ms: int
    ) -> None:
        deduction_id = await next_id(self.db, "deductions")
        await self.db.deductions.insert_one(
            {
                "_id": deduction_id,
                "order_id": order["_id"],
                "deposit_id": deposit["_id"],
                "user_id": order["user_id"],
                "session_id": order["session_id"],
                "amount": amount,
                "type": str(kind),
                "at_ms": now_ms,
            },
            session=s,
        )

    # -- the outbox ------------------------------------------------------------------------------------
    async def outbox_batch(self, limit: int) -> list[OutboxItem]:
        cursor = (
            self.db.settlement_outbox.find({"status": {"$ne": str(OutboxStatus.DONE)}})
            .sort([("closed_at_ms", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [_outbox_item(doc) async for doc in cursor]

    async def record_close(self, item: OutboxItem, deadline_ms: int) -> None:
        sold = item.result is LotState.SOLD and item.winner_id is not None
        order_id = await next_id(self.db, "orders") if sold else 0

        async def record(s: Session) -> None:
            pending = await self.db.settlement_outbox.find_one(
                {"_id": item.lot_id, "status": str(OutboxStatus.PENDING)}, session=s
            )
            if pending is None:
                return
            recorded_order: int | None = None
            existing = await self.db.orders.find_one({"lot_id": item.lot_id}, {"_id": 1}, session=s)
            if existing is not None:
                # The outbox row was re-inserted after being done (an archive replay): the work stands.
                recorded_order = int(existing["_id"])
            elif sold:
                assert item.winner_id is not None
                recorded_order = order_id
                await self.db.orders.insert_one(
                    {
                        "_id": order_id,
                        "lot_id": item.lot_id,
                        "session_id": item.session_id,
                        "user_id": item.winner_id,
                        "price": item.price,
                        "status": _UNPAID,
                        "closed_at_ms": item.closed_at_ms,
                        "deadline_ms": deadline_ms,
                        "created_at": utc_now(),
                        "attempts": 0,
                        "pending_payment": None,
                        "payment": None,
                        "address": None,
                        "paid_at_ms": None,
                        "shipped_at_ms": None,
                        "tracking_no": None,
                        "completed_at_ms": None,
                        "overdue_at_ms": None,
                        "forfeit": None,
                    },
                    session=s,
                )
                bids = await archived_bids(self.db, item.lot_id, session=s)
                won = next(
                    (b for b in reversed(bids) if b.bidder == item.winner_id and b.price == item.price), None
                )
                if won is not None:
                    await set_bid_status(self.db, won, int(BidStatus.WON), session=s)
                else:
                    log.warning("no archived bid record for the winner of lot %s", item.lot_id)
                await self.db.lots.update_one(
                    {"_id": item.lot_id},
                    {"$set": {"deal_price": item.price, "winner_id": item.winner_id, "order_id": order_id}},
                    session=s,
                )
                await self.db.sessions.update_one(
                    {"_id": item.session_id},
                    {"$inc": {"deal_total": item.price, "bid_count": item.bid_count, "sold_count": 1}},
                    session=s,
                )
            else:
                await self.db.lots.update_one(
                    {"_id": item.lot_id, "state": {"$ne": _OVERDUE_LOT}},
                    {"$set": {"state": _UNSOLD, "deal_price": None}},
                    session=s,
                )
                await self.db.sessions.update_one(
                    {"_id": item.session_id},
                    {"$inc": {"bid_count": item.bid_count, "unsold_count": 1}},
                    session=s,
                )
            await self.db.settlement_outbox.update_one(
                {"_id": item.lot_id, "status": str(OutboxStatus.PENDING)},
                {"$set": {"status": str(OutboxStatus.RECORDED), "order_id": recorded_order}},
                session=s,
            )

        await self._txn(record)

    async def deposits_to_refund_at_close(self, item: OutboxItem) -> list[int]:
        winner = item.winner_id if item.result is LotState.SOLD else None
        cursor = self.db.deposits.find({"lot_id": item.lot_id, "status": "paid"}, {"user_id": 1})
        return [
            int(doc["_id"])
            async for doc in cursor
            if rules.refund_at_close(deposit_owner=int(doc["user_id"]), winner=winner)
        ]

    async def open_refund(self, deposit_id: int, reason: str, now_ms: int) -> RefundTask | None:
        async def open_(s: Session) -> RefundTask | None:
            existing = await self.db.refunds.find_one({"deposit_id": deposit_id}, session=s)
            if existing is not None:
                return _refund_task(existing)
            deposit = await self.db.deposits.find_one({"_id": deposit_id, "status": "paid"}, session=s)
            if deposit is None:
                return None
            remaining = _remaining(deposit)
            if remaining == 0:
                await self._set_deposit(s, deposit, 0, refunded=False)
                return None
            refund = await self._insert_refund(s, deposit, remaining, reason, now_ms)
            await self._set_deposit(s, deposit, 0, refunded=True)
            return refund

        try:
            return await self._txn(open_)
        except DuplicateKeyError:  # a concurrent transaction opened it first
            existing = await self.db.refunds.find_one({"deposit_id": deposit_id})
            return None if existing is None else _refund_task(existing)

    async def finish_outbox(self, lot_id: int) -> None:
        await self.db.settlement_outbox.update_one(
            {"_id": lot_id, "status": str(OutboxStatus.RECORDED)},
            {"$set": {"status": str(OutboxStatus.DONE)}},
        )

    # -- refunds ------------------------------------------------------------------------------------------
    async def pending_refunds(self, limit: int) -> list[RefundTask]:
        cursor = (
            self.db.refunds.find({"status": str(RefundStatus.PENDING)}).sort("_id", ASCENDING).limit(limit)
        )
        return [_refund_task(doc) async for doc in cursor]

    async def refund_to_balance(self, refund_id: int, now_ms: int) -> None:
        async def refund(s: Session) -> None:
            doc = await self.db.refunds.find_one(
                {"_id": refund_id, "status": str(RefundStatus.PENDING), "via": "balance"}, session=s
            )
            if doc is None:
                return
            ref = f"deposit-refund:{doc['deposit_id']}"
            await self.accounts.credit(
                int(doc["user_id"]), int(doc["amount"]), "deposit_refund", ref, session=s
            )
            await self.db.refunds.update_one(
                {"_id": refund_id, "status": str(RefundStatus.PENDING)},
                {"$set": {"status": str(RefundStatus.REFUNDED), "refunded_at_ms": now_ms, "ledger_ref": ref}},
                session=s,
            )

        await self._txn(refund)

    async def mark_refunded(self, refund_id: int, now_ms: int) -> None:
        await self.db.refunds.update_one(
            {"_id": refund_id, "status": str(RefundStatus.PENDING)},
            {"$set": {"status": str(RefundStatus.REFUNDED), "refunded_at_ms": now_ms}},
        )

    # -- sessions ------------------------------------------------------------------------------------------
    async def sessions_to_settle(self, limit: int) -> list[int]:
        cursor = self.db.sessions.find(
            {"state": _ENDED, "deposits_settled": {"$ne": True}}, {"_id": 1}
        ).limit(limit)
        return [int(doc["_id"]) async for doc in cursor]

    async def release_session(self, session_id: int, user_id: int | None, now_ms: int) -> SessionRelease:
        not_yet = SessionRelease([], 0, False)
        if not await self._session_ended(None, session_id):
            return not_yet
        # Orders come from the outbox: until every close of the session is recorded, "won nothing"
        # cannot be told apart from "not recorded yet".
        if await self.db.settlement_outbox.find_one(
            {"session_id": session_id, "status": str(OutboxStatus.PENDING)}, {"_id": 1}
        ):
            return not_yet
        query: Document = {"session_id": session_id, "lot_id": None, "status": "paid"}
        if user_id is not None:
            query["user_id"] = user_id
        refunds: list[RefundTask] = []
        async for deposit in self.db.deposits.find(query, {"_id": 1}):
            refund = await self._release_session_deposit(int(deposit["_id"]), now_ms)
            if refund is not None:
                refunds.append(refund)
        expired = await self._expire_coupons(session_id, user_id, now_ms)
        settled = (
            await self.db.deposits.find_one(
                {"session_id": session_id, "lot_id": None, "status": "paid"}, {"_id": 1}
            )
            is None
        )
        if settled:
            await self.db.sessions.update_one({"_id": session_id}, {"$set": {"deposits_settled": True}})
        return SessionRelease(refunds, expired, settled)

    async def _release_session_deposit(self, deposit_id: int, now_ms: int) -> RefundTask | None:
        async def release(s: Session) -> RefundTask | None:
            deposit = await self.db.deposits.find_one({"_id": deposit_id, "status": "paid"}, session=s)
            if deposit is None:
                return None
            unpaid = await self._unpaid_orders(s, int(deposit["user_id"]), int(deposit["session_id"]))
            remaining = _remaining(deposit)
            amount = rules.session_deposit_release(remaining, session_ended=True, unpaid_orders=unpaid)
            if remaining == 0:
                await self._set_deposit(s, deposit, 0, refunded=False)
                return None
            if amount == 0:
                return None
            refund = await self._insert_refund(s, deposit, amount, "session_released", now_ms)
            await self._set_deposit(s, deposit, remaining - amount, refunded=True)
            return refund

        try:
            return await self._txn(release)
        except DuplicateKeyError:
            existing = await self.db.refunds.find_one({"deposit_id": deposit_id})
            return None if existing is None else _refund_task(existing)

    async def _expire_coupons(self, session_id: int, user_id: int | None, now_ms: int) -> int:
        """Unused coupons of a session can only pay orders of that session: once it has ended and
        their owner has no unpaid order in it, they never can."""
        still_paying = await self.db.orders.distinct("user_id", {"session_id": session_id, "status": _UNPAID})
        query: Document = {
            "session_id": session_id,
            "status": int(UserCouponStatus.UNUSED),
            "user_id": {"$nin": still_paying},
        }
        if user_id is not None:
            if user_id in still_paying:
                return 0
            query["user_id"] = user_id
        result = await self.db.user_coupons.update_many(
            query, {"$set": {"status": int(UserCouponStatus.EXPIRED), "expired_at_ms": now_ms}}
        )
        return result.modified_count

    async def stray_deposits(self, limit: int) -> list[StrayDeposit]:
        strays: list[StrayDeposit] = []
        lot_deposits = [
            doc
            async for doc in self.db.deposits.find({"status": "paid", "lot_id": {"$ne": None}}).limit(
                limit * 10
            )
        ]
        lot_ids = sorted({int(doc["lot_id"]) for doc in lot_deposits})
        done = {
            int(doc["_id"]): doc
            async for doc in self.db.settlement_outbox.find(
                {"_id": {"$in": lot_ids}, "status": str(OutboxStatus.DONE)}
            )
        }
        for deposit in lot_deposits:
            closed = done.get(int(deposit["lot_id"]))
            if closed is None:
                continue
            winner = closed.get("winner_id") if closed.get("result") == _SOLD else None
            if rules.refund_at_close(deposit_owner=int(deposit["user_id"]), winner=winner):
                strays.append(
                    StrayDeposit(
                        int(deposit["_id"]), int(deposit["user_id"]), int(deposit["session_id"]), False
                    )
                )
        settled_sessions = [
            int(doc["_id"]) async for doc in self.db.sessions.find({"deposits_settled": True}, {"_id": 1})
        ]
        if settled_sessions:
            async for deposit in self.db.deposits.find(
                {"status": "paid", "lot_id": None, "session_id": {"$in": settled_sessions}}
            ).limit(limit):
                strays.append(
                    StrayDeposit(
                        int(deposit["_id"]), int(deposit["user_id"]), int(deposit["session_id"]), True
                    )
                )
        return strays[:limit]

    # -- overdue ------------------------------------------------------------------------------------------
    async def due_orders(self, now_ms: int, limit: int) -> list[int]:
        cursor = (
            self.db.orders.find({"status": _UNPAID, "deadline_ms": {"$lte": now_ms}}, {"_id": 1})
            .sort([("deadline_ms", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [int(doc["_id"]) async for doc in cursor]

    async def mark_overdue(self, order_id: int, now_ms: int) -> OverdueResult | None:
        async def overdue(s: Session) -> OverdueResult | None:
            order = await self.db.orders.find_one(
                {"_id": order_id, "status": _UNPAID, "deadline_ms": {"$lte": now_ms}}, session=s
            )
            if order is None:
                return None
            user_id, session_id, lot_id = (
                int(order["user_id"]),
                int(order["session_id"]),
                int(order["lot_id"]),
            )
            plan = await self._applicable_deposit(s, user_id, session_id, lot_id)
            forfeited, refund, session_wide = 0, None, False
            if plan is not None:
                session_wide = plan.session_wide
                needed = session_wide and rules.session_deposit_needed(
                    session_ended=await self._session_ended(s, session_id),
                    other_unpaid_orders=await self._unpaid_orders(s, user_id, session_id, exclude=order_id),
                )
                split = rules.forfeit(
                    int(order["price"]),
                    plan.remaining,
                    deposit_is_session_wide=session_wide,
                    session_deposit_needed=needed,
                )
                forfeited = split.deducted
                if split.deducted:
                    await self._insert_deduction(
                        s, order, plan.doc, split.deducted, DeductionType.OVERDUE, now_ms
                    )
                if split.refunded:
                    refund = await self._insert_refund(s, plan.doc, split.refunded, "forfeit_rest", now_ms)
                await self._set_deposit(s, plan.doc, split.kept, refunded=split.refunded > 0)
            result = await self.db.orders.update_one(
                {"_id": order_id, "status": _UNPAID},
                {
                    "$set": {
                        "status": int(rules.check_order_transition(OrderStatus.UNPAID, OrderStatus.OVERDUE)),
                        "overdue_at_ms": now_ms,
                        "forfeit": forfeited,
                        "forfeit_deposit_id": None if plan is None else plan.doc["_id"],
                        "engine_synced": False,
                    }
                },
                session=s,
            )
            if result.modified_count != 1:
                raise _StaleRead()
            for bid in await archived_bids(self.db, lot_id, session=s):
                if bid.bidder == user_id and bid.status == BidStatus.WON:
                    await set_bid_status(self.db, bid, int(BidStatus.OVERDUE), session=s)
            await self.db.lots.update_one({"_id": lot_id}, {"$set": {"state": _OVERDUE_LOT}}, session=s)
            await self.db.users.update_one(
                {"_id": user_id}, {"$set": {"non_payer": True, "non_payer_order_id": order_id}}, session=s
            )
            return OverdueResult(order_id, lot_id, user_id, session_id, forfeited, refund, session_wide)

        return await self._txn(overdue)

    async def unsynced_overdue(self, limit: int) -> list[OverdueResult]:
        cursor = self.db.orders.find({"engine_synced": False, "status": _OVERDUE}).limit(limit)
        return [
            OverdueResult(
                int(doc["_id"]),
                int(doc["lot_id"]),
                int(doc["user_id"]),
                int(doc["session_id"]),
                int(doc.get("forfeit") or 0),
                None,
                False,
            )
            async for doc in cursor
        ]

    async def mark_engine_synced(self, order_id: int) -> None:
        await self.db.orders.update_one({"_id": order_id}, {"$set": {"engine_synced": True}})

    # -- paying -------------------------------------------------------------------------------------------
    async def pay(self, request: PayRequest, now_ms: int) -> PaymentResult:
        async def pay(s: Session) -> PaymentResult:
            order = await self.db.orders.find_one(
                {"_id": request.order_id, "user_id": request.user_id}, session=s
            )
            if order is None:
                raise NotFound(f"no order {request.order_id}")
            if order["status"] != _UNPAID:
                payment = order.get("payment")
                if payment is not None and payment.get("idempotency_key") == request.idempotency_key:
                    return self._paid_result(order, replayed=True)
                raise OrderNotPayable(f"order {request.order_id} is {OrderStatus(order['status']).key}")
            pending = order.get("pending_payment")
            if pending is not None and pending.get("idempotency_key") == request.idempotency_key:
                return self._pending_result(order, pending, replayed=True)
            if rules.is_due(int(order["deadline_ms"]), now_ms):
                raise OrderNotPayable(f"the payment deadline of order {request.order_id} has passed")
            address = await self.db.addresses.find_one(
                {"_id": request.address_id, "user_id": request.user_id}, session=s
            )
            if address is None:
                raise AddressRequired("choose one of your delivery addresses")
            coupon = await self._usable_coupon(s, order, request.coupon_id)
            plan = await self._applicable_deposit(
                s, request.user_id, int(order["session_id"]), int(order["lot_id"])
            )
            split = await self._split(s, order, coupon, plan)
            if request.pay_with == "provider" and split.to_pay > 0:
                return await self._open_charge(s, order, request, split, coupon, address, plan, now_ms)
            refund = await self._apply_payment(
                s,
                order,
                split,
                coupon,
                plan,
                _address_snapshot(address),
                request.pay_with,
                request.idempotency_key,
                cash_source="balance",
                out_trade_no=None,
                now_ms=now_ms,
            )
            return PaymentResult(
                int(order["_id"]),
                request.user_id,
                int(order["session_id"]),
                OrderStatus.AWAITING_DELIVERY,
                split,
                request.pay_with,
                refund,
                None,
                replayed=False,
            )

        return await self._txn(pay)

    async def _usable_coupon(self, s: Session, order: Document, coupon_id: int | None) -> Document | None:
        if coupon_id is None:
            return None
        coupon = await self.db.user_coupons.find_one(
            {
                "_id": coupon_id,
                "user_id": order["user_id"],
                "session_id": order["session_id"],
                "status": int(UserCouponStatus.UNUSED),
            },
            session=s,
        )
        if coupon is None:
            raise CouponNotUsable(NOT_USABLE)
        return coupon

    async def _split(
        self, s: Session | None, order: Document, coupon: Document | None, plan: _DepositPlan | None
    ) -> PaymentSplit:
        needed = False
        if plan is not None and plan.session_wide:
            user_id, session_id = int(order["user_id"]), int(order["session_id"])
            needed = rules.session_deposit_needed(
                session_ended=await self._session_ended(s, session_id),
                other_unpaid_orders=await self._unpaid_orders(
                    s, user_id, session_id, exclude=int(order["_id"])
                ),
            )
        return rules.split_payment(
            int(order["price"]),
            0 if coupon is None else int(coupon["amount"]),
            0 if plan is None else plan.remaining,
            deposit_is_session_wide=plan is not None and plan.session_wide,
            session_deposit_needed=needed,
        )

    async def _open_charge(
        self,
        s: Session,
        order: Document,
        request: PayRequest,
        split: PaymentSplit,
        coupon: Document | None,
        address: Document,
        plan: _DepositPlan | None,
        now_ms: int,
    ) -> PaymentResult:
        """Remember what the provider payment is for; nothing moves until its notification.

        A new idempotency key opens a new attempt (a new out_trade_no): a late notification of an
        earlier attempt is then refunded instead of paying the order twice.
        """
        attempt = int(order.get("attempts", 0)) + 1
        lot = await self.db.lots.find_one({"_id": order["lot_id"]}, {"title": 1}, session=s)
        title = str(lot.get("title", "")) if lot else ""
        pending = {
            "out_trade_no": order_trade_no(int(order["_id"]), attempt),
            "amount": split.to_pay,
            "subject": f"Gavel order {order['_id']}" + (f": {title}"[:80] if title else ""),
            "idempotency_key": request.idempotency_key,
            "coupon_id": None if coupon is None else coupon["_id"],
            "address": _address_snapshot(address),
            "deposit_id": None if plan is None else plan.doc["_id"],
            "split": _split_document(split),
            "pay_url": None,
            "created_at_ms": now_ms,
        }
        result = await self.db.orders.update_one(
            {"_id": order["_id"], "status": _UNPAID, "attempts": order.get("attempts", 0)},
            {"$set": {"pending_payment": pending, "attempts": attempt}},
            session=s,
        )
        if result.modified_count != 1:
            raise _StaleRead()
        return self._pending_result(order, pending, replayed=False)

    def _pending_result(self, order: Document, pending: Document, *, replayed: bool) -> PaymentResult:
        return PaymentResult(
            int(order["_id"]),
            int(order["user_id"]),
            int(order["session_id"]),
            OrderStatus.UNPAID,
            _split_from(pending["split"]),
            "provider",
            None,
            ProviderCharge(
                pending["out_trade_no"], int(pending["amount"]), pending["subject"], pending.get("pay_url")
            ),
            replayed,
        )

    def _paid_result(self, order: Document, *, replayed: bool) -> PaymentResult:
        payment = order["payment"]
        return PaymentResult(
            int(order["_id"]),
            int(order["user_id"]),
            int(order["session_id"]),
            OrderStatus(order["status"]),
            _split_from(payment),
            _pay_with(payment.get("pay_with")),
            None,
            None,
            replayed,
        )

    async def _apply_payment(
        self,
        s: Session,
        order: Document,
        split: PaymentSplit,
        coupon: Document | None,
        plan: _DepositPlan | None,
        address: Document,
        pay_with: PayWith,
        idempotency_key: str,
        *,
        cash_source: PayWith,
        out_trade_no: str | None,
        now_ms: int,
    ) -> RefundTask | None:
        """Carry out a payment split: deduction, deposit rest, balance debit, coupon, order paid."""
        order_id = int(order["_id"])
        refund = None
        if plan is not None:
            if split.deposit_deducted:
                await self._insert_deduction(
                    s, order, plan.doc, split.deposit_deducted, DeductionType.PAYMENT, now_ms
                )
            if split.deposit_refunded:
                refund = await self._insert_refund(
                    s, plan.doc, split.deposit_refunded, "payment_rest", now_ms
                )
            await self._set_deposit(s, plan.doc, split.deposit_kept, refunded=split.deposit_refunded > 0)
        if split.to_pay and cash_source == "balance":
            await self.accounts.debit(
                int(order["user_id"]), split.to_pay, "order_payment", f"order-pay:{order_id}", session=s
            )
        if coupon is not None:
            used = await self.db.user_coupons.update_one(
                {"_id": coupon["_id"], "status": int(UserCouponStatus.UNUSED)},
                {"$set": {"status": int(UserCouponStatus.USED), "order_id": order_id, "used_at_ms": now_ms}},
                session=s,
            )
            if used.modified_count != 1:
                raise _StaleRead()
        payment = {
            **_split_document(split),
            "pay_with": pay_with,
            "idempotency_key": idempotency_key,
            "coupon_id": None if coupon is None else coupon["_id"],
            "deposit_id": None if plan is None else plan.doc["_id"],
            "deposit_session_wide": plan is not None and plan.session_wide,
            "cash_source": cash_source if split.to_pay else None,
            "cash_amount": split.to_pay,
            "out_trade_no": out_trade_no,
            "paid_amount": split.paid_amount,
        }
        target = rules.check_order_transition(OrderStatus.UNPAID, OrderStatus.AWAITING_DELIVERY)
        result = await self.db.orders.update_one(
            {"_id": order_id, "status": _UNPAID},
            {
                "$set": {
                    "status": int(target),
                    "payment": payment,
                    "address": address,
                    "paid_at_ms": now_ms,
                    "pending_payment": None,
                }
            },
            session=s,
        )
        if result.modified_count != 1:
            raise _StaleRead()
        return refund

    async def attach_pay_url(self, order_id: int, out_trade_no: str, pay_url: str) -> None:
        await self.db.orders.update_one(
            {"_id": order_id, "pending_payment.out_trade_no": out_trade_no},
            {"$set": {"pending_payment.pay_url": pay_url}},
        )

    async def receive_provider_payment(self, out_trade_no: str, amount: int, now_ms: int) -> ProviderReceipt:
        known = await self.db.provider_payments.find_one({"_id": out_trade_no})
        if known is not None:
            return _receipt(known)
        parsed = parse_order_trade_no(out_trade_no)
        order_id = None if parsed is None else parsed[0]

        async def apply(s: Session) -> ProviderReceipt:
            if await self.db.provider_payments.find_one({"_id": out_trade_no}, session=s) is not None:
                raise _Recorded()
            order = None if order_id is None else await self.db.orders.find_one({"_id": order_id}, session=s)
            if order is None:
                raise _Refuse("no such order")
            if order["status"] != _UNPAID:
                raise _Refuse(f"the order is {OrderStatus(order['status']).key}")
            pending = order.get("pending_payment")
            if pending is None or pending.get("out_trade_no") != out_trade_no:
                raise _Refuse("a stale payment attempt")
            if int(pending["amount"]) != amount:
                raise _Refuse(f"paid {amount} fen where {pending['amount']} fen was asked")
            try:
                coupon = await self._usable_coupon(s, order, pending.get("coupon_id"))
            except CouponNotUsable:
                raise _Refuse("the coupon was used elsewhere meanwhile") from None
            plan = await self._applicable_deposit(
                s, int(order["user_id"]), int(order["session_id"]), int(order["lot_id"])
            )
            split = await self._split(s, order, coupon, plan)
            if split.to_pay != amount:
                raise _Refuse("the deposit changed since the payment was started")
            refund = await self._apply_payment(
                s,
                order,
                split,
                coupon,
                plan,
                pending["address"],
                "provider",
                pending["idempotency_key"],
                cash_source="provider",
                out_trade_no=out_trade_no,
                now_ms=now_ms,
            )
            record = {
                "_id": out_trade_no,
                "order_id": order_id,
                "amount": amount,
                "outcome": "applied",
                "reason": "",
                "received_at_ms": now_ms,
            }
            await self.db.provider_payments.insert_one(record, session=s)
            payment = PaymentResult(
                int(order["_id"]),
                int(order["user_id"]),
                int(order["session_id"]),
                OrderStatus.AWAITING_DELIVERY,
                split,
                "provider",
                refund,
                None,
                replayed=False,
            )
            return _receipt(record, payment)

        try:
            return await self._txn(apply)
        except _Refuse as refusal:
            record = {
                "_id": out_trade_no,
                "order_id": order_id,
                "amount": amount,
                "outcome": "refund_pending",
                "reason": refusal.reason,
                "received_at_ms": now_ms,
            }
            with contextlib.suppress(DuplicateKeyError):
                await self.db.provider_payments.insert_one(record)
        except (_Recorded, DuplicateKeyError, Conflict):
            pass
        known = await self.db.provider_payments.find_one({"_id": out_trade_no})
        if known is None:
            raise Conflict("the payment notification could not be recorded; it will be retried")
        return _receipt(known)

    async def provider_refunds_due(self, limit: int) -> list[ProviderReceipt]:
        cursor = (
            self.db.provider_payments.find({"outcome": "refund_pending"}).sort("_id", ASCENDING).limit(limit)
        )
        return [_receipt(doc) async for doc in cursor]

    async def mark_provider_refunded(self, out_trade_no: str, now_ms: int) -> None:
        await self.db.provider_payments.update_one(
            {"_id": out_trade_no, "outcome": "refund_pending"},
            {"$set": {"outcome": "refunded", "refunded_at_ms": now_ms}},
        )

    # -- non-payers --------------------------------------------------------------------------------------
    async def clear_non_payer(self, user_id: int) -> bool:
        result = await self.db.users.update_one(
            {"_id": user_id, "non_payer": True},
            {"$set": {"non_payer": False}, "$unset": {"non_payer_order_id": ""}},
        )
        if result.modified_count == 1:
            return True
        if await self.db.users.find_one({"_id": user_id}, {"_id": 1}) is None:
            raise NotFound(f"no user {user_id}")
        return False

    # -- orders (reads and admin moves) ----------------------------------------------------------------
    async def orders_for_user(self, user_id: int, limit: int = 500) -> list[Document]:
        cursor = self.db.orders.find({"user_id": user_id}).sort("_id", DESCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def order_for_user(self, order_id: int, user_id: int) -> Document:
        """The caller's order; another user's is as unknown as a missing one (existence never leaks)."""
        order = await self.db.orders.find_one({"_id": order_id, "user_id": user_id})
        if order is None:
            raise NotFound(f"no order {order_id}")
        return order

    async def order(self, order_id: int) -> Document:
        order = await self.db.orders.find_one({"_id": order_id})
        if order is None:
            raise NotFound(f"no order {order_id}")
        return order

    async def orders_by_status(
        self, status: OrderStatus | None, skip: int, limit: int
    ) -> tuple[list[Document], int]:
        query: Document = {} if status is None else {"status": int(status)}
        total = await self.db.orders.count_documents(query)
        cursor = self.db.orders.find(query).sort("_id", DESCENDING).skip(skip).limit(limit)
        return [doc async for doc in cursor], total

    async def lots_info(self, lot_ids: list[int]) -> dict[int, Document]:
        cursor = self.db.lots.find({"_id": {"$in": lot_ids}}, {"title": 1, "images": 1, "catalogue_no": 1})
        return {int(doc["_id"]): doc async for doc in cursor}

    async def checkout(self, order_id: int, user_id: int, coupon_id: int | None, now_ms: int) -> Checkout:
        order = await self.order_for_user(order_id, user_id)
        lot = (await self.lots_info([int(order["lot_id"])])).get(
            int(order["lot_id"]), {"_id": order["lot_id"]}
        )
        coupons = [
            doc
            async for doc in self.db.user_coupons.find(
                {
                    "user_id": user_id,
                    "session_id": order["session_id"],
                    "status": int(UserCouponStatus.UNUSED),
                }
            ).sort("amount", DESCENDING)
        ]
        chosen = None
        if coupon_id is not None:
            chosen = next((c for c in coupons if c["_id"] == coupon_id), None)
            if chosen is None:
                raise CouponNotUsable(NOT_USABLE)
        plan = await self._applicable_deposit(None, user_id, int(order["session_id"]), int(order["lot_id"]))
        quote = await self._split(None, order, chosen, plan)
        profile = await self.accounts.profile(user_id)
        addresses = await self.addresses(user_id)
        deposit = None if plan is None else {**plan.doc, "remaining": plan.remaining}
        return Checkout(
            order,
            lot,
            coupons,
            deposit,
            plan is not None and plan.session_wide,
            profile.balance,
            addresses,
            quote,
            coupon_id,
        )

    async def ship(self, order_id: int, tracking_no: str | None, now_ms: int) -> Document:
        doc = await self.db.orders.find_one_and_update(
            {"_id": order_id, "status": _AWAITING, "shipped_at_ms": None},
            {"$set": {"shipped_at_ms": now_ms, "tracking_no": tracking_no}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return doc
        order = await self.order(order_id)
        if order["status"] == _AWAITING:  # shipped already: answer as before (idempotent)
            return order
        raise IllegalTransition(
            f"order {order_id} is {OrderStatus(order['status']).key}; it cannot be shipped"
        )

    async def complete(self, order_id: int, now_ms: int) -> Document:
        target = int(OrderStatus.COMPLETED)
        doc = await self.db.orders.find_one_and_update(
            {"_id": order_id, "status": _AWAITING, "shipped_at_ms": {"$ne": None}},
            {"$set": {"status": target, "completed_at_ms": now_ms}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return doc
        order = await self.order(order_id)
        if order["status"] == _COMPLETED:
            return order
        if order["status"] == _AWAITING:
            raise IllegalTransition(f"order {order_id} has not been shipped yet")
        rules.check_order_transition(OrderStatus(order["status"]), OrderStatus.COMPLETED)
        raise AssertionError("unreachable")  # pragma: no cover - the transition check raised

    # -- auction coupons -------------------------------------------------------------------------------
    async def create_coupon(
        self, session_id: int, title: str, amount: int, quantity: int, claim_start_ms: int, claim_end_ms: int
    ) -> Document:
        if not 1 <= quantity <= MAX_COUPON_QUANTITY or amount < 1 or claim_start_ms >= claim_end_ms:
            raise InvalidSettlementInput(
                f"a coupon needs amount >= 1, quantity 1-{MAX_COUPON_QUANTITY} and claim_start < claim_end"
            )
        if await self.db.sessions.find_one({"_id": session_id}, {"_id": 1}) is None:
            raise NotFound(f"no session {session_id}")
        doc = {
            "_id": await next_id(self.db, "coupons"),
            "session_id": session_id,
            "title": title,
            "amount": amount,
            "quantity": quantity,
            "claimed": 0,
            "left": quantity,
            "claim_start_ms": claim_start_ms,
            "claim_end_ms": claim_end_ms,
            "created_at": utc_now(),
        }
        await self.db.coupons.insert_one(doc)
        return doc

    async def coupon(self, coupon_id: int) -> Document:
        doc = await self.db.coupons.find_one({"_id": coupon_id})
        if doc is None:
            raise NotFound(f"no coupon {coupon_id}")
        return doc

    async def session_coupons(self, session_id: int) -> list[Document]:
        return [doc async for doc in self.db.coupons.find({"session_id": session_id}).sort("_id", ASCENDING)]

    async def claim_coupon(self, coupon_id: int, user_id: int, now_ms: int) -> Document:
        """One coupon per user, never more than the quantity: a conditional decrement of `left` and a
        unique (coupon, user) insert in one transaction, so a second claim undoes its decrement."""
        user_coupon_id = await next_id(self.db, "user_coupons")

        async def claim(s: Session) -> Document:
            coupon = await self.db.coupons.find_one_and_update(
                {
                    "_id": coupon_id,
                    "left": {"$gt": 0},
                    "claim_start_ms": {"$lte": now_ms},
                    "claim_end_ms": {"$gt": now_ms},
                },
                {"$inc": {"left": -1, "claimed": 1}},
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            if coupon is None:
                current = await self.db.coupons.find_one({"_id": coupon_id}, session=s)
                if current is None:
                    raise NotFound(f"no coupon {coupon_id}")
                state = rules.coupon_state(
                    now_ms, int(current["claim_start_ms"]), int(current["claim_end_ms"])
                )
                if state is not rules.CouponState.CLAIMING:
                    raise CouponNotClaimable(f"coupon {coupon_id} is {state.name.lower()}")
                raise CouponSoldOut(f"coupon {coupon_id} has been claimed {current['quantity']} times")
            # A coupon pays only orders of its session: once the session is over, only a winner
            # with an unpaid order there could still use one.
            session_id = int(coupon["session_id"])
            if await self._session_ended(s, session_id) and not await self._unpaid_orders(
                s, user_id, session_id
            ):
                raise CouponNotClaimable(
                    f"coupon {coupon_id}'s session has ended and you have nothing to pay there"
                )
            doc = {
                "_id": user_coupon_id,
                "coupon_id": coupon_id,
                "user_id": user_id,
                "session_id": coupon["session_id"],
                "title": coupon["title"],
                "amount": coupon["amount"],
                "status": int(UserCouponStatus.UNUSED),
                "order_id": None,
                "claimed_at_ms": now_ms,
            }
            await self.db.user_coupons.insert_one(doc, session=s)
            return doc

        try:
            return await self._txn(claim)
        except DuplicateKeyError:
            raise CouponAlreadyClaimed(f"you already have coupon {coupon_id}") from None

    async def user_coupons(self, user_id: int) -> list[Document]:
        return [doc async for doc in self.db.user_coupons.find({"user_id": user_id}).sort("_id", DESCENDING)]

    # -- addresses -------------------------------------------------------------------------------------
    async def addresses(self, user_id: int) -> list[Document]:
        return [doc async for doc in self.db.addresses.find({"user_id": user_id}).sort("_id", ASCENDING)]

    async def address(self, address_id: int, user_id: int) -> Document:
        doc = await self.db.addresses.find_one({"_id": address_id, "user_id": user_id})
        if doc is None:
            raise NotFound(f"no address {address_id}")
        return doc

    async def create_address(self, user_id: int, fields: Document) -> Document:
        _check_address(fields)
        if await self.db.addresses.count_documents({"user_id": user_id}) >= MAX_ADDRESSES:
            raise AddressLimit(f"at most {MAX_ADDRESSES} addresses; delete one first")
        now = utc_now()
        doc = {
            "_id": await next_id(self.db, "addresses"),
            "user_id": user_id,
            **fields,
            "created_at": now,
            "updated_at": now,
        }
        await self.db.addresses.insert_one(doc)
        return doc

    async def update_address(self, address_id: int, user_id: int, fields: Document) -> Document:
        _check_address(fields, partial=True)
        doc = await self.db.addresses.find_one_and_update(
            {"_id": address_id, "user_id": user_id},
            {"$set": {**fields, "updated_at": utc_now()}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise NotFound(f"no address {address_id}")
        return doc

    async def delete_address(self, address_id: int, user_id: int) -> None:
        """Orders keep their own copy of the address they were paid with, so deleting is safe."""
        result = await self.db.addresses.delete_one({"_id": address_id, "user_id": user_id})
        if result.deleted_count != 1:
            raise NotFound(f"no address {address_id}")


ADDRESS_FIELDS = ("name", "phone", "province", "city", "district", "detail")


def _check_address(fields: Document, *, partial: bool = False) -> None:
    unknown = set(fields) - set(ADDRESS_FIELDS)
    if unknown:
        raise InvalidSettlementInput(f"unknown address field(s): {', '.join(sorted(unknown))}")
    if not partial:
        missing = [name for name in ("name", "phone", "detail") if not fields.get(name)]
        if missing:
            raise InvalidSettlementInput(f"missing address field(s): {', '.join(missing)}")
    if "phone" in fields and not PHONE_PATTERN.fullmatch(str(fields["phone"])):
        raise InvalidSettlementInput("phone must be 5-20 digits, spaces or dashes, optionally after '+'")


def _address_snapshot(address: Document) -> Document:
    """What the order keeps: the address as it was when paid, whatever happens to it later."""
    snapshot = {name: address.get(name, "") for name in ADDRESS_FIELDS}
    snapshot["address_id"] = address["_id"]
    return snapshot


# -- the money invariant ----------------------------------------------------------------------------------
async def _sum(db: Database, collection: str, match: Document, field: str = "$amount") -> int:
    pipeline = [{"$match": match}, {"$group": {"_id": None, "total": {"$sum": field}}}]
    rows = await (await db[collection].aggregate(pipeline)).to_list()
    return int(rows[0]["total"]) if rows else 0


async def money_totals(db: Database) -> MoneyTotals:
    """The platform-wide sums whose conservation `MoneyTotals.conserved` checks (audits and tests)."""
    paid_deposit = {"status": {"$in": ["paid", "refunded", "consumed"]}}
    deducted = await _sum(db, "deductions", {})
    refunds_done = await _sum(db, "refunds", {"status": str(RefundStatus.REFUNDED)})
    provider_deposit_refunds = await _sum(
        db, "refunds", {"status": str(RefundStatus.REFUNDED), "via": "provider"}
    )
    return MoneyTotals(
        balances=await _sum(db, "users", {}, "$balance"),
        deposits_held=await _sum(db, "deposits", paid_deposit) - deducted - refunds_done,
        paid_to_platform=deducted
        + await _sum(db, "orders", {"payment": {"$ne": None}}, "$payment.cash_amount"),
        refunded_through_provider=provider_deposit_refunds
        + await _sum(db, "provider_payments", {"outcome": "refunded"}),
        owed_through_provider=await _sum(db, "provider_payments", {"outcome": "refund_pending"}),
        credited=await _sum(db, "ledger", {"kind": "admin_credit"})
        + await _sum(db, "deposits", {**paid_deposit, "pay_with": "provider"})
        + await _sum(db, "provider_payments", {}),
    )
