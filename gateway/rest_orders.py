"""Auction orders over REST: the order list, checkout and paying; auction coupons; delivery addresses;
the admin's shipping, completing and clearing of non-payers.

Wiring (the composition root, after `composition.bootstrap.build_payments`):
`app.add_handlers(r".*", order_routes(ctx))` and `background += await start_settlement(ctx)`.
`build_settlement(ctx, ...)` first when the defaults (provider and router from the context,
a 24-hour payment window) do not fit.

Someone else's order answers 404 exactly like a missing one: ids never reveal what exists.
"""

import asyncio
import re
from collections.abc import Callable
from typing import Any

import tornado.web

from engine.book.errors import GavelError
from engine.book.types import Millis
from engine.settle import rules
from engine.settle.ports import PaymentProvider, PaymentRouter
from engine.settle.rules import OrderStatus, PaymentSplit, UserCouponStatus
from engine.settle.worker import (
    OrderPayments,
    PaymentResult,
    PayRequest,
    PayWith,
    SettlementWorker,
    StepHook,
    register_payment_handlers,
)
from persistence.mongo import Document, iso_from_ms, iso_utc, to_ms
from persistence.settlement import MongoSettlement, ensure_settlement_indexes
from web.context import AppContext, Settlement
from web.errors import ValidationFailed
from web.http import MAX_SAFE_INT, Fields, JsonHandler

MAX_MONEY = 10**13
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")


def build_settlement(
    ctx: AppContext,
    *,
    provider: PaymentProvider | None = None,
    router: PaymentRouter | None = None,
    deadline_ms: Millis = rules.DEFAULT_PAYMENT_WINDOW_MS,
    hook: StepHook | None = None,
    interval_s: float = 1.0,
) -> Settlement:
    """Build the store, the worker and the payment service, and keep them as `ctx.settlement`.

    `provider` and `router` default to `ctx.payment_provider` / `ctx.payment_router`
    (set by `composition.bootstrap.build_payments`, which must therefore run first); the `ord-` handler
    is registered with the router when there is one.
    """
    if provider is None:
        provider = ctx.payment_provider
    if router is None:
        router = ctx.payment_router
    store = MongoSettlement(ctx.client, ctx.db, ctx.accounts)
    worker = SettlementWorker(
        store,
        ctx.engine.execute,
        ctx.engine.clock,
        deadline_ms,
        provider=provider,
        hook=hook,
        interval_s=interval_s,
    )
    settlement = Settlement(store, worker, OrderPayments(store, worker, provider))
    if router is not None:
        register_payment_handlers(router, settlement.payments)
    ctx.settlement = settlement
    return settlement


def settlement_for(ctx: AppContext) -> Settlement:
    return ctx.settlement or build_settlement(ctx)


async def start_settlement(ctx: AppContext) -> list[asyncio.Task[None]]:
    """Start-up for run.py (after `build_provider` and `order_routes(ctx)`): settlement's indexes and
    the worker loop (outbox, session ends, overdue sweep, refunds). Cancel the returned tasks, or
    set `settlement_for(ctx).stop`, at shutdown; the BidArchiver must be running to feed the outbox."""
    settlement = settlement_for(ctx)
    await ensure_settlement_indexes(ctx.db)
    return [asyncio.create_task(settlement.worker.run(settlement.stop), name="settlement-worker")]


# -- JSON views ---------------------------------------------------------------------------------------
def split_json(split: PaymentSplit) -> dict[str, Any]:
    return {
        "case": split.case.value,
        "coupon_used": split.coupon_used,
        "deposit_deducted": split.deposit_deducted,
        "deposit_refunded": split.deposit_refunded,
        "deposit_kept": split.deposit_kept,
        "to_pay": split.to_pay,
        "paid_amount": split.paid_amount,
    }


def lot_json(lot: Document) -> dict[str, Any]:
    images = lot.get("images") or []
    return {
        "id": lot["_id"],
        "title": lot.get("title", ""),
        "catalogue_no": lot.get("catalogue_no", ""),
        "cover": images[0] if images else "",
    }


