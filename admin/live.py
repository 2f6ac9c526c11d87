"""The live monitor per session and per lot, and the controls that act through the engine (issue 24)."""

from __future__ import annotations

from admin.base import AdminHandler, AdminJsonHandler
from admin.catalog import LOT_STATE_LABELS, SESSION_STATE_LABELS, lot_live, session_state
from persistence.catalog import admin_lot_view, admin_session_view


class MonitorHandler(AdminHandler):
    """One session's lots, updated live by admin/static/monitor.js over the public websocket."""

    area = "auctions"

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


class SessionJsonHandler(AdminJsonHandler):
    """`GET /admin/api/sessions/{id}`: the session and its lots (metadata and live state)."""

    area = "auctions"

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


ROUTES: list[tuple[str, type[AdminHandler]]] = [
    (r"/admin/sessions/([0-9]+)/monitor", MonitorHandler),
    (r"/admin/api/sessions/([0-9]+)", SessionJsonHandler),
]
