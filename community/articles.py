"""The articles (深科技): sources, news and video articles with a Markdown body, positions, weights,
and a publish window the scheduler follows (docs/community.md "Articles").

Rules are pure functions (`validate_fields`, `scheduled_status`, `is_visible`, `list_keys`); the
`ArticleService` applies them over the `ArticleStore` port (persistence/community/articles.py on
MongoDB, tests/community/test_articles.py in memory). Counters (views, likes, comments, collects)
belong to the reactions service: created as 0 here, never written here.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from community.errors import TargetNotFound, TextRejected
from community.markdown import render_markdown
from community.ports import ArticleStore, Document, MediaFiles
from community.rules import MAX_ID, clean_text, decode_cursor, encode_cursor, page_size
from engine.book.errors import GavelError

log = logging.getLogger("gavel.community.articles")

TITLE_MAX: Final = 255
BRIEF_MAX: Final = 512
BODY_MAX: Final = 100_000
SOURCE_NAME_MAX: Final = 64
VID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
WEIGHT_MAX: Final = 1000
KINDS: Final = ("news", "video")
POSITIONS: Final = ("feed", "banner_big", "banner_small")
STATUSES: Final = ("draft", "scheduled", "online", "offline")
SOURCES_MAX: Final = 500
ARTICLE_SCHEDULE_SECONDS: Final = 5.0
RACE_ATTEMPTS: Final = 3  # a publish/withdraw that lost to the scheduler reads and decides again
# What an admin may set (POST /admin/articles, PATCH); everything else is derived or a counter.
EDITABLE: Final = (
    "title",
    "source_id",
    "kind",
    "vid",
    "brief",
    "body_md",
    "pub_at",
    "offline_at",
    "weight",
    "position",
)
REQUIRED: Final = ("title", "source_id", "pub_at")
COUNTERS: Final = ("views", "likes", "comments", "collects")

Status = Literal["draft", "scheduled", "online", "offline"]


class ArticleTitleExists(GavelError):
    """Titles are unique (the seed's Article.title): 409."""

    code = "ARTICLE_TITLE_EXISTS"


class SourceNameExists(GavelError):
    code = "CONFLICT"


class ArticleStateRefused(GavelError):
    """Publish or withdraw from a status that does not allow it: 409."""

    code = "ILLEGAL_STATE"


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_ms(moment: datetime.datetime) -> int:
    if moment.tzinfo is None:  # MongoDB without tz_aware hands back naive UTC
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _aware(moment: datetime.datetime | None) -> datetime.datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=datetime.UTC)


# -- rules ---------------------------------------------------------------------------------------------
def _time(value: object, name: str) -> datetime.datetime:
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise TextRejected(f"{name} must be a time with a UTC offset")
    return value.astimezone(datetime.UTC)


def _integer(value: object, name: str, minimum: int, maximum: int) -> int:
    if type(value) is not int or not minimum <= value <= maximum:
        raise TextRejected(f"{name} must be an integer from {minimum} to {maximum}")
    return value


