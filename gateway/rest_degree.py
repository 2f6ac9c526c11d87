"""The degree path's student side over REST (docs/degree.md "Studying a degree"): my degrees, the
registration form, opening modules, homework and hand-ins (multipart, files in GridFS), the files'
access, active mentors, degree reviews; and the admin's homework authoring, module opening and
suspend/resume, written through `ctx.admin_actions` (audited).

`shop_routes(ctx)` (gateway/rest_shop.py) adds `degree_routes(ctx)`; `build_degree(ctx)` puts the
`DegreeService` on `ctx.degree`. User text (hand-ins, file names, reviews) is returned as given:
clients render it as text, and files are served as attachments that browsers do not sniff.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import urllib.parse
from typing import Any, Final

import orjson
import tornado.httputil

from backoffice.actions import Actor, AdminActions
from backoffice.roles import effective_roles, mentor_only
from gateway.rest_community import read_scores, read_text
from persistence.mongo import Document, as_utc, iso_utc, to_ms
from persistence.shop.degree import mongo_degree
from shop.degree_service import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_SUBMISSION_TEXT,
    DegreeService,
    FileTooLarge,
    Upload,
)
from shop.reviews import SCORE_NAMES
from web.context import AppContext
from web.errors import PayloadTooLarge, Unavailable, ValidationFailed
from web.http import JsonHandler

log = logging.getLogger("gavel.shop")

ENROLMENT: Final = r"([0-9]{1,16}:[0-9]{1,16})"
FILE_ID: Final = r"([0-9a-f]{24})"
# Five files of 10 MiB and the text, with room for the multipart headers around them.
MAX_UPLOAD_BYTES: Final = MAX_FILES * MAX_FILE_BYTES + 4 * MAX_SUBMISSION_TEXT + 64 * 1024
UPLOAD_BODY_TIMEOUT_SECONDS: Final = 120.0
MAX_JSON_HAND_IN_BYTES: Final = 8 * MAX_SUBMISSION_TEXT  # a JSON string of 10,000 escaped characters


def build_degree(ctx: AppContext) -> DegreeService:
    degree = mongo_degree(ctx.db)
    ctx.degree = degree
    return degree


def degree_of(ctx: AppContext) -> DegreeService:
    found: DegreeService | None = ctx.degree
    return found or build_degree(ctx)


def degree_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx, "degree": degree_of(ctx)}
    routes: list[tuple[str, type]] = [
        (r"/api/v1/me/degrees", MyDegreesHandler),
        (r"/api/v1/me/degrees/([0-9]+)", MyDegreeHandler),
        (r"/api/v1/me/degrees/([0-9]+)/registration", RegistrationHandler),
        (r"/api/v1/me/degrees/([0-9]+)/modules/([0-9]+)/open", OpenModuleHandler),
        (r"/api/v1/me/degrees/([0-9]+)/homework/([0-9]+)", HomeworkHandler),
        (r"/api/v1/me/degrees/([0-9]+)/homework/([0-9]+)/submissions", SubmissionsHandler),
        (rf"/api/v1/degree-files/{FILE_ID}", DegreeFileHandler),
        (r"/api/v1/mentors", MentorsHandler),
        (r"/api/v1/degree-courses/([0-9]+)/reviews", DegreeReviewsHandler),
        (r"/api/v1/admin/degree/homework", AdminHomeworkHandler),
        (r"/api/v1/admin/degree/homework/([0-9]+)", AdminHomeworkItemHandler),
        (r"/api/v1/admin/degree/courses/([0-9]+)/homework", AdminModuleHomeworkHandler),
        (rf"/api/v1/admin/degree/enrolments/{ENROLMENT}/modules/([0-9]+)/open", AdminOpenModuleHandler),
        (rf"/api/v1/admin/degree/enrolments/{ENROLMENT}/(suspend|resume)", AdminEnrolmentStatusHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in routes]


# -- views --------------------------------------------------------------------------------------------------
def stamps(doc: Document, *names: str) -> dict[str, Any]:
    """`name` as ISO and `name_ms` as epoch milliseconds (both null when unset), for each name."""
    answer: dict[str, Any] = {}
    for name in names:
        value = doc.get(name)
        answer[name] = None if value is None else iso_utc(value)
        answer[f"{name}_ms"] = None if value is None else to_ms(value)
    return answer


def day_text(value: Any) -> str | None:
    """A schedule's day ("YYYY-MM-DD")."""
    return None if value is None else as_utc(value).date().isoformat()


