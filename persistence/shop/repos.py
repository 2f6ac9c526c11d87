"""The course shop's MongoDB repositories and unit of work (the ports of shop/ports.py).

They load, save and make guarded updates (`{"status": "unused"}`, `{"status": "pending"}` in the
filter); every decision is in shop/handlers.py. With a session they join its transaction; without
one (`MongoShopStore.direct`) each write stands alone.
"""

import datetime
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Protocol, TypeVar, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from engine.settle.ports import PaidNotice, PaymentProvider, PaymentRequest
from payments.records import PaymentRecords, settling_write
from payments.trade_numbers import new_trade_no
from persistence.accounts import Accounts
from persistence.mongo import (
    Client,
    Database,
    Document,
    IdBlocks,
    TxSession,
    next_id,
    run_in_transaction,
    unit_writes,
    update_then_read,
)
from shop.ports import (
    BalanceLedger,
    CatalogueRepository,
    CouponRepository,
    DegreeEnrolmentRepository,
    Duplicate,
    EnrolmentRepository,
    GaveUp,
    Kind,
    NotSettled,
    OrderRepository,
    PaymentAttempts,
    ShopUnitOfWork,
)

T = TypeVar("T")

_WRITE_CONFLICT: Final = 112
# Order numbers are taken from `counters` this many at a time per process (IdBlocks): one counter
# write per hundred orders; a restart leaves the rest of its block unused (gaps in the numbers).
ORDER_NUMBER_BLOCK: Final = 100


def collection_of(kind: Kind) -> str:
    return "users" if kind == "users" else f"shop_{kind}"


def _duplicate(error: DuplicateKeyError) -> Duplicate:
    """The port's Duplicate, naming the unique index MongoDB reported."""
    details = error.details or {}
    return Duplicate(str(details.get("errmsg", error)))


class _Repo:
    def __init__(self, db: Database, s: TxSession | None) -> None:
        self.db = db
        self.s = s

    async def insert_new(self, collection: str, record: Document) -> Document:
        """Insert `record` under the collection's next id (a unique index refusing it: Duplicate)."""
        record["_id"] = await next_id(self.db, collection)
        try:
            await self.db[collection].insert_one(record, session=self.s)
        except DuplicateKeyError as error:
            raise _duplicate(error) from None
        return record


