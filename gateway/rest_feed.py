"""The community's feed over REST (docs/community.md "Feed"): profiles and avatars, follows, topics,
posts with a cover and up to nine images (multipart), and the feeds (latest, following, topic, a
user's), all keyset-paged.

The post view resolves its `link` at read time from the engine's live book, so a card shows the
lot's current price; the images' `srcset` come from the media index (`ctx.catalog.media`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Final

import tornado.httputil

from community.feed import FeedService, NewPost, PostPage
from community.rules import MAX_ID, PAGE_MAX, POST_IMAGES_MAX, Target
from gateway.rest_reactions import reactions_of
from persistence.catalog import CACHE_DOMAIN as AUCTION_CACHE_DOMAIN
from persistence.community.blocks import MongoBlocks
from persistence.community.feed import FEED_CACHE_DOMAIN, PEOPLE_TTL_S, MongoFeedStore, ensure_indexes
from persistence.community.limits import RedisRateLimiter
from persistence.kept_json import kept_json
from persistence.media import MediaStore
from persistence.mongo import Document, iso_utc
from persistence.read_cache import MISSING
from web.context import AppContext
from web.errors import PayloadTooLarge, ValidationFailed
from web.http import JsonHandler
from web.media import media_of

IMAGE_MAX_BYTES: Final = 5 * 1024 * 1024
# A cover and nine images of 5 MiB, the text fields and the multipart headers around them.
MAX_POST_BYTES: Final = (1 + POST_IMAGES_MAX) * IMAGE_MAX_BYTES + 64 * 1024
MAX_JSON_POST_BYTES: Final = 16 * 1024
UPLOAD_BODY_TIMEOUT_SECONDS: Final = 120.0
POST_FIELDS: Final = frozenset({"text", "topic_id", "place", "link_kind", "link_id"})
POST_FILES: Final = frozenset({"cover", "images"})
# How long the signed-out first page may keep its authors' names and avatars and its topics'
# titles: the feed store keeps names this long anyway (persistence/community/feed.py).
SHARED_PAGE_SECONDS: Final = PEOPLE_TTL_S


# == wiring ===============================================================================================
def limiter_of(ctx: AppContext) -> Any:
    """The community's one rate limiter (first builder wins)."""
    if ctx.community_limiter is None:
        ctx.community_limiter = RedisRateLimiter(ctx.redis, enabled=ctx.community_rate_limits)
    return ctx.community_limiter


class StoreMedia:
    """The Media port on the process's MediaStore (web/media.py)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    @property
    def store(self) -> MediaStore:
        return media_of(self.ctx)

    async def save(self, data: bytes) -> str:
        return (await self.store.save(data)).path

    async def delete(self, url: str) -> bool:
        return await self.store.delete(url)


class EngineLinks:
    """A post may link a lot or a session the engine knows."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def exists(self, kind: str, link_id: int) -> bool:
        book = self.ctx.engine.book
        return link_id in (book.lots if kind == "lot" else book.sessions)


