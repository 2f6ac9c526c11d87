"""Settlement pages (orders, refunds, overdue orders and forfeits) and users (credit, non-payers)."""

from __future__ import annotations

import re

from admin.base import PREFIX, AdminHandler, FormError, Paging, parse_money, text_field
from persistence.mongo import Document

ORDER_STATUS_LABELS = {
    1: "unpaid 未支付",
    2: "awaiting delivery 待收货",
    3: "completed 已完成",
    4: "overdue 逾期未支付",
}
REFUND_STATUS_LABELS = {"pending": "pending 待退款", "refunded": "refunded 退款成功"}
DEDUCTION_LABELS = {"overdue": "forfeit 逾期扣款", "payment": "paid from deposit 支付抵扣"}
PAGE_SIZE = 25
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class MoneyPage(AdminHandler):
    area = "orders"
    nav = "settlement"

    async def with_names(self, docs: list[Document]) -> list[Document]:
        """Add `username` and `lot_title` to documents that carry `user_id` / `lot_id`."""
        user_ids = {int(d["user_id"]) for d in docs if d.get("user_id") is not None}
        lot_ids = {int(d["lot_id"]) for d in docs if d.get("lot_id") is not None}
        users = {
            int(u["_id"]): u["username"]
            async for u in self.ctx.db.users.find({"_id": {"$in": list(user_ids)}}, {"username": 1})
        }
        lots = {
            int(lot["_id"]): lot
            async for lot in self.ctx.db.lots.find(
                {"_id": {"$in": list(lot_ids)}}, {"title": 1, "catalogue_no": 1}
            )
        }
        for doc in docs:
            doc["username"] = users.get(int(doc["user_id"]), "?") if doc.get("user_id") is not None else ""
            lot = lots.get(int(doc["lot_id"])) if doc.get("lot_id") is not None else None
            doc["lot_title"] = lot.get("title", "") if lot else ""
            doc["catalogue_no"] = lot.get("catalogue_no", "") if lot else ""
        return docs


class OrdersHandler(MoneyPage):
    async def get(self) -> None:
        status = self.query_int("status", 0, minimum=1, maximum=4)
        query: Document = {"status": status} if status else {}
        paging = Paging(self.query_int("page", 1), PAGE_SIZE, await self.ctx.db.orders.count_documents(query))
        cursor = self.ctx.db.orders.find(query).sort("_id", -1).skip(paging.skip).limit(PAGE_SIZE)
        orders = await self.with_names([doc async for doc in cursor])
        counts = {s: await self.ctx.db.orders.count_documents({"status": s}) for s in ORDER_STATUS_LABELS}
        self.render(
            "orders.html",
            orders=orders,
            status=status,
            counts=counts,
            labels=ORDER_STATUS_LABELS,
            paging=paging,
            page_title="Orders",
        )


class OrderActionHandler(MoneyPage):
    """Mark an order shipped (with an optional tracking number) or completed."""

    async def post(self, raw_id: str, action: str) -> None:
        order_id = self.path_id(raw_id, "order")
        back = self.form("back") if self.form("back").startswith(PREFIX + "/") else f"{PREFIX}/orders"

        async def run() -> None:
            if action == "ship":
                tracking = text_field(
                    self.form("tracking_no"), "Tracking number", max_length=64, required=False
                )
                await self.actions.order_action(self.actor(), order_id, "ship", tracking or None)
            else:
                await self.actions.order_action(self.actor(), order_id, "complete")
            self.done(f"Order {order_id}: {'shipped' if action == 'ship' else 'completed'}.", back)

        await self.guarded(run, back=back)


class RefundsHandler(MoneyPage):
    async def get(self) -> None:
        status = self.get_query_argument("status", "pending")
        status = status if status in REFUND_STATUS_LABELS else "pending"
        query = {"status": status}
        paging = Paging(
            self.query_int("page", 1), PAGE_SIZE, await self.ctx.db.refunds.count_documents(query)
        )
        cursor = self.ctx.db.refunds.find(query).sort("_id", -1).skip(paging.skip).limit(PAGE_SIZE)
        refunds = await self.with_names([doc async for doc in cursor])
        counts = {s: await self.ctx.db.refunds.count_documents({"status": s}) for s in REFUND_STATUS_LABELS}
        self.render(
            "refunds.html",
            refunds=refunds,
            status=status,
            counts=counts,
            labels=REFUND_STATUS_LABELS,
            paging=paging,
            page_title="Refunds",
        )


