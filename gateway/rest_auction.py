"""Public auction reads: sessions, lots (each view counts a watcher), and bid histories."""

from engine.book.states import SessionState
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
        self.reply(await self.ctx.catalog.session_view(self.path_id(raw_id, "session")))


class LotHandler(JsonHandler):
    async def get(self, raw_id: str) -> None:
        self.reply(await self.ctx.catalog.lot_view(self.path_id(raw_id, "lot"), count_watcher=True))


class LotBidsHandler(JsonHandler):
    def get(self, raw_id: str) -> None:
        lot_id = self.path_id(raw_id, "lot")
        page = self.page()
        items, total = self.ctx.catalog.bids_view(lot_id, page.skip, page.page_size)
        self.reply(page.answer(items, total))


ROUTES = [
    (r"/api/v1/sessions", SessionsHandler),
    (r"/api/v1/sessions/([0-9]+)", SessionHandler),
    (r"/api/v1/lots/([0-9]+)", LotHandler),
    (r"/api/v1/lots/([0-9]+)/bids", LotBidsHandler),
]
