"""A user's whole page (`/admin/users/{id}`): profile, deposits, auction and shop orders, enrolments,
balance and ledger, coupons, sign-in history, blocks, community reports and support notes.

Each section reads one collection by its user index, shows the newest few with the section's count,
and links to the full list (the ledger and the notes are paged here). Sections the signed-in admin
may not read (backoffice/roles.py) are left out. The writes (credit, clear non-payer) stay in
admin/money.py; adding a support note is here (`AdminActions.user_note`, area `notes`).
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import tornado.web

from admin.base import PREFIX, AdminHandler, Paging
from admin.money import ORDER_STATUS_LABELS
from engine.settle.rules import UserCouponStatus
from persistence.mongo import Document
from persistence.signins import SigninHistory
from persistence.user_notes import UserNotes

SECTION_SIZE: Final = 10  # the newest rows of each section; the count links to the rest
LEDGER_PAGE_SIZE: Final = 20
NOTES_PAGE_SIZE: Final = 10
SIGNINS_SHOWN: Final = 50
AUCTION_COUPON_LABELS: Final = {int(s): s.name.lower() for s in UserCouponStatus}
PROFILE_FIELDS: Final = {
    "username": 1,
    "display_name": 1,
    "balance": 1,
    "is_admin": 1,
    "roles": 1,
    "non_payer": 1,
    "non_payer_order_id": 1,
    "created_at": 1,
}


class UserHandler(AdminHandler):
    nav = "users"
    area = "users"

    async def section(
        self, name: str, collection: Any, query: Document, sort: list[tuple[str, int]]
    ) -> tuple[list[Document], Paging]:
        """One section: a page of its rows, newest first (`?{name}_page=N`), and its paging (count)."""
        total = await collection.count_documents(query)
        paging = Paging(self.query_int(f"{name}_page", 1), SECTION_SIZE, total)
        cursor = collection.find(query).sort(sort).skip(paging.skip).limit(SECTION_SIZE)
        return [doc async for doc in cursor], paging

    async def get(self, raw_id: str) -> None:
        user_id = self.path_id(raw_id, "user")
        db = self.ctx.db
        user = await db.users.find_one({"_id": user_id}, PROFILE_FIELDS)
        if user is None:
            raise tornado.web.HTTPError(404, f"no user {user_id}")
        phones = sorted(
            {
                str(a["phone"])
                async for a in db.addresses.find({"user_id": user_id}, {"phone": 1})
                if a.get("phone")
            }
        )
        sections: dict[str, Any] = {}
        newest_first = [("_id", -1)]
        if self.may("auctions"):
            sections["deposits"] = await self.section(
                "deposits", db.deposits, {"user_id": user_id}, newest_first
            )
            sections["auction_coupons"] = await self.section(
                "auction_coupons", db.user_coupons, {"user_id": user_id}, newest_first
            )
        if self.may("orders"):
            sections["orders"] = await self.section("orders", db.orders, {"user_id": user_id}, newest_first)
            sections["shop_orders"] = await self.section(
                "shop_orders", db.shop_orders, {"user_id": user_id}, [("created_at", -1), ("_id", -1)]
            )
        if self.may("catalogue"):
            sections["course_coupons"] = await self.section(
                "course_coupons", db.shop_user_coupons, {"user_id": user_id}, newest_first
            )
        if self.may("degree") or self.may("catalogue"):
            sections["enrolments"] = await self.section(
                "enrolments", db.shop_enrolments, {"user_id": user_id}, [("created_at", -1), ("_id", -1)]
            )
            sections["degree_enrolments"] = await self.section(
                "degree_enrolments",
                db.shop_degree_enrolments,
                {"user_id": user_id},
                [("created_at", -1), ("_id", -1)],
            )
        if self.may("community"):
            sections["reports_made"] = await self.section(
                "reports_made", db.community_reports, {"reporter": user_id}, newest_first
            )
            sections["reports_about"] = await self.section(
                "reports_about", db.community_reports, {"target_user": user_id}, newest_first
            )
        ledger_paging = Paging(
            self.query_int("ledger_page", 1),
            LEDGER_PAGE_SIZE,
            await db.ledger.count_documents({"user_id": user_id}),
        )
        entries = await self.ctx.accounts.ledger(user_id, skip=ledger_paging.skip, limit=LEDGER_PAGE_SIZE)
        signins, signin_total = await SigninHistory(db).recent(user_id, SIGNINS_SHOWN)
        notes_page = self.query_int("notes_page", 1)
        notes, notes_total = await UserNotes(db).page(
            user_id, (notes_page - 1) * NOTES_PAGE_SIZE, NOTES_PAGE_SIZE
        )
        notes_paging = Paging(notes_page, NOTES_PAGE_SIZE, notes_total)
        moderation = self.actions.moderation
        community_block = await moderation.block_of(user_id) if moderation is not None else None
        self.render(
            "user.html",
            user=user,
            phones=phones,
            sections=sections,
            ledger=entries,
            ledger_paging=ledger_paging,
            signins=signins,
            signin_total=signin_total,
            notes=notes,
            notes_paging=notes_paging,
            engine_blocked=user_id in getattr(self.ctx.engine.book, "blocked", ()),
            community_block=community_block,
            order_labels=ORDER_STATUS_LABELS,
            auction_coupon_labels=AUCTION_COUPON_LABELS,
            idempotency_key=uuid.uuid4().hex,
            page_title=f"User {user['username']}",
        )


class UserNoteHandler(AdminHandler):
    """Add a support note (support's one write; audited as `user.note`)."""

    nav = "users"
    area = "notes"

    async def post(self, raw_id: str) -> None:
        user_id = self.path_id(raw_id, "user")
        if await self.ctx.db.users.find_one({"_id": user_id}, {"_id": 1}) is None:
            raise tornado.web.HTTPError(404, f"no user {user_id}")
        back = f"{PREFIX}/users/{user_id}#notes"

        async def run() -> None:
            await self.actions.user_note(self.actor(), user_id, self.form("text"))
            self.done("Note added.", back)

        await self.guarded(run, back=back)


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (r"/admin/users/([0-9]+)", UserHandler),
    (r"/admin/users/([0-9]+)/notes", UserNoteHandler),
]
