"""The articles' back office (深科技): the list with status, schedule, position, weight and counts;
a new article; an article's page (edit, head image, a preview of the sanitised body, publish and
withdraw); the sources.

Reads come straight from the collections (docs/community.md "Documents"), as admin/degree.py does. Every
write goes through the admin-actions service (backoffice/actions.py, `article_*` methods), which
authorizes, audits and calls the ArticleService (community/articles.py). The preview shows the
body as community.markdown renders it: the same sanitised HTML the app shows.
"""

from __future__ import annotations

import urllib.parse
from typing import Any
from zoneinfo import ZoneInfo

import tornado.web

from admin.base import PREFIX, AdminHandler, FormError, Paging, local_input, parse_int
from admin.catalog import UploadHandler
from community.articles import BODY_MAX, BRIEF_MAX, STATUSES, TITLE_MAX, WEIGHT_MAX
from community.markdown import render_markdown
from community.rules import clean_text
from engine.book.errors import GavelError
from persistence.mongo import Document, as_utc, from_ms

PAGE_SIZE = 50
POSITION_LABELS = {
    "feed": "feed 信息流",
    "banner_big": "big banner 大图",
    "banner_small": "small banner 小图",
}
KIND_LABELS = {"news": "news 资讯", "video": "video 视频"}
STATUS_LABELS = {
    "draft": "draft 草稿",
    "scheduled": "scheduled 待上线",
    "online": "online 在线",
    "offline": "offline 下线",
}
FORM_FIELDS = ("title", "source_id", "kind", "vid", "brief", "body_md", "weight", "position")
TIME_FIELDS = ("pub_at", "offline_at")


class ArticlePage(AdminHandler):
    area = "community"
    nav = "articles"

    async def sources(self) -> list[Document]:
        return [s async for s in self.ctx.db.community_article_sources.find({}).sort("name", 1).limit(500)]

    def article_form(self, before: Document | None = None) -> dict[str, Any]:
        """The form as the service's fields (it validates them; here only what a form cannot say
        in JSON types: numbers, times). The page shows times to the minute: a time sent back
        unchanged (the stored one, cut to its minute) keeps its seconds."""
        fields: dict[str, Any] = {
            "title": self.form("title"),
            "source_id": parse_int(self.form("source_id") or "0", "Source", minimum=1),
            "kind": self.form("kind"),
            "vid": self.form("vid").strip(),
            "brief": self.form("brief"),
            "body_md": self.form("body_md"),
            "weight": parse_int(self.form("weight") or "0", "Weight", maximum=WEIGHT_MAX),
            "position": self.form("position"),
            "pub_at": self.form_time("pub_at", "Publish time"),
            "offline_at": self.optional_form_time("offline_at", "Offline time"),
        }
        for name in TIME_FIELDS:
            stored = before.get(name) if before else None
            if stored is not None and fields[name] == as_utc(stored).replace(second=0, microsecond=0):
                fields[name] = as_utc(stored)
        return fields

    def echo(self) -> dict[str, str]:
        values = {name: self.form(name) for name in FORM_FIELDS}
        for name in TIME_FIELDS:
            values[name] = self.form(name)
        values["publish"] = self.form("publish")
        return values

    def preview(self) -> str:
        """The typed body as readers would get it (sanitised); a body too long is not rendered."""
        try:
            body = clean_text(self.form("body_md"), max_length=BODY_MAX, what="body", required=False)
        except GavelError:
            return ""
        return render_markdown(body)

    def render_form(
        self,
        template: str,
        *,
        values: dict[str, str],
        sources: list[Document],
        error: str | None,
        preview: str,
        **extra: Any,
    ) -> None:
        self.render(
            template,
            values=values,
            sources=sources,
            error=error,
            preview=preview,
            kinds=KIND_LABELS,
            positions=POSITION_LABELS,
            statuses=STATUS_LABELS,
            limits={"title": TITLE_MAX, "brief": BRIEF_MAX, "body": BODY_MAX, "weight": WEIGHT_MAX},
            **extra,
        )


def form_values(doc: Document, zone: ZoneInfo) -> dict[str, str]:
    """An article's fields as the form's inputs (times in the business zone)."""
    values = {name: str(doc.get(name, "")) for name in FORM_FIELDS}
    for name in TIME_FIELDS:
        moment = doc.get(name)
        values[name] = local_input(moment, zone) if moment else ""
    return values


# == the list ================================================================================================
class ArticlesHandler(ArticlePage):
    async def get(self) -> None:
        db = self.ctx.db
        status = self.get_query_argument("status", "") or ""
        status = status if status in STATUSES else ""
        query: Document = {"status": status} if status else {}
        total = await db.community_articles.count_documents(query)
        paging = Paging(self.query_int("page", 1), PAGE_SIZE, total)
        articles = [
            a
            async for a in db.community_articles.find(query, {"body_md": 0, "body_html": 0})
            .sort([("_id", -1)])
            .skip(paging.skip)
            .limit(paging.size)
        ]
        sources = await self.sources()
        counts = {
            str(row["_id"]): int(row["count"])
            async for row in await db.community_articles.aggregate(
                [{"$group": {"_id": "$status", "count": {"$sum": 1}}}]
            )
        }
        self.render(
            "articles.html",
            articles=articles,
            sources=sources,
            source_names={int(s["_id"]): s["name"] for s in sources},
            status=status,
            counts=counts,
            statuses=STATUS_LABELS,
            positions=POSITION_LABELS,
            kinds=KIND_LABELS,
            paging=paging,
            paging_query=urllib.parse.urlencode({"status": status}) + "&",
            page_title="Articles",
        )