def order_json(order: Document, lot: Document | None) -> dict[str, Any]:
    status = OrderStatus(order["status"])
    payment = order.get("payment")
    pending = order.get("pending_payment") if status is OrderStatus.UNPAID else None
    lot_view = lot_json(lot if lot is not None else {"_id": order["lot_id"]})
    return {
        "id": order["_id"],
        "lot_id": order["lot_id"],
        "session_id": order["session_id"],
        "title": lot_view["title"],
        "cover": lot_view["cover"],
        "price": order["price"],
        "status": int(status),
        "status_name": status.key,
        "status_text": status.text,
        "created_at": iso_utc(order["created_at"]) if order.get("created_at") else None,
        "closed_at": iso_from_ms(int(order["closed_at_ms"])),
        "closed_at_ms": order["closed_at_ms"],
        "deadline": iso_from_ms(int(order["deadline_ms"])),
        "deadline_ms": order["deadline_ms"],
        "paid_amount": None if payment is None else payment["paid_amount"],
        "paid_at_ms": order.get("paid_at_ms"),
        "payment": None
        if payment is None
        else {
            "pay_with": payment["pay_with"],
            "coupon_id": payment.get("coupon_id"),
            "coupon_used": payment["coupon_used"],
            "deposit_id": payment.get("deposit_id"),
            "deposit_deducted": payment["deposit_deducted"],
            "deposit_refunded": payment["deposit_refunded"],
            "deposit_kept": payment["deposit_kept"],
            "cash_amount": payment["cash_amount"],
            "cash_source": payment.get("cash_source"),
            "paid_amount": payment["paid_amount"],
        },
        "pending_payment": None
        if pending is None
        else {
            "out_trade_no": pending["out_trade_no"],
            "amount": pending["amount"],
            "pay_url": pending.get("pay_url"),
        },
        "address": order.get("address"),
        "shipped_at_ms": order.get("shipped_at_ms"),
        "tracking_no": order.get("tracking_no"),
        "completed_at_ms": order.get("completed_at_ms"),
        "overdue_at_ms": order.get("overdue_at_ms"),
        "forfeit": order.get("forfeit"),
    }


def coupon_json(coupon: Document, now: Millis) -> dict[str, Any]:
    state = rules.coupon_state(now, int(coupon["claim_start_ms"]), int(coupon["claim_end_ms"]))
    return {
        "id": coupon["_id"],
        "session_id": coupon["session_id"],
        "title": coupon["title"],
        "amount": coupon["amount"],
        "quantity": coupon["quantity"],
        "claimed": coupon["claimed"],
        "left": coupon["left"],
        "state": int(state),
        "state_name": state.name.lower(),
        "claim_start": iso_from_ms(int(coupon["claim_start_ms"])),
        "claim_start_ms": coupon["claim_start_ms"],
        "claim_end": iso_from_ms(int(coupon["claim_end_ms"])),
        "claim_end_ms": coupon["claim_end_ms"],
    }


def user_coupon_json(doc: Document) -> dict[str, Any]:
    status = UserCouponStatus(doc["status"])
    return {
        "id": doc["_id"],
        "coupon_id": doc["coupon_id"],
        "session_id": doc["session_id"],
        "title": doc["title"],
        "amount": doc["amount"],
        "status": int(status),
        "status_name": status.name.lower(),
        "order_id": doc.get("order_id"),
        "claimed_at_ms": doc.get("claimed_at_ms"),
    }


def address_json(doc: Document) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "name": doc.get("name", ""),
        "phone": doc.get("phone", ""),
        "province": doc.get("province", ""),
        "city": doc.get("city", ""),
        "district": doc.get("district", ""),
        "detail": doc.get("detail", ""),
        "is_default": bool(doc.get("is_default", False)),
    }