class MongoCatalogue(_Repo):
    async def get(self, kind: Kind, record_id: int) -> Document | None:
        return await self.db[collection_of(kind)].find_one({"_id": record_id}, session=self.s)

    async def existing(self, kind: Kind, ids: Iterable[int]) -> set[int]:
        wanted = list(set(ids))
        if not wanted:
            return set()
        cursor = self.db[collection_of(kind)].find({"_id": {"$in": wanted}}, {"_id": 1}, session=self.s)
        return {int(d["_id"]) async for d in cursor}

    async def insert(self, kind: Kind, record: Document) -> Document:
        return await self.insert_new(collection_of(kind), record)

    async def update_course(self, course_id: int, changes: Document) -> Document | None:
        try:
            return await self.db.shop_courses.find_one_and_update(
                {"_id": course_id}, {"$set": changes}, return_document=ReturnDocument.AFTER, session=self.s
            )
        except DuplicateKeyError as error:
            raise _duplicate(error) from None

    async def put_course_detail(self, course_id: int, record: Document) -> None:
        await self.db.shop_course_details.replace_one({"_id": course_id}, record, upsert=True, session=self.s)

    async def delete_policy(self, policy_id: int) -> bool:
        result = await self.db.shop_price_policies.delete_one({"_id": policy_id}, session=self.s)
        return result.deleted_count == 1

    async def courses(self, ids: Iterable[int]) -> dict[int, Document]:
        cursor = self.db.shop_courses.find({"_id": {"$in": list(ids)}}, session=self.s)
        return {int(c["_id"]): c async for c in cursor}

    async def policies_by_course(self, course_ids: Iterable[int]) -> dict[int, list[Document]]:
        return await self._policies("course", course_ids)

    async def policies_by_degree(self, degree_course_ids: Iterable[int]) -> dict[int, list[Document]]:
        return await self._policies("degree", degree_course_ids)

    async def _policies(self, target: str, target_ids: Iterable[int]) -> dict[int, list[Document]]:
        wanted = list(target_ids)
        found: dict[int, list[Document]] = {}
        if not wanted:
            return found
        cursor = self.db.shop_price_policies.find(
            {"target": target, "target_id": {"$in": wanted}}, session=self.s
        ).sort([("target_id", ASCENDING), ("valid_days", ASCENDING)])
        async for policy in cursor:
            found.setdefault(int(policy["target_id"]), []).append(policy)
        return found

    async def policies_with_targets(
        self, course_policy_ids: Iterable[int], degree_policy_ids: Iterable[int] = ()
    ) -> dict[int, tuple[Document, Document | None]]:
        by_course, by_degree = list(set(course_policy_ids)), list(set(degree_policy_ids))
        if not by_course and not by_degree:
            return {}
        # One round trip: the policies, each joined by `_id` to what it prices (a lookup per kind
        # asked for; the policy's `target` says which one applies).
        pipeline: list[Document] = [{"$match": {"_id": {"$in": by_course + by_degree}}}]
        for wanted, collection, field in (
            (by_course, "shop_courses", "_course"),
            (by_degree, "shop_degree_courses", "_degree"),
        ):
            if wanted:
                lookup = {"from": collection, "localField": "target_id", "foreignField": "_id", "as": field}
                pipeline.append({"$lookup": lookup})
        found: dict[int, tuple[Document, Document | None]] = {}
        async for policy in await self.db.shop_price_policies.aggregate(pipeline, session=self.s):
            courses, degrees = policy.pop("_course", []), policy.pop("_degree", [])
            targets = courses if policy.get("target") == "course" else degrees
            found[int(policy["_id"])] = (policy, targets[0] if targets else None)
        return found

    async def update_degree_course(self, degree_course_id: int, changes: Document) -> Document | None:
        return await self.db.shop_degree_courses.find_one_and_update(
            {"_id": degree_course_id}, {"$set": changes}, return_document=ReturnDocument.AFTER, session=self.s
        )


class MongoCoupons(_Repo):
    async def get_many(self, coupon_ids: Iterable[int]) -> dict[int, Document]:
        cursor = self.db.shop_user_coupons.find({"_id": {"$in": list(coupon_ids)}}, session=self.s)
        return {int(d["_id"]): d async for d in cursor}

    async def unused_of(self, user_id: int) -> list[Document]:
        cursor = self.db.shop_user_coupons.find({"user_id": user_id, "status": "unused"}, session=self.s)
        return [doc async for doc in cursor.sort("_id", 1)]

    async def unused_with_balance(self, user_id: int) -> tuple[list[Document], int | None]:
        # One round trip: the user joined to its unused coupons (the `user_status` index serves
        # the join's user_id).
        pipeline: list[Document] = [
            {"$match": {"_id": user_id}},
            {
                "$lookup": {
                    "from": "shop_user_coupons",
                    "localField": "_id",
                    "foreignField": "user_id",
                    "pipeline": [{"$match": {"status": "unused"}}],
                    "as": "coupons",
                }
            },
            {"$project": {"balance": 1, "coupons": 1}},
        ]
        async for user in await self.db.users.aggregate(pipeline, session=self.s):
            coupons = sorted(user.get("coupons") or [], key=lambda coupon: int(coupon["_id"]))
            return coupons, int(user["balance"])
        return [], None

    async def by_grant_ref(self, grant_ref: str) -> Document | None:
        return await self.db.shop_user_coupons.find_one({"grant_ref": grant_ref}, session=self.s)

    async def add(self, coupon: Document) -> Document:
        return await self.insert_new("shop_user_coupons", coupon)

    async def take(
        self, coupon_id: int, user_id: int, status: str, order_no: str, now: datetime.datetime
    ) -> bool:
        result = await self.db.shop_user_coupons.update_one(
            {"_id": coupon_id, "user_id": user_id, "status": "unused"},
            {"$set": {"status": status, "order_no": order_no, "used_at": now}},
            session=self.s,
        )
        return result.matched_count == 1

    async def use_held(self, order_no: str, now: datetime.datetime) -> int:
        result = await self.db.shop_user_coupons.update_many(
            {"order_no": order_no, "status": "held"},
            {"$set": {"status": "used", "used_at": now}},
            session=self.s,
        )
        return result.modified_count

    async def release_held(self, order_no: str) -> int:
        result = await self.db.shop_user_coupons.update_many(
            {"order_no": order_no, "status": "held"},
            {"$set": {"status": "unused", "order_no": None, "used_at": None}},
            session=self.s,
        )
        return result.modified_count

    async def expire_unused(self, now: datetime.datetime) -> int:
        result = await self.db.shop_user_coupons.update_many(
            {"status": "unused", "valid_to": {"$ne": None, "$lte": now}},
            {"$set": {"status": "expired"}},
            session=self.s,
        )
        return result.modified_count