def validate_fields(raw: Mapping[str, Any], before: Document | None = None) -> Document:
    """The article's editable fields, checked, merged over `before` (None: a new article, whose
    required fields must all be there). Unknown fields are refused. Returns only the fields to
    write (for an edit: those given), with `body_html` re-rendered when the body changed."""
    unknown = sorted(set(raw) - set(EDITABLE))
    if unknown:
        raise TextRejected(f"unknown field(s): {', '.join(unknown)[:200]}")
    if before is None:
        missing = [name for name in REQUIRED if raw.get(name) is None]
        if missing:
            raise TextRejected(f"missing field(s): {', '.join(missing)}")
    out: Document = {}
    if "title" in raw:
        out["title"] = clean_text(raw["title"], max_length=TITLE_MAX, what="title", multiline=False)
    if "source_id" in raw:
        out["source_id"] = _integer(raw["source_id"], "source_id", 1, MAX_ID)
    if "kind" in raw:
        if raw["kind"] not in KINDS:
            raise TextRejected(f"kind must be one of: {', '.join(KINDS)}")
        out["kind"] = raw["kind"]
    if "vid" in raw:
        if not isinstance(raw["vid"], str):
            raise TextRejected("vid must be a string")
        out["vid"] = raw["vid"].strip()
    if "brief" in raw:
        out["brief"] = clean_text(raw["brief"], max_length=BRIEF_MAX, what="brief", required=False)
    if "body_md" in raw:
        out["body_md"] = clean_text(raw["body_md"], max_length=BODY_MAX, what="body", required=False)
        out["body_html"] = render_markdown(out["body_md"])
    if "pub_at" in raw:
        out["pub_at"] = _time(raw["pub_at"], "pub_at")
    if "offline_at" in raw:
        out["offline_at"] = None if raw["offline_at"] is None else _time(raw["offline_at"], "offline_at")
    if "weight" in raw:
        out["weight"] = _integer(raw["weight"], "weight", 0, WEIGHT_MAX)
    if "position" in raw:
        if raw["position"] not in POSITIONS:
            raise TextRejected(f"position must be one of: {', '.join(POSITIONS)}")
        out["position"] = raw["position"]
    merged = {**(before or {}), **out}
    kind = merged.get("kind", "news")
    vid = merged.get("vid", "")
    if kind == "video" and not VID_PATTERN.fullmatch(vid):
        raise TextRejected("a video article needs its video id (vid): 1-128 of A-Z a-z 0-9 _ -")
    if kind == "news" and vid:
        raise TextRejected("only a video article has a video id (vid)")
    offline_at = _aware(merged.get("offline_at"))
    pub_at = _aware(merged.get("pub_at"))
    if offline_at is not None and pub_at is not None and not pub_at < offline_at:
        raise TextRejected("the offline time must come after the publish time")
    return out


def scheduled_status(
    status: str, pub_at: datetime.datetime, offline_at: datetime.datetime | None, now: datetime.datetime
) -> str:
    """Where the scheduler takes an article: a scheduled one goes online at pub_at, an online (or
    scheduled) one offline at offline_at. Drafts and withdrawn articles stay as they are."""
    if status not in ("scheduled", "online"):
        return status
    if offline_at is not None and now >= offline_at:
        return "offline"
    if status == "scheduled" and now >= pub_at:
        return "online"
    return status


def window_status(
    pub_at: datetime.datetime, offline_at: datetime.datetime | None, now: datetime.datetime
) -> str:
    """A published article's status from its window: scheduled before pub_at, online within,
    offline from offline_at."""
    if offline_at is not None and now >= offline_at:
        return "offline"
    return "online" if now >= pub_at else "scheduled"


def published_status(
    pub_at: datetime.datetime, offline_at: datetime.datetime | None, now: datetime.datetime
) -> str:
    """The status a publish gives: online when its time has come, else scheduled; an article whose
    window has already ended cannot be published (change its offline time first)."""
    status = window_status(pub_at, offline_at, now)
    if status == "offline":
        raise ArticleStateRefused("the offline time has passed: change it before publishing")
    return status


def is_visible(doc: Document, now: datetime.datetime) -> bool:
    """Readers see an article only online AND within its window (api.md): the status and the
    times are both checked, so neither the scheduler's latency nor a stale status shows it early
    or keeps it late."""
    if doc.get("status") != "online":
        return False
    pub_at = _aware(doc.get("pub_at"))
    offline_at = _aware(doc.get("offline_at"))
    return pub_at is not None and pub_at <= now and (offline_at is None or now < offline_at)


def list_keys(doc: Document) -> tuple[int, int, int]:
    """The keyset of the public list: (weight, pub_at in ms, id), all descending."""
    pub_at = _aware(doc["pub_at"])
    assert pub_at is not None
    return (int(doc.get("weight", 0)), to_ms(pub_at), int(doc["_id"]))