def enrolment_view(enrolment: Document) -> dict[str, Any]:
    registration = enrolment.get("registration")
    total = int(enrolment.get("total_scholarship", 0))
    awarded = int(enrolment.get("scholarship_awarded", 0))
    return {
        "id": enrolment["_id"],
        "degree_course_id": enrolment["degree_course_id"],
        "degree_name": enrolment.get("degree_name", ""),
        "status": enrolment.get("status"),
        "registered": registration is not None,
        "registration": None
        if registration is None
        else {**{k: v for k, v in registration.items() if k != "at"}, **stamps(registration, "at")},
        "mentor": enrolment.get("mentor"),
        **stamps(enrolment, "valid_from", "valid_to"),
        "money": {
            "total_scholarship": total,
            "scholarship_awarded": awarded,
            "scholarship_left": max(0, total - awarded),
            "graduation_award": int(enrolment.get("graduation_award", 0)),
        },
        "progress": enrolment.get("progress", {"done": 0, "total": 0}),
        **stamps(enrolment, "created_at"),
    }


def record_summary(record: Document | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "id": record["_id"],
        "status": record.get("status"),
        "reward_status": record.get("reward_status"),
        "grade": record.get("grade"),
        "submit_count": int(record.get("submit_count", 0)),
        **stamps(record, "handed_in_at"),
    }


def detail_view(detail: Document) -> dict[str, Any]:
    """The enrolment view plus its modules, their homework and the student's records."""
    answer = enrolment_view(detail)
    answer["modules"] = [
        {
            "module_id": module["module_id"],
            "name": module["name"],
            "order": module["order"],
            "status": module["status"],
            **stamps(module, "opened_at", "done_at"),
            "homework": [
                {
                    "id": h["_id"],
                    "title": h.get("title", ""),
                    "kind": h.get("kind", "assignment"),
                    "chapter": h.get("chapter"),
                    "recommended_date": day_text(h.get("recommended_date")),
                    "scholarship_value": int(h.get("scholarship_value", 0)),
                    "record": record_summary(h.get("record")),
                }
                for h in module["homework"]
            ],
        }
        for module in detail.get("modules", [])
    ]
    return answer


def homework_view(homework: Document) -> dict[str, Any]:
    return {
        "id": homework["_id"],
        "course_id": homework["course_id"],
        "chapter_id": homework["chapter_id"],
        "chapter": homework.get("chapter"),
        "order": homework.get("order", 0),
        "title": homework.get("title", ""),
        "kind": homework.get("kind", "assignment"),
        "requirement": homework.get("requirement", ""),
        "scoring_points": homework.get("scoring_points", ""),
        "recommended_days": homework.get("recommended_days"),
        "scholarship_value": int(homework.get("scholarship_value", 0)),
        "enabled": bool(homework.get("enabled", True)),
        **stamps(homework, "created_at"),
    }


def file_view(file: Document) -> dict[str, Any]:
    return {
        "id": file["id"],
        "name": file.get("name", ""),
        "type": file.get("type"),
        "size": int(file.get("size", 0)),
        "url": f"/api/v1/degree-files/{file['id']}",
    }


