"""The dashboard (overview), media files and the admin's 404 page."""

from __future__ import annotations

from typing import Any

import tornado.web

from admin.base import AdminHandler, AdminServices
from admin.catalog import SESSION_STATE_LABELS
from engine.book.states import LotState, SessionState
from persistence.media import MEDIA_TYPES, NAME_PATTERN

AUDIT_PAGE_SIZE = 50


class DashboardHandler(AdminHandler):
    area = "dashboard"
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