# == a new article ===========================================================================================
class ArticleNewHandler(ArticlePage):
    async def get(self) -> None:
        # The app's clock (the engine's; the scheduler and readers use it too).
        now = from_ms(self.ctx.engine.clock.now_ms()).replace(second=0, microsecond=0)
        values = {"kind": "news", "position": "feed", "weight": "0", "pub_at": local_input(now, self.zone)}
        self.render_form(
            "article_new.html",
            values=values,
            sources=await self.sources(),
            error=None,
            preview="",
            page_title="New article",
        )

    async def post(self) -> None:
        if self.form("preview"):
            self.render_form(
                "article_new.html",
                values=self.echo(),
                sources=await self.sources(),
                error=None,
                preview=self.preview(),
                page_title="New article",
            )
            return
        try:
            doc = await self.actions.article_create(
                self.actor(), self.article_form(), publish=bool(self.form("publish"))
            )
        except GavelError as error:
            self.set_status(400 if error.code == "VALIDATION" else 409)
            self.render_form(
                "article_new.html",
                values=self.echo(),
                sources=await self.sources(),
                error=f"{error.message} ({error.code})",
                preview=self.preview(),
                page_title="New article",
            )
            return
        self.done(f"Article {doc['_id']} created ({doc['status']}).", f"{PREFIX}/articles/{doc['_id']}")


# == one article =============================================================================================
class ArticleHandler(ArticlePage):
    async def article(self, article_id: int) -> Document:
        doc = await self.ctx.db.community_articles.find_one({"_id": article_id})
        if doc is None:
            raise tornado.web.HTTPError(404, f"no article {article_id}")
        return doc

    async def show(self, doc: Document, *, values: dict[str, str], error: str | None, preview: str) -> None:
        head = str(doc.get("head_img") or "")
        pictures = await self.ctx.catalog.media.pictures([head]) if head else {}
        self.render_form(
            "article.html",
            values=values,
            sources=await self.sources(),
            error=error,
            preview=preview,
            doc=doc,
            head=pictures.get(head),
            page_title=f"Article {doc['_id']}",
        )

    async def get(self, raw_id: str) -> None:
        doc = await self.article(self.path_id(raw_id, "article"))
        await self.show(
            doc, values=form_values(doc, self.zone), error=None, preview=str(doc.get("body_html", ""))
        )

    async def post(self, raw_id: str) -> None:
        article_id = self.path_id(raw_id, "article")
        doc = await self.article(article_id)
        if self.form("preview"):
            await self.show(doc, values=self.echo(), error=None, preview=self.preview())
            return
        try:
            await self.actions.article_update(self.actor(), article_id, self.article_form(doc))
        except GavelError as error:
            self.set_status(400 if error.code == "VALIDATION" else 409)
            await self.show(
                doc, values=self.echo(), error=f"{error.message} ({error.code})", preview=self.preview()
            )
            return
        self.done(f"Article {article_id} saved.", f"{PREFIX}/articles/{article_id}")


class ArticleStatusHandler(ArticlePage):
    async def post(self, raw_id: str, verb: str) -> None:
        article_id = self.path_id(raw_id, "article")
        back = (
            self.form("back")
            if self.form("back") == f"{PREFIX}/articles"
            else f"{PREFIX}/articles/{article_id}"
        )

        async def run() -> None:
            if verb == "publish":
                doc = await self.actions.article_publish(self.actor(), article_id)
            else:
                doc = await self.actions.article_withdraw(self.actor(), article_id)
            self.done(f"Article {article_id} is {doc['status']}.", back)

        await self.guarded(run, back=back)


class HeadImageHandler(UploadHandler):
    area = "community"
    nav = "articles"

    async def post(self, raw_id: str) -> None:
        article_id = self.path_id(raw_id, "article")
        back = f"{PREFIX}/articles/{article_id}"
        data = self.read_upload()  # XSRF is checked here, before anything else happens
        url = ""
        try:
            if await self.ctx.db.community_articles.find_one({"_id": article_id}, {"_id": 1}) is None:
                raise tornado.web.HTTPError(404, f"no article {article_id}")
            stored = await self.services.media.save(data)
            url = self.services.media_url(stored.path)
            await self.actions.article_set_head_image(self.actor(), article_id, url)
        except GavelError as error:
            if url:
                await self.services.media.delete(url)  # referenced by nothing: not kept
            self.refuse_upload(error, back)
            return
        self.answer("Head image set.", back, {"url": url})


# == sources =================================================================================================
class SourceCreateHandler(ArticlePage):
    async def post(self) -> None:
        back = f"{PREFIX}/articles"

        async def run() -> None:
            name = self.form("name")
            if not name.strip():
                raise FormError("Name: required")
            doc = await self.actions.article_source_create(self.actor(), name)
            self.done(f"Source {doc['name']} added.", back)

        await self.guarded(run, back=back)


ROUTES = [
    (r"/admin/articles", ArticlesHandler),
    (r"/admin/articles/new", ArticleNewHandler),
    (r"/admin/articles/([0-9]+)", ArticleHandler),
    (r"/admin/articles/([0-9]+)/(publish|withdraw)", ArticleStatusHandler),
    (r"/admin/articles/([0-9]+)/head-image", HeadImageHandler),
    (r"/admin/article-sources", SourceCreateHandler),
]
