"""Admin REST: sessions and lots (metadata, then the engine), credits, and lot lifecycle commands.

Every endpoint needs an admin-scoped token (`POST /api/v1/admin/login`): 401 without a valid
token, 403 with a non-admin one. Every write goes through the admin-actions service
(backoffice/actions.py), the one the admin UI uses: it authorizes and leaves one audit entry.
"""

import re
import uuid
from typing import Any

from backoffice.actions import Actor, AdminActions, BadTime, LotAction, control_reason
from backoffice.ports import Document
from persistence.accounts import ledger_document
from persistence.catalog import LotSpec, SessionSpec, admin_lot_view, admin_session_view, engine_refusal
from persistence.mongo import iso_from_ms, to_ms
from web.catalog_fields import LOT_FIELDS, MAX_MONEY, SESSION_FIELDS, read_lot, read_session
from web.context import AppContext
from web.errors import ValidationFailed
from web.http import JsonHandler

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class AdminWriteHandler(JsonHandler):
    """A REST admin write: the bearer token names the actor; `actions` authorizes and audits."""

    admin_area = "auctions"

    actions: AdminActions

    def initialize(self, ctx: AppContext, actions: AdminActions) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.actions = actions

    async def actor(self) -> Actor:
        user = await self.require_admin()
        return self.staff_actor(user)


class SessionsAdminHandler(AdminWriteHandler):
    async def post(self) -> None:
        actor = await self.actor()
        spec = SessionSpec(**read_session(self.fields(SESSION_FIELDS), partial=False))
        doc = await self.actions.create_session(actor, spec)
        self.reply(admin_session_view(doc), 201)


class SessionAdminHandler(AdminWriteHandler):
    async def patch(self, raw_id: str) -> None:
        actor = await self.actor()
        session_id = self.path_id(raw_id, "session")
        changes = read_session(self.fields(SESSION_FIELDS), partial=True)
        doc = await self.actions.update_session(actor, session_id, changes)
        self.reply(admin_session_view(doc))


class SessionLotsAdminHandler(AdminWriteHandler):
    async def post(self, raw_id: str) -> None:
        actor = await self.actor()
        session_id = self.path_id(raw_id, "session")
        spec = LotSpec(**read_lot(self.fields(LOT_FIELDS), partial=False))
        doc = await self.actions.create_lot(actor, session_id, spec)
        self.reply(admin_lot_view(doc), 201)


class LotAdminHandler(AdminWriteHandler):
    async def patch(self, raw_id: str) -> None:
        actor = await self.actor()
        lot_id = self.path_id(raw_id, "lot")
        changes = read_lot(self.fields(LOT_FIELDS), partial=True)
        doc = await self.actions.update_lot(actor, lot_id, changes)
        self.reply(admin_lot_view(doc))


class LotCommandHandler(AdminWriteHandler):
    """`POST /api/v1/admin/lots/{id}/open|close|cancel`: the engine decides whether the move is legal."""

    async def post(self, raw_id: str, action: str) -> None:
        actor = await self.actor()
        lot_id = self.path_id(raw_id, "lot")
        reason = ""
        if action == "cancel":
            body = self.fields(("reason",))
            reason = body.text("reason", max_length=200)
        elif self.raw_body().strip():
            self.fields(())  # an optional empty object; anything else is refused
        verb: LotAction = "cancel" if action == "cancel" else "open" if action == "open" else "close"
        outcome = await self.actions.lot_command(actor, lot_id, verb, reason)
        if not outcome.ok:
            raise engine_refusal(outcome, state_code="ILLEGAL_STATE")
        view = await self.ctx.catalog.lot_view(lot_id)
        # The admin sees the reserve the public views keep secret.
        view["reserve_price"] = self.ctx.engine.book.lots[lot_id].reserve
        self.reply(view)


class CreditHandler(AdminWriteHandler):
    """Top up a user's balance; with `idempotency_key` a retried request is applied once."""

    admin_area = "users"

    async def post(self, raw_id: str) -> None:
        actor = await self.actor()
        user_id = self.path_id(raw_id, "user")
        body = self.fields(("amount", "idempotency_key"))
        amount = body.integer("amount", minimum=1, maximum=MAX_MONEY)
        key = (
            body.text("idempotency_key", max_length=100, default=None)
            if body.has("idempotency_key")
            else None
        )
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise ValidationFailed("idempotency_key must be 1-100 characters of A-Z a-z 0-9 _ . : -")
        entry = await self.actions.credit(
            actor, user_id, amount, key if key is not None else uuid.uuid4().hex
        )
        self.reply(ledger_document(entry), 200 if entry.replayed else 201)


