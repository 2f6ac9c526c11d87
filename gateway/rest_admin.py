"""Admin REST: sessions and lots (metadata, then the engine), credits, and lot lifecycle commands.

Every endpoint needs an admin-scoped token (`POST /api/v1/admin/login`): 401 without a valid
token, 403 with a non-admin one. Every write goes through the admin-actions service
(backoffice/actions.py), the one the admin UI uses: it authorizes and leaves one audit entry.
"""

import re
import uuid
from collections.abc import Callable
from typing import Any

from backoffice.actions import Actor, AdminActions, LotAction
from gateway.context import AppContext
from gateway.errors import ValidationFailed
from gateway.http import Fields, JsonHandler
from persistence.accounts import ledger_document
from persistence.catalog import LotSpec, SessionSpec, Spec, admin_lot_view, admin_session_view, engine_refusal

# Prices and deposits stay within what the websocket protocol accepts for a bid (gateway/protocol.py).
MAX_MONEY = 10**13
MAX_SOFT_CLOSE_SECONDS = 3600
MAX_SOFT_CLOSE_CAP_SECONDS = 7 * 86_400
MAX_BANDS = 20
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

SESSION_FIELDS = (
    "title",
    "description",
    "cover",
    "preview_start",
    "preview_end",
    "bidding_start",
    "bidding_end",
    "deposit",
    "soft_close_seconds",
    "soft_close_cap_seconds",
)
LOT_FIELDS = (
    "catalogue_no",
    "title",
    "description",
    "images",
    "specs",
    "start_price",
    "unit",
    "increment_bands",
    "reserve_price",
    "highest_price",
    "deposit",
)
LOT_REQUIRED = ("catalogue_no", "title", "start_price")


def read_session(body: Fields, *, partial: bool) -> dict[str, Any]:
    """SessionSpec keyword arguments from the body: all of them, or (`partial`) those present."""
    readers: dict[str, Callable[[], Any]] = {
        "title": lambda: body.text("title", max_length=100),
        "description": lambda: body.text("description", min_length=0, max_length=5000, multiline=True),
        "cover": lambda: body.url("cover", allow_empty=True),
        "preview_start": lambda: body.timestamp("preview_start"),
        "preview_end": lambda: body.timestamp("preview_end"),
        "bidding_start": lambda: body.timestamp("bidding_start"),
        "bidding_end": lambda: body.timestamp("bidding_end"),
        "deposit": lambda: body.integer("deposit", maximum=MAX_MONEY),
        "soft_close_seconds": lambda: body.integer("soft_close_seconds", maximum=MAX_SOFT_CLOSE_SECONDS),
        "soft_close_cap_seconds": lambda: body.integer(
            "soft_close_cap_seconds", maximum=MAX_SOFT_CLOSE_CAP_SECONDS
        ),
    }
    optional = ("description", "cover", "deposit", "soft_close_seconds", "soft_close_cap_seconds")
    values = {
        name: read() for name, read in readers.items() if body.has(name) or not (partial or name in optional)
    }
    if partial and not values:
        raise ValidationFailed("nothing to change")
    return values


def read_lot(body: Fields, *, partial: bool) -> dict[str, Any]:
    """LotSpec keyword arguments from the body: all of them, or (`partial`) those present."""
    readers: dict[str, Callable[[], Any]] = {
        "catalogue_no": lambda: body.text("catalogue_no", max_length=32),
        "title": lambda: body.text("title", max_length=100),
        "description": lambda: body.text("description", min_length=0, max_length=5000, multiline=True),
        "images": lambda: body.urls("images", max_items=20),
        "specs": lambda: tuple(
            Spec(item.text("key", max_length=32), item.text("value", max_length=200))
            for item in body.objects("specs", allowed=("key", "value"), max_items=50)
        ),
        "start_price": lambda: body.integer("start_price", minimum=1, maximum=MAX_MONEY),
        "unit": lambda: body.optional_integer("unit", minimum=1, maximum=MAX_MONEY),
        "increment_bands": lambda: _bands(body),
        "reserve_price": lambda: body.integer("reserve_price", maximum=MAX_MONEY),
        "highest_price": lambda: body.integer("highest_price", maximum=MAX_MONEY),
        "deposit": lambda: body.integer("deposit", maximum=MAX_MONEY),
    }
    values = {
        name: read()
        for name, read in readers.items()
        if body.has(name) or (not partial and name in LOT_REQUIRED)
    }
    if partial:
        if not values:
            raise ValidationFailed("nothing to change")
    elif "unit" not in values:
        values["unit"] = None
    return values


def _bands(body: Fields) -> tuple[tuple[int | None, int], ...] | None:
    """`[[upper_exclusive | null, step], ...]`: the step while the price is below `upper`."""
    if body.data.get("increment_bands") is None:
        return None
    bands = []
    for band in body.array("increment_bands", max_items=MAX_BANDS):
        if not isinstance(band, list) or len(band) != 2:
            raise ValidationFailed("every increment band must be [upper_exclusive or null, step]")
        upper, step = band
        pair = Fields({"upper": upper, "step": step}, ("upper", "step"))
        bands.append(
            (
                pair.optional_integer("upper", minimum=1, maximum=MAX_MONEY),
                pair.integer("step", minimum=1, maximum=MAX_MONEY),
            )
        )
    return tuple(bands)


class AdminWriteHandler(JsonHandler):
    """A REST admin write: the bearer token names the actor; `actions` authorizes and audits."""

    actions: AdminActions

    def initialize(self, ctx: AppContext, actions: AdminActions) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.actions = actions

    async def actor(self) -> Actor:
        user = await self.require_admin()
        return Actor(user.user_id, user.username, user.is_admin, self.request.remote_ip or "", "rest")


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
        self.reply(await self.ctx.catalog.lot_view(lot_id, count_watcher=False))


class CreditHandler(AdminWriteHandler):
    """Top up a user's balance; with `idempotency_key` a retried request is applied once."""

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


ROUTES = [
    (r"/api/v1/admin/sessions", SessionsAdminHandler),
    (r"/api/v1/admin/sessions/([0-9]+)", SessionAdminHandler),
    (r"/api/v1/admin/sessions/([0-9]+)/lots", SessionLotsAdminHandler),
    (r"/api/v1/admin/lots/([0-9]+)", LotAdminHandler),
    (r"/api/v1/admin/lots/([0-9]+)/(open|close|cancel)", LotCommandHandler),
    (r"/api/v1/admin/users/([0-9]+)/credit", CreditHandler),
]
