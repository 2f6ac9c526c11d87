"""The degree path's mentors over REST (docs/degree.md "Mentors"): the queue,
students, a record, grading, follow-ups; admins grant, revoke and assign mentors, see a degree's
cohort and run the sweep (writes through AdminActions, audited).

`shop_routes(ctx)` adds `mentor_routes(ctx)`; `start_shop` adds `start_mentoring(ctx)` (indexes,
the sweeper every 10 minutes, and in a cluster the listener of other gateways' user frames).
"""

import asyncio
import datetime
from typing import Any, Final

import tornado.httputil

from backoffice.actions import Actor, AdminActions
from backoffice.roles import effective_roles, mentor_only
from engine.book.errors import GavelError
from gateway.notify import listen_user_frames, notify_user
from persistence.accounts import AuthUser
from persistence.mongo import iso_utc
from persistence.shop.degree_mentoring import MongoMentoringStore, ensure_mentoring_indexes
from shop.degree_files import MAX_FILE_BYTES, FileTooLarge
from shop.degree_mentoring import CHANNELS, MAX_COMMENT, MAX_FOLLOWUP, MentorService, run_degree_sweeper
from shop.degree_rules import GRADES
from shop.model import Record, to_ms
from web.context import AppContext
from web.errors import ValidationFailed
from web.http import JsonHandler

ENROLMENT: Final = r"([0-9]{1,18}:[0-9]{1,18})"
SWEEP_SECONDS: Final = 600.0
UPLOAD_BODY_BYTES: Final = MAX_FILE_BYTES + 256 * 1024  # one file and the form's fields


def build_mentoring(ctx: AppContext) -> MentorService:
    async def notify(user_id: int, message: Record) -> None:
        await notify_user(ctx, user_id, message)

    service = MentorService(MongoMentoringStore(ctx.client, ctx.db, ctx.accounts), notify=notify)
    ctx.mentoring = service
    if ctx.admin_actions is not None:
        ctx.admin_actions.mentoring = service
    return service


def mentoring_of(ctx: AppContext) -> MentorService:
    service: MentorService = ctx.mentoring or build_mentoring(ctx)
    return service