# -- the service ---------------------------------------------------------------------------------------
class ArticleService:
    """`now` is injectable (the app passes the engine's clock, tests a fake one); `media` deletes a
    replaced head image (the process's MediaStore)."""

    def __init__(
        self,
        store: ArticleStore,
        *,
        now: Callable[[], datetime.datetime] = _utc_now,
        media: MediaFiles | None = None,
    ) -> None:
        self.store = store
        self.now = now
        self.media = media

    # == sources ========================================================================================
    async def create_source(self, name: object) -> Document:
        text = clean_text(name, max_length=SOURCE_NAME_MAX, what="source name", multiline=False)
        return await self.store.create_source(text)

    async def sources(self) -> list[Document]:
        return (await self.store.sources())[:SOURCES_MAX]

    async def source_names(self, ids: list[int]) -> dict[int, str]:
        return await self.store.source_names(ids) if ids else {}

    async def reader_flags(self, user_id: int | None, article_id: int) -> dict[str, bool]:
        if user_id is None:
            return {"liked_by_me": False, "collected_by_me": False}
        return await self.store.reader_flags(user_id, article_id)

    # == reading ========================================================================================
    async def visible(self, article_id: int, now: datetime.datetime | None = None) -> Document | None:
        """The article if readers may see it at `now` (default: the service's clock)."""
        doc = await self.store.article(article_id)
        if doc is None or not is_visible(doc, now or self.now()):
            return None
        return doc

    async def article(self, article_id: int) -> Document:
        """Any article, whatever its status (admins)."""
        doc = await self.store.article(article_id)
        if doc is None:
            raise TargetNotFound(f"no article {article_id}")
        return doc

    async def page(
        self, *, position: str | None, source_id: int | None, cursor: str | None, limit: int | None
    ) -> tuple[list[Document], str | None]:
        """A page of the visible articles, by weight, then publish time, then id (all descending),
        and the cursor of the next page (None at the end)."""
        if position is not None and position not in POSITIONS:
            raise TextRejected(f"position must be one of: {', '.join(POSITIONS)}")
        keys = decode_cursor(cursor, 3)
        size = page_size(limit)
        after = None if keys is None else (keys[0], keys[1], keys[2])
        docs = await self.store.visible_page(self.now(), position, source_id, after, size + 1)
        more = len(docs) > size
        docs = docs[:size]
        return docs, encode_cursor(list_keys(docs[-1])) if more and docs else None

    # == writing (admins, through backoffice/actions.py) ================================================
    async def create(self, raw: Mapping[str, Any], *, publish: bool = False) -> Document:
        fields = validate_fields(raw)
        if await self.store.source(fields["source_id"]) is None:
            raise TextRejected(f"no article source {fields['source_id']}")
        now = self.now()
        doc: Document = {
            "title": fields["title"],
            "source_id": fields["source_id"],
            "kind": fields.get("kind", "news"),
            "vid": fields.get("vid", ""),
            "brief": fields.get("brief", ""),
            "head_img": "",
            "body_md": fields.get("body_md", ""),
            "body_html": fields.get("body_html", ""),
            "pub_at": fields["pub_at"],
            "offline_at": fields.get("offline_at"),
            "status": "draft",
            "weight": fields.get("weight", 0),
            "position": fields.get("position", "feed"),
            **{name: 0 for name in COUNTERS},
            "created_at": now,
            "updated_at": now,
        }
        if publish:
            doc["status"] = published_status(doc["pub_at"], doc["offline_at"], now)
        return await self.store.insert(doc)

    async def update(self, article_id: int, raw: Mapping[str, Any]) -> tuple[Document, Document]:
        """(before, after). Changing the times of a published article re-derives its status (a
        publish time moved to the future takes it back to scheduled)."""
        before = await self.article(article_id)
        changes = validate_fields(raw, before)
        if "source_id" in changes and await self.store.source(changes["source_id"]) is None:
            raise TextRejected(f"no article source {changes['source_id']}")
        now = self.now()
        merged = {**before, **changes}
        if before["status"] in ("scheduled", "online") and ("pub_at" in changes or "offline_at" in changes):
            pub_at = _aware(merged["pub_at"])
            assert pub_at is not None
            offline_at = _aware(merged.get("offline_at"))
            changes["status"] = window_status(pub_at, offline_at, now)
        changes["updated_at"] = now
        after = await self.store.update(article_id, changes)
        if after is None:
            raise TargetNotFound(f"no article {article_id}")
        return before, after

    async def publish(self, article_id: int) -> tuple[Document, Document]:
        """draft / offline → online (its time has come) or scheduled. Publishing a published article
        changes nothing."""
        return await self._move(article_id, "publish")

    async def withdraw(self, article_id: int) -> tuple[Document, Document]:
        """scheduled / online → offline (readers stop seeing it at once). Idempotent on offline."""
        return await self._move(article_id, "withdraw")

    async def _move(self, article_id: int, verb: str) -> tuple[Document, Document]:
        """(before, after) of a publish or withdraw. The write is conditional on the status read;
        losing a race (the scheduler moved the article meanwhile) reads again and decides again."""
        for _attempt in range(RACE_ATTEMPTS):
            before = await self.article(article_id)
            status = str(before["status"])
            now = self.now()
            if verb == "publish":
                if status in ("scheduled", "online"):
                    return before, before
                pub_at = _aware(before["pub_at"])
                assert pub_at is not None
                target = published_status(pub_at, _aware(before.get("offline_at")), now)
            else:
                if status == "offline":
                    return before, before
                if status == "draft":
                    raise ArticleStateRefused("a draft is not published; there is nothing to withdraw")
                target = "offline"
            after = await self.store.update(
                article_id, {"status": target, "updated_at": now}, status_from=status
            )
            if after is not None:
                return before, after
        raise ArticleStateRefused("the article keeps changing; reload and retry")

    async def set_head_image(self, article_id: int, url: str) -> tuple[Document, Document]:
        """Point the article at a newly uploaded image; the one it replaces is deleted from storage."""
        before = await self.article(article_id)
        after = await self.store.update(article_id, {"head_img": url, "updated_at": self.now()})
        if after is None:
            raise TargetNotFound(f"no article {article_id}")
        old = str(before.get("head_img") or "")
        if old and old != url and self.media is not None:
            try:
                await self.media.delete(old)
            except OSError:
                log.warning("could not delete the replaced head image %s of article %s", old, article_id)
        return before, after

    # == the scheduler ==================================================================================
    async def apply_schedule(self, now: datetime.datetime | None = None) -> dict[str, list[int]]:
        """Move every due article: scheduled → online at pub_at, → offline at offline_at. Each move
        is conditional on the status read, so two schedulers (two gateways) move an article once."""
        moment = now or self.now()
        moved: dict[str, list[int]] = {"online": [], "offline": []}
        for doc in await self.store.due(moment):
            pub_at = _aware(doc["pub_at"])
            assert pub_at is not None
            target = scheduled_status(str(doc["status"]), pub_at, _aware(doc.get("offline_at")), moment)
            if target == doc["status"] or target not in moved:
                continue
            after = await self.store.update(
                int(doc["_id"]), {"status": target, "updated_at": moment}, status_from=str(doc["status"])
            )
            if after is not None:
                moved[target].append(int(doc["_id"]))
        return moved


async def run_scheduler(
    service: ArticleService, *, interval_seconds: float = ARTICLE_SCHEDULE_SECONDS
) -> None:
    """`apply_schedule` every `interval_seconds` until cancelled; a failed round is logged and the
    next one tries again (a MongoDB outage must not end the scheduler)."""
    while True:
        try:
            moved = await service.apply_schedule()
            if moved["online"] or moved["offline"]:
                log.info("articles scheduled: %s", moved)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the article scheduler's round failed")
        await asyncio.sleep(interval_seconds)