def record_view(record: Document) -> dict[str, Any]:
    """A homework record in full: every submission (with its files' links) and every grading."""
    return {
        "id": record["_id"],
        "enrolment_id": record.get("enrolment_id"),
        "degree_course_id": record.get("degree_course_id"),
        "module_id": record.get("module_id"),
        "homework_id": record.get("homework_id"),
        "homework_title": record.get("homework_title", ""),
        "mentor_id": record.get("mentor_id"),
        "recommended_date": day_text(record.get("recommended_date")),
        "status": record.get("status"),
        "reward_status": record.get("reward_status"),
        "submit_count": int(record.get("submit_count", 0)),
        "submissions": [
            {
                "n": s.get("n"),
                "text": s.get("text", ""),
                "files": [file_view(f) for f in s.get("files", [])],
                **stamps(s, "at"),
            }
            for s in record.get("submissions", [])
        ],
        **stamps(record, "handed_in_at", "graded_at"),
        "grade": record.get("grade"),
        "score": record.get("score"),
        "comment": record.get("comment", ""),
        "graded_submission": record.get("graded_submission"),
        "gradings": [
            {
                **{k: g.get(k) for k in ("submission", "grade", "score", "comment", "passed", "by")},
                "scholarship": int(g.get("scholarship", 0)),
                "penalty": int(g.get("penalty", 0)),
                **stamps(g, "at"),
            }
            for g in record.get("gradings", [])
        ],
        "rewarded": bool(record.get("rewarded")),
        "penalised": bool(record.get("penalised")),
        "forfeited": bool(record.get("forfeited")),
        "scholarship_awarded": int(record.get("scholarship_awarded", 0)),
        "penalty_total": int(record.get("penalty_total", 0)),
    }