def mentor_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx, "mentoring": mentoring_of(ctx)}
    routes: list[tuple[str, type]] = [
        (r"/api/v1/mentor/queue", QueueHandler),
        (r"/api/v1/mentor/students", StudentsHandler),
        (r"/api/v1/mentor/records/([0-9]+)", RecordHandler),
        (r"/api/v1/mentor/records/([0-9]+)/grade", GradeHandler),
        (rf"/api/v1/mentor/students/{ENROLMENT}/followups", FollowupsHandler),
        (r"/api/v1/admin/degree/mentors", AdminMentorsHandler),
        (r"/api/v1/admin/degree/mentors/([0-9]+)", AdminMentorHandler),
        (rf"/api/v1/admin/degree/enrolments/{ENROLMENT}/mentor", AdminAssignHandler),
        (r"/api/v1/admin/degree/courses/([0-9]+)/cohort", AdminCohortHandler),
        (r"/api/v1/admin/degree/sweep", AdminSweepHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in routes]


async def start_mentoring(
    ctx: AppContext, *, interval_seconds: float = SWEEP_SECONDS
) -> list[asyncio.Task[None]]:
    await ensure_mentoring_indexes(ctx.db)
    service = mentoring_of(ctx)
    tasks = [
        asyncio.create_task(
            run_degree_sweeper(service, interval_seconds=interval_seconds), name="degree-sweeper"
        )
    ]
    if ctx.price_bus is not None:
        tasks.append(asyncio.create_task(listen_user_frames(ctx), name="user-frames"))
    return tasks


# -- JSON -----------------------------------------------------------------------------------------------
def view(value: Any) -> Any:
    """`_id` as `id`; times as ISO plus `<name>_ms`; schedule dates as YYYY-MM-DD."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = "id" if key == "_id" else key
            if isinstance(item, datetime.datetime):
                if key == "recommended_date":
                    out[name] = item.date().isoformat()
                else:
                    out[name] = iso_utc(item)
                    out[f"{name}_ms"] = to_ms(item)
            else:
                out[name] = view(item)
        return out
    if isinstance(value, list | tuple):
        return [view(v) for v in value]
    return value


def record_view(record: Record) -> Any:
    answer = view(record)
    for submission in answer.get("submissions") or []:
        for file in submission.get("files") or []:
            file["url"] = f"/api/v1/degree-files/{file['id']}"
    return answer


def followup_view(followup: Record) -> Any:
    answer = view(followup)
    for file in answer.get("files") or []:
        file["url"] = f"/api/v1/degree-files/{file['id']}"
    return answer


class MentoringHandler(JsonHandler):
    mentoring: MentorService

    def initialize(self, ctx: AppContext, mentoring: MentorService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.mentoring = mentoring

    async def admin_actor(self) -> tuple[Actor, AdminActions]:
        user = await self.require_admin()
        actions = self.ctx.admin_actions
        if actions is None:
            raise GavelError("admin actions are not wired into this application", code="UNAVAILABLE")
        if actions.mentoring is None:
            actions.mentoring = self.mentoring
        return self.staff_actor(user), actions

    def over_every_mentor(self, user: AuthUser, *, write: bool = False) -> bool:
        """Whether an admin token may read (or grade) any mentor's records: an owner, a course
        manager (support reads); a user who is staff only as a mentor keeps to their own students."""
        return self.staff_may(user, "mentoring", write=write) and not mentor_only(
            effective_roles(user.is_admin, user.roles)
        )


class QueueHandler(MentoringHandler):
    async def get(self) -> None:
        user = await self.require_user()
        self.reply({"items": view(await self.mentoring.queue(user.user_id))})


class StudentsHandler(MentoringHandler):
    async def get(self) -> None:
        user = await self.require_user()
        self.reply({"items": view(await self.mentoring.students(user.user_id))})


class RecordHandler(MentoringHandler):
    async def get(self, raw_id: str) -> None:
        user = await self.require_user()
        record = await self.mentoring.record(
            user.user_id, self.path_id(raw_id, "record"), by_admin=self.over_every_mentor(user)
        )
        self.reply(record_view(record))


class GradeHandler(MentoringHandler):
    async def post(self, raw_id: str) -> None:
        user = await self.require_user()
        body = self.fields(("submission", "grade", "comment"))
        submission = body.integer("submission", minimum=1)
        grade = body.one_of("grade", list(GRADES))
        comment = body.text("comment", min_length=0, max_length=MAX_COMMENT, multiline=True, default="")
        record = await self.mentoring.grade(
            user.user_id,
            self.path_id(raw_id, "record"),
            submission,
            grade,
            comment,
            by_admin=self.over_every_mentor(user, write=True),
        )
        self.reply(record_view(record))


class FollowupsHandler(MentoringHandler):
    """JSON `{channel, text}` or multipart/form-data with `channel`, `text` and one `file`."""

    def prepare(self) -> None:
        # A follow-up may carry a file of up to 10 MiB: a larger body cap than JSON's.
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > UPLOAD_BODY_BYTES:
            raise FileTooLarge(f"a file must not exceed {MAX_FILE_BYTES} bytes")
        set_max_body_size = getattr(self.request.connection, "set_max_body_size", None)
        if set_max_body_size is not None:
            set_max_body_size(UPLOAD_BODY_BYTES)

    def data_received(self, chunk: bytes) -> None:
        if self._body_too_large:
            return
        if len(self._body) + len(chunk) > UPLOAD_BODY_BYTES:
            self._body_too_large = True
            self._body.clear()
            return
        self._body += chunk

    async def get(self, enrolment_id: str) -> None:
        user = await self.require_user()
        items = await self.mentoring.followups(user.user_id, enrolment_id)
        self.reply({"items": [followup_view(f) for f in items]})

    async def post(self, enrolment_id: str) -> None:
        user = await self.require_user()
        if self._body_too_large:
            raise FileTooLarge(f"a file must not exceed {MAX_FILE_BYTES} bytes")
        content_type = self.request.headers.get("Content-Type", "")
        files: list[tuple[str, bytes]] = []
        if content_type.startswith("multipart/form-data"):
            arguments: dict[str, list[bytes]] = {}
            uploads: dict[str, list[tornado.httputil.HTTPFile]] = {}
            tornado.httputil.parse_body_arguments(content_type, bytes(self._body), arguments, uploads)
            channel = _form_text(arguments, "channel")
            text = _form_text(arguments, "text")
            files = [(f.filename, f.body) for f in uploads.get("file", [])]
        else:
            body = self.fields(("channel", "text"))
            channel = body.one_of("channel", CHANNELS)
            text = body.text("text", min_length=0, max_length=MAX_FOLLOWUP, multiline=True, default="")
        added = await self.mentoring.add_followup(user.user_id, enrolment_id, channel, text, files)
        self.reply(followup_view(added), 201)


def _form_text(arguments: dict[str, list[bytes]], name: str) -> str:
    values = arguments.get(name) or [b""]
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(f"{name} must be UTF-8 text") from None


# -- admin --------------------------------------------------------------------------------------------
class AdminMentorsHandler(MentoringHandler):
    admin_area = "degree"

    async def get(self) -> None:
        await self.require_admin()
        self.reply({"items": view(await self.mentoring.mentors(active_only=False))})

    async def post(self) -> None:
        actor, actions = await self.admin_actor()
        body = self.fields(("user_id", "name", "intro"))
        user_id = body.integer("user_id", minimum=1)
        name = body.text("name", max_length=64)
        intro = body.text("intro", min_length=0, max_length=2000, multiline=True, default="")
        self.reply(view(await actions.degree_grant_mentor(actor, user_id, name, intro)), 201)


class AdminMentorHandler(MentoringHandler):
    admin_area = "degree"

    async def delete(self, raw_id: str) -> None:
        actor, actions = await self.admin_actor()
        self.reply(view(await actions.degree_revoke_mentor(actor, self.path_id(raw_id, "user"))))


class AdminAssignHandler(MentoringHandler):
    admin_area = "degree"

    async def post(self, enrolment_id: str) -> None:
        actor, actions = await self.admin_actor()
        mentor_id = self.fields(("mentor_id",)).integer("mentor_id", minimum=1)
        enrolment = await actions.degree_assign_mentor(actor, enrolment_id, mentor_id)
        self.reply(view(enrolment))


class AdminCohortHandler(MentoringHandler):
    admin_area = "degree"

    async def get(self, raw_id: str) -> None:
        await self.require_admin()
        self.reply({"items": view(await self.mentoring.cohort(self.path_id(raw_id, "degree course")))})


class AdminSweepHandler(MentoringHandler):
    admin_area = "degree"

    async def post(self) -> None:
        actor, actions = await self.admin_actor()
        self.reply(await actions.degree_sweep(actor))
