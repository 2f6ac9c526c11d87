"""The articles (深科技) over REST (docs/community.md "Articles").

Public: `GET /api/v1/articles` (visible ones, by weight, publish time and id, keyset cursor),
`GET /api/v1/articles/{id}` (with the sanitised `body_html`, `liked_by_me`, `collected_by_me`),
`GET /api/v1/article-sources`. Admin (bearer admin token; every write through `ctx.admin_actions`,
audited): `POST /api/v1/admin/articles`, `PATCH /api/v1/admin/articles/{id}`,
`POST /api/v1/admin/articles/{id}/publish|withdraw`, `POST /api/v1/admin/article-sources`,
`PUT /api/v1/admin/articles/{id}/head-image` (multipart `file`). `start(ctx)` runs the scheduler.

Views, likes, comments and collections of an article are the reactions' endpoints
(gateway/rest_reactions.py).
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, Final

import tornado.httputil

from backoffice.actions import Actor, AdminActions
from community.articles import (
    ARTICLE_SCHEDULE_SECONDS,
    EDITABLE,
    ArticleService,
    run_scheduler,
)
from community.errors import TargetNotFound
from persistence.community.articles import MongoArticleStore, ensure_indexes
from persistence.mongo import Document, from_ms, iso_utc
from web.context import AppContext
from web.errors import PayloadTooLarge, Unavailable, ValidationFailed
from web.http import JsonHandler
from web.media import media_of

ID: Final = r"([^/]{1,40})"
# A head image is one file of at most ctx.media_max_bytes; the multipart envelope adds a little.
ENVELOPE_BYTES: Final = 64 * 1024
UPLOAD_BODY_TIMEOUT_SECONDS: Final = 120.0


class _LazyMedia:
    """The process's media store, found at first use (a context without uploads never builds it)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def delete(self, url_or_name: str) -> bool:
        return await media_of(self.ctx).delete(url_or_name)


def build_articles(ctx: AppContext) -> ArticleService:
    """The article service over the context's MongoDB, on the engine's clock (the app's one clock;
    a fake one in tests)."""
    service = ArticleService(
        MongoArticleStore(ctx.db),
        now=lambda: from_ms(ctx.engine.clock.now_ms()),
        media=_LazyMedia(ctx),
    )
    ctx.articles = service
    if ctx.admin_actions is not None and ctx.admin_actions.articles is None:
        ctx.admin_actions.articles = service
    return service


def articles_of(ctx: AppContext) -> ArticleService:
    service: ArticleService = ctx.articles or build_articles(ctx)
    return service


def routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx}
    handlers: list[tuple[str, type]] = [
        (r"/api/v1/articles", ArticlesHandler),
        (rf"/api/v1/articles/{ID}", ArticleHandler),
        (r"/api/v1/article-sources", SourcesHandler),
        (r"/api/v1/admin/articles", AdminArticlesHandler),
        (rf"/api/v1/admin/articles/{ID}", AdminArticleHandler),
        (rf"/api/v1/admin/articles/{ID}/(publish|withdraw)", AdminArticleStatusHandler),
        (rf"/api/v1/admin/articles/{ID}/head-image", AdminHeadImageHandler),
        (r"/api/v1/admin/article-sources", AdminSourcesHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in handlers]


async def start(
    ctx: AppContext, *, interval_seconds: float = ARTICLE_SCHEDULE_SECONDS
) -> list[asyncio.Task[None]]:
    """Start-up: indexes, and the scheduler (cancel the task at shutdown)."""
    await ensure_indexes(ctx.db)
    scheduler = run_scheduler(articles_of(ctx), interval_seconds=interval_seconds)
    return [asyncio.create_task(scheduler, name="article-scheduler")]


# -- views ----------------------------------------------------------------------------------------------
def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else iso_utc(value)


async def article_views(
    ctx: AppContext, docs: list[Document], *, admin: bool = False
) -> list[dict[str, Any]]:
    """The list view of each article (docs/community.md), with head images as pictures and source names."""
    service = articles_of(ctx)
    names = await service.source_names(sorted({int(d["source_id"]) for d in docs}))
    images = [str(d["head_img"]) for d in docs if d.get("head_img")]
    pictures = await ctx.catalog.media.pictures(images) if images else {}
    views = []
    for doc in docs:
        source_id = int(doc["source_id"])
        view: dict[str, Any] = {
            "id": int(doc["_id"]),
            "title": doc["title"],
            "kind": doc.get("kind", "news"),
            "vid": doc.get("vid", ""),
            "brief": doc.get("brief", ""),
            "head_img": pictures.get(str(doc["head_img"])) if doc.get("head_img") else None,
            "source": {"id": source_id, "name": names.get(source_id, "")},
            "pub_at": _iso(doc.get("pub_at")),
            "position": doc.get("position", "feed"),
            "weight": int(doc.get("weight", 0)),
            "views": int(doc.get("views", 0)),
            "likes": int(doc.get("likes", 0)),
            "comments": int(doc.get("comments", 0)),
            "collects": int(doc.get("collects", 0)),
        }
        if admin:
            view.update(
                status=doc.get("status"),
                offline_at=_iso(doc.get("offline_at")),
                created_at=_iso(doc.get("created_at")),
                updated_at=_iso(doc.get("updated_at")),
            )
        views.append(view)
    return views


async def article_detail(
    ctx: AppContext, doc: Document, user_id: int | None, *, admin: bool = False
) -> dict[str, Any]:
    [view] = await article_views(ctx, [doc], admin=admin)
    view["body_html"] = doc.get("body_html", "")
    view.update(await articles_of(ctx).reader_flags(user_id, int(doc["_id"])))
    if admin:
        view["body_md"] = doc.get("body_md", "")
    return view


# -- public ---------------------------------------------------------------------------------------------
class ArticlesHandler(JsonHandler):
    async def get(self) -> None:
        position = self.get_query_argument("position", None) or None
        source_id = self.query_int("source_id", minimum=1, maximum=2**53 - 1, default=None)
        limit = self.query_int("limit", minimum=1, maximum=50, default=None)
        cursor = self.get_query_argument("cursor", None)
        docs, next_cursor = await articles_of(self.ctx).page(
            position=position, source_id=source_id, cursor=cursor, limit=limit
        )
        self.reply({"items": await article_views(self.ctx, docs), "next_cursor": next_cursor})


class ArticleHandler(JsonHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.authenticate()
        article_id = self.path_id(raw_id, "article")
        service = articles_of(self.ctx)
        admin = user is not None and self.staff_may(user, "community")  # staff who read the community
        doc = await (service.article(article_id) if admin else service.visible(article_id))
        if doc is None:
            raise TargetNotFound(f"no article {article_id}")
        self.reply(await article_detail(self.ctx, doc, None if user is None else user.user_id, admin=admin))


class SourcesHandler(JsonHandler):
    async def get(self) -> None:
        sources = await articles_of(self.ctx).sources()
        self.reply({"items": [{"id": int(s["_id"]), "name": s["name"]} for s in sources]})


# -- admin ----------------------------------------------------------------------------------------------
class AdminArticleBase(JsonHandler):
    admin_area = "community"

    async def admin_actor(self) -> tuple[Actor, AdminActions]:
        user = await self.require_admin()
        actions = self.ctx.admin_actions
        if actions is None:
            raise Unavailable("admin actions are not wired into this application")
        if actions.articles is None:
            actions.articles = articles_of(self.ctx)
        return self.staff_actor(user), actions

    def article_fields(self, *, allow_publish: bool) -> tuple[dict[str, Any], bool]:
        """The JSON body as the service's fields: times parsed (ISO-8601 with an offset), the other
        values passed as sent (the service checks their types and ranges)."""
        body = self.fields((*EDITABLE, "publish") if allow_publish else EDITABLE)
        raw: dict[str, Any] = {k: v for k, v in body.data.items() if k != "publish"}
        if "pub_at" in raw:
            raw["pub_at"] = body.timestamp("pub_at")
        if "offline_at" in raw and raw["offline_at"] is not None:
            raw["offline_at"] = body.timestamp("offline_at")
        publish = body.data.get("publish", False)
        if not isinstance(publish, bool):
            raise ValidationFailed("publish must be true or false")
        return raw, publish


class AdminArticlesHandler(AdminArticleBase):
    async def post(self) -> None:
        actor, actions = await self.admin_actor()
        raw, publish = self.article_fields(allow_publish=True)
        doc = await actions.article_create(actor, raw, publish=publish)
        self.reply(await article_detail(self.ctx, doc, actor.user_id, admin=True), 201)


class AdminArticleHandler(AdminArticleBase):
    async def patch(self, raw_id: str) -> None:
        actor, actions = await self.admin_actor()
        article_id = self.path_id(raw_id, "article")
        raw, _publish = self.article_fields(allow_publish=False)
        doc = await actions.article_update(actor, article_id, raw)
        self.reply(await article_detail(self.ctx, doc, actor.user_id, admin=True))


class AdminArticleStatusHandler(AdminArticleBase):
    async def post(self, raw_id: str, verb: str) -> None:
        actor, actions = await self.admin_actor()
        article_id = self.path_id(raw_id, "article")
        if verb == "publish":
            doc = await actions.article_publish(actor, article_id)
        else:
            doc = await actions.article_withdraw(actor, article_id)
        self.reply(await article_detail(self.ctx, doc, actor.user_id, admin=True))


class AdminSourcesHandler(AdminArticleBase):
    async def post(self) -> None:
        actor, actions = await self.admin_actor()
        body = self.fields(("name",))
        doc = await actions.article_source_create(actor, body.data.get("name"))
        self.reply({"id": int(doc["_id"]), "name": doc["name"]}, 201)


class AdminHeadImageHandler(AdminArticleBase):
    """PUT multipart/form-data with one `file` (PNG/JPEG/WebP/GIF by magic bytes, ≤ the media
    limit). The admin is checked before a byte of the body is read; a body past the limit is
    dropped as it arrives and answered 413."""

    def initialize(self, ctx: AppContext) -> None:
        super().initialize(ctx)
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._actor: tuple[Actor, AdminActions] | None = None

    def limit(self) -> int:
        return int(self.ctx.media_max_bytes) + ENVELOPE_BYTES

    async def prepare(self) -> None:  # type: ignore[override]
        self._actor = await self.admin_actor()
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > self.limit():
            raise PayloadTooLarge(f"images are limited to {self.ctx.media_max_bytes // 2**20} MiB")
        set_max_body_size = getattr(self.request.connection, "set_max_body_size", None)
        if set_max_body_size is not None:
            set_max_body_size(self.limit() + 1)
        set_body_timeout = getattr(self.request.connection, "set_body_timeout", None)
        if set_body_timeout is not None:
            set_body_timeout(UPLOAD_BODY_TIMEOUT_SECONDS)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.limit():
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)

    def upload(self) -> bytes:
        if self._too_large:
            raise PayloadTooLarge(f"images are limited to {self.ctx.media_max_bytes // 2**20} MiB")
        content_type = self.request.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ValidationFailed("send multipart/form-data with one `file`")
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        try:
            tornado.httputil.parse_body_arguments(
                content_type, b"".join(self._chunks), arguments, files, self.request.headers
            )
        except tornado.httputil.HTTPInputError:
            raise ValidationFailed("the multipart/form-data body is malformed") from None
        uploads = files.get("file") or []
        if len(uploads) != 1 or set(files) != {"file"}:
            raise ValidationFailed("send exactly one image as the field `file`")
        data: bytes = uploads[0]["body"]
        return data

    async def put(self, raw_id: str) -> None:
        assert self._actor is not None
        actor, actions = self._actor
        article_id = self.path_id(raw_id, "article")
        data = self.upload()
        service = articles_of(self.ctx)
        await service.article(article_id)  # 404 before keeping a file
        media = media_of(self.ctx)
        stored = await media.save(data)
        base = self.ctx.base_url.rstrip("/")
        url = base + stored.path if base else stored.path
        try:
            doc = await actions.article_set_head_image(actor, article_id, url)
        except BaseException:
            await media.delete(url)  # not referenced by anything: do not keep it
            raise
        self.reply(await article_detail(self.ctx, doc, actor.user_id, admin=True))
