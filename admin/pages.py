"""Dashboard, the live monitor, the audit log, the admin JSON endpoint, and media files."""

from __future__ import annotations

from typing import Any

import tornado.web

from admin.base import AdminHandler, AdminJsonHandler, AdminServices, Paging
from admin.catalog import LOT_STATE_LABELS, SESSION_STATE_LABELS, lot_live, session_state
from engine.book.states import LotState, SessionState
from persistence.audit import FILTER_PATTERN
from persistence.catalog import admin_lot_view, admin_session_view
from persistence.media import MEDIA_TYPES, NAME_PATTERN

AUDIT_PAGE_SIZE = 50


class DashboardHandler(AdminHandler):
    nav = "home"

    async def get(self) -> None:
        book = self.ctx.engine.book
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
        db = self.ctx.db
        figures = {
            "lots_bidding": sum(1 for lot in book.lots.values() if lot.state is LotState.BIDDING),
            "orders_unpaid": await db.orders.count_documents({"status": 1}),
            "orders_to_ship": await db.orders.count_documents({"status": 2, "shipped_at_ms": None}),
            "orders_overdue": await db.orders.count_documents({"status": 4}),
            "refunds_pending": await db.refunds.count_documents({"status": "pending"}),
            "non_payers": await db.users.count_documents({"non_payer": True}),
            "sockets": self.ctx.hub.socket_count if self.ctx.hub is not None else 0,
        }
        self.render(
            "dashboard.html",
            sessions_by_state=sessions_by_state,
            live_sessions=[(s, titles.get(s.session_id, "")) for s in live_sessions],
            figures=figures,
            session_states=SESSION_STATE_LABELS,
            page_title="Overview",
        )


class MonitorHandler(AdminHandler):
    """One session's lots, updated live by admin/static/monitor.js over the public websocket."""

    nav = "sessions"

    async def get(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        session = await self.ctx.catalog.session_document(session_id)
        live = self.ctx.engine.book.sessions.get(session_id)
        order = {lot_id: index for index, lot_id in enumerate(live.lot_ids)} if live is not None else {}
        lots = [lot async for lot in self.ctx.db.lots.find({"session_id": session_id})]
        lots.sort(key=lambda lot: (order.get(int(lot["_id"]), 1 << 60), int(lot["_id"])))
        for lot in lots:
            lot["live"] = lot_live(self.ctx.engine, int(lot["_id"]))
            leader = lot["live"]["leader"] if lot["live"] else 0
            lot["leader_name"] = self.ctx.pseudonym(session_id, leader) if leader else ""
        self.render(
            "monitor.html",
            session=session,
            state=session_state(self.ctx.engine, session_id),
            lots=lots,
            session_states=SESSION_STATE_LABELS,
            lot_states=LOT_STATE_LABELS,
            page_title=f"Monitor · {session.get('title', '')}",
        )


class AuditHandler(AdminHandler):
    nav = "audit"

    async def get(self) -> None:
        action = self.get_query_argument("action", "").strip()
        target = self.get_query_argument("target", "").strip()
        action = action if FILTER_PATTERN.fullmatch(action or "-") and action else ""
        target = target if FILTER_PATTERN.fullmatch(target or "-") and target else ""
        page = self.query_int("page", 1)
        entries, total = await self.services.audit.page(
            action=action or None,
            target=target or None,
            skip=(page - 1) * AUDIT_PAGE_SIZE,
            limit=AUDIT_PAGE_SIZE,
        )
        self.render(
            "audit.html",
            entries=entries,
            actions=await self.services.audit.actions(),
            action=action,
            target=target,
            paging=Paging(page, AUDIT_PAGE_SIZE, total),
            page_title="Audit log",
        )


class SessionJsonHandler(AdminJsonHandler):
    """`GET /admin/api/sessions/{id}`: the session and its lots (metadata and live state)."""

    async def get(self, raw_id: str) -> None:
        session_id = self.path_id(raw_id, "session")
        doc = await self.ctx.catalog.session_document(session_id)
        lots = []
        async for lot in self.ctx.db.lots.find({"session_id": session_id}).sort("_id", 1):
            view = admin_lot_view(lot)
            live = lot_live(self.ctx.engine, int(lot["_id"]))
            if live is not None:
                live["leader"] = self.ctx.pseudonym(session_id, int(live["leader"])) if live["leader"] else ""
            view["live"] = live
            lots.append(view)
        self.reply(
            {**admin_session_view(doc), "state": session_state(self.ctx.engine, session_id), "lots": lots}
        )


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

    def get(self) -> None:
        raise tornado.web.HTTPError(404, "no such admin page")

    post = get


ROUTES = [
    (r"/admin/?", DashboardHandler),
    (r"/admin/sessions/([0-9]+)/monitor", MonitorHandler),
    (r"/admin/audit", AuditHandler),
    (r"/admin/api/sessions/([0-9]+)", SessionJsonHandler),
]