def degree_review_view(review: Document, viewer_id: int | None = None) -> dict[str, Any]:
    return {
        "id": review["_id"],
        "degree_course_id": review["degree_course_id"],
        "module_id": review.get("module_id"),
        "author": review.get("author", ""),
        "scores": {name: int(review["scores"][name]) for name in SCORE_NAMES},
        "text": review.get("text", ""),
        "agree": int(review.get("agree", 0)),
        "disagree": int(review.get("disagree", 0)),
        "recommended": bool(review.get("recommended")),
        "mine": viewer_id is not None and review.get("user_id") == viewer_id,
        **stamps(review, "created_at", "updated_at"),
    }


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 one (RFC 6266 / 5987)."""
    fallback = "".join(ch if " " <= ch < "\x7f" and ch not in '"\\;' else "_" for ch in name) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


# -- handlers -----------------------------------------------------------------------------------------------
class DegreeHandler(JsonHandler):
    degree: DegreeService

    def initialize(self, ctx: AppContext, degree: DegreeService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.degree = degree


class MyDegreesHandler(DegreeHandler):
    async def get(self) -> None:
        user = await self.require_user()
        self.reply({"items": [enrolment_view(e) for e in await self.degree.enrolments(user.user_id)]})


class MyDegreeHandler(DegreeHandler):
    async def get(self, raw_degree: str) -> None:
        user = await self.require_user()
        detail = await self.degree.degree_detail(user.user_id, self.path_id(raw_degree, "degree course"))
        self.reply(detail_view(detail))


class RegistrationHandler(DegreeHandler):
    async def put(self, raw_degree: str) -> None:
        user = await self.require_user()
        degree_id = self.path_id(raw_degree, "degree course")
        form = self.json_body()
        if not isinstance(form, dict):
            raise ValidationFailed("the body must be a JSON object")
        await self.degree.register(user.user_id, degree_id, form)
        self.reply(detail_view(await self.degree.degree_detail(user.user_id, degree_id)))


class OpenModuleHandler(DegreeHandler):
    async def post(self, raw_degree: str, raw_module: str) -> None:
        user = await self.require_user()
        degree_id = self.path_id(raw_degree, "degree course")
        await self.degree.open_my_module(user.user_id, degree_id, self.path_id(raw_module, "module"))
        self.reply(detail_view(await self.degree.degree_detail(user.user_id, degree_id)))


class HomeworkHandler(DegreeHandler):
    async def get(self, raw_degree: str, raw_homework: str) -> None:
        user = await self.require_user()
        found = await self.degree.homework_detail(
            user.user_id, self.path_id(raw_degree, "degree course"), self.path_id(raw_homework, "homework")
        )
        homework = homework_view(found["homework"])
        homework["recommended_date"] = day_text(found["recommended_date"])
        record = found["record"]
        self.reply({"homework": homework, "record": None if record is None else record_view(record)})


class SubmissionsHandler(DegreeHandler):
    """A hand-in: multipart/form-data (`text`, up to five `files`) or JSON `{text}`.

    The body is streamed to its own limit (five files of 10 MiB and the text) instead of the JSON
    handlers' 64 KiB; the sender is signed in before a byte of it is read, and a body past the limit
    is dropped as it arrives and answered 413."""

    def initialize(self, ctx: AppContext, degree: DegreeService) -> None:  # type: ignore[override]
        super().initialize(ctx, degree)
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False

    async def prepare(self) -> None:  # type: ignore[override]
        await self.require_user()
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise FileTooLarge(
                f"a hand-in is at most {MAX_FILES} files of {MAX_FILE_BYTES // 2**20} MiB each"
            )
        set_max_body_size = getattr(self.request.connection, "set_max_body_size", None)
        if set_max_body_size is not None:
            set_max_body_size(MAX_UPLOAD_BYTES + 1)
        # Files take longer than HEADER_TIMEOUT to arrive from a phone; only a signed-in sender
        # gets this longer (still bounded) wait.
        set_body_timeout = getattr(self.request.connection, "set_body_timeout", None)
        if set_body_timeout is not None:
            set_body_timeout(UPLOAD_BODY_TIMEOUT_SECONDS)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_UPLOAD_BYTES:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)

    def _hand_in(self) -> tuple[str, list[Upload]]:
        if self._too_large:
            raise FileTooLarge(
                f"a hand-in is at most {MAX_FILES} files of {MAX_FILE_BYTES // 2**20} MiB each"
            )
        body = b"".join(self._chunks)
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() == "application/json":
            if len(body) > MAX_JSON_HAND_IN_BYTES:
                raise PayloadTooLarge(f"a JSON hand-in is at most {MAX_JSON_HAND_IN_BYTES} bytes")
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ValidationFailed("the body is not valid JSON") from None
            if not isinstance(data, dict) or set(data) - {"text"} or not isinstance(data.get("text"), str):
                raise ValidationFailed('a JSON hand-in is {"text": "..."}')
            return data["text"], []
        if not content_type.lower().startswith("multipart/form-data"):
            raise ValidationFailed("send multipart/form-data (text, files) or JSON {text}")
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[tornado.httputil.HTTPFile]] = {}
        try:
            tornado.httputil.parse_body_arguments(content_type, body, arguments, files, self.request.headers)
        except tornado.httputil.HTTPInputError:
            raise ValidationFailed("the multipart/form-data body is malformed") from None
        if set(arguments) - {"text"} or set(files) - {"files"} or len(arguments.get("text", [])) > 1:
            raise ValidationFailed("the form has one `text` field and up to five `files`")
        try:
            text = arguments.get("text", [b""])[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("text must be UTF-8") from None
        uploads = [Upload(f.get("filename") or "file", f["body"]) for f in files.get("files", [])]
        return text, uploads

    async def post(self, raw_degree: str, raw_homework: str) -> None:
        user = self.current_user
        text, uploads = self._hand_in()
        record = await self.degree.submit(
            user.user_id,
            self.path_id(raw_degree, "degree course"),
            self.path_id(raw_homework, "homework"),
            text,
            uploads,
        )
        await self._notify(record)
        self.reply(record_view(record), 201)

    async def _notify(self, record: Document) -> None:
        """Tell the mentor (the MENTOR part's service, when wired); the hand-in stands either way."""
        mentoring = getattr(self.ctx, "mentoring", None)
        if mentoring is None:
            return
        try:
            sent = mentoring.notify_submitted(record)
            if inspect.isawaitable(sent):
                await sent
        except Exception:
            log.exception("could not notify the mentor of homework record %s", record.get("_id"))


class DegreeFileHandler(DegreeHandler):
    async def get(self, file_id: str) -> None:
        user = await self.require_user()
        # Any student's file only for staff who reach the homework other than as a mentor (a mentor
        # still sees their own students' files, as the enrolment's mentor).
        over_all = self.staff_may(user, "mentoring") and not mentor_only(
            effective_roles(user.is_admin, user.roles)
        )
        meta, data = await self.degree.file_for(dataclasses.replace(user, is_admin=over_all), file_id)
        kind = str(meta.get("type") or "application/octet-stream")
        self.set_header("Content-Type", "text/plain; charset=utf-8" if kind == "text/plain" else kind)
        self.set_header("Content-Disposition", content_disposition(str(meta.get("name") or "file")))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
        self.set_header("Cache-Control", "private, max-age=300")
        self.finish(data)


class MentorsHandler(DegreeHandler):
    async def get(self) -> None:
        mentors = await self.degree.mentors()
        self.reply(
            {
                "items": [
                    {"id": m["_id"], "name": m.get("name", ""), "intro": m.get("intro", "")} for m in mentors
                ]
            }
        )


class DegreeReviewsHandler(DegreeHandler):
    async def get(self, raw_degree: str) -> None:
        viewer = await self.authenticate()
        page = self.page()
        module_id = self.query_int("module_id", minimum=1, maximum=2**53 - 1, default=None)
        items, total, averages = await self.degree.reviews(
            self.path_id(raw_degree, "degree course"),
            module_id,
            all_targets=module_id is None,
            skip=page.skip,
            limit=page.page_size,
        )
        viewer_id = viewer.user_id if viewer else None
        answer = page.answer([degree_review_view(r, viewer_id) for r in items], total)
        answer["averages"] = averages
        self.reply(answer)

    async def post(self, raw_degree: str) -> None:
        user = await self.require_user()
        body = self.fields(("module_id", "scores", "text"))
        module_id = body.optional_integer("module_id", minimum=1)
        scores = read_scores(body, partial=False)
        review = await self.degree.write_review(
            user.user_id,
            self.path_id(raw_degree, "degree course"),
            module_id,
            scores,
            read_text(body, default="") or "",
        )
        self.reply(degree_review_view(review, user.user_id), 201)


# -- admin --------------------------------------------------------------------------------------------------
class AdminDegreeHandler(DegreeHandler):
    admin_area = "degree"

    async def admin_actor(self) -> tuple[Actor, AdminActions]:
        user = await self.require_admin()
        actions = self.ctx.admin_actions
        if actions is None:
            raise Unavailable("admin actions are not wired into this application")
        return self.staff_actor(user), actions

    def object_body(self) -> dict[str, Any]:
        body = self.json_body()
        if not isinstance(body, dict):
            raise ValidationFailed("the body must be a JSON object")
        return body


class AdminHomeworkHandler(AdminDegreeHandler):
    async def post(self) -> None:
        actor, actions = await self.admin_actor()
        homework = await actions.degree_add_homework(actor, self.object_body())
        self.reply(homework_view(homework), 201)


class AdminHomeworkItemHandler(AdminDegreeHandler):
    async def patch(self, raw_id: str) -> None:
        actor, actions = await self.admin_actor()
        homework_id = self.path_id(raw_id, "homework")
        homework = await actions.degree_update_homework(actor, homework_id, self.object_body())
        self.reply(homework_view(homework))


class AdminModuleHomeworkHandler(AdminDegreeHandler):
    async def get(self, raw_module: str) -> None:
        await self.require_admin()
        found = await self.degree.homework_of(self.path_id(raw_module, "degree module"))
        self.reply({"items": [homework_view(h) for h in found]})


class AdminOpenModuleHandler(AdminDegreeHandler):
    async def post(self, enrolment_id: str, raw_module: str) -> None:
        actor, actions = await self.admin_actor()
        module_id = self.path_id(raw_module, "module")
        await actions.degree_open_module(actor, enrolment_id, module_id)
        self.reply(detail_view(await self.degree.detail_of(enrolment_id)))


class AdminEnrolmentStatusHandler(AdminDegreeHandler):
    async def post(self, enrolment_id: str, event: str) -> None:
        actor, actions = await self.admin_actor()
        await actions.degree_change_status(actor, enrolment_id, event)
        self.reply(detail_view(await self.degree.detail_of(enrolment_id)))