class MongoOrders(_Repo):
    def __init__(self, db: Database, s: TxSession | None, numbers: IdBlocks | None = None) -> None:
        super().__init__(db, s)
        self.numbers = numbers

    async def next_seq(self) -> int:
        if self.numbers is None:
            return await next_id(self.db, "shop_orders")
        return await self.numbers.next()

    async def get(self, order_no: str) -> Document | None:
        return await self.db.shop_orders.find_one({"_id": order_no}, session=self.s)

    async def for_key(self, user_id: int, idempotency_key: str) -> Document | None:
        return await self.db.shop_orders.find_one(
            {"user_id": user_id, "idempotency_key": idempotency_key}, session=self.s
        )

    async def for_trade_no(self, out_trade_no: str) -> Document | None:
        # Every attempt is in `attempts` (the first one too; older orders since their backfill,
        # persistence/shop/schema.py), whose index answers this. `out_trade_no` alone, unindexed
        # (a scan), only for a number `attempts` does not know: an order written by a process
        # older than the backfill while it ran beside a newer one.
        found = await self.db.shop_orders.find_one({"attempts.out_trade_no": out_trade_no}, session=self.s)
        if found is not None:
            return found
        return await self.db.shop_orders.find_one({"out_trade_no": out_trade_no}, session=self.s)

    async def add(self, order: Document) -> None:
        writes = unit_writes(self.s)
        if writes is not None:  # the order's unit reads it no more: sent with its other writes
            writes.insert(self.db.shop_orders, order, _duplicate)
            return
        try:
            await self.db.shop_orders.insert_one(order, session=self.s)
        except DuplicateKeyError as error:
            raise _duplicate(error) from None

    async def move(self, order_no: str, expect: Document, changes: Document) -> Document | None:
        return await update_then_read(
            self.db.shop_orders, {"_id": order_no, **expect}, {"$set": changes}, session=self.s
        )

    async def advance(self, order_no: str, expect: Document, changes: Document) -> bool:
        result = await self.db.shop_orders.update_one(
            {"_id": order_no, **expect}, {"$set": changes}, session=self.s
        )
        return result.matched_count == 1

    async def advance_or(
        self, order_no: str, expect: Document, changes: Document, unmatched: Callable[[], Exception]
    ) -> None:
        writes = unit_writes(self.s)
        if writes is not None:
            writes.update(self.db.shop_orders, {"_id": order_no, **expect}, {"$set": changes}, unmatched)
        elif not await self.advance(order_no, expect, changes):
            raise unmatched()

    async def add_attempt(self, order_no: str, out_trade_no: str, now: datetime.datetime) -> Document | None:
        return await self.db.shop_orders.find_one_and_update(
            {"_id": order_no, "status": "pending"},
            {
                "$set": {"out_trade_no": out_trade_no, "pay_url": None},
                "$push": {"attempts": {"out_trade_no": out_trade_no, "created_at": now}},
            },
            return_document=ReturnDocument.AFTER,
            session=self.s,
        )

    async def approved_refunds(self) -> list[str]:
        # By `status` alone, which `pending_deadline`'s prefix serves (SecantusDB plans no index for
        # the pair with `refund.status`); the orders waiting for a refund are few.
        waiting = self.db.shop_orders.find(
            {"status": "refund_requested"}, {"refund.status": 1}, session=self.s
        )
        return [
            str(doc["_id"]) async for doc in waiting if (doc.get("refund") or {}).get("status") == "approved"
        ]

    async def set_pay_url(self, order_no: str, pay_url: str, out_trade_no: str | None = None) -> None:
        query: Document = {"_id": order_no}
        if out_trade_no is not None:
            query["out_trade_no"] = out_trade_no  # a newer attempt keeps its own URL
        await self.db.shop_orders.update_one(query, {"$set": {"pay_url": pay_url}}, session=self.s)

    async def set_late_payment(self, order_no: str, late_payment: Document) -> None:
        # Pushed once per refund_ref: a repeated notification refunds and records once.
        await self.db.shop_orders.update_one(
            {"_id": order_no, "late_payments.refund_ref": {"$ne": late_payment["refund_ref"]}},
            {"$set": {"late_payment": late_payment}, "$push": {"late_payments": late_payment}},
            session=self.s,
        )

    async def due(self, now: datetime.datetime) -> list[str]:
        cursor = self.db.shop_orders.find(
            {"status": "pending", "pay_deadline": {"$lte": now}}, {"_id": 1}, session=self.s
        )
        return [str(doc["_id"]) async for doc in cursor]

    async def pending_for_degree(self, user_id: int, degree_course_id: int) -> str | None:
        found = await self.db.shop_orders.find_one(
            {"user_id": user_id, "status": "pending", "lines.degree_course_id": degree_course_id},
            {"_id": 1},
            session=self.s,
        )
        return None if found is None else str(found["_id"])


