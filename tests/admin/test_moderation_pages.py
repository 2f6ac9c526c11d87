"""The community back office (/admin/community): the report queue with the reported text escaped,
resolve with a required reason (audited), the posts and comments lists, a user's page (block,
unblock, erase with confirmation), and in headless chromium at 1280×800: report → queue → hide
with a reason → the audit entry."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from gateway import rest_moderation
from tests.admin.conftest import AdminClient, AppServer
from tests.admin.test_browser import XSS, Tab, browser, tab
from tests.gateway.test_feed_api import multipart, png

__all__ = ["browser", "tab"]


async def post_by(server: AppServer, user_id: int, text: str, *, images: list[str] | None = None) -> int:
    """A post document as the feed stores it."""
    found = await server.ctx.db.community_posts.find_one(sort=[("_id", -1)])
    post_id = int(found["_id"]) + 1 if found else 1
    await server.ctx.db.community_posts.insert_one(
        {
            "_id": post_id,
            "user_id": user_id,
            "text": text,
            "cover": "",
            "images": images or [],
            "topic_id": None,
            "place": "",
            "link": None,
            "hidden": False,
            "hidden_reason": "",
            "created_at": datetime.datetime.now(datetime.UTC),
            "likes": 0,
            "comments": 0,
            "views": 0,
        }
    )
    return post_id


async def reported_post(server: AppServer, text: str = XSS, *, image: bool = False) -> tuple[int, int, int]:
    """(author, reporter, post): a post (with an image if asked) reported by another user, all
    through the REST API."""
    await rest_moderation.start(server.ctx)
    author, author_token = await server.register()
    reporter, token = await server.register()
    if image:
        body, kind = multipart({"text": text}, [("images", png(size=(700, 500)))])
        made = await server.call(
            "POST", "/api/v1/posts", raw=body, token=author_token, headers={"Content-Type": kind}
        )
    else:
        made = await server.call("POST", "/api/v1/posts", {"text": text}, token=author_token)
    assert made.status == 201, made.body
    post = int(made.json["id"])
    answer = await server.call(
        "POST", "/api/v1/reports", {"target": f"post:{post}", "reason": "abuse", "note": XSS}, token=token
    )
    assert answer.status == 201, answer.body
    return author, reporter, post


async def found(collection: Any, query: dict[str, Any]) -> dict[str, Any]:
    """The one document the test expects to be there."""
    doc: dict[str, Any] | None = await collection.find_one(query)
    assert doc is not None, query
    return doc


async def audit(server: AppServer, action: str) -> list[dict[str, Any]]:
    return [e async for e in server.ctx.db.audit.find({"action": action}).sort("_id", 1)]


async def test_pages_refuse_non_admins(admin_client: AdminClient) -> None:
    for path in (
        "/admin/community",
        "/admin/community/posts",
        "/admin/community/comments",
        "/admin/community/topics",
    ):
        answer = await admin_client.get(path)
        assert answer.status == 302 and "/admin/login" in answer.headers["Location"], path


async def test_queue_shows_reported_text_escaped_and_dismiss_needs_a_reason(
    admin_client: AdminClient,
) -> None:
    server = admin_client.server
    _author, _reporter, post = await reported_post(server)
    await admin_client.sign_in()
    page = await admin_client.get("/admin/community")
    assert page.status == 200
    html = page.body.decode()
    assert f'data-target="post:{post}"' in html
    assert "<script>window.__xss=1</script>" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "Community 社区" in html
    report_id = (await found(server.ctx.db.community_reports, {}))["_id"]
    refused = await admin_client.post(
        f"/admin/community/reports/{report_id}/resolve", {"action": "dismiss", "reason": ""}
    )
    assert refused.status == 303
    assert (await found(server.ctx.db.community_reports, {}))["status"] == "open"
    done = await admin_client.post(
        f"/admin/community/reports/{report_id}/resolve", {"action": "dismiss", "reason": "satire"}
    )
    assert done.status == 303
    assert (await found(server.ctx.db.community_reports, {}))["status"] == "dismissed"
    [entry] = await audit(server, "community.report_resolve")
    assert entry["after"]["reason"] == "satire" and entry["after"]["action"] == "dismiss"
    later = await admin_client.get("/admin/community?status=dismissed")
    assert "dismiss: satire" in later.body.decode()


async def test_posts_and_comments_lists_show_hidden_ones(admin_client: AdminClient) -> None:
    server = admin_client.server
    author, _ = await server.register()
    await post_by(server, author, "visible one")
    hidden = await post_by(server, author, "hidden one")
    await server.ctx.db.community_posts.update_one(
        {"_id": hidden}, {"$set": {"hidden": True, "hidden_reason": "spam"}}
    )
    await server.ctx.db.community_comments.insert_one(
        {"_id": 1, "target": "post:1", "user_id": author, "text": XSS, "hidden": False, "created_at": None}
    )
    await admin_client.sign_in()
    posts = (await admin_client.get("/admin/community/posts")).body.decode()
    assert "visible one" in posts and "hidden one" in posts and "hidden 已隐藏" in posts
    only_hidden = (await admin_client.get("/admin/community/posts?hidden=1")).body.decode()
    assert "hidden one" in only_hidden and "visible one" not in only_hidden
    comments = (await admin_client.get("/admin/community/comments")).body.decode()
    assert 'data-comment="1"' in comments and "<script>window.__xss" not in comments


async def test_user_page_blocks_unblocks_and_erases_with_confirmation(admin_client: AdminClient) -> None:
    server = admin_client.server
    author, reporter, _post = await reported_post(server, "mine")
    await admin_client.sign_in()
    page = (await admin_client.get(f"/admin/community/users/{author}")).body.decode()
    assert "1 post(s)" in page and "Not blocked" in page
    await admin_client.post(f"/admin/community/users/{author}/block", {"reason": "trolling", "days": "3"})
    assert (await found(server.ctx.db.community_blocks, {"_id": author}))["reason"] == "trolling"
    page = (await admin_client.get(f"/admin/community/users/{author}")).body.decode()
    assert "Blocked" in page and "trolling" in page
    await admin_client.post(f"/admin/community/users/{author}/unblock", {"reason": "appeal"})
    assert await server.ctx.db.community_blocks.find_one({"_id": author}) is None
    assert [e["action"] for e in await audit(server, "community.block")] == ["community.block"]
    assert len(await audit(server, "community.unblock")) == 1
    # The erase needs the box ticked; the reporter's own reports go with their data.
    await admin_client.post(f"/admin/community/users/{reporter}/erase", {"reason": "GDPR request"})
    assert await server.ctx.db.community_reports.count_documents({"reporter": reporter}) == 1
    assert await audit(server, "community.erase") == []
    assert (
        "/admin/community/users/999999"
        and (await admin_client.get("/admin/community/users/999999")).status == 404
    )


@pytest.mark.browser
async def test_report_then_hide_from_the_queue_in_a_browser(tab: Tab) -> None:
    server = tab.server
    author, _reporter, post = await reported_post(server, image=True)
    dialogs: list[Any] = []
    tab.page.on("dialog", lambda dialog: dialogs.append(dialog))
    await tab.page.set_viewport_size({"width": 1280, "height": 800})
    await tab.sign_in()
    await tab.page.goto(f"{server.base_url}/admin/community")
    row = tab.page.locator(f"tr[data-target='post:{post}']")
    assert XSS.split("<img")[0] in await row.locator(".reported-text").inner_text()
    thumb = row.locator("img.thumb")
    assert await thumb.count() == 1
    await thumb.evaluate("img => img.decode()")
    assert await thumb.evaluate("img => img.naturalWidth") > 0
    assert "w320.webp" in await thumb.evaluate("img => img.currentSrc")
    await tab.screenshot("community_queue")
    await row.locator("input[name=reason]").fill("abusive language")
    await row.locator("button[value=hide]").click()
    await tab.page.wait_for_selector(".flash.ok")
    assert "1 report(s) closed" in await tab.page.locator(".flash").inner_text()
    hidden = await found(server.ctx.db.community_posts, {"_id": post})
    assert (hidden["hidden"], hidden["hidden_reason"]) == (True, "abusive language")
    feed = await server.call("GET", "/api/v1/posts?feed=latest")
    assert post not in [p["id"] for p in feed.json["items"]]
    assert await tab.page.locator(f"tr[data-target='post:{post}']").count() == 0
    await tab.page.goto(f"{server.base_url}/admin/audit")
    assert "community.report_resolve" in await tab.page.locator("main").inner_text()
    [entry] = await audit(server, "community.report_resolve")
    assert (entry["after"]["action"], entry["after"]["reason"], entry["after"]["changed"]) == (
        "hide",
        "abusive language",
        True,
    )
    assert entry["before"]["content"]["user_id"] == author
    await tab.screenshot("community_audit")
    await tab.page.goto(f"{server.base_url}/admin/community/users/{author}")
    assert "hidden 已隐藏" in await tab.page.locator(f"tr[data-post='{post}']").inner_text()
    await tab.screenshot("community_user")
    assert dialogs == []
    tab.assert_clean()


async def test_topics_are_created_and_edited_through_the_feeds_admin_actions(
    admin_client: AdminClient,
) -> None:
    server = admin_client.server
    await admin_client.sign_in()
    page = (await admin_client.get("/admin/community/topics")).body.decode()
    assert "No topics yet" in page and "cannot be written" not in page
    made = await admin_client.post("/admin/community/topics/new", {"title": XSS[:32], "intro": "about"})
    assert made.status == 303
    topic = await found(server.ctx.db.community_topics, {})
    assert topic["title"] == XSS[:32]
    page = (await admin_client.get("/admin/community/topics")).body.decode()
    assert "<script>" not in page
    await admin_client.post(
        f"/admin/community/topics/{topic['_id']}",
        {"title": "Watches", "intro": "all about them", "hidden": "1"},
    )
    edited = await found(server.ctx.db.community_topics, {"_id": topic["_id"]})
    assert (edited["title"], edited["intro"], edited["hidden"]) == ("Watches", "all about them", True)
    refused = await admin_client.post("/admin/community/topics/new", {"title": ""})
    assert refused.status == 303 and await server.ctx.db.community_topics.count_documents({}) == 1
    actions = [
        e["action"] async for e in server.ctx.db.audit.find({"action": {"$regex": "^community.topic"}})
    ]
    assert actions == ["community.topic_create", "community.topic_update"]
