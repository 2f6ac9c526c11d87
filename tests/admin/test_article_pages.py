"""The articles' back office over HTTP: list, create (with errors kept on the form), preview
without saving, edit, publish/withdraw, sources, head image, audit, refusals."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from persistence.community.articles import ensure_indexes
from persistence.mongo import as_utc, from_ms, iso_utc
from tests.admin.conftest import AdminClient, png_bytes


@pytest.fixture(autouse=True)
async def indexes(admin_client: AdminClient) -> None:
    """What start-up does (gateway/rest_articles.start): the unique title and name indexes."""
    await ensure_indexes(admin_client.server.ctx.db)


def form(client: AdminClient, source_id: int, **overrides: Any) -> dict[str, Any]:
    now = from_ms(client.server.clock.now_ms())
    fields: dict[str, Any] = {
        "title": "Kiln notes",
        "source_id": str(source_id),
        "kind": "news",
        "vid": "",
        "position": "feed",
        "weight": "10",
        "pub_at": iso_utc(now),
        "offline_at": "",
        "brief": "A brief",
        "body_md": "## Kilns\n\n<img src=x onerror=alert(1)> [x](javascript:alert(1)) **ok**",
    }
    fields.update(overrides)
    return fields


async def make_source(client: AdminClient, name: str = "Tech Daily") -> int:
    await client.get("/admin/articles")  # the page's form token
    answer = await client.post("/admin/article-sources", {"name": name})
    assert answer.status == 303, answer.body
    doc = await client.server.ctx.db.community_article_sources.find_one({"name": name})
    assert doc is not None
    return int(doc["_id"])


async def test_create_preview_edit_publish_withdraw(admin_client: AdminClient) -> None:
    c = admin_client
    await c.sign_in()
    assert (await c.get("/admin/articles")).status == 200
    source_id = await make_source(c)
    listing = await c.get("/admin/articles")
    assert b"Tech Daily" in listing.body and b"Articles" in listing.body

    # A preview renders the sanitised body and saves nothing.
    preview = await c.post("/admin/articles/new", {**form(c, source_id), "preview": "1"})
    assert preview.status == 200
    assert b"<h2>Kilns</h2>" in preview.body and b"<strong>ok</strong>" in preview.body
    assert b"&lt;img src=x onerror=alert(1)&gt;" in preview.body
    assert b'href="javascript' not in preview.body
    assert await c.server.ctx.db.community_articles.count_documents({}) == 0

    # An error keeps what was typed on the form.
    bad = await c.post("/admin/articles/new", form(c, source_id, kind="video", body_md="keep me"))
    assert bad.status == 400 and b"video id" in bad.body and b"keep me" in bad.body

    created = await c.post("/admin/articles/new", form(c, source_id))
    assert created.status == 303, created.body
    found = re.fullmatch(r"/admin/articles/([0-9]+)", created.headers["Location"])
    assert found is not None
    article_id = int(found.group(1))
    page = await c.get(f"/admin/articles/{article_id}")
    assert page.status == 200 and b'data-status="draft"' in page.body
    assert b"<h2>Kilns</h2>" in page.body  # the stored, sanitised body as preview

    duplicate = await c.post("/admin/articles/new", form(c, source_id))
    assert duplicate.status == 409 and b"ARTICLE_TITLE_EXISTS" in duplicate.body

    before = await c.server.ctx.db.community_articles.find_one({"_id": article_id})
    assert before is not None
    to_minute = iso_utc(as_utc(before["pub_at"]).replace(second=0, microsecond=0))
    saved = await c.post(
        f"/admin/articles/{article_id}",
        form(c, source_id, weight="99", title="Kiln notes II", pub_at=to_minute),
    )
    assert saved.status == 303, saved.body
    doc = await c.server.ctx.db.community_articles.find_one({"_id": article_id})
    assert doc is not None and (doc["weight"], doc["title"]) == (99, "Kiln notes II")
    assert doc["pub_at"] == before["pub_at"]  # shown to the minute, sent back unchanged: kept

    assert (await c.post(f"/admin/articles/{article_id}/publish")).status == 303
    assert (await c.server.ctx.db.community_articles.find_one({"_id": article_id}) or {})[
        "status"
    ] == "online"
    assert (await c.server.call("GET", f"/api/v1/articles/{article_id}")).status == 200
    withdrawn = await c.post(f"/admin/articles/{article_id}/withdraw", {"back": "/admin/articles"})
    assert withdrawn.status == 303 and withdrawn.headers["Location"] == "/admin/articles"
    assert (await c.server.ctx.db.community_articles.find_one({"_id": article_id}) or {})[
        "status"
    ] == "offline"
    again = await c.post(f"/admin/articles/{article_id}/withdraw")
    assert again.status == 303  # already offline: nothing changes, nothing is audited

    actions = [
        e["action"]
        async for e in c.server.ctx.db.audit.find({"target": f"article:{article_id}"}).sort("_id", 1)
    ]
    assert actions == ["article.create", "article.update", "article.publish", "article.withdraw"]
    assert await c.server.ctx.db.audit.count_documents({"action": "article_source.create"}) == 1

    offline_list = await c.get("/admin/articles?status=offline")
    assert f'data-article="{article_id}"'.encode() in offline_list.body


async def test_new_article_published_later_is_scheduled(admin_client: AdminClient) -> None:
    c = admin_client
    await c.sign_in()
    source_id = await make_source(c)
    later = iso_utc(from_ms(c.server.clock.now_ms() + 60_000))
    created = await c.post("/admin/articles/new", form(c, source_id, pub_at=later, publish="1"))
    assert created.status == 303
    doc = await c.server.ctx.db.community_articles.find_one({})
    assert doc is not None and doc["status"] == "scheduled"


async def test_head_image_upload(admin_client: AdminClient) -> None:
    c = admin_client
    await c.sign_in()
    source_id = await make_source(c)
    await c.post("/admin/articles/new", form(c, source_id))
    doc = await c.server.ctx.db.community_articles.find_one({})
    assert doc is not None
    article_id = int(doc["_id"])
    await c.get(f"/admin/articles/{article_id}")
    uploaded = await c.upload(f"/admin/articles/{article_id}/head-image", png_bytes(30, 20))
    assert uploaded.status == 303, uploaded.body
    doc = await c.server.ctx.db.community_articles.find_one({"_id": article_id})
    assert doc is not None and "/media/" in doc["head_img"]
    page = await c.get(f"/admin/articles/{article_id}")
    assert b'class="head-img"' in page.body
    refused = await c.upload(
        f"/admin/articles/{article_id}/head-image", b"GIF89a not really", json_reply=True
    )
    assert refused.status == 400


async def test_source_errors_and_refusals(admin_client: AdminClient) -> None:
    c = admin_client
    assert (await c.get("/admin/articles")).status == 302  # not signed in
    await c.sign_in()
    await make_source(c, "Same")
    dup = await c.post("/admin/article-sources", {"name": "Same"})
    assert dup.status == 303  # the error is flashed on the list
    flashed = await c.get("/admin/articles")
    assert (
        b"Same" in flashed.body and await c.server.ctx.db.community_article_sources.count_documents({}) == 1
    )
    assert (await c.get("/admin/articles/999")).status == 404
    assert (await c.post("/admin/articles/999", {"title": "x"})).status == 404
    forged = await c.post("/admin/article-sources", {"name": "x", "_xsrf": "forged"})
    assert forged.status == 403


async def test_the_new_article_form_starts_at_the_app_clock(admin_client: AdminClient) -> None:
    c = admin_client
    await c.sign_in()
    c.server.clock.set(c.server.clock.now_ms() - 86_400_000)  # a day back: the form follows it
    page = await c.get("/admin/articles/new")
    shanghai = datetime.timezone(datetime.timedelta(hours=8))  # the default BUSINESS_TZ's offset
    expected = from_ms(c.server.clock.now_ms()).astimezone(shanghai).strftime("%Y-%m-%dT%H:%M")
    assert f'name="pub_at" value="{expected}"'.encode() in page.body