# -- handlers -------------------------------------------------------------------------------------------
class SettlementHandler(JsonHandler):
    settlement: Settlement

    def initialize(self, ctx: AppContext, settlement: Settlement) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.settlement = settlement

    @property
    def store(self) -> MongoSettlement:
        return self.settlement.store

    def now_ms(self) -> Millis:
        return self.ctx.engine.clock.now_ms()

    async def orders_json(self, orders: list[Document]) -> list[dict[str, Any]]:
        lots = await self.store.lots_info(sorted({int(order["lot_id"]) for order in orders}))
        return [order_json(order, lots.get(int(order["lot_id"]))) for order in orders]


class OrdersHandler(SettlementHandler):
    """The caller's orders grouped by status, in the seed's order: unpaid, awaiting delivery,
    completed, overdue (newest first within a group)."""

    async def get(self) -> None:
        user = await self.require_user()
        orders = await self.orders_json(await self.store.orders_for_user(user.user_id))
        groups = []
        for status in OrderStatus:
            items = [order for order in orders if order["status"] == status]
            groups.append(
                {
                    "status": int(status),
                    "key": status.key,
                    "text": status.text,
                    "count": len(items),
                    "items": items,
                }
            )
        self.reply({"groups": groups, "total": len(orders)})


class OrderHandler(SettlementHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.require_user()
        order = await self.store.order_for_user(self.path_id(raw_id, "order"), user.user_id)
        [view] = await self.orders_json([order])
        self.reply(view)


class CheckoutHandler(SettlementHandler):
    """`?coupon_id=` previews the split with that coupon; without it, with none."""

    async def get(self, raw_id: str) -> None:
        user = await self.require_user()
        order_id = self.path_id(raw_id, "order")
        coupon_id = self.query_int("coupon_id", minimum=1, maximum=MAX_SAFE_INT, default=None)
        checkout = await self.store.checkout(order_id, user.user_id, coupon_id, self.now_ms())
        order = checkout.order
        deposit = checkout.deposit
        self.reply(
            {
                "order": order_json(order, checkout.lot),
                "lot": lot_json(checkout.lot),
                "price": order["price"],
                "payable": order["status"] == OrderStatus.UNPAID
                and not rules.is_due(int(order["deadline_ms"]), self.now_ms()),
                "coupons": [user_coupon_json(c) for c in checkout.coupons],
                "deposit": None
                if deposit is None
                else {
                    "id": deposit["_id"],
                    "kind": "session" if checkout.deposit_session_wide else "lot",
                    "amount": deposit["amount"],
                    "remaining": deposit["remaining"],
                    "pay_with": deposit.get("pay_with"),
                },
                "balance": checkout.balance,
                "addresses": [address_json(a) for a in checkout.addresses],
                "quote": {"coupon_id": checkout.quote_coupon_id, **split_json(checkout.quote)},
            }
        )


class PayHandler(SettlementHandler):
    async def post(self, raw_id: str) -> None:
        user = await self.require_user()
        order_id = self.path_id(raw_id, "order")
        body = self.fields(("coupon_id", "address_id", "pay_with", "idempotency_key"))
        coupon_id = body.optional_integer("coupon_id", minimum=1)
        if not body.has("address_id") or body.data["address_id"] is None:
            raise GavelError("choose a delivery address (address_id)", code="ADDRESS_REQUIRED")
        address_id = body.integer("address_id", minimum=1)
        pay_with: PayWith = (
            "provider" if body.one_of("pay_with", ("balance", "provider")) == "provider" else "balance"
        )
        key = body.text("idempotency_key", max_length=100)
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise ValidationFailed("idempotency_key must be 1-100 characters of A-Z a-z 0-9 _ . : -")
        result = await self.settlement.payments.pay(
            PayRequest(order_id, user.user_id, coupon_id, address_id, pay_with, key)
        )
        await self.reply_payment(result)

    async def reply_payment(self, result: PaymentResult) -> None:
        order = await self.store.order(result.order_id)
        [view] = await self.orders_json([order])
        profile = await self.ctx.accounts.profile(result.user_id)
        answer: dict[str, Any] = {
            "order": view,
            "split": split_json(result.split),
            "pay_with": result.pay_with,
            "replayed": result.replayed,
            "balance": profile.balance,
        }
        if result.charge is not None and result.status is OrderStatus.UNPAID:
            answer.update(
                status="awaiting_provider",
                out_trade_no=result.charge.out_trade_no,
                amount=result.charge.amount,
                pay_url=result.charge.pay_url,
            )
            self.reply(answer, 202)
            return
        answer["status"] = "paid"
        self.reply(answer)


class SessionCouponsHandler(SettlementHandler):
    async def get(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        now = self.now_ms()
        self.reply({"items": [coupon_json(c, now) for c in await self.store.session_coupons(session_id)]})


class CouponClaimHandler(SettlementHandler):
    async def post(self, raw_id: str) -> None:
        user = await self.require_user()
        if self.raw_body().strip():
            self.fields(())  # an optional empty object; anything else is refused
        claimed = await self.store.claim_coupon(self.path_id(raw_id, "coupon"), user.user_id, self.now_ms())
        self.reply(user_coupon_json(claimed), 201)


class MyCouponsHandler(SettlementHandler):
    async def get(self) -> None:
        user = await self.require_user()
        status = self.query_int("status", minimum=1, maximum=3, default=None)
        coupons = await self.store.user_coupons(user.user_id)
        self.reply(
            {"items": [user_coupon_json(c) for c in coupons if status is None or c["status"] == status]}
        )


def read_address(body: Fields, *, partial: bool) -> tuple[dict[str, Any], bool]:
    """The address fields, and whether to make it the default (`"is_default": true`)."""
    readers: dict[str, Callable[[], str]] = {
        "name": lambda: body.text("name", max_length=32),
        "phone": lambda: body.text("phone", min_length=5, max_length=20),
        "province": lambda: body.text("province", min_length=0, max_length=32),
        "city": lambda: body.text("city", min_length=0, max_length=32),
        "district": lambda: body.text("district", min_length=0, max_length=32),
        "detail": lambda: body.text("detail", max_length=255),
    }
    required = ("name", "phone", "detail")
    values = {
        name: read() for name, read in readers.items() if body.has(name) or (name in required and not partial)
    }
    default = body.data.get("is_default", False)
    # Only true: the default moves by choosing another address, never by leaving none.
    if body.has("is_default") and default is not True:
        raise ValidationFailed("is_default can only be true (choose another address to move the default)")
    if partial and not values and not default:
        raise ValidationFailed("nothing to change")
    if "phone" in values and not PHONE.fullmatch(values["phone"]):
        raise ValidationFailed("phone must be 5-20 digits, spaces or dashes, optionally after '+'")
    return values, default


ADDRESS_FIELDS = ("name", "phone", "province", "city", "district", "detail", "is_default")


class AddressesHandler(SettlementHandler):
    async def get(self) -> None:
        user = await self.require_user()
        self.reply({"items": [address_json(a) for a in await self.store.addresses(user.user_id)]})

    async def post(self) -> None:
        user = await self.require_user()
        fields, default = read_address(self.fields(ADDRESS_FIELDS), partial=False)
        self.reply(address_json(await self.store.create_address(user.user_id, fields, default=default)), 201)


class AddressHandler(SettlementHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(address_json(await self.store.address(self.path_id(raw_id, "address"), user.user_id)))

    async def put(self, raw_id: str) -> None:
        user = await self.require_user()
        address_id = self.path_id(raw_id, "address")
        fields, default = read_address(self.fields(ADDRESS_FIELDS), partial=True)
        answer = await self.store.update_address(address_id, user.user_id, fields, default=default)
        self.reply(address_json(answer))

    async def delete(self, raw_id: str) -> None:
        user = await self.require_user()
        await self.store.delete_address(self.path_id(raw_id, "address"), user.user_id)
        self.set_status(204)
        self.finish()


# -- admin ------------------------------------------------------------------------------------------------
class AdminCouponsHandler(SettlementHandler):
    admin_area = "auctions"

    async def post(self, raw_id: str) -> None:
        await self.require_admin()
        session_id = self.path_id(raw_id, "session")
        body = self.fields(("title", "amount", "quantity", "claim_start", "claim_end"))
        title = body.text("title", max_length=32)
        amount = body.integer("amount", minimum=1, maximum=MAX_MONEY)
        quantity = body.integer("quantity", minimum=1, maximum=1_000_000)
        start, end = body.timestamp("claim_start"), body.timestamp("claim_end")
        if start >= end:
            raise ValidationFailed("claim_start must be before claim_end")
        coupon = await self.store.create_coupon(session_id, title, amount, quantity, to_ms(start), to_ms(end))
        self.reply(coupon_json(coupon, self.now_ms()), 201)


class AdminOrdersHandler(SettlementHandler):
    admin_area = "orders"

    async def get(self) -> None:
        await self.require_admin()
        status = self.query_int("status", minimum=1, maximum=4, default=None)
        page = self.page()
        orders, total = await self.store.orders_by_status(
            None if status is None else OrderStatus(status), page.skip, page.page_size
        )
        items = await self.orders_json(orders)
        for item, order in zip(items, orders, strict=True):
            item["user_id"] = order["user_id"]
        self.reply(page.answer(items, total))


class AdminOrderActionHandler(SettlementHandler):
    """`POST /api/v1/admin/orders/{id}/ship {"tracking_no"?}` and `/complete`; both idempotent."""

    admin_area = "orders"

    async def post(self, raw_id: str, action: str) -> None:
        await self.require_admin()
        order_id = self.path_id(raw_id, "order")
        if action == "ship":
            body = self.fields(("tracking_no",)) if self.raw_body().strip() else Fields({}, ())
            tracking = (
                body.text("tracking_no", max_length=64, default=None) if body.has("tracking_no") else None
            )
            order = await self.store.ship(order_id, tracking, self.now_ms())
        else:
            if self.raw_body().strip():
                self.fields(())
            order = await self.store.complete(order_id, self.now_ms())
        [view] = await self.orders_json([order])
        view["user_id"] = order["user_id"]
        self.reply(view)


class AdminClearNonPayerHandler(SettlementHandler):
    admin_area = "users"

    async def post(self, raw_id: str) -> None:
        await self.require_admin()
        user_id = self.path_id(raw_id, "user")
        if self.raw_body().strip():
            self.fields(())
        changed = await self.settlement.worker.clear_non_payer(user_id)
        self.reply({"user_id": user_id, "non_payer": False, "changed": changed})


ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    (r"/api/v1/orders", OrdersHandler),
    (r"/api/v1/orders/([0-9]+)", OrderHandler),
    (r"/api/v1/orders/([0-9]+)/checkout", CheckoutHandler),
    (r"/api/v1/orders/([0-9]+)/pay", PayHandler),
    (r"/api/v1/sessions/([0-9]+)/coupons", SessionCouponsHandler),
    (r"/api/v1/coupons/mine", MyCouponsHandler),
    (r"/api/v1/coupons/([0-9]+)/claim", CouponClaimHandler),
    (r"/api/v1/addresses", AddressesHandler),
    (r"/api/v1/addresses/([0-9]+)", AddressHandler),
    (r"/api/v1/admin/sessions/([0-9]+)/coupons", AdminCouponsHandler),
    (r"/api/v1/admin/orders", AdminOrdersHandler),
    (r"/api/v1/admin/orders/([0-9]+)/(ship|complete)", AdminOrderActionHandler),
    (r"/api/v1/admin/users/([0-9]+)/clear-non-payer", AdminClearNonPayerHandler),
]


def order_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    """The routes of this module with their handler arguments, for `app.add_handlers(r".*", ...)`."""
    args = {"ctx": ctx, "settlement": settlement_for(ctx)}
    return [(pattern, handler, args) for pattern, handler in ROUTES]


__all__ = ["Settlement", "build_settlement", "order_routes", "settlement_for", "start_settlement"]
