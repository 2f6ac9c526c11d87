"""`MongoSettlement`: the settlement service (engine/settle/service.py) on MongoDB units of work, plus
the reads and address book the REST and admin layers show as documents.

Decisions are the service's handlers; this module adds only document reads (listings, the pay page's
data, coupons, addresses) and answers the handlers' outcomes as the documents REST renders.
"""

import dataclasses

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from engine.book.errors import NotFound
from engine.book.types import Fen, Millis, SessionId, UserId
from engine.settle.model import AddressLimit, check_address
from engine.settle.rules import OrderStatus, PaymentSplit
from engine.settle.service import SettlementService
from engine.settle.uow import STALE_RETRIES
from persistence.accounts import Accounts
from persistence.mongo import Client, Database, Document, next_id, utc_now
from persistence.settlement.uow import mongo_uow_factory

MAX_ADDRESSES = 20


@dataclasses.dataclass(frozen=True, slots=True)
class PayPage:
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


class MongoSettlement(SettlementService):
    def __init__(
        self, client: Client, db: Database, accounts: Accounts, *, stale_retries: int = STALE_RETRIES
    ) -> None:
        super().__init__(mongo_uow_factory(client, db, accounts), stale_retries=stale_retries)
        self.client = client
        self.db = db
        self.accounts = accounts

    # -- orders ----------------------------------------------------------------------------------------
    async def orders_for_user(self, user_id: UserId, limit: int = 500) -> list[Document]:
        cursor = self.db.orders.find({"user_id": user_id}).sort("_id", DESCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def order_for_user(self, order_id: int, user_id: UserId) -> Document:
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

    async def checkout(
        self, order_id: int, user_id: UserId, coupon_id: int | None, now_ms: Millis
    ) -> PayPage:
        quote = await self.checkout_quote(order_id, user_id, coupon_id)
        order = await self.order_for_user(order_id, user_id)
        lot_id = int(order["lot_id"])
        lot = (await self.lots_info([lot_id])).get(lot_id, {"_id": order["lot_id"]})
        ids = [c.id for c in quote.coupons]
        by_id = {doc["_id"]: doc async for doc in self.db.user_coupons.find({"_id": {"$in": ids}})}
        deposit = None
        if quote.deposit is not None:
            doc = await self.db.deposits.find_one({"_id": quote.deposit.id})
            deposit = {**(doc or {}), "remaining": quote.deposit.remaining}
        return PayPage(
            order,
            lot,
            [by_id[i] for i in ids if i in by_id],
            deposit,
            quote.deposit is not None and quote.deposit.session_wide,
            (await self.accounts.profile(user_id)).balance,
            await self.addresses(user_id),
            quote.split,
            coupon_id,
        )

    async def ship(self, order_id: int, tracking_no: str | None, now_ms: Millis) -> Document:
        await self.ship_order(order_id, tracking_no, now_ms)
        return await self.order(order_id)

    async def complete(self, order_id: int, now_ms: Millis) -> Document:
        await self.complete_order(order_id, now_ms)
        return await self.order(order_id)

    # -- auction coupons -------------------------------------------------------------------------------
    async def create_coupon(
        self,
        session_id: SessionId,
        title: str,
        amount: Fen,
        quantity: int,
        claim_start_ms: Millis,
        claim_end_ms: Millis,
    ) -> Document:
        offer = await self.add_coupon_offer(session_id, title, amount, quantity, claim_start_ms, claim_end_ms)
        return await self.coupon(offer.id)

    async def coupon(self, coupon_id: int) -> Document:
        doc = await self.db.coupons.find_one({"_id": coupon_id})
        if doc is None:
            raise NotFound(f"no coupon {coupon_id}")
        return doc

    async def session_coupons(self, session_id: SessionId) -> list[Document]:
        return [doc async for doc in self.db.coupons.find({"session_id": session_id}).sort("_id", ASCENDING)]

    async def claim_coupon(self, coupon_id: int, user_id: UserId, now_ms: Millis) -> Document:
        claimed = await self.claim_user_coupon(coupon_id, user_id, now_ms)
        doc = await self.db.user_coupons.find_one({"_id": claimed.id})
        assert doc is not None, "a committed claim is readable"
        return doc

    async def user_coupons(self, user_id: UserId) -> list[Document]:
        return [doc async for doc in self.db.user_coupons.find({"user_id": user_id}).sort("_id", DESCENDING)]

    # -- addresses (plain records; no money) -----------------------------------------------------------
    async def addresses(self, user_id: UserId) -> list[Document]:
        return [doc async for doc in self.db.addresses.find({"user_id": user_id}).sort("_id", ASCENDING)]

    async def address(self, address_id: int, user_id: UserId) -> Document:
        doc = await self.db.addresses.find_one({"_id": address_id, "user_id": user_id})
        if doc is None:
            raise NotFound(f"no address {address_id}")
        return doc

    async def create_address(self, user_id: UserId, fields: Document, *, default: bool = False) -> Document:
        """A user's first address is their default; `default` makes a later one the default."""
        check_address(fields)
        count = await self.db.addresses.count_documents({"user_id": user_id})
        if count >= MAX_ADDRESSES:
            raise AddressLimit(f"at most {MAX_ADDRESSES} addresses; delete one first")
        now = utc_now()
        doc = {
            "_id": await next_id(self.db, "addresses"),
            "user_id": user_id,
            **fields,
            "is_default": False,
            "created_at": now,
            "updated_at": now,
        }
        await self.db.addresses.insert_one(doc)
        if default or count == 0:
            return await self._make_default(doc["_id"], user_id)
        return doc

    async def update_address(
        self, address_id: int, user_id: UserId, fields: Document, *, default: bool = False
    ) -> Document:
        check_address(fields, partial=True)
        doc = await self.db.addresses.find_one_and_update(
            {"_id": address_id, "user_id": user_id},
            {"$set": {**fields, "updated_at": utc_now()}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise NotFound(f"no address {address_id}")
        return await self._make_default(address_id, user_id) if default else doc

    async def _make_default(self, address_id: int, user_id: UserId) -> Document:
        # Set first, then clear the others: a reader between the two sees two defaults (the UI
        # takes the first), never none.
        doc = await self.db.addresses.find_one_and_update(
            {"_id": address_id, "user_id": user_id},
            {"$set": {"is_default": True}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise NotFound(f"no address {address_id}")
        await self.db.addresses.update_many(
            {"user_id": user_id, "_id": {"$ne": address_id}, "is_default": True},
            {"$set": {"is_default": False}},
        )
        return doc

    async def delete_address(self, address_id: int, user_id: UserId) -> None:
        """Orders keep their own copy of the address they were paid with, so deleting is safe."""
        doc = await self.db.addresses.find_one_and_delete({"_id": address_id, "user_id": user_id})
        if doc is None:
            raise NotFound(f"no address {address_id}")
        if doc.get("is_default"):
            # The oldest remaining address takes over, so a user with addresses always has a default.
            oldest = await self.db.addresses.find_one({"user_id": user_id}, sort=[("_id", ASCENDING)])
            if oldest is not None:
                await self._make_default(oldest["_id"], user_id)
