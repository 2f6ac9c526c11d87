"""The settlement and course-shop services the admin pages call, found at request time.

Settlement (`persistence.settlement.MongoSettlement`: the handlers of `engine.settle.handlers` on
MongoDB; the worker in `engine.settle.worker`) and the shop (`shop.service.ShopService`, built on
MongoDB by `persistence.shop.mongo_shop`) are their own packages. The admin never writes their
collections directly: writes go through those services (the
one the composition root built, `ctx.settlement` / `ctx.shop`, else a private instance over the same
database).
Reads that need no service read the collections.
Balances only move through `Accounts.credit`. If a service cannot be imported, its pages still list
what is in MongoDB and its buttons answer UNAVAILABLE.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.book.errors import GavelError
from engine.commands import UnblockBidder
from gateway.context import AppContext
from persistence.mongo import Document

log = logging.getLogger("gavel.admin.backoffice")


class ServiceUnavailable(GavelError):
    code = "UNAVAILABLE"


class _NoProvider:
    """The shop's payment provider, for a shop instance used only for catalogue and coupon writes."""

    def __getattr__(self, name: str) -> Any:
        raise ServiceUnavailable("payments are not wired into the admin's shop instance")


class BackOffice:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._store: Any = None
        self._shop: Any = None

    # -- settlement ----------------------------------------------------------------------------------
    def settlement(self) -> Any:
        """The composition root's `gateway.rest_orders.Settlement`, if it built one."""
        return self.ctx.settlement

    def settlement_store(self) -> Any:
        settlement = self.settlement()
        if settlement is not None and getattr(settlement, "store", None) is not None:
            return settlement.store
        if self._store is None:
            try:
                from persistence.settlement import MongoSettlement
            except Exception as error:
                log.warning("settlement store unavailable: %s", error)
                raise ServiceUnavailable("the settlement service is not available") from None
            self._store = MongoSettlement(self.ctx.client, self.ctx.db, self.ctx.accounts)
        return self._store

    async def ship(self, order_id: int, tracking_no: str | None) -> Document:
        doc: Document = await self.settlement_store().ship(
            order_id, tracking_no, self.ctx.engine.clock.now_ms()
        )
        return doc

    async def complete(self, order_id: int) -> Document:
        doc: Document = await self.settlement_store().complete(order_id, self.ctx.engine.clock.now_ms())
        return doc

    async def clear_non_payer(self, user_id: int) -> bool:
        """Clear the flag and unblock the bidder in the engine (the worker does both when wired)."""
        settlement = self.settlement()
        worker = getattr(settlement, "worker", None)
        if worker is not None and hasattr(worker, "clear_non_payer"):
            return bool(await worker.clear_non_payer(user_id))
        try:
            changed = bool(await self.settlement_store().clear_non_payer(user_id))
        except ServiceUnavailable:
            result = await self.ctx.db.users.update_one(
                {"_id": user_id, "non_payer": True}, {"$set": {"non_payer": False}}
            )
            changed = result.modified_count == 1
        outcome = await self.ctx.engine.execute(UnblockBidder(user_id))
        if not outcome.ok:
            raise GavelError(
                outcome.message or "the engine is unavailable", code=outcome.code or "UNAVAILABLE"
            )
        return changed

    async def create_auction_coupon(
        self, session_id: int, title: str, amount: int, quantity: int, start_ms: int, end_ms: int
    ) -> Document:
        doc: Document = await self.settlement_store().create_coupon(
            session_id, title, amount, quantity, start_ms, end_ms
        )
        return doc

    # -- the course shop -----------------------------------------------------------------------------
    def shop(self) -> Any:
        try:
            from persistence.shop import mongo_shop
        except Exception as error:
            log.warning("shop unavailable: %s", error)
            raise ServiceUnavailable("the course shop service is not available") from None
        if self.ctx.shop is not None:
            return self.ctx.shop
        if self._shop is None:
            self._shop = mongo_shop(
                self.ctx.client, self.ctx.db, self.ctx.redis, self.ctx.accounts, _NoProvider()
            )
        return self._shop
