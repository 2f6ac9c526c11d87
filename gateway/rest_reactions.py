"""Views, likes, threaded comments and collections over REST (docs/community.md "Views, likes,
comments and collections"), the same endpoints for posts and articles; live counts go out through
gateway/community_live.py.

Comment text is returned as plain text, as written: clients render it as text, never as HTML.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterable, Sequence
from typing import Any, Final

from community.ports import Record
from community.reactions import Page, ReactionService
from community.rules import PAGE_MAX, Target, decode_cursor, encode_cursor, page_size
from gateway.community_live import LiveFrames, listen_community_frames
from persistence.community.blocks import MongoBlocks
from persistence.community.limits import RedisRateLimiter
from persistence.community.reactions import MongoReactions, MongoTargets, ensure_indexes
from persistence.mongo import iso_utc
from web.context import AppContext
from web.errors import ValidationFailed
from web.http import JsonHandler

KINDS: Final = {"posts": "post", "articles": "article", "comments": "comment"}


# -- building --------------------------------------------------------------------------------------------
def limiter_of(ctx: AppContext) -> Any:
    """The community's one rate limiter (the first module to build it wins)."""
    if ctx.community_limiter is None:
        ctx.community_limiter = RedisRateLimiter(ctx.redis, enabled=ctx.community_rate_limits)
    return ctx.community_limiter


def build_reactions(ctx: AppContext) -> ReactionService:
    store = MongoReactions(ctx.db, ctx.read_cache)

    async def render(comment: Record) -> dict[str, Any]:
        return (await comment_views(ctx, [comment], None, public=True))[0]

    live = LiveFrames(ctx, store.counters, render)
    service = ReactionService(store, MongoTargets(ctx.db), MongoBlocks(ctx.db), limiter_of(ctx), live)
    ctx.reactions = service
    return service


def reactions_of(ctx: AppContext) -> ReactionService:
    service: ReactionService | None = ctx.reactions
    return service or build_reactions(ctx)


def routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx, "reactions": reactions_of(ctx)}
    table: list[tuple[str, type]] = [
        (r"/api/v1/(posts|articles)/([0-9]+)/view", ViewHandler),
        (r"/api/v1/(posts|articles|comments)/([0-9]+)/like", LikeHandler),
        (r"/api/v1/(posts|articles)/([0-9]+)/comments", CommentsHandler),
        (r"/api/v1/comments/([0-9]+)/replies", RepliesHandler),
        (r"/api/v1/comments/([0-9]+)", CommentHandler),
        (r"/api/v1/me/collections/(article|course)/([0-9]+)", CollectHandler),
        (r"/api/v1/me/collections", CollectionsHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in table]


async def start(ctx: AppContext) -> list[asyncio.Task[None]]:
    """Start-up: indexes, and in a cluster the listener of other gateways' community frames."""
    await ensure_indexes(ctx.db)
    reactions_of(ctx)
    if ctx.price_bus is None:
        return []
    return [asyncio.create_task(listen_community_frames(ctx), name="community-frames")]


# -- views -----------------------------------------------------------------------------------------------
async def people(ctx: AppContext, user_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{user_id: {"user_id", "name", "avatar"}}: the display name (else the username) and the
    community avatar ("" without a profile)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    found: dict[int, dict[str, Any]] = {u: {"user_id": u, "name": "", "avatar": ""} for u in wanted}
    async for user in ctx.db.users.find({"_id": {"$in": wanted}}, {"username": 1, "display_name": 1}):
        found[int(user["_id"])]["name"] = user.get("display_name") or user.get("username", "")
    async for profile in ctx.db.community_profiles.find({"_id": {"$in": wanted}}, {"avatar": 1}):
        found[int(profile["_id"])]["avatar"] = profile.get("avatar") or ""
    return found


def _iso(value: Any) -> Any:
    return iso_utc(value) if isinstance(value, datetime.datetime) else value


async def comment_views(
    ctx: AppContext, comments: Sequence[Record], viewer: int | None, *, public: bool = False
) -> list[dict[str, Any]]:
    """Comment views (docs/community.md); `public` (the live `comment` frame) leaves out liked_by_me and mine.
    Root comments from a list carry `replies` and `reply_preview` (themselves views)."""
    every = [*comments, *(r for c in comments for r in c.get("reply_preview", ()))]
    names = await people(
        ctx,
        [int(c["user_id"]) for c in every]
        + [int(c["reply_to_user"]) for c in every if c.get("reply_to_user")],
    )
    liked: set[str] = set()
    if not public and viewer is not None:
        liked = await reactions_of(ctx).liked_by(viewer, [Target("comment", int(c["_id"])) for c in every])

    def view(comment: Record) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": comment["_id"],
            "target": comment["target"],
            "author": names[int(comment["user_id"])],
            "text": comment["text"],
            "root": comment.get("root"),
            "depth": comment.get("depth", 1),
            "reply_to": comment.get("reply_to"),
            "reply_to_user": None,
            "likes": int(comment.get("likes", 0)),
            "replies": int(comment.get("replies", 0)),
            "created_at": _iso(comment["created_at"]),
        }
        reply_to_user = comment.get("reply_to_user")
        if reply_to_user:
            person = names[int(reply_to_user)]
            answer["reply_to_user"] = {"user_id": person["user_id"], "name": person["name"]}
        if not public:
            answer["liked_by_me"] = f"comment:{comment['_id']}" in liked
            answer["mine"] = viewer is not None and int(comment["user_id"]) == viewer
        if "reply_preview" in comment:
            answer["reply_preview"] = [view(reply) for reply in comment["reply_preview"]]
        return answer

    return [view(comment) for comment in comments]


# -- handlers --------------------------------------------------------------------------------------------
class ReactionHandler(JsonHandler):
    reactions: ReactionService

    def initialize(self, ctx: AppContext, reactions: ReactionService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.reactions = reactions

    def target(self, plural: str, raw_id: str) -> Target:
        kind = KINDS.get(plural, plural)
        return Target(kind, self.path_id(raw_id, kind))  # type: ignore[arg-type]

    def cursor(self, arity: int) -> tuple[int, ...] | None:
        return decode_cursor(self.get_query_argument("cursor", None), arity)

    def limit(self) -> int:
        return page_size(self.query_int("limit", minimum=1, maximum=PAGE_MAX, default=None))

    async def viewer(self) -> int | None:
        user = await self.authenticate()
        return None if user is None else user.user_id

    def page_answer(self, items: list[Any], page: Page) -> None:
        cursor = None if page.next_keys is None else encode_cursor(page.next_keys)
        self.reply({"items": items, "next_cursor": cursor})


class ViewHandler(ReactionHandler):
    async def post(self, plural: str, raw_id: str) -> None:
        self.reply(await self.reactions.view(await self.viewer(), self.target(plural, raw_id)))


class LikeHandler(ReactionHandler):
    async def put(self, plural: str, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.reactions.like(user.user_id, self.target(plural, raw_id), True))

    async def delete(self, plural: str, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.reactions.like(user.user_id, self.target(plural, raw_id), False))


class CommentsHandler(ReactionHandler):
    async def get(self, plural: str, raw_id: str) -> None:
        viewer = await self.viewer()
        after = self.cursor(1)
        page = await self.reactions.comments(
            self.target(plural, raw_id), None if after is None else after[0], self.limit()
        )
        self.page_answer(await comment_views(self.ctx, page.items, viewer), page)

    async def post(self, plural: str, raw_id: str) -> None:
        user = await self.require_user()
        body = self.fields(("text", "reply_to"))
        if not isinstance(body.data.get("text"), str):
            raise ValidationFailed("text must be a string")
        reply_to = body.optional_integer("reply_to", minimum=1)
        comment = await self.reactions.add_comment(
            user.user_id, self.target(plural, raw_id), body.data["text"], reply_to
        )
        self.reply((await comment_views(self.ctx, [comment], user.user_id))[0], 201)


class RepliesHandler(ReactionHandler):
    async def get(self, raw_id: str) -> None:
        viewer = await self.viewer()
        after = self.cursor(1)
        page = await self.reactions.replies(
            self.path_id(raw_id, "comment"), None if after is None else after[0], self.limit()
        )
        self.page_answer(await comment_views(self.ctx, page.items, viewer), page)


class CommentHandler(ReactionHandler):
    async def delete(self, raw_id: str) -> None:
        user = await self.require_user()
        await self.reactions.delete_own_comment(user.user_id, self.path_id(raw_id, "comment"))
        self.set_status(204)
        self.finish()


class CollectHandler(ReactionHandler):
    async def put(self, kind: str, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.reactions.collect(user.user_id, self.target(kind, raw_id), True))

    async def delete(self, kind: str, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.reactions.collect(user.user_id, self.target(kind, raw_id), False))


class CollectionsHandler(ReactionHandler):
    async def get(self) -> None:
        user = await self.require_user()
        kind = self.get_query_argument("kind", "all")
        if kind not in ("article", "course", "all"):
            raise ValidationFailed("kind must be one of: article, course, all")
        page = await self.reactions.collections(user.user_id, kind, self.cursor(3), self.limit())
        items = [{**item, "collected_at": _iso(item["collected_at"])} for item in page.items]
        self.page_answer(items, page)
