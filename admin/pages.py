"""The dashboard (overview), media files and the admin's 404 page."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

import tornado.web

from admin.base import AdminHandler, AdminServices, money
from admin.catalog import SESSION_STATE_LABELS
from admin.money import ORDER_STATUS_LABELS
from backoffice import dashboard as dash
from backoffice.timezone import business_zone
from engine.book.states import LotState, SessionState
from persistence.media import MEDIA_TYPES, NAME_PATTERN
from persistence.mongo import Document, from_ms, to_ms

AUDIT_PAGE_SIZE = 50


class DashboardHandler(AdminHandler):
    """The overview: takings today and this week (business-zone days), orders by status, overdue
    orders, deposits held, live sessions and their watchers, failed payments, refunds pending, and
    14 days of takings and orders as small inline SVG charts. A tile shows only if the admin may
    read its area (docs/admin.md "Dashboard")."""

    nav = "home"
    area = "dashboard"

    async def get(self) -> None:
        book = self.ctx.engine.book
        zone = business_zone(self.ctx.business_tz)
        now = from_ms(self.ctx.engine.clock.now_ms())
        sessions_by_state = {int(s): 0 for s in SessionState}
        for session in book.sessions.values():
            sessions_by_state[int(session.state)] += 1
        live_sessions = sorted(
            (s for s in book.sessions.values() if s.state in (SessionState.PREVIEW, SessionState.BIDDING)),
            key=lambda s: s.bidding_end,
        )[:20]
        titles = {
            int(d["_id"]): d.get("title", "")
            async for d in self.ctx.db.sessions.find(
                {"_id": {"$in": [s.session_id for s in live_sessions]}}, {"title": 1}
            )
        }
        hub = self.ctx.hub
        watchers = {
            s.session_id: len(hub.by_session.get(s.session_id, ())) if hub else 0 for s in live_sessions
        }
        db = self.ctx.db
        figures = {
            "lots_bidding": sum(1 for lot in book.lots.values() if lot.state is LotState.BIDDING),
            "sockets": hub.socket_count if hub is not None else 0,
        }
        money_figures = await self.money_figures(now, zone) if self.may("orders") else None
        if self.may("users"):
            figures["non_payers"] = await db.users.count_documents({"non_payer": True})
        self.render(
            "dashboard.html",
            sessions_by_state=sessions_by_state,
            live_sessions=[(s, titles.get(s.session_id, ""), watchers[s.session_id]) for s in live_sessions],
            figures=figures,
            board=money_figures,
            session_states=SESSION_STATE_LABELS,
            order_labels=ORDER_STATUS_LABELS,
            show_auctions=self.may("auctions"),
            page_title="Overview",
        )

    async def money_figures(self, now: datetime.datetime, zone: ZoneInfo) -> dict[str, Any]:
        db = self.ctx.db
        span = dash.periods(now, zone)
        since_ms = to_ms(span.chart_from)
        auction = [
            dash.Sale(int(o["paid_at_ms"]), _paid_amount(o))
            async for o in db.orders.find(
                {"paid_at_ms": {"$gte": since_ms}}, {"paid_at_ms": 1, "payment": 1, "price": 1}
            )
        ]
        shop = [
            dash.Sale(o["paid_at"], int(o.get("payable") or 0))
            async for o in db.shop_orders.find(
                {"paid_at": {"$gte": span.chart_from}}, {"paid_at": 1, "payable": 1}
            )
        ]
        created = [
            dash.Sale(o["created_at"], 0)
            async for o in db.orders.find({"created_at": {"$gte": span.chart_from}}, {"created_at": 1})
        ] + [
            dash.Sale(o["created_at"], 0)
            async for o in db.shop_orders.find({"created_at": {"$gte": span.chart_from}}, {"created_at": 1})
        ]
        failed = [
            dash.Sale(p["closed_at"], int(p.get("amount") or 0))
            async for p in db.payments.find(
                {"status": "closed", "closed_at": {"$gte": min(span.week, span.today)}},
                {"closed_at": 1, "amount": 1},
            )
            if p.get("closed_at") is not None
        ]
        deposits = dash.Total()
        async for d in db.deposits.find({"status": "paid"}, {"amount": 1, "remaining": 1}):
            remaining = d.get("remaining")
            deposits += dash.Total(1, int(d["amount"] if remaining is None else remaining))
        takings_days = dash.by_day([*auction, *shop], now, zone)
        order_days = dash.by_day(created, now, zone)
        labels = [f"{d.day:%m-%d}" for d in takings_days]
        shop_counts = {
            str(row["_id"]): int(row["count"])
            async for row in await db.shop_orders.aggregate(
                [{"$group": {"_id": "$status", "count": {"$sum": 1}}}]
            )
        }
        today = span.today.astimezone(zone).date()
        week = span.week.astimezone(zone).date()
        return {
            "today": dash.total_since(auction, span.today) + dash.total_since(shop, span.today),
            "today_auction": dash.total_since(auction, span.today),
            "today_shop": dash.total_since(shop, span.today),
            "week": dash.total_since(auction, span.week) + dash.total_since(shop, span.week),
            "week_auction": dash.total_since(auction, span.week),
            "week_shop": dash.total_since(shop, span.week),
            "orders_by_status": {
                s: await db.orders.count_documents({"status": s}) for s in ORDER_STATUS_LABELS
            },
            "orders_to_ship": await db.orders.count_documents({"status": 2, "shipped_at_ms": None}),
            "shop_by_status": shop_counts,
            "overdue": await db.orders.count_documents({"status": 4}),
            "deposits_held": deposits,
            "failed_today": dash.total_since(failed, span.today),
            "failed_week": dash.total_since(failed, span.week),
            "failed_today_url": _payments_url(today, today),
            "failed_week_url": _payments_url(week, today),
            "refunds_pending": await db.refunds.count_documents({"status": "pending"}),
            "shop_refunds_pending": await db.shop_orders.count_documents(
                {"refund.status": {"$in": ["requested", "approved"]}}
            ),
            "takings_bars": dash.bars(
                [d.total.fen for d in takings_days],
                labels,
                [f"{d.day:%Y-%m-%d}: {money(d.total.fen)} ({d.total.count})" for d in takings_days],
            ),
            "orders_bars": dash.bars(
                [d.total.count for d in order_days],
                labels,
                [f"{d.day:%Y-%m-%d}: {d.total.count} orders" for d in order_days],
            ),
            "chart_labels": labels,
            "takings_max": max(d.total.fen for d in takings_days),
            "orders_max": max(d.total.count for d in order_days),
        }


def _paid_amount(order: Document) -> int:
    """What the buyer paid for an auction order (deposit deducted + paid now), else its price."""
    payment = order.get("payment") or {}
    if payment.get("paid_amount") is not None:
        return int(payment["paid_amount"])
    return int(order.get("price") or 0)


def _payments_url(first: datetime.date, last: datetime.date) -> str:
    return f"/admin/exports/payments.csv?status=failed&from={first:%Y-%m-%d}&to={last:%Y-%m-%d}"


class MediaHandler(tornado.web.StaticFileHandler):
    """`/media/<name>`: uploaded images, public (bidders see them), with the sniffed type only."""

    def initialize(self, admin: AdminServices) -> None:  # type: ignore[override]
        root = admin.media.root
        root.mkdir(parents=True, exist_ok=True)
        super().initialize(path=str(root))

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
        self.set_header("Cross-Origin-Resource-Policy", "same-site")

    async def get(self, path: str, include_body: bool = True) -> None:
        if not NAME_PATTERN.fullmatch(path):
            raise tornado.web.HTTPError(404)
        await super().get(path, include_body)

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return 365 * 86_400  # names are random and never reused: the content never changes

    def get_content_type(self) -> str:
        # From our own extension (the sniffed type, or a variant's WebP), not the platform's table.
        return MEDIA_TYPES.get((self.absolute_path or "").rpartition(".")[2], "application/octet-stream")

    def set_extra_headers(self, path: str) -> None:
        # Never revalidated either: a new image is a new name (variants included).
        self.set_header("Cache-Control", "public, max-age=31536000, immutable")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}\n")


class NotFoundPage(AdminHandler):
    """Unknown paths under /admin: refused like any admin page, then a 404 page."""

    area = "account"

    def get(self) -> None:
        raise tornado.web.HTTPError(404, "no such admin page")

    post = get


ROUTES = [
    (r"/admin/?", DashboardHandler),
]