class MongoDegreeEnrolments(_Repo):
    """`shop_degree_enrolments` (`_id` "{user_id}:{degree_course_id}") and the order claims
    `shop_degree_claims` (same `_id`) that make two concurrent orders of one degree conflict."""

    async def get(self, enrolment_id: str) -> Document | None:
        return await self.db.shop_degree_enrolments.find_one({"_id": enrolment_id}, session=self.s)

    async def add(self, enrolment: Document) -> bool:
        # An upsert that only inserts: an existing enrolment is left alone.
        fields = {k: v for k, v in enrolment.items() if k != "_id"}
        result = await self.db.shop_degree_enrolments.update_one(
            {"_id": enrolment["_id"]}, {"$setOnInsert": fields}, upsert=True, session=self.s
        )
        return result.upserted_id is not None

    async def replace_refunded(self, enrolment: Document) -> bool:
        result = await self.db.shop_degree_enrolments.replace_one(
            {"_id": enrolment["_id"], "status": "refunded"}, enrolment, session=self.s
        )
        return result.matched_count == 1

    async def change(self, enrolment_id: str, expect: Document, changes: Document) -> Document | None:
        return await self.db.shop_degree_enrolments.find_one_and_update(
            {"_id": enrolment_id, **expect},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
            session=self.s,
        )

    async def claim(self, enrolment_id: str, order_no: str, now: datetime.datetime) -> None:
        try:
            await self.db.shop_degree_claims.update_one(
                {"_id": enrolment_id},
                {"$set": {"order_no": order_no, "at": now}, "$inc": {"claims": 1}},
                upsert=True,
                session=self.s,
            )
        except DuplicateKeyError as error:
            # Two first claims inserting at once: the loser runs again, like a write conflict.
            raise GaveUp(str(error)) from None


