"""The community's reports and moderation over REST (issue 23; docs/community.md "Reports and
moderation").

A user reports a post or a comment (`POST /api/v1/reports`). Admins (admin-scoped token) read the
queue and decide; every admin write goes through `ctx.admin_actions` (backoffice/actions.py),
which authorizes and records one audit entry with the reason.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, Final

from backoffice.actions import Actor, AdminActions
from community.moderation import REPORT_STATUSES, RESOLUTIONS, ModerationService
from community.rules import PAGE_MAX, REASON_MAX, decode_cursor, encode_cursor
from engine.book.errors import NotFound
from gateway.rest_feed import feed_of
from gateway.rest_reactions import limiter_of, reactions_of
from persistence.community.moderation import (
    MongoBlockStore,
    MongoContents,
    MongoReports,
    ensure_indexes,
)
from persistence.mongo import Document, iso_utc, utc_now
from web.context import AppContext
from web.errors import Unavailable, ValidationFailed
from web.http import Fields, JsonHandler

ID: Final = r"([0-9]+)"


# == wiring ================================================================================================
def build_moderation(ctx: AppContext) -> ModerationService:
    service = ModerationService(
        reports=MongoReports(ctx.db),
        blocks=MongoBlockStore(ctx.db),
        limiter=limiter_of(ctx),
        contents=MongoContents(ctx.db),
        posts=feed_of(ctx),
        comments=reactions_of(ctx),
        clock=utc_now,
    )
    ctx.moderation = service
    if ctx.admin_actions is not None:
        ctx.admin_actions.moderation = service
    return service


def moderation_of(ctx: AppContext) -> ModerationService:
    service: ModerationService = ctx.moderation or build_moderation(ctx)
    return service


def routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx}
    return [
        (r"/api/v1/reports", ReportsHandler, args),
        (r"/api/v1/admin/community/reports", AdminReportsHandler, args),
        (rf"/api/v1/admin/community/reports/{ID}/resolve", AdminResolveHandler, args),
        (rf"/api/v1/admin/community/(posts|comments)/{ID}/(hide|unhide|delete)", AdminContentHandler, args),
        (rf"/api/v1/admin/community/users/{ID}/block", AdminBlockHandler, args),
        (rf"/api/v1/admin/community/users/{ID}/erase", AdminEraseHandler, args),
    ]


async def start(ctx: AppContext) -> list[asyncio.Task[None]]:
    """Start-up: indexes (no background task)."""
    await ensure_indexes(ctx.db)
    return []


# == views ================================================================================================
def _time(value: datetime.datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


async def _names(ctx: AppContext, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    cursor = ctx.db.users.find({"_id": {"$in": sorted(ids)}}, {"username": 1, "display_name": 1})
    return {int(u["_id"]): u.get("display_name") or u.get("username", "") async for u in cursor}


async def content_view(ctx: AppContext, target: str) -> Document | None:
    """The reported post or comment as an admin sees it (hidden or not); None once deleted."""
    kind, _, raw_id = target.partition(":")
    doc = await MongoContents(ctx.db).content(kind, int(raw_id))
    if doc is None:
        return None
    return {
        "kind": kind,
        "id": doc["_id"],
        "user_id": doc.get("user_id"),
        "text": doc.get("text", ""),
        "images": list(doc.get("images") or []),
        "hidden": bool(doc.get("hidden")),
        "hidden_reason": doc.get("hidden_reason", ""),
        "target": doc.get("target"),  # a comment's post or article
        "created_at": _time(doc.get("created_at")),
    }


async def group_views(ctx: AppContext, groups: list[Document]) -> list[Document]:
    users = {int(g["target_user"]) for g in groups} | {int(r) for g in groups for r in g["reporters"]}
    names = await _names(ctx, users)
    views = []
    for group in groups:
        views.append(
            {
                "target": group["target"],
                "report_id": group["first_id"],  # resolve through any report of the group
                "status": group["status"],
                "count": group["count"],
                "reasons": group["reasons"],
                "notes": group["notes"],
                "reporters": [{"user_id": r, "name": names.get(int(r), "")} for r in group["reporters"]],
                "target_user": {
                    "user_id": group["target_user"],
                    "name": names.get(int(group["target_user"]), ""),
                },
                "first_at": _time(group["first_at"]),
                "last_at": _time(group["last_at"]),
                "resolution": group["resolution"],
                "resolved_by": group["resolved_by"],
                "resolved_at": _time(group["resolved_at"]),
                "content": await content_view(ctx, group["target"]),
            }
        )
    return views


# == handlers ==============================================================================================
class ReportsHandler(JsonHandler):
    async def post(self) -> None:
        user = await self.require_user()
        body = self.fields(("target", "reason", "note"))
        report_id = await moderation_of(self.ctx).report(
            user.user_id, body.data.get("target"), body.data.get("reason"), body.data.get("note", "")
        )
        self.reply({"id": report_id, "status": "open"}, 201)


class AdminModerationHandler(JsonHandler):
    admin_area = "community"

    async def admin(self) -> tuple[Actor, AdminActions]:
        user = await self.require_admin()
        actions = self.ctx.admin_actions
        if actions is None:
            raise Unavailable("admin actions are not wired into this application")
        if actions.moderation is None:
            actions.moderation = moderation_of(self.ctx)
        return self.staff_actor(user), actions

    def reason(self, body: Fields) -> str:
        # A JSON string here; the service then cleans it (one line, 1-255 characters).
        return body.text("reason", max_length=REASON_MAX)

    async def user(self, raw_id: str) -> int:
        user_id = self.path_id(raw_id, "user")
        if await self.ctx.db.users.find_one({"_id": user_id}, {"_id": 1}) is None:
            raise NotFound(f"no user {user_id}")
        return user_id


class AdminReportsHandler(AdminModerationHandler):
    async def get(self) -> None:
        await self.require_admin()
        status = self.get_query_argument("status", "open") or "open"
        if status not in REPORT_STATUSES:
            raise ValidationFailed(f"status must be one of: {', '.join(REPORT_STATUSES)}")
        keys = decode_cursor(self.get_query_argument("cursor", None), 1)
        limit = self.query_int("limit", minimum=1, maximum=PAGE_MAX, default=None)
        groups, after = await moderation_of(self.ctx).queue(status, None if keys is None else keys[0], limit)
        self.reply(
            {
                "items": await group_views(self.ctx, groups),
                "next_cursor": None if after is None else encode_cursor((after,)),
            }
        )


class AdminResolveHandler(AdminModerationHandler):
    async def post(self, raw_id: str) -> None:
        actor, actions = await self.admin()
        body = self.fields(("action", "reason"))
        answer = await actions.community_resolve_report(
            actor, self.path_id(raw_id, "report"), body.one_of("action", RESOLUTIONS), self.reason(body)
        )
        self.reply(answer)


class AdminContentHandler(AdminModerationHandler):
    async def post(self, kinds: str, raw_id: str, action: str) -> None:
        actor, actions = await self.admin()
        kind = kinds.removesuffix("s")
        body = self.fields(("reason",))
        content_id = self.path_id(raw_id, kind)
        self.reply(await actions.community_moderate(actor, kind, content_id, action, self.reason(body)))


class AdminBlockHandler(AdminModerationHandler):
    async def put(self, raw_id: str) -> None:
        actor, actions = await self.admin()
        user_id = await self.user(raw_id)
        body = self.fields(("reason", "days"))
        days = body.optional_integer("days", minimum=1, maximum=3650)
        block = await actions.community_block(actor, user_id, self.reason(body), days)
        self.reply(
            {"user_id": user_id, "blocked": True, "until": _time(block["until"]), "reason": block["reason"]}
        )

    async def delete(self, raw_id: str) -> None:
        actor, actions = await self.admin()
        user_id = await self.user(raw_id)
        reason = ""
        if self.raw_body().strip():
            body = self.fields(("reason",))
            reason = body.text("reason", min_length=0, max_length=255, default="")
        changed = await actions.community_unblock(actor, user_id, reason)
        self.reply({"user_id": user_id, "blocked": False, "changed": changed})


class AdminEraseHandler(AdminModerationHandler):
    async def post(self, raw_id: str) -> None:
        actor, actions = await self.admin()
        user_id = await self.user(raw_id)
        body = self.fields(("reason",))
        counts = await actions.community_erase(actor, user_id, self.reason(body))
        self.reply({"user_id": user_id, "erased": counts})
