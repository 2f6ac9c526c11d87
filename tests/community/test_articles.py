"""ArticleService on an in-memory store with an injected clock: validation, status transitions,
visibility, the listing's order and cursor, and the scheduler."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from community.articles import (
    ArticleService,
    ArticleStateRefused,
    ArticleTitleExists,
    SourceNameExists,
    is_visible,
    list_keys,
    scheduled_status,
    validate_fields,
)
from community.errors import BadCursor, TargetNotFound, TextRejected
from community.ports import Document

T0 = datetime.datetime(2026, 5, 1, 12, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)


class Clock:
    def __init__(self, at: datetime.datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime.datetime:
        return self.at


class FakeMedia:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, url_or_name: str) -> bool:
        self.deleted.append(url_or_name)
        return True


class FakeArticleStore:
    """The ArticleStore port in memory, with the unique keys MongoDB enforces."""

    def __init__(self) -> None:
        self.articles: dict[int, Document] = {}
        self.source_docs: dict[int, Document] = {}

    async def create_source(self, name: str) -> Document:
        if any(s["name"] == name for s in self.source_docs.values()):
            raise SourceNameExists(f"a source named {name!r} exists")
        doc: Document = {"_id": len(self.source_docs) + 1, "name": name}
        self.source_docs[doc["_id"]] = doc
        return dict(doc)

    async def source(self, source_id: int) -> Document | None:
        return self.source_docs.get(source_id)

    async def sources(self) -> list[Document]:
        return sorted(self.source_docs.values(), key=lambda s: s["name"])

    async def source_names(self, ids: list[int]) -> dict[int, str]:
        return {i: self.source_docs[i]["name"] for i in ids if i in self.source_docs}

    async def reader_flags(self, user_id: int, article_id: int) -> dict[str, bool]:
        return {"liked_by_me": False, "collected_by_me": False}

    async def insert(self, fields: Document) -> Document:
        if any(a["title"] == fields["title"] for a in self.articles.values()):
            raise ArticleTitleExists("exists")
        doc = {"_id": len(self.articles) + 1, **fields}
        self.articles[doc["_id"]] = doc
        return copy.deepcopy(doc)

    async def article(self, article_id: int) -> Document | None:
        doc = self.articles.get(article_id)
        return None if doc is None else copy.deepcopy(doc)

    async def update(
        self, article_id: int, changes: Document, *, status_from: str | None = None
    ) -> Document | None:
        doc = self.articles.get(article_id)
        if doc is None or (status_from is not None and doc["status"] != status_from):
            return None
        title = changes.get("title")
        if title is not None and any(
            a["title"] == title and i != article_id for i, a in self.articles.items()
        ):
            raise ArticleTitleExists("exists")
        doc.update(copy.deepcopy(changes))
        return copy.deepcopy(doc)

    async def visible_page(
        self,
        now: datetime.datetime,
        position: str | None,
        source_id: int | None,
        after: tuple[int, int, int] | None,
        limit: int,
    ) -> list[Document]:
        found = [
            a
            for a in self.articles.values()
            if is_visible(a, now)
            and (position is None or a["position"] == position)
            and (source_id is None or a["source_id"] == source_id)
            and (after is None or list_keys(a) < after)
        ]
        return copy.deepcopy(sorted(found, key=list_keys, reverse=True)[:limit])

    async def due(self, now: datetime.datetime) -> list[Document]:
        return [
            copy.deepcopy(a)
            for a in self.articles.values()
            if (
                a["status"] == "scheduled"
                and (a["pub_at"] <= now or (a["offline_at"] or now + MINUTE) <= now)
            )
            or (a["status"] == "online" and a["offline_at"] is not None and a["offline_at"] <= now)
        ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def media() -> FakeMedia:
    return FakeMedia()


@pytest.fixture
def service(clock: Clock, media: FakeMedia) -> ArticleService:
    return ArticleService(FakeArticleStore(), now=clock, media=media)


async def source(service: ArticleService, name: str = "Gavel Daily") -> int:
    return int((await service.create_source(name))["_id"])


def body(sid: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "title": "Porcelain of the Song",
        "source_id": sid,
        "kind": "news",
        "brief": "A short brief",
        "body_md": "# Hello\n\n<script>alert(1)</script> **bold**",
        "pub_at": T0,
        "weight": 10,
        "position": "feed",
    }
    fields.update(overrides)
    return fields


# -- validation ----------------------------------------------------------------------------------------
async def test_create_renders_and_sanitises_the_body_and_starts_as_a_draft(service: ArticleService) -> None:
    doc = await service.create(body(await source(service)))
    assert doc["status"] == "draft"
    assert (
        doc["body_html"]
        == "<h1>Hello</h1>\n<p>&lt;script&gt;alert(1)&lt;/script&gt; <strong>bold</strong></p>\n"
    )
    assert (doc["views"], doc["likes"], doc["comments"], doc["collects"]) == (0, 0, 0, 0)
    assert doc["vid"] == "" and doc["head_img"] == "" and doc["offline_at"] is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"title": ""}, "title is empty"),
        ({"title": "x" * 256}, "title is limited"),
        ({"title": "two\nlines"}, "control"),
        ({"kind": "podcast"}, "kind must be"),
        ({"kind": "video"}, "video id"),
        ({"kind": "video", "vid": "bad vid!"}, "video id"),
        ({"kind": "video", "vid": "x" * 129}, "video id"),
        ({"vid": "abc"}, "only a video"),
        ({"weight": 1001}, "weight"),
        ({"weight": -1}, "weight"),
        ({"weight": True}, "weight"),
        ({"weight": 1.0}, "weight"),
        ({"position": "sidebar"}, "position"),
        ({"brief": "b" * 513}, "brief"),
        ({"body_md": "b" * 100_001}, "body"),
        ({"pub_at": "2026-05-01T12:00:00Z"}, "pub_at"),
        ({"pub_at": datetime.datetime(2026, 5, 1)}, "pub_at"),
        ({"offline_at": T0}, "offline time must come after"),
        ({"offline_at": T0 - MINUTE}, "offline time must come after"),
        ({"source_id": 0}, "source_id"),
        ({"source_id": 99}, "no article source"),
        ({"status": "online"}, "unknown field"),
        ({"likes": 5}, "unknown field"),
    ],
)
async def test_bad_fields_are_refused(
    service: ArticleService, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(TextRejected, match=message):
        await service.create(body(await source(service), **overrides))


async def test_missing_required_fields(service: ArticleService) -> None:
    with pytest.raises(TextRejected, match="missing field"):
        await service.create({"title": "x"})


async def test_a_video_needs_its_vid(service: ArticleService) -> None:
    doc = await service.create(body(await source(service), kind="video", vid="XMjc5_Nz-k"))
    assert (doc["kind"], doc["vid"]) == ("video", "XMjc5_Nz-k")
    # Turning it into news without dropping the vid is refused; dropping it is fine.
    with pytest.raises(TextRejected, match="only a video"):
        await service.update(int(doc["_id"]), {"kind": "news"})
    _, after = await service.update(int(doc["_id"]), {"kind": "news", "vid": ""})
    assert (after["kind"], after["vid"]) == ("news", "")


async def test_titles_and_source_names_are_unique(service: ArticleService) -> None:
    sid = await source(service)
    with pytest.raises(SourceNameExists):
        await source(service)
    first = await service.create(body(sid))
    with pytest.raises(ArticleTitleExists):
        await service.create(body(sid))
    other = await service.create(body(sid, title="Another"))
    with pytest.raises(ArticleTitleExists):
        await service.update(int(other["_id"]), {"title": first["title"]})


async def test_validate_fields_of_an_edit_checks_the_merged_window() -> None:
    before: Document = {"pub_at": T0, "offline_at": T0 + 10 * MINUTE, "kind": "news", "vid": ""}
    assert validate_fields({"weight": 5}, before) == {"weight": 5}
    with pytest.raises(TextRejected, match="offline time"):
        validate_fields({"pub_at": T0 + 20 * MINUTE}, before)
    assert validate_fields({"offline_at": None}, before) == {"offline_at": None}


# -- status ---------------------------------------------------------------------------------------------
async def test_publish_now_is_online_and_later_is_scheduled(service: ArticleService, clock: Clock) -> None:
    sid = await source(service)
    now_doc = await service.create(body(sid, title="Now"))
    later_doc = await service.create(body(sid, title="Later", pub_at=T0 + 5 * MINUTE))
    _, after = await service.publish(int(now_doc["_id"]))
    assert after["status"] == "online"
    _, after = await service.publish(int(later_doc["_id"]))
    assert after["status"] == "scheduled"
    # Publishing again changes nothing.
    before, again = await service.publish(int(later_doc["_id"]))
    assert before == again and again["status"] == "scheduled"


async def test_publish_refuses_an_ended_window(service: ArticleService, clock: Clock) -> None:
    sid = await source(service)
    doc = await service.create(body(sid, offline_at=T0 + MINUTE))
    clock.at = T0 + 2 * MINUTE
    with pytest.raises(ArticleStateRefused, match="offline time has passed"):
        await service.publish(int(doc["_id"]))


async def test_withdraw(service: ArticleService) -> None:
    sid = await source(service)
    doc = await service.create(body(sid), publish=True)
    assert doc["status"] == "online"
    article_id = int(doc["_id"])
    _, after = await service.withdraw(article_id)
    assert after["status"] == "offline"
    assert await service.visible(article_id) is None
    _, again = await service.withdraw(article_id)
    assert again["status"] == "offline"
    draft = await service.create(body(sid, title="Draft"))
    with pytest.raises(ArticleStateRefused, match="draft"):
        await service.withdraw(int(draft["_id"]))
    # Published again: back online.
    _, back = await service.publish(article_id)
    assert back["status"] == "online"


async def test_moving_the_times_of_a_published_article_rederives_its_status(service: ArticleService) -> None:
    sid = await source(service)
    doc = await service.create(body(sid), publish=True)
    _, after = await service.update(int(doc["_id"]), {"pub_at": T0 + MINUTE})
    assert after["status"] == "scheduled"
    _, after = await service.update(int(doc["_id"]), {"pub_at": T0 - MINUTE})
    assert after["status"] == "online"
    # A draft stays a draft whatever its times.
    draft = await service.create(body(sid, title="Draft"))
    _, after = await service.update(int(draft["_id"]), {"pub_at": T0 - MINUTE})
    assert after["status"] == "draft"


async def test_unknown_articles(service: ArticleService) -> None:
    with pytest.raises(TargetNotFound):
        await service.publish(404)
    with pytest.raises(TargetNotFound):
        await service.update(404, {"weight": 1})
    assert await service.visible(404) is None


async def test_head_image_replacement_deletes_the_old_file(service: ArticleService, media: FakeMedia) -> None:
    doc = await service.create(body(await source(service)))
    article_id = int(doc["_id"])
    await service.set_head_image(article_id, "/media/a.png")
    assert media.deleted == []
    before, after = await service.set_head_image(article_id, "/media/b.png")
    assert (before["head_img"], after["head_img"]) == ("/media/a.png", "/media/b.png")
    assert media.deleted == ["/media/a.png"]


# -- visibility and the scheduler ----------------------------------------------------------------------
def test_scheduled_status_rules() -> None:
    later = T0 + MINUTE
    assert scheduled_status("scheduled", later, None, T0) == "scheduled"
    assert scheduled_status("scheduled", T0, None, T0) == "online"
    assert scheduled_status("scheduled", T0 - MINUTE, T0, T0) == "offline"  # missed its whole window
    assert scheduled_status("online", T0 - MINUTE, T0, T0) == "offline"
    assert scheduled_status("online", T0 - MINUTE, later, T0) == "online"
    assert scheduled_status("draft", T0 - MINUTE, None, T0) == "draft"
    assert scheduled_status("offline", T0 - MINUTE, None, T0) == "offline"


def test_visibility_needs_both_the_status_and_the_window() -> None:
    doc: Document = {"status": "online", "pub_at": T0, "offline_at": T0 + MINUTE}
    assert is_visible(doc, T0)
    assert not is_visible(doc, T0 - datetime.timedelta(milliseconds=1))
    assert not is_visible(doc, T0 + MINUTE)  # offline_at itself is out
    assert not is_visible({**doc, "status": "scheduled"}, T0)
    assert not is_visible({**doc, "status": "offline"}, T0)
    assert is_visible({**doc, "offline_at": None}, T0 + 1000 * MINUTE)
    naive = {**doc, "pub_at": T0.replace(tzinfo=None), "offline_at": None}
    assert is_visible(naive, T0)


async def test_the_scheduler_takes_articles_on_and_off_line(service: ArticleService, clock: Clock) -> None:
    sid = await source(service)
    soon = await service.create(
        body(sid, title="Soon", pub_at=T0 + MINUTE, offline_at=T0 + 3 * MINUTE), publish=True
    )
    article_id = int(soon["_id"])
    assert soon["status"] == "scheduled"
    assert await service.apply_schedule() == {"online": [], "offline": []}
    assert await service.visible(article_id) is None

    clock.at = T0 + MINUTE
    # Visible needs the status as well as the window: not before the scheduler's round (≤ 5 s).
    store = service.store
    assert isinstance(store, FakeArticleStore)
    assert (await store.article(article_id) or {})["status"] == "scheduled"
    assert await service.visible(article_id) is None
    assert await service.apply_schedule() == {"online": [article_id], "offline": []}
    assert (await service.visible(article_id) or {})["_id"] == article_id
    assert await service.apply_schedule() == {"online": [], "offline": []}  # idempotent

    clock.at = T0 + 3 * MINUTE
    # Off line at offline_at even before the scheduler runs (the window is checked at read)...
    assert await service.visible(article_id) is None
    assert await service.apply_schedule() == {"online": [], "offline": [article_id]}
    assert (await service.article(article_id))["status"] == "offline"


async def test_two_schedulers_move_an_article_once(service: ArticleService, clock: Clock) -> None:
    sid = await source(service)
    doc = await service.create(body(sid, pub_at=T0 + MINUTE), publish=True)
    clock.at = T0 + MINUTE
    other = ArticleService(service.store, now=clock)
    first = await service.apply_schedule()
    second = await other.apply_schedule()
    assert first["online"] + second["online"] == [doc["_id"]]


# -- the public list ------------------------------------------------------------------------------------
async def test_the_list_is_by_weight_then_time_then_id_and_walks_by_cursor(
    service: ArticleService, clock: Clock
) -> None:
    sid = await source(service)
    other_sid = await source(service, "Other")
    expected = []
    for i, (weight, minutes) in enumerate([(5, 0), (5, 0), (5, -1), (100, -50), (0, 0), (5, -1)]):
        doc = await service.create(
            body(sid, title=f"A{i}", weight=weight, pub_at=T0 + minutes * MINUTE), publish=True
        )
        expected.append((weight, minutes, int(doc["_id"])))
    await service.create(body(sid, title="draft"))  # never listed
    await service.create(body(sid, title="future", pub_at=T0 + MINUTE), publish=True)
    await service.create(body(other_sid, title="elsewhere"), publish=True)
    banner = await service.create(body(sid, title="banner", position="banner_big"), publish=True)
    order = [i for _, _, i in sorted(expected, key=lambda e: (e[0], e[1], e[2]), reverse=True)]

    seen: list[int] = []
    cursor = None
    while True:
        docs, cursor = await service.page(position="feed", source_id=sid, cursor=cursor, limit=4)
        seen += [int(d["_id"]) for d in docs]
        if cursor is None:
            break
        # A new article at the head does not shift the pages being walked.
        await service.create(body(sid, title=f"new{len(seen)}", weight=1000), publish=True)
    assert seen == order

    banners, cursor = await service.page(position="banner_big", source_id=None, cursor=None, limit=None)
    assert [int(d["_id"]) for d in banners] == [int(banner["_id"])] and cursor is None


async def test_bad_list_queries(service: ArticleService) -> None:
    with pytest.raises(TextRejected):
        await service.page(position="sidebar", source_id=None, cursor=None, limit=None)
    with pytest.raises(BadCursor):
        await service.page(position=None, source_id=None, cursor="not-a-cursor", limit=None)
    with pytest.raises(BadCursor):
        await service.page(position=None, source_id=None, cursor="WzFd", limit=None)  # arity 1


async def test_a_withdraw_that_loses_to_the_scheduler_decides_again(
    service: ArticleService, clock: Clock
) -> None:
    sid = await source(service)
    doc = await service.create(body(sid, pub_at=T0 + MINUTE), publish=True)
    article_id = int(doc["_id"])
    clock.at = T0 + MINUTE
    store = service.store
    assert isinstance(store, FakeArticleStore)
    real_update = store.update
    raced = False

    async def scheduler_first(article_id: int, changes: Document, *, status_from: str | None = None) -> Any:
        nonlocal raced
        if not raced and status_from == "scheduled" and changes.get("status") == "offline":
            raced = True
            await service.apply_schedule()  # scheduled → online between the withdraw's read and write
        return await real_update(article_id, changes, status_from=status_from)

    store.update = scheduler_first  # type: ignore[method-assign]
    before, after = await service.withdraw(article_id)
    assert raced and (before["status"], after["status"]) == ("online", "offline")