class MongoEnrolments(_Repo):
    async def current(self, user_id: int, course_id: int) -> Document | None:
        cursor = (
            self.db.shop_enrolments.find({"user_id": user_id, "course_id": course_id}, session=self.s)
            .sort([("valid_to", DESCENDING), ("_id", ASCENDING)])
            .limit(1)
        )
        return next(iter([e async for e in cursor]), None)

    async def add(self, enrolment: Document) -> bool:
        # An upsert that only inserts: an existing enrolment (a concurrent order) is left alone.
        fields = {k: v for k, v in enrolment.items() if k != "_id"}
        result = await self.db.shop_enrolments.update_one(
            {"_id": enrolment["_id"]}, {"$setOnInsert": fields}, upsert=True, session=self.s
        )
        return result.upserted_id is not None

    async def add_first(self, enrolment: Document) -> bool:
        # An upsert on the user and course (the `user_course` index): inserts only when neither
        # this enrolment nor an older one of another `_id` exists; a concurrent first insert of
        # the same `_id` is a write conflict, and the retried transaction then finds it.
        owner = {"user_id": enrolment["user_id"], "course_id": enrolment["course_id"]}
        fields = {k: v for k, v in enrolment.items() if k not in owner}
        writes = unit_writes(self.s)
        if writes is not None:  # with the unit's writes waiting (a settled payment and its order)
            outcome = await writes.update_now(
                self.db.shop_enrolments, owner, {"$setOnInsert": fields}, upsert=True
            )
            return outcome.upserted_id is not None
        result = await self.db.shop_enrolments.update_one(
            owner, {"$setOnInsert": fields}, upsert=True, session=self.s
        )
        return result.upserted_id is not None

    async def extend(self, enrolment_id: str, order_no: str, changes: Document) -> bool:
        result = await self.db.shop_enrolments.update_one(
            {"_id": enrolment_id, "order_nos": {"$ne": order_no}},
            {"$set": changes, "$addToSet": {"order_nos": order_no}},
            session=self.s,
        )
        return result.matched_count == 1

    async def of_order(self, order_no: str) -> list[Document]:
        cursor = self.db.shop_enrolments.find(
            {"$or": [{"order_no": order_no}, {"order_nos": order_no}]}, session=self.s
        )
        return [doc async for doc in cursor]

    async def change(self, enrolment_id: str, changes: Document) -> None:
        await self.db.shop_enrolments.update_one({"_id": enrolment_id}, {"$set": changes}, session=self.s)


class MongoShopLedger:
    """Balances through `Accounts` (conditional update, ledger entry, unique ref)."""

    def __init__(self, accounts: Accounts, db: Database, s: TxSession | None) -> None:
        self.accounts = accounts
        self.db = db
        self.s = s

    async def balance(self, user_id: int) -> int | None:
        user = await self.db.users.find_one({"_id": user_id}, {"balance": 1}, session=self.s)
        return None if user is None else int(user["balance"])

    async def debit(self, user_id: int, amount: int, kind: str, ref: str) -> None:
        await self.accounts.debit(user_id, amount, kind, ref, session=self.s)

    async def debit_new(
        self, user_id: int, amount: int, kind: str, ref: str, expected_balance: int | None = None
    ) -> bool:
        entry = await self.accounts.debit_new(
            user_id, amount, kind, ref, session=self.s, expected_balance=expected_balance
        )
        return entry is not None

    async def credit(self, user_id: int, amount: int, kind: str, ref: str) -> None:
        await self.accounts.credit(user_id, amount, kind, ref, session=self.s)


class LocalPayments(Protocol):
    """A provider that makes a payment without a network call (payments/sandbox.py,
    payments/alipay.py): its records can be written in the caller's transaction."""

    async def create_payment_in(self, request: PaymentRequest, session: TxSession) -> str:
        """`create_payment` with every write in `session`'s transaction; returns the pay URL."""
        ...


def local_payments(provider: object) -> LocalPayments | None:
    """`provider` when it makes payments locally (it has `create_payment_in`), else None. Looked up
    statically: a stand-in provider may refuse every attribute (the admin's shop instance)."""
    if callable(inspect.getattr_static(provider, "create_payment_in", None)):
        return cast(LocalPayments, provider)
    return None


