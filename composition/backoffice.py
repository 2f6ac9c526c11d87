"""The back office's `Office` port (backoffice/ports.py) on the settlement and shop services.

The admin-actions service (backoffice/actions.py) makes every admin write through this adapter;
it finds the services at request time.

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

from backoffice.actions import AdminActions
from engine.book.errors import GavelError
from engine.commands import UnblockBidder
from gateway.rest_articles import articles_of
from gateway.rest_degree import degree_of
from gateway.rest_feed import feed_of
from gateway.rest_mentor import mentoring_of
from gateway.rest_moderation import moderation_of
from gateway.rest_reactions import reactions_of
from persistence.audit import AuditLog
from persistence.catalog import admin_lot_view, admin_session_view
from persistence.mongo import Document
from persistence.two_factor import TwoFactor
from persistence.user_notes import UserNotes
from web.context import AppContext

log = logging.getLogger("gavel.admin.backoffice")


class ServiceUnavailable(GavelError):
    code = "UNAVAILABLE"


class _NoProvider:
    """The shop's payment provider, for a shop instance used only for catalogue and coupon writes."""

    def __getattr__(self, name: str) -> Any:
        raise ServiceUnavailable("payments are not wired into the admin's shop instance")


class OfficeAdapter:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._store: Any = None
        self._shop: Any = None
        self._community: Any = None

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

    async def order(self, order_id: int) -> Document | None:
        doc: Document | None = await self.ctx.db.orders.find_one({"_id": order_id})
        return doc

    async def ship(self, order_id: int, tracking_no: str | None) -> Document:
        doc: Document = await self.settlement_store().ship(
            order_id, tracking_no, self.ctx.engine.clock.now_ms()
        )
        return doc

    async def complete(self, order_id: int) -> Document:
        doc: Document = await self.settlement_store().complete(order_id, self.ctx.engine.clock.now_ms())
        return doc

    async def non_payer_state(self, user_id: int) -> Document:
        before = await self.ctx.db.users.find_one({"_id": user_id}, {"non_payer": 1, "non_payer_order_id": 1})
        return {k: v for k, v in (before or {}).items() if k != "_id"}

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

    async def create_course_coupon(self, fields: Document) -> Document:
        doc: Document = await self.shop().create_coupon(fields)
        return doc

    async def grant_course_coupon(self, coupon_id: int, user_id: int, *, idempotency_key: str | None) -> Any:
        return await self.shop().grant_coupon(coupon_id, user_id, idempotency_key=idempotency_key)

    async def create_category(self, name: str, parent_id: int | None) -> Document:
        doc: Document = await self.shop().create_category(name, parent_id)
        return doc

    async def create_course(self, fields: Document) -> Document:
        doc: Document = await self.shop().create_course(fields)
        return doc

    async def course_status(self, course_id: int) -> str | None:
        before = await self.ctx.db.shop_courses.find_one({"_id": course_id}, {"status": 1})
        return before.get("status") if before else None

    async def set_course_status(self, course_id: int, status: str) -> None:
        await self.shop().update_course(course_id, {"status": status})

    async def degree_status(self, degree_course_id: int) -> str | None:
        before = await self.ctx.db.shop_degree_courses.find_one({"_id": degree_course_id}, {"status": 1})
        return (before.get("status") or "online") if before else None

    async def set_degree_status(self, degree_course_id: int, status: str) -> Document:
        doc: Document = await self.shop().set_degree_status(degree_course_id, status)
        return doc

    async def add_policy(self, target: str, target_id: int, valid_days: int, price: int) -> Document:
        doc: Document = await self.shop().add_policy(target, target_id, valid_days, price)
        return doc

    async def policy(self, policy_id: int) -> Document | None:
        doc: Document | None = await self.ctx.db.shop_price_policies.find_one({"_id": policy_id})
        return doc

    async def remove_policy(self, policy_id: int) -> None:
        await self.shop().remove_policy(policy_id)

    async def shop_order(self, order_no: str) -> Document | None:
        doc: Document | None = await self.ctx.db.shop_orders.find_one({"_id": order_no})
        return doc

    async def approve_shop_refund(self, order_no: str, reason: str) -> tuple[Document, bool]:
        order, changed = await self.shop().approve_refund(order_no, reason)
        return order, bool(changed)

    async def reject_shop_refund(self, order_no: str, reason: str) -> tuple[Document, bool]:
        order, changed = await self.shop().reject_refund(order_no, reason)
        return order, bool(changed)

    # -- reviews and FAQs (shop/community.py) --------------------------------------------------------
    def community(self) -> Any:
        if self._community is None:
            try:
                from persistence.shop.community import mongo_community
            except Exception as error:
                log.warning("shop community unavailable: %s", error)
                raise ServiceUnavailable("the course shop service is not available") from None
            self._community = mongo_community(self.ctx.client, self.ctx.db, cache=self.ctx.read_cache)
        return self._community

    async def moderate_review(self, review_id: int, action: str) -> tuple[Document, Document]:
        before, after = await self.community().moderate(review_id, action)
        return before, after

    async def faq(self, faq_id: int) -> Document:
        doc: Document = await self.community().faq(faq_id)
        return doc

    async def add_faq(self, target: str, target_id: int, question: str, answer: str) -> Document:
        doc: Document = await self.community().add_faq(target, target_id, question, answer)
        return doc

    async def update_faq(self, faq_id: int, question: str, answer: str) -> Document:
        doc: Document = await self.community().update_faq(faq_id, question, answer)
        return doc

    async def delete_faq(self, faq_id: int) -> None:
        await self.community().delete_faq(faq_id)


def build_admin_actions(ctx: AppContext) -> AdminActions:
    """The one admin-actions service of an application, on MongoDB and the engine."""
    actions = AdminActions(
        audit=AuditLog(ctx.db),
        catalog=ctx.catalog,
        balances=ctx.accounts,
        engine=ctx.engine,
        office=OfficeAdapter(ctx),
        second_factor=TwoFactor(ctx.db),
        session_view=admin_session_view,
        lot_view=admin_lot_view,
    )
    actions.degree = degree_of(ctx)  # the degree path's admin writes (gateway/rest_degree.py)
    # The degree path's mentors (issue 22), built here like the degree service: the admin UI's mentor
    # buttons work even in an application served without the shop's REST routes.
    actions.mentoring = mentoring_of(ctx)
    actions.moderation = moderation_of(ctx)  # the community's reports, blocks and erase (issue 23)
    actions.reactions = reactions_of(ctx)  # the community's comment moderation and repair (issue 23)
    actions.feed = feed_of(ctx)  # the community feed's admin writes (issue 23, gateway/rest_feed.py)
    actions.articles = articles_of(ctx)  # the community's articles (issue 23; gateway/rest_articles.py)
    actions.staff = ctx.accounts  # staff and their roles (issue 24; admin/staff.py)
    actions.notes = UserNotes(ctx.db)  # support notes on a user's page (issue 24)
    return actions