class ContextPurger:
    """`purge_target` on the process's reactions service (gateway/rest_reactions.py)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def purge_target(self, target: Target) -> None:
        await reactions_of(self.ctx).purge_target(target)


def build_feed(ctx: AppContext) -> FeedService:
    feed = FeedService(
        MongoFeedStore(ctx.db, ctx.read_cache),
        StoreMedia(ctx),
        blocks=MongoBlocks(ctx.db),
        limiter=limiter_of(ctx),
        links=EngineLinks(ctx),
        purger=ContextPurger(ctx),
    )
    ctx.feed = feed
    return feed


def feed_of(ctx: AppContext) -> FeedService:
    found: FeedService | None = ctx.feed
    return found or build_feed(ctx)


def routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx, "feed": feed_of(ctx)}
    table: list[tuple[str, type]] = [
        (r"/api/v1/profiles/([0-9]+)", ProfileHandler),
        (r"/api/v1/me/profile", MyProfileHandler),
        (r"/api/v1/me/profile/avatar", AvatarHandler),
        (r"/api/v1/profiles/([0-9]+)/follow", FollowHandler),
        (r"/api/v1/profiles/([0-9]+)/(followers|following)", FollowListHandler),
        (r"/api/v1/profiles/([0-9]+)/posts", UserPostsHandler),
        (r"/api/v1/topics", TopicsHandler),
        (r"/api/v1/topics/([0-9]+)", TopicHandler),
        (r"/api/v1/topics/([0-9]+)/follow", TopicFollowHandler),
        (r"/api/v1/posts", PostsHandler),
        (r"/api/v1/posts/([0-9]+)", PostHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in table]


async def start(ctx: AppContext) -> list[asyncio.Task[None]]:
    """Start-up: indexes, and any background task (cancelled at shutdown)."""
    await ensure_indexes(ctx.db)
    return []


# == views ================================================================================================
async def post_views(
    ctx: AppContext, page: PostPage, viewer: int | None, *, admin: bool = False
) -> list[Document]:
    """The post view (docs/community.md) for each post of the page: pictures from the media index
    (one query) and links resolved against the engine's live book (one query per kind for the titles)."""
    urls = [u for p in page.posts for u in [p.get("cover") or "", *p.get("images", ())] if u]
    pictures = await ctx.catalog.media.pictures(urls) if urls else {}
    cards = await link_cards(ctx, [p["link"] for p in page.posts if p.get("link")])
    views = []
    for post in page.posts:
        author = page.people.get(int(post["user_id"]), {"name": "", "avatar": ""})
        topic = page.topics.get(int(post["topic_id"])) if post.get("topic_id") is not None else None
        link = post.get("link")
        view: Document = {
            "id": post["_id"],
            "author": {"user_id": post["user_id"], "name": author["name"], "avatar": author["avatar"]},
            "text": post["text"],
            "cover": pictures.get(post["cover"]) if post.get("cover") else None,
            "images": [pictures.get(u, {"url": u, "srcset": ""}) for u in post.get("images", ())],
            "topic": {"id": topic["_id"], "title": topic["title"]} if topic else None,
            "place": post.get("place", ""),
            "link": cards.get((link["kind"], int(link["id"]))) if link else None,
            "created_at": iso_utc(post["created_at"]),
            "likes": max(0, int(post.get("likes", 0))),
            "comments": max(0, int(post.get("comments", 0))),
            "views": max(0, int(post.get("views", 0))),
            "liked_by_me": f"post:{post['_id']}" in page.liked,
            "mine": viewer is not None and viewer == post["user_id"],
        }
        if admin:
            view["hidden"] = bool(post.get("hidden"))
            view["hidden_reason"] = post.get("hidden_reason", "")
        views.append(view)
    return views


async def link_cards(ctx: AppContext, links: Iterable[Document]) -> dict[tuple[str, int], Document]:
    """`{(kind, id): {"kind","id","title","price","status","session_id"}}`: a lot's price and state
    are the engine's now; a session card has no single price (None). A lot or session the engine
    no longer holds reads as status "unavailable"."""
    wanted: dict[str, set[int]] = {"lot": set(), "session": set()}
    for link in links:
        if link.get("kind") in wanted:
            wanted[link["kind"]].add(int(link["id"]))
    titles: dict[str, dict[int, str]] = {"lot": {}, "session": {}}
    for kind, collection in (("lot", ctx.db.lots), ("session", ctx.db.sessions)):
        if wanted[kind]:
            cursor = collection.find({"_id": {"$in": list(wanted[kind])}}, {"title": 1})
            titles[kind] = {int(d["_id"]): str(d.get("title", "")) async for d in cursor}
    cards: dict[tuple[str, int], Document] = {}
    for kind in ("lot", "session"):
        for target_id in wanted[kind]:
            cards[kind, target_id] = live_card(ctx, kind, target_id, titles[kind].get(target_id, ""))
    return cards


def live_card(ctx: AppContext, kind: str, target_id: int, title: str) -> Document:
    """A link card: a lot's price and state are the engine's now; a session card has no single
    price (None). A lot or session the engine no longer holds reads as status "unavailable"."""
    book = ctx.engine.book
    if kind == "lot":
        lot = book.lots.get(target_id)
        return {
            "kind": "lot",
            "id": target_id,
            "title": title,
            "price": lot.price if lot is not None else None,
            "status": lot.state.name.lower() if lot is not None else "unavailable",
            "session_id": lot.session_id if lot is not None else None,
        }
    session = book.sessions.get(target_id)
    return {
        "kind": "session",
        "id": target_id,
        "title": title,
        "price": None,
        "status": session.state.name.lower() if session is not None else "unavailable",
        "session_id": target_id,
    }