def live_lot_json(lot_id: int, live: Document) -> dict[str, Any]:
    """A live lot as the control endpoints answer it: times as UTC ISO-8601 (and in ms)."""
    paused_since = live.get("paused_since") or 0
    return {
        "lot_id": lot_id,
        **live,
        "ends_at": iso_from_ms(live["ends_at"]) if "ends_at" in live else None,
        "ends_at_ms": live.get("ends_at"),
        "paused_since": iso_from_ms(paused_since) if paused_since else None,
    }


class LotControlHandler(AdminWriteHandler):
    """`POST /api/v1/admin/lots/{id}/pause|resume|withdraw` `{"reason"}` and `.../extend`
    `{"ends_at", "reason"}`: live controls through the engine, audited with the reason."""

    async def post(self, raw_id: str, control: str) -> None:
        actor = await self.actor()
        lot_id = self.path_id(raw_id, "lot")
        if control == "extend":
            body = self.fields(("ends_at", "reason"))
            if not body.has("ends_at"):
                raise BadTime("ends_at is required: an ISO-8601 time with a UTC offset")
            try:
                ends_at_ms = to_ms(body.timestamp("ends_at"))
            except ValidationFailed as error:
                raise BadTime(error.message) from None
            live = await self.actions.lot_extend(
                actor, lot_id, ends_at_ms, control_reason(body.data.get("reason"))
            )
        else:
            reason = control_reason(self.fields(("reason",)).data.get("reason"))
            if control == "pause":
                live = await self.actions.lot_pause(actor, lot_id, reason)
            elif control == "resume":
                live = await self.actions.lot_resume(actor, lot_id, reason)
            else:
                live = await self.actions.lot_withdraw(actor, lot_id, reason)
        self.reply(live_lot_json(lot_id, live))


class BidVoidHandler(AdminWriteHandler):
    """`POST /api/v1/admin/lots/{id}/bids/{index}/void` `{"reason"}`: the index is the bid input's
    place in the order of acceptance (0 first); the rest are replayed."""

    async def post(self, raw_id: str, raw_index: str) -> None:
        actor = await self.actor()
        lot_id = self.path_id(raw_id, "lot")
        if len(raw_index) > 9:
            raise ValidationFailed("the bid index is too large")
        reason = control_reason(self.fields(("reason",)).data.get("reason"))
        live = await self.actions.bid_void(actor, lot_id, int(raw_index), reason)
        self.reply(live_lot_json(lot_id, live))


class SessionControlHandler(AdminWriteHandler):
    """`POST /api/v1/admin/sessions/{id}/pause|resume` `{"reason"}`: every bidding lot of it."""

    async def post(self, raw_id: str, control: str) -> None:
        actor = await self.actor()
        session_id = self.path_id(raw_id, "session")
        reason = control_reason(self.fields(("reason",)).data.get("reason"))
        if control == "pause":
            result = await self.actions.session_pause(actor, session_id, reason)
        else:
            result = await self.actions.session_resume(actor, session_id, reason)
        lot_ids = self.ctx.engine.book.sessions[session_id].lot_ids
        lots = [live_lot_json(lot_id, live) for lot_id, live in zip(lot_ids, result["lots"], strict=True)]
        self.reply({"session_id": session_id, "lots": lots})


class BidderControlHandler(AdminWriteHandler):
    """`POST /api/v1/admin/bidders/{user_id}/block|unblock` `{"reason"}`."""

    async def post(self, raw_id: str, control: str) -> None:
        actor = await self.actor()
        user_id = self.path_id(raw_id, "user")
        reason = control_reason(self.fields(("reason",)).data.get("reason"))
        if control == "block":
            result = await self.actions.bidder_block(actor, user_id, reason)
        else:
            result = await self.actions.bidder_unblock(actor, user_id, reason)
        self.reply(result)


ROUTES = [
    (r"/api/v1/admin/sessions", SessionsAdminHandler),
    (r"/api/v1/admin/sessions/([0-9]+)", SessionAdminHandler),
    (r"/api/v1/admin/sessions/([0-9]+)/lots", SessionLotsAdminHandler),
    (r"/api/v1/admin/lots/([0-9]+)", LotAdminHandler),
    (r"/api/v1/admin/lots/([0-9]+)/(open|close|cancel)", LotCommandHandler),
    (r"/api/v1/admin/users/([0-9]+)/credit", CreditHandler),
    (r"/api/v1/admin/lots/([0-9]+)/(pause|resume|withdraw|extend)", LotControlHandler),
    (r"/api/v1/admin/lots/([0-9]+)/bids/([0-9]+)/void", BidVoidHandler),
    (r"/api/v1/admin/sessions/([0-9]+)/(pause|resume)", SessionControlHandler),
    (r"/api/v1/admin/bidders/([0-9]+)/(block|unblock)", BidderControlHandler),
]
