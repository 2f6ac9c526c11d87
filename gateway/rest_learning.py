"""Learning over REST (docs/shop.md "Learning"): the outline with `locked`/`done`, a section's
content through a signed short-lived link of ours, the link's redirect, progress, and my courses.

`shop_routes(ctx)` (gateway/rest_shop.py) adds `learning_routes(ctx)`; `start_shop` adds the
enrolment sweeper (`start_learning`). A section's real link appears in one answer only: the 302 of
`GET /api/v1/content/{token}`.
"""

import asyncio
import datetime
from typing import Any

from persistence.mongo import Document, iso_utc
from persistence.shop.learning import MongoLearningStore
from shop.learning import content_key
from shop.learning_service import LearningService, run_enrolment_sweeper
from shop.model import to_ms
from web.context import AppContext
from web.errors import ValidationFailed
from web.http import JsonHandler

TOKEN = r"([^/]{1,300})"  # anything else is simply not a token: 403 CONTENT_LINK_INVALID


def build_learning(ctx: AppContext) -> LearningService:
    """The learning service over the context's MongoDB; links signed with a key derived from the
    installation's shared secret, so every gateway of a cluster accepts every link."""
    learning = LearningService(MongoLearningStore(ctx.db), content_key(ctx.pseudonym_secret))
    ctx.learning = learning
    return learning


def learning_of(ctx: AppContext) -> LearningService:
    return ctx.learning or build_learning(ctx)


def learning_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx, "learning": learning_of(ctx)}
    routes: list[tuple[str, type]] = [
        (r"/api/v1/courses/([0-9]+)/chapters", ChaptersHandler),
        (r"/api/v1/sections/([0-9]+)/content", SectionContentHandler),
        (r"/api/v1/sections/([0-9]+)/progress", ProgressHandler),
        (rf"/api/v1/content/{TOKEN}", ContentHandler),
        (r"/api/v1/shop/enrolments", EnrolmentsHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in routes]


def start_learning(ctx: AppContext, *, interval_seconds: float = 60.0) -> list[asyncio.Task[None]]:
    """The enrolment sweeper (marks ended enrolments expired); cancel the task at shutdown."""
    sweeper = run_enrolment_sweeper(learning_of(ctx), interval_seconds=interval_seconds)
    return [asyncio.create_task(sweeper, name="enrolment-sweeper")]


async def my_course(ctx: AppContext, user_id: int, course_id: int) -> dict[str, Any]:
    """The course page's `my` block: `{"enrolment": {...} | None, "progress": {"done", "total"}}`."""
    return await learning_of(ctx).course_status(course_id, user_id)


# -- JSON -----------------------------------------------------------------------------------------------
def _json(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {("id" if k == "_id" else k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _times(doc: Document, *names: str) -> dict[str, Any]:
    """`name` as ISO and `name_ms` as epoch milliseconds, for each name present."""
    answer: dict[str, Any] = {}
    for name in names:
        if doc.get(name) is not None:
            answer[name] = iso_utc(doc[name])
            answer[f"{name}_ms"] = to_ms(doc[name])
    return answer


class LearningHandler(JsonHandler):
    learning: LearningService

    def initialize(self, ctx: AppContext, learning: LearningService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.learning = learning


class ChaptersHandler(LearningHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.authenticate()
        chapters = await self.learning.chapters(
            self.path_id(raw_id, "course"), None if user is None else user.user_id
        )
        self.reply({"items": [_json(c) for c in chapters]})


class SectionContentHandler(LearningHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.authenticate()
        content = await self.learning.open_section(
            None if user is None else user.user_id, self.path_id(raw_id, "section")
        )
        section = content.section
        url = None
        if content.token is not None:
            url = f"{self.ctx.base_url}/api/v1/content/{content.token}"
        self.reply(
            {
                "section_id": section["_id"],
                "course_id": section["course_id"],
                "chapter_id": section.get("chapter_id"),
                "name": section.get("name", ""),
                "section_type": section.get("section_type", "video"),
                "video_time": section.get("video_time", ""),
                "free_trial": bool(section.get("free_trial")),
                "content_url": url,
                "expires_at_ms": None if content.expires_at is None else to_ms(content.expires_at),
                "expires_at": None if content.expires_at is None else iso_utc(content.expires_at),
            }
        )


class ContentHandler(LearningHandler):
    async def get(self, token: str) -> None:
        link = await self.learning.redeem(token)
        # The token must not travel on to the content's site in a Referer header.
        self.set_header("Referrer-Policy", "no-referrer")
        self.redirect(link, status=302)


class ProgressHandler(LearningHandler):
    async def put(self, raw_id: str) -> None:
        user = await self.require_user()
        body = self.fields(("done",))
        done = body.data.get("done")
        if not isinstance(done, bool):
            raise ValidationFailed("done must be true or false")
        self.reply(await self.learning.set_progress(user.user_id, self.path_id(raw_id, "section"), done))


class EnrolmentsHandler(LearningHandler):
    async def get(self) -> None:
        user = await self.require_user()
        enrolments = await self.learning.my_enrolments(user.user_id)
        images = [str(e["course"]["image"]) for e in enrolments if e["course"] and e["course"].get("image")]
        pictures = await self.ctx.catalog.media.pictures(images) if images else {}
        items = []
        for enrolment in enrolments:
            course = enrolment["course"] or {}
            image = course.get("image") or ""
            items.append(
                {
                    "id": str(enrolment["_id"]),
                    "course_id": enrolment["course_id"],
                    "course_name": course.get("name") or enrolment.get("course_name", ""),
                    "picture": pictures.get(image) if image else None,
                    "status": enrolment["status"],
                    "order_no": enrolment.get("order_no"),
                    **_times(enrolment, "valid_from", "valid_to"),
                    "progress": enrolment["progress"],
                }
            )
        self.reply({"items": items})