class MongoPaymentAttempts:
    """`PaymentAttempts`: a new order's payment in the order's transaction when the provider makes
    it locally; None (made after the commit) otherwise, or outside a transaction. Our record of a
    payment marked handled in the shop's transaction."""

    def __init__(self, db: Database, provider: LocalPayments | None, s: TxSession | None) -> None:
        self.db = db
        self.records = PaymentRecords(db)
        self.provider = provider
        self.s = s

    async def mark_handled(self, out_trade_no: str) -> None:
        await self.records.mark_handled(out_trade_no, session=self.s)

    async def settle(self, notice: PaidNotice) -> bool:
        if self.s is None:
            raise RuntimeError("a payment is settled in the handler's transaction only")
        return await self.records.settle_in(
            notice.out_trade_no, notice.provider, notice.amount, notice.trade_no, notice.notify_id, self.s
        )

    async def settle_or_abort(self, notice: PaidNotice) -> None:
        writes = unit_writes(self.s)
        if writes is None:
            if not await self.settle(notice):
                raise NotSettled(notice.out_trade_no)
            return
        query, update = settling_write(
            notice.out_trade_no, notice.provider, notice.amount, notice.trade_no, notice.notify_id
        )
        writes.update(self.db.payments, query, update, lambda: NotSettled(notice.out_trade_no))

    async def open(self, request: PaymentRequest) -> str | None:
        if self.s is None or self.provider is None:
            return None
        return await self.provider.create_payment_in(request, self.s)


class MongoShopUnitOfWork:
    catalogue: CatalogueRepository
    coupons: CouponRepository
    orders: OrderRepository
    enrolments: EnrolmentRepository
    ledger: BalanceLedger
    degree_enrolments: DegreeEnrolmentRepository
    payments: PaymentAttempts

    def __init__(
        self,
        db: Database,
        accounts: Accounts,
        s: TxSession | None,
        order_numbers: IdBlocks | None = None,
        local_payments: LocalPayments | None = None,
    ) -> None:
        self.catalogue = MongoCatalogue(db, s)
        self.coupons = MongoCoupons(db, s)
        self.orders = MongoOrders(db, s, order_numbers)
        self.enrolments = MongoEnrolments(db, s)
        self.ledger = MongoShopLedger(accounts, db, s)
        self.degree_enrolments = MongoDegreeEnrolments(db, s)
        self.payments = MongoPaymentAttempts(db, local_payments, s)


def _conflict(error: OperationFailure) -> bool:
    """A write conflict the driver gave up retrying (or that escaped its retry loop).

    Not a timeout: a stalled MongoDB is a 503 UNAVAILABLE (web/errors.py), not a 409."""
    if error.timeout:
        return False
    return error.code == _WRITE_CONFLICT or error.has_error_label("TransientTransactionError")


class MongoShopStore:
    """`ShopStore` on MongoDB: one multi-document transaction per `atomically`, retried by the
    driver's `with_transaction` on transient errors (the work runs again from the start)."""

    def __init__(
        self, client: Client, db: Database, accounts: Accounts, provider: PaymentProvider | None = None
    ) -> None:
        self.client = client
        self.db = db
        self.accounts = accounts
        # A provider that makes its payments locally has them written in the order's transaction.
        self.local_payments = local_payments(provider)
        self.order_numbers = IdBlocks(db, "shop_orders", ORDER_NUMBER_BLOCK)

    def _unit(self, s: TxSession | None) -> MongoShopUnitOfWork:
        return MongoShopUnitOfWork(self.db, self.accounts, s, self.order_numbers, self.local_payments)

    def direct(self) -> ShopUnitOfWork:
        return self._unit(None)

    async def atomically(self, work: Callable[[ShopUnitOfWork], Awaitable[T]]) -> T:
        async def transaction(s: TxSession) -> T:
            return await work(self._unit(s))

        try:
            return await run_in_transaction(self.client, transaction)
        except OperationFailure as error:
            if _conflict(error):
                raise GaveUp(str(error)) from error
            raise

    def trade_no(self, prefix: str) -> str:
        return new_trade_no(prefix)