class ForfeitsHandler(MoneyPage):
    async def get(self) -> None:
        overdue = [doc async for doc in self.ctx.db.orders.find({"status": 4}).sort("_id", -1).limit(200)]
        deductions = [doc async for doc in self.ctx.db.deductions.find({}).sort("_id", -1).limit(200)]
        orders_by_id = {
            int(o["_id"]): o
            async for o in self.ctx.db.orders.find(
                {"_id": {"$in": [d["order_id"] for d in deductions]}}, {"lot_id": 1}
            )
        }
        for deduction in deductions:
            deduction["lot_id"] = orders_by_id.get(int(deduction["order_id"]), {}).get("lot_id")
        self.render(
            "forfeits.html",
            overdue=await self.with_names(overdue),
            deductions=await self.with_names(deductions),
            labels=DEDUCTION_LABELS,
            page_title="Overdue and forfeits",
        )


# -- users -----------------------------------------------------------------------------------------------
class UsersHandler(AdminHandler):
    area = "users"
    nav = "users"

    async def get(self) -> None:
        search = self.get_query_argument("q", "").strip()[:32]
        flagged = self.get_query_argument("non_payer", "") == "1"
        query: Document = {}
        if search:
            query["username_key"] = {"$regex": "^" + re.escape(search.lower())}
        if flagged:
            query["non_payer"] = True
        paging = Paging(self.query_int("page", 1), PAGE_SIZE, await self.ctx.db.users.count_documents(query))
        cursor = (
            self.ctx.db.users.find(
                query,
                {
                    "username": 1,
                    "display_name": 1,
                    "balance": 1,
                    "is_admin": 1,
                    "non_payer": 1,
                    "created_at": 1,
                },
            )
            .sort("_id", 1)
            .skip(paging.skip)
            .limit(PAGE_SIZE)
        )
        users = [doc async for doc in cursor]
        self.render(
            "users.html", users=users, search=search, flagged=flagged, paging=paging, page_title="Users"
        )


class CreditHandler(AdminHandler):
    """Top up a balance through `Accounts.credit` (ledger + balance in one transaction)."""

    area = "users"

    nav = "users"

    async def post(self, raw_id: str) -> None:
        user_id = self.path_id(raw_id, "user")
        back = f"{PREFIX}/users/{user_id}"

        async def run() -> None:
            amount = parse_money(self.form("amount"), "Amount", minimum=1)
            assert amount is not None
            key = self.form("idempotency_key").strip()
            if not IDEMPOTENCY_KEY.fullmatch(key):
                raise FormError("the form is missing its idempotency key; reload the page")
            note = text_field(self.form("note"), "Note", max_length=200, required=False)
            entry = await self.actions.credit(self.actor(), user_id, amount, key, note)
            if entry.replayed:
                self.done("That credit was already applied (the form was sent twice); nothing changed.", back)
                return
            self.done(
                f"Credited {amount / 100:,.2f} yuan; the balance is now {entry.balance_after / 100:,.2f}.",
                back,
            )

        await self.guarded(run, back=back)


class ClearNonPayerHandler(AdminHandler):
    area = "users"
    nav = "users"

    async def post(self, raw_id: str) -> None:
        user_id = self.path_id(raw_id, "user")
        back = f"{PREFIX}/users/{user_id}"

        async def run() -> None:
            changed = await self.actions.clear_non_payer(self.actor(), user_id)
            self.done(
                "Non-payer flag cleared; the user may bid again."
                if changed
                else "The user was not flagged; the engine block was cleared anyway.",
                back,
            )

        await self.guarded(run, back=back)


ROUTES = [
    (r"/admin/orders", OrdersHandler),
    (r"/admin/orders/([0-9]+)/(ship|complete)", OrderActionHandler),
    (r"/admin/refunds", RefundsHandler),
    (r"/admin/forfeits", ForfeitsHandler),
    (r"/admin/users", UsersHandler),
    (r"/admin/users/([0-9]+)/credit", CreditHandler),
    (r"/admin/users/([0-9]+)/clear-non-payer", ClearNonPayerHandler),
]
