"""Public auction reads: sessions, lots (each distinct viewer counts once as a watcher), and bid
histories; and a bidder's own result of a lot."""

import hashlib
import hmac
from typing import Any

from engine.book.errors import NotFound
from engine.book.states import CLOSED_LOT_STATES, SessionState
from persistence.archive import bidders_of_lot
from persistence.lot_results import deposit_for_lot, order_of_lot, refund_json
from web.errors import Unauthorized
from web.http import JsonHandler


class SessionsHandler(JsonHandler):
    async def get(self) -> None:
        state = self.query_int("state", minimum=min(SessionState), maximum=max(SessionState), default=None)
        page = self.page()
        items, total = await self.ctx.catalog.list_sessions(
            None if state is None else SessionState(state), page.skip, page.page_size
        )
        self.reply(page.answer(items, total))


class SessionHandler(JsonHandler):
    async def get(self, raw_id: str) -> None:
        body = await self.ctx.catalog.session_view_json(self.path_id(raw_id, "session"))
        self.finish(body)


def viewer_key(user_id: int | None, address: str, user_agent: str, secret: bytes) -> str:
    """Who is looking, for the 围观 count: a signed-in user once, whatever their devices; anyone else
    once per address and browser, kept as a keyed hash (neither is stored in the clear). Reloads and
    reconnects are the same viewer."""
    if user_id:
        return f"u:{user_id}"
    digest = hmac.new(secret, f"{address}\0{user_agent[:256]}".encode(), hashlib.sha256).hexdigest()
    return "a:" + digest[:32]


class LotHandler(JsonHandler):
    async def get(self, raw_id: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        try:
            user = await self.authenticate()
        except Unauthorized:  # a stale token still sees the lot, as anyone would
            user = None
        viewer = viewer_key(
            user.user_id if user else None,
            self.request.remote_ip or "",
            self.request.headers.get("User-Agent", ""),
            self.ctx.pseudonym_secret,
        )
        self.finish(await self.ctx.catalog.lot_view_json(lot_id, viewer=viewer))


class LotBidsHandler(JsonHandler):
    async def get(self, raw_id: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        page = self.page()
        items, total = await self.ctx.catalog.bids_view(lot_id, page.skip, page.page_size)
        self.reply(page.answer(items, total))


class LotResultHandler(JsonHandler):
    """`GET /api/v1/lots/{id}/result`: the caller's outcome of a lot, as the websocket's `result`
    frame told it at the close, with the deposit that covered the lot and its refund; for a bidder
    who comes back later."""

    async def get(self, raw_id: str) -> None:
        user = await self.require_user()
        lot_id = self.path_id(raw_id, "lot")
        lot = self.ctx.engine.book.lots.get(lot_id)
        if lot is None:
            raise NotFound(f"no lot {lot_id}")
        user_id = user.user_id
        order_id = pay_by = None
        if lot.state not in CLOSED_LOT_STATES:
            outcome = "open"
        elif lot.winner == user_id:
            outcome = "won"
            order = await order_of_lot(self.ctx.db, lot_id)
            if order is not None and order.user_id == user_id:
                order_id, pay_by = order.order_id, order.deadline_ms
        elif (
            user_id in await bidders_of_lot(self.ctx.db, lot_id)
            if lot.compacted  # its bid lines are in the archive only (engine/compaction.py)
            else any(line[0] == user_id for line in lot.bids.lines())
        ):
            outcome = "lost"
        else:
            outcome = "not_bidding"
        deposit = await deposit_for_lot(self.ctx.db, user_id, lot.session_id, lot_id)
        deposit_view: dict[str, Any] | None = None
        if deposit is not None:
            deposit_view = {
                "id": deposit["_id"],
                "session_id": deposit["session_id"],
                "lot_id": deposit.get("lot_id"),
                "amount": deposit["amount"],
                "status": deposit["status"],
                "refund": refund_json(deposit["refund"]),
            }
        self.reply(
            {
                "lot_id": lot_id,
                "session_id": lot.session_id,
                "state": int(lot.state),
                "state_name": lot.state.name.lower(),
                "outcome": outcome,
                "price": lot.price,
                "order_id": order_id,
                "pay_by": pay_by,
                "deposit": deposit_view,
            }
        )


ROUTES = [
    (r"/api/v1/sessions", SessionsHandler),
    (r"/api/v1/sessions/([0-9]+)", SessionHandler),
    (r"/api/v1/lots/([0-9]+)", LotHandler),
    (r"/api/v1/lots/([0-9]+)/bids", LotBidsHandler),
    (r"/api/v1/lots/([0-9]+)/result", LotResultHandler),
]