def with_live_link(ctx: AppContext, view: Document) -> Document:
    """A post view kept for everyone, with its link card's price and state read again from the
    engine (its own copy; the kept one is never changed)."""
    card = view.get("link")
    if not card:
        return view
    return {**view, "link": live_card(ctx, str(card["kind"]), int(card["id"]), str(card["title"]))}


async def profile_view(ctx: AppContext, profile: Document) -> Document:
    """The feed's profile plus the avatar's `srcset`."""
    srcset = ""
    if profile["avatar"]:
        srcset = (await ctx.catalog.media.pictures([profile["avatar"]]))[profile["avatar"]].get("srcset", "")
    return {**profile, "avatar_srcset": srcset}


# == handlers =============================================================================================
class FeedHandler(JsonHandler):
    feed: FeedService

    def initialize(self, ctx: AppContext, feed: FeedService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.feed = feed

    async def viewer(self) -> int | None:
        user = await self.authenticate()
        return None if user is None else user.user_id

    def cursor(self) -> tuple[str | None, int | None]:
        raw = self.get_query_argument("cursor", None)
        return raw, self.query_int("limit", minimum=1, maximum=PAGE_MAX, default=None)

    def optional_id(self, raw: str | None, name: str) -> int | None:
        if raw is None or raw == "":
            return None
        if not raw.isdigit() or len(raw) > 16 or not 1 <= int(raw) <= MAX_ID:
            raise ValidationFailed(f"{name} must be a positive integer")
        return int(raw)


class UploadMixin(FeedHandler):
    """A multipart body streamed to its own limit (a cover and nine images) instead of the JSON
    handlers' 64 KiB. The sender is signed in before a byte is read; a body past the limit is
    dropped as it arrives and answered 413."""

    max_body: int = MAX_POST_BYTES

    def initialize(self, ctx: AppContext, feed: FeedService) -> None:  # type: ignore[override]
        super().initialize(ctx, feed)
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._uploading = False

    async def prepare(self) -> None:  # type: ignore[override]
        if self.request.method not in ("POST", "PUT"):
            super().prepare()
            return
        self._uploading = True
        await self.require_user()
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > self.max_body:
            raise PayloadTooLarge(f"the body must not exceed {self.max_body // 2**20} MiB")
        if self._is_json() and declared.isdigit() and int(declared) > MAX_JSON_POST_BYTES:
            raise PayloadTooLarge(f"a JSON body is at most {MAX_JSON_POST_BYTES} bytes")
        set_max_body_size = getattr(self.request.connection, "set_max_body_size", None)
        if set_max_body_size is not None:
            set_max_body_size(self.max_body + 1)
        # Photos from a phone take longer than HEADER_TIMEOUT; only a signed-in sender gets this.
        set_body_timeout = getattr(self.request.connection, "set_body_timeout", None)
        if set_body_timeout is not None:
            set_body_timeout(UPLOAD_BODY_TIMEOUT_SECONDS)

    def _is_json(self) -> bool:
        content_type = self.request.headers.get("Content-Type", "")
        return content_type.split(";")[0].strip().lower() == "application/json"

    def data_received(self, chunk: bytes) -> None:
        if not self._uploading:
            super().data_received(chunk)
            return
        self._size += len(chunk)
        if self._size > self.max_body:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)

    def upload_body(self) -> bytes:
        if self._too_large:
            raise PayloadTooLarge(f"the body must not exceed {self.max_body // 2**20} MiB")
        return b"".join(self._chunks)

    def form(
        self, fields: frozenset[str], file_fields: frozenset[str]
    ) -> tuple[dict[str, str], dict[str, list[bytes]]]:
        """The multipart form: one value per text field (UTF-8), the files' bytes by field."""
        content_type = self.request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ValidationFailed("send multipart/form-data")
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        try:
            tornado.httputil.parse_body_arguments(
                content_type, self.upload_body(), arguments, files, self.request.headers
            )
        except tornado.httputil.HTTPInputError:
            raise ValidationFailed("the multipart/form-data body is malformed") from None
        unknown = (set(arguments) - fields) | (set(files) - file_fields)
        if unknown:
            raise ValidationFailed(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
        values: dict[str, str] = {}
        for name, raw in arguments.items():
            if len(raw) != 1:
                raise ValidationFailed(f"{name} must be sent once")
            try:
                values[name] = raw[0].decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationFailed(f"{name} must be UTF-8") from None
        return values, {name: [f["body"] for f in found] for name, found in files.items()}


# -- profiles ---------------------------------------------------------------------------------------------
class ProfileHandler(FeedHandler):
    async def get(self, raw_id: str) -> None:
        viewer = await self.viewer()
        profile = await self.feed.profile(viewer, self.path_id(raw_id, "user"))
        self.reply(await profile_view(self.ctx, profile))


class MyProfileHandler(FeedHandler):
    async def get(self) -> None:
        user = await self.require_user()
        self.reply(await profile_view(self.ctx, await self.feed.profile(user.user_id, user.user_id)))

    async def put(self) -> None:
        user = await self.require_user()
        body = self.fields(("bio",))
        profile = (
            await self.feed.set_bio(user.user_id, body.data["bio"])
            if body.has("bio")
            else await self.feed.profile(user.user_id, user.user_id)
        )
        self.reply(await profile_view(self.ctx, profile))


class AvatarHandler(UploadMixin):
    max_body = IMAGE_MAX_BYTES + 64 * 1024

    async def put(self) -> None:
        user = self.current_user
        _values, files = self.form(frozenset(), frozenset({"file"}))
        if len(files.get("file", ())) != 1:
            raise ValidationFailed("send one image in the field `file`")
        profile = await self.feed.set_avatar(user.user_id, files["file"][0])
        self.reply(await profile_view(self.ctx, profile))


class FollowHandler(FeedHandler):
    async def put(self, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.feed.follow(user.user_id, self.path_id(raw_id, "user")))

    async def delete(self, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.feed.unfollow(user.user_id, self.path_id(raw_id, "user")))


class FollowListHandler(FeedHandler):
    async def get(self, raw_id: str, direction: str) -> None:
        cursor, limit = self.cursor()
        items, next_cursor = await self.feed.follow_list(
            self.path_id(raw_id, "user"), direction, cursor, limit
        )
        self.reply({"items": items, "next_cursor": next_cursor})


# -- topics -----------------------------------------------------------------------------------------------
class TopicsHandler(FeedHandler):
    async def get(self) -> None:
        self.reply({"items": await self.feed.topics(await self.viewer())})


class TopicHandler(FeedHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.authenticate()
        viewer = None if user is None else user.user_id
        admin = user is not None and self.staff_may(user, "community")  # staff who read the community
        self.reply(await self.feed.topic(viewer, self.path_id(raw_id, "topic"), admin=admin))


class TopicFollowHandler(FeedHandler):
    async def put(self, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.feed.follow_topic(user.user_id, self.path_id(raw_id, "topic")))

    async def delete(self, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(await self.feed.unfollow_topic(user.user_id, self.path_id(raw_id, "topic")))


# -- posts ------------------------------------------------------------------------------------------------
class PostsHandler(UploadMixin):
    async def get(self) -> None:
        viewer = await self.viewer()
        cursor, limit = self.cursor()
        kind = self.get_query_argument("feed", "latest")
        topic_id = self.optional_id(self.get_query_argument("topic_id", None), "topic_id")
        if viewer is None and cursor is None and kind in ("latest", "topic"):
            await self._shared_first_page(kind, topic_id, limit)
            return
        page = await self.feed.feed(viewer, kind, topic_id=topic_id, cursor=cursor, limit=limit)
        self.reply({"items": await post_views(self.ctx, page, viewer), "next_cursor": page.next_cursor})

    async def _shared_first_page(self, kind: str, topic_id: int | None, limit: int | None) -> None:
        """The first page as anyone signed out sees it (no likes of theirs, no blocks), kept in the
        read cache's feed domain: any write to a post (new, hidden, deleted, liked, commented,
        viewed) empties it in every process. Its authors' names and avatars and its topics' titles
        are kept at most SHARED_PAGE_SECONDS, as the feed store keeps them anyway; a lot's or
        session's title is in the key (the auction domain's generation); a link card's price and
        state are the engine's on every answer."""
        cache = self.ctx.read_cache
        key = ("first_page", kind, topic_id, limit, cache.stamp(AUCTION_CACHE_DOMAIN))
        found = cache.get(FEED_CACHE_DOMAIN, key)
        now = time.monotonic()
        if found is MISSING or now - found[0] > SHARED_PAGE_SECONDS:
            stamp = cache.stamp(FEED_CACHE_DOMAIN)
            page = await self.feed.feed(None, kind, topic_id=topic_id, cursor=None, limit=limit)
            views = await post_views(self.ctx, page, None)
            answer = {"items": views, "next_cursor": page.next_cursor}
            # Without a link card nothing on the page is live: its JSON is kept as it is.
            body = None if any(view.get("link") for view in views) else kept_json(answer)
            found = (now, answer, body)
            cache.put(FEED_CACHE_DOMAIN, key, found, stamp)
        if found[2] is not None:
            self.set_status(200)
            self.finish(found[2])
            return
        kept = found[1]
        self.reply(
            {
                "items": [with_live_link(self.ctx, view) for view in kept["items"]],
                "next_cursor": kept["next_cursor"],
            }
        )

    async def post(self) -> None:
        user = self.current_user
        new = self._new_post()
        post = await self.feed.create_post(user.user_id, new)
        page = await self.feed.read_post(user.user_id, int(post["_id"]))
        [view] = await post_views(self.ctx, page, user.user_id)
        self.reply(view, 201)

    def _new_post(self) -> NewPost:
        if self._is_json():
            body = self.upload_body()
            if len(body) > MAX_JSON_POST_BYTES:
                raise PayloadTooLarge(f"a JSON post is at most {MAX_JSON_POST_BYTES} bytes")
            self._body = bytearray(body)
            fields = self.fields(POST_FIELDS)
            return NewPost(
                text=fields.data.get("text"),
                topic_id=fields.optional_integer("topic_id", minimum=1),
                place=fields.data.get("place", ""),
                link_kind=self._link_kind(fields.data.get("link_kind")),
                link_id=fields.optional_integer("link_id", minimum=1),
            )
        values, files = self.form(POST_FIELDS, POST_FILES)
        covers = files.get("cover", [])
        if len(covers) > 1:
            raise ValidationFailed("a post has one cover")
        return NewPost(
            text=values.get("text", ""),
            topic_id=self.optional_id(values.get("topic_id"), "topic_id"),
            place=values.get("place", ""),
            link_kind=self._link_kind(values.get("link_kind") or None),
            link_id=self.optional_id(values.get("link_id"), "link_id"),
            cover=covers[0] if covers else None,
            images=files.get("images", []),
        )

    @staticmethod
    def _link_kind(raw: object) -> str | None:
        if raw is None:
            return None
        if raw not in ("lot", "session"):
            raise ValidationFailed("link_kind must be lot or session")
        return str(raw)


class PostHandler(FeedHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.authenticate()
        viewer = None if user is None else user.user_id
        admin = user is not None and self.staff_may(user, "community")  # staff who read the community
        page = await self.feed.read_post(viewer, self.path_id(raw_id, "post"), admin=admin)
        [view] = await post_views(self.ctx, page, viewer, admin=admin)
        self.reply(view)

    async def delete(self, raw_id: str) -> None:
        user = await self.require_user()
        await self.feed.delete_own_post(user.user_id, self.path_id(raw_id, "post"))
        self.set_status(204)
        self.finish()


class UserPostsHandler(FeedHandler):
    async def get(self, raw_id: str) -> None:
        viewer = await self.viewer()
        cursor, limit = self.cursor()
        page = await self.feed.user_posts(viewer, self.path_id(raw_id, "user"), cursor=cursor, limit=limit)
        self.reply({"items": await post_views(self.ctx, page, viewer), "next_cursor": page.next_cursor})
