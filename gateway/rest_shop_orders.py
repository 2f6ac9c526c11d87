"""The shop order's life over REST (shop/order_life.py): the order JSON, cancel, pay again, refund
requests, and the admin's refund decisions (through `ctx.admin_actions`, audited).

Registered by `gateway.rest_shop.shop_routes` (`ROUTES`); docs/shop.md "The order's whole life".
"""

import datetime
from typing import Any, Literal

from engine.book.errors import GavelError
from persistence.mongo import Document, iso_utc
from shop import order_life
from shop.model import to_ms
from shop.service import ShopService
from web.context import AppContext
from web.http import JsonHandler

ORDER_NO = r"([0-9]{1,24})"
_HIDDEN = ("_id", "checkout_id", "idempotency_key", "user_id", "attempts", "late_payments", "refund")


def _ms(value: Any) -> int | None:
    return None if value is None else to_ms(value)


def _json(value: Any) -> Any:
    """Stored values as JSON (as gateway.rest_shop.view): `_id` -> `id`, datetimes as ISO-8601 UTC."""
    if isinstance(value, datetime.datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {("id" if k == "_id" else k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def refund_view(refund: Document | None) -> dict[str, Any] | None:
    if not refund:
        return None
    return {
        "status": refund.get("status"),
        "reason": refund.get("reason", ""),
        "amount_balance": int(refund.get("amount_balance", 0)),
        "amount_provider": int(refund.get("amount_provider", 0)),
        "requested_at_ms": _ms(refund.get("requested_at")),
        "decided_at_ms": _ms(refund.get("decided_at")),
        "decision_reason": refund.get("decision_reason", ""),
        "refunded_at_ms": _ms(refund.get("refunded_at")),
    }


def order_view(order: Document) -> dict[str, Any]:
    """An order as the contract names it (docs/openapi-shop.yaml `Order`); the earlier field names
    (original_total, valid_days, original_price, global_discount_share, ISO times) stay."""
    answer: dict[str, Any] = _json({k: v for k, v in order.items() if k not in _HIDDEN})
    status = order_life.status_of(order)
    answer.update(
        order_no=order["_id"],
        status=status,
        total=int(order.get("original_total", 0)),
        pay_deadline_ms=_ms(order.get("pay_deadline")),
        created_at_ms=_ms(order.get("created_at")),
        pay_url=order.get("pay_url") if status == order_life.PENDING else None,
        refund=refund_view(order.get("refund")),
        attempts=len(order_life.trade_numbers(order)),
    )
    answer["lines"] = [
        {
            **line,
            "kind": line.get("kind", "course"),  # orders before degrees were sold: course lines
            "degree_course_id": line.get("degree_course_id"),
            "policy_days": line.get("valid_days"),
            "price": line.get("original_price"),
            "global_discount": line.get("global_discount_share", 0),
        }
        for line in answer.get("lines", [])
    ]
    return answer


class _OrderHandler(JsonHandler):
    shop: ShopService

    def initialize(self, ctx: AppContext, shop: ShopService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.shop = shop

    def reason(self) -> str:
        """`{"reason": "..."}` (at most 200 characters); an empty body means no reason."""
        if not self.raw_body().strip():
            return ""
        body = self.fields(("reason",))
        return body.text(
            "reason", min_length=0, max_length=order_life.MAX_REFUND_REASON, multiline=True, default=""
        )


class CancelHandler(_OrderHandler):
    async def post(self, order_no: str) -> None:
        user = await self.require_user()
        self.reply(order_view(await self.shop.cancel_order(user.user_id, order_no)))


class PayAgainHandler(_OrderHandler):
    async def post(self, order_no: str) -> None:
        user = await self.require_user()
        order = await self.shop.retry_payment(user.user_id, order_no)
        self.reply(
            {"order_no": order["_id"], "out_trade_no": order["out_trade_no"], "pay_url": order["pay_url"]}
        )


class RefundRequestHandler(_OrderHandler):
    async def post(self, order_no: str) -> None:
        user = await self.require_user()
        reason = self.reason()
        self.reply(order_view(await self.shop.request_refund(user.user_id, order_no, reason)))


class AdminRefundDecisionHandler(_OrderHandler):
    admin_area = "orders"

    async def post(self, order_no: str, decision: str) -> None:
        user = await self.require_admin()
        reason = self.reason()
        actions = self.ctx.admin_actions
        if actions is None:
            raise GavelError("admin actions are not wired into this application", code="UNAVAILABLE")
        actor = self.staff_actor(user)
        approve_or_reject: Literal["approve", "reject"] = "approve" if decision == "approve" else "reject"
        self.reply(order_view(await actions.decide_shop_refund(actor, order_no, approve_or_reject, reason)))


ROUTES: list[tuple[str, type]] = [
    (rf"/api/v1/shop/orders/{ORDER_NO}/cancel", CancelHandler),
    (rf"/api/v1/shop/orders/{ORDER_NO}/pay", PayAgainHandler),
    (rf"/api/v1/shop/orders/{ORDER_NO}/refund", RefundRequestHandler),
    (rf"/api/v1/admin/shop/orders/{ORDER_NO}/refund/(approve|reject)", AdminRefundDecisionHandler),
]
