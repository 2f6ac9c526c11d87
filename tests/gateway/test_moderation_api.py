"""Reports and moderation over HTTP on the real MongoDB and Redis: who may call what (a normal user
gets 403 on every admin route), reports (409 on a second, 400 on one's own, 403 when blocked, 429
past the rate), the queue, resolutions, blocks and erase, each admin write with one audit entry."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backoffice.actions import Actor
from gateway import rest_moderation
from tests.gateway.conftest import AppServer

ADMIN_ROUTES = [
    ("GET", "/api/v1/admin/community/reports", None),
    ("POST", "/api/v1/admin/community/reports/1/resolve", {"action": "dismiss", "reason": "x"}),
    ("POST", "/api/v1/admin/community/posts/1/hide", {"reason": "x"}),
    ("POST", "/api/v1/admin/community/posts/1/unhide", {"reason": "x"}),
    ("POST", "/api/v1/admin/community/posts/1/delete", {"reason": "x"}),
    ("POST", "/api/v1/admin/community/comments/1/hide", {"reason": "x"}),
    ("POST", "/api/v1/admin/community/comments/1/unhide", {"reason": "x"}),
    ("POST", "/api/v1/admin/community/comments/1/delete", {"reason": "x"}),
    ("PUT", "/api/v1/admin/community/users/1/block", {"reason": "x"}),
    ("DELETE", "/api/v1/admin/community/users/1/block", None),
    ("POST", "/api/v1/admin/community/users/1/erase", {"reason": "x"}),
]


@pytest.fixture
async def app(app_server: AppServer) -> AsyncIterator[AppServer]:
    await rest_moderation.start(app_server.ctx)  # indexes, as start_community does
    yield app_server


async def post_by(app: AppServer, user_id: int, text: str = "hello", post_id: int | None = None) -> int:
    """A post document as the feed stores it (the feed's own REST is tested with the feed)."""
    found = await app.ctx.db.community_posts.find_one(sort=[("_id", -1)])
    new_id = post_id or (int(found["_id"]) + 1 if found else 1)
    await app.ctx.db.community_posts.insert_one(
        {
            "_id": new_id,
            "user_id": user_id,
            "text": text,
            "images": [],
            "hidden": False,
            "hidden_reason": "",
            "created_at": datetime.datetime.now(datetime.UTC),
            "likes": 0,
            "comments": 0,
            "views": 0,
        }
    )
    return new_id


async def found(collection: Any, query: dict[str, Any]) -> dict[str, Any]:
    """The one document the test expects to be there."""
    doc: dict[str, Any] | None = await collection.find_one(query)
    assert doc is not None, query
    return doc


async def audit(app: AppServer, action: str) -> list[dict[str, Any]]:
    return [e async for e in app.ctx.db.audit.find({"action": action}).sort("_id", 1)]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_every_admin_route_refuses_a_normal_user_and_the_signed_out(
    app: AppServer, method: str, path: str, body: Any
) -> None:
    _user, token = await app.register()
    kwargs: dict[str, Any] = {} if body is None else {"body": body}
    refused = await app.call(method, path, token=token, **kwargs)
    assert (refused.status, refused.code) == (403, "FORBIDDEN"), refused.body
    anonymous = await app.call(method, path, **kwargs)
    assert (anonymous.status, anonymous.code) == (401, "UNAUTHORIZED"), anonymous.body
    assert await app.ctx.db.audit.count_documents({"action": {"$regex": "^community"}}) == 0


async def test_report_then_queue_then_dismiss_with_one_audit_entry(app: AppServer) -> None:
    alice, _alice_token = await app.register("alice")
    _bob, bob_token = await app.register("bob")
    _carol, carol_token = await app.register("carol")
    post = await post_by(app, alice, "<script>alert(1)</script> cheap watches")
    made = await app.call(
        "POST",
        "/api/v1/reports",
        {"target": f"post:{post}", "reason": "spam", "note": "ads"},
        token=bob_token,
    )
    assert made.status == 201, made.body
    assert made.json["status"] == "open"
    again = await app.call(
        "POST", "/api/v1/reports", {"target": f"post:{post}", "reason": "abuse"}, token=bob_token
    )
    assert (again.status, again.code) == (409, "ALREADY_REPORTED")
    assert (
        await app.call(
            "POST", "/api/v1/reports", {"target": f"post:{post}", "reason": "abuse"}, token=carol_token
        )
    ).status == 201

    admin = await app.admin_token()
    queue = await app.call("GET", "/api/v1/admin/community/reports?status=open", token=admin)
    assert queue.status == 200, queue.body
    [group] = queue.json["items"]
    assert (group["target"], group["count"], group["reasons"]) == (f"post:{post}", 2, {"spam": 1, "abuse": 1})
    assert group["content"]["text"] == "<script>alert(1)</script> cheap watches"  # stored as written
    assert group["target_user"] == {"user_id": alice, "name": "alice"}
    assert [r["name"] for r in group["reporters"]] == ["bob", "carol"]
    assert queue.json["next_cursor"] is None

    resolved = await app.call(
        "POST",
        f"/api/v1/admin/community/reports/{group['report_id']}/resolve",
        {"action": "dismiss", "reason": "not spam"},
        token=admin,
    )
    assert resolved.status == 200, resolved.body
    assert (resolved.json["reports"], resolved.json["changed"]) == (2, False)
    assert (await app.call("GET", "/api/v1/admin/community/reports", token=admin)).json["items"] == []
    dismissed = await app.call("GET", "/api/v1/admin/community/reports?status=dismissed", token=admin)
    assert dismissed.json["items"][0]["resolution"] == "dismiss: not spam"
    [entry] = await audit(app, "community.report_resolve")
    assert entry["after"]["reason"] == "not spam" and entry["admin_username"] == "admin"
    # Nothing left open: the same decision again records nothing.
    await app.call(
        "POST",
        f"/api/v1/admin/community/reports/{group['report_id']}/resolve",
        {"action": "dismiss", "reason": "not spam"},
        token=admin,
    )
    assert len(await audit(app, "community.report_resolve")) == 1


async def test_report_refusals(app: AppServer) -> None:
    alice, alice_token = await app.register()
    _bob, bob_token = await app.register()
    post = await post_by(app, alice)
    cases = [
        ({"target": f"post:{post}", "reason": "spam"}, alice_token, 400, "VALIDATION"),  # her own
        ({"target": "post:999", "reason": "spam"}, bob_token, 404, "NOT_FOUND"),
        ({"target": "article:1", "reason": "spam"}, bob_token, 400, "VALIDATION"),
        ({"target": f"post:{post}", "reason": "boring"}, bob_token, 400, "VALIDATION"),
        ({"target": f"post:{post}", "reason": "spam", "note": "n" * 256}, bob_token, 400, "VALIDATION"),
        ({"target": f"post:{post}", "reason": "spam", "extra": 1}, bob_token, 400, "VALIDATION"),
        ({"target": f"post:{post}", "reason": "spam"}, None, 401, "UNAUTHORIZED"),
    ]
    for body, token, status, code in cases:
        answer = await app.call("POST", "/api/v1/reports", body, token=token)
        assert (answer.status, answer.code) == (status, code), (body, answer.body)
    bad_json = await app.call("POST", "/api/v1/reports", raw=b"{", token=bob_token)
    assert bad_json.status == 400


async def test_reports_are_rate_limited_with_retry_after(app: AppServer) -> None:
    _reporter, token = await app.register()
    authors = [(await app.register())[0] for _ in range(3)]
    posts = [await post_by(app, authors[i % 3]) for i in range(21)]
    statuses = []
    for post in posts:
        answer = await app.call(
            "POST", "/api/v1/reports", {"target": f"post:{post}", "reason": "spam"}, token=token
        )
        statuses.append(answer.status)
    assert statuses[:20] == [201] * 20
    assert statuses[20] == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.code == "RATE_LIMITED"


async def test_block_refuses_reports_until_lifted_and_is_audited(app: AppServer) -> None:
    alice, _ = await app.register()
    bob, bob_token = await app.register()
    post = await post_by(app, alice)
    admin = await app.admin_token()
    blocked = await app.call(
        "PUT",
        f"/api/v1/admin/community/users/{bob}/block",
        {"reason": "abusive reports", "days": 7},
        token=admin,
    )
    assert blocked.status == 200, blocked.body
    assert blocked.json["blocked"] is True and blocked.json["until"].endswith("Z")
    refused = await app.call(
        "POST", "/api/v1/reports", {"target": f"post:{post}", "reason": "spam"}, token=bob_token
    )
    assert (refused.status, refused.code) == (403, "COMMUNITY_BLOCKED")
    forever = await app.call(
        "PUT", f"/api/v1/admin/community/users/{bob}/block", {"reason": "again"}, token=admin
    )
    assert forever.json["until"] is None
    lifted = await app.call("DELETE", f"/api/v1/admin/community/users/{bob}/block", token=admin)
    assert lifted.json == {"user_id": bob, "blocked": False, "changed": True}
    again = await app.call("DELETE", f"/api/v1/admin/community/users/{bob}/block", token=admin)
    assert again.json["changed"] is False
    assert (
        await app.call(
            "POST", "/api/v1/reports", {"target": f"post:{post}", "reason": "spam"}, token=bob_token
        )
    ).status == 201
    blocks = await audit(app, "community.block")
    assert [b["after"]["reason"] for b in blocks] == ["abusive reports", "again"]
    assert blocks[1]["before"]["reason"] == "abusive reports"
    assert len(await audit(app, "community.unblock")) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "x", "days": 0},
        {"reason": "x", "days": 3651},
        {"reason": "x", "days": "7"},
    ],
)
async def test_block_input_is_validated(app: AppServer, body: dict[str, Any]) -> None:
    bob, _ = await app.register()
    admin = await app.admin_token()
    answer = await app.call("PUT", f"/api/v1/admin/community/users/{bob}/block", body, token=admin)
    assert (answer.status, answer.code) == (400, "VALIDATION"), answer.body
    assert await app.ctx.db.community_blocks.count_documents({}) == 0


async def test_unknown_users_reports_and_content_are_404(app: AppServer) -> None:
    admin = await app.admin_token()
    for method, path, body in [
        ("PUT", "/api/v1/admin/community/users/987654/block", {"reason": "x"}),
        ("POST", "/api/v1/admin/community/users/987654/erase", {"reason": "x"}),
        ("POST", "/api/v1/admin/community/reports/987654/resolve", {"action": "hide", "reason": "x"}),
        ("POST", "/api/v1/admin/community/posts/987654/hide", {"reason": "x"}),
        ("POST", "/api/v1/admin/community/comments/987654/delete", {"reason": "x"}),
    ]:
        answer = await app.call(method, path, body, token=admin)
        assert (answer.status, answer.code) == (404, "NOT_FOUND"), (path, answer.body)


async def test_bad_queue_queries_are_400(app: AppServer) -> None:
    admin = await app.admin_token()
    for query in ("status=everything", "cursor=%%%", "cursor=WzFd1", "limit=0", "limit=51"):
        answer = await app.call("GET", f"/api/v1/admin/community/reports?{query}", token=admin)
        assert answer.status == 400, (query, answer.body)


async def test_a_hidden_comment_leaves_the_list_and_the_counter_and_comes_back(app: AppServer) -> None:
    alice, alice_token = await app.register()
    _bob, bob_token = await app.register()
    post = await post_by(app, alice)
    made = await app.call("POST", f"/api/v1/posts/{post}/comments", {"text": "rude words"}, token=bob_token)
    assert made.status == 201, made.body
    comment = made.json["id"]
    kept = await app.call("POST", f"/api/v1/posts/{post}/comments", {"text": "kind words"}, token=bob_token)
    assert kept.status == 201
    reported = await app.call(
        "POST", "/api/v1/reports", {"target": f"comment:{comment}", "reason": "abuse"}, token=alice_token
    )
    assert reported.status == 201, reported.body
    admin = await app.admin_token()
    hidden = await app.call(
        "POST",
        f"/api/v1/admin/community/reports/{reported.json['id']}/resolve",
        {"action": "hide", "reason": "insults"},
        token=admin,
    )
    assert hidden.status == 200, hidden.body
    assert (hidden.json["changed"], hidden.json["reports"]) == (True, 1)
    listed = await app.call("GET", f"/api/v1/posts/{post}/comments")
    assert [c["id"] for c in listed.json["items"]] == [kept.json["id"]]
    assert (await found(app.ctx.db.community_posts, {"_id": post}))["comments"] == 1
    assert (await found(app.ctx.db.community_comments, {"_id": comment}))["hidden_reason"] == "insults"
    shown = await app.call(
        "POST", f"/api/v1/admin/community/comments/{comment}/unhide", {"reason": "appeal"}, token=admin
    )
    assert shown.json["changed"] is True
    assert (await found(app.ctx.db.community_posts, {"_id": post}))["comments"] == 2
    deleted = await app.call(
        "POST",
        f"/api/v1/admin/community/comments/{comment}/delete",
        {"reason": "on second thought"},
        token=admin,
    )
    assert deleted.json["changed"] is True
    assert await app.ctx.db.community_comments.count_documents({"_id": comment}) == 0
    assert (await found(app.ctx.db.community_posts, {"_id": post}))["comments"] == 1
    assert [
        e["action"] for e in await app.ctx.db.audit.find({"action": {"$regex": "^community"}}).to_list()
    ] == [
        "community.report_resolve",
        "community.comment_unhide",
        "community.comment_delete",
    ]


async def real_post(app: AppServer, token: str, text: str, topic_id: int | None = None) -> int:
    body: dict[str, Any] = {"text": text} | ({"topic_id": topic_id} if topic_id else {})
    made = await app.call("POST", "/api/v1/posts", body, token=token)
    assert made.status == 201, made.body
    return int(made.json["id"])


async def feed_ids(app: AppServer, path: str = "/api/v1/posts?feed=latest") -> list[int]:
    answer = await app.call("GET", path)
    assert answer.status == 200, answer.body
    return [int(p["id"]) for p in answer.json["items"]]


async def test_a_hidden_post_leaves_the_feeds_and_the_counters_and_comes_back(app: AppServer) -> None:
    alice, alice_token = await app.register()
    _bob, bob_token = await app.register()
    admin = await app.admin_token()
    assert app.ctx.admin_actions is not None
    topic = await app.ctx.admin_actions.community_topic_create(Actor(1, "admin", True), "Watches", "")
    spam = await real_post(app, alice_token, "cheap watches", int(topic["_id"]))
    fine = await real_post(app, alice_token, "a fine day", int(topic["_id"]))
    assert await feed_ids(app) == [fine, spam]
    reported = await app.call(
        "POST", "/api/v1/reports", {"target": f"post:{spam}", "reason": "spam"}, token=bob_token
    )
    assert reported.status == 201, reported.body
    resolved = await app.call(
        "POST",
        f"/api/v1/admin/community/reports/{reported.json['id']}/resolve",
        {"action": "hide", "reason": "advertising"},
        token=admin,
    )
    assert resolved.status == 200, resolved.body
    assert (resolved.json["changed"], resolved.json["reports"]) == (True, 1)
    assert await feed_ids(app) == [fine]
    assert await feed_ids(app, f"/api/v1/posts?feed=topic&topic_id={topic['_id']}") == [fine]
    assert await feed_ids(app, f"/api/v1/profiles/{alice}/posts") == [fine]
    assert (await app.call("GET", f"/api/v1/posts/{spam}")).status == 404
    assert (await app.call("GET", f"/api/v1/profiles/{alice}")).json["posts"] == 1
    assert (await app.call("GET", f"/api/v1/topics/{topic['_id']}")).json["posts"] == 1
    # Hidden content cannot be reported any more; shown again it is back everywhere.
    again = await app.call(
        "POST", "/api/v1/reports", {"target": f"post:{spam}", "reason": "spam"}, token=bob_token
    )
    assert again.status == 404
    shown = await app.call(
        "POST", f"/api/v1/admin/community/posts/{spam}/unhide", {"reason": "appeal"}, token=admin
    )
    assert shown.json["changed"] is True
    assert await feed_ids(app) == [fine, spam]
    assert (await app.call("GET", f"/api/v1/profiles/{alice}")).json["posts"] == 2
    assert (await app.call("GET", f"/api/v1/topics/{topic['_id']}")).json["posts"] == 2
    deleted = await app.call(
        "POST", f"/api/v1/admin/community/posts/{spam}/delete", {"reason": "repeat offence"}, token=admin
    )
    assert deleted.json["changed"] is True
    assert await feed_ids(app) == [fine]
    assert await app.ctx.db.community_posts.count_documents({"_id": spam}) == 0
    assert (await app.call("GET", f"/api/v1/profiles/{alice}")).json["posts"] == 1


async def test_erase_removes_a_users_community_data_in_one_action(app: AppServer) -> None:
    alice, alice_token = await app.register()
    bob, bob_token = await app.register()
    admin = await app.admin_token()
    mine = await real_post(app, alice_token, "mine")
    bobs = await real_post(app, bob_token, "bob's")
    assert (await app.call("PUT", f"/api/v1/profiles/{bob}/follow", token=alice_token)).status == 200
    assert (await app.call("PUT", f"/api/v1/profiles/{alice}/follow", token=bob_token)).status == 200
    assert (await app.call("PUT", f"/api/v1/posts/{bobs}/like", token=alice_token)).status == 200
    assert (
        await app.call("POST", f"/api/v1/posts/{bobs}/comments", {"text": "hi"}, token=alice_token)
    ).status == 201
    assert (
        await app.call("POST", f"/api/v1/posts/{mine}/comments", {"text": "yo"}, token=bob_token)
    ).status == 201
    assert (
        await app.call(
            "POST", "/api/v1/reports", {"target": f"post:{bobs}", "reason": "other"}, token=alice_token
        )
    ).status == 201
    assert (
        await app.call(
            "POST", "/api/v1/reports", {"target": f"post:{mine}", "reason": "spam"}, token=bob_token
        )
    ).status == 201
    erased = await app.call(
        "POST", f"/api/v1/admin/community/users/{alice}/erase", {"reason": "privacy request"}, token=admin
    )
    assert erased.status == 200, erased.body
    counts = erased.json["erased"]
    assert counts["reports"] == 1 and counts["reports_closed"] == 1
    db = app.ctx.db
    assert await db.community_posts.count_documents({"user_id": alice}) == 0
    assert await db.community_comments.count_documents({"user_id": alice}) == 0
    assert await db.community_likes.count_documents({"user_id": alice}) == 0
    assert (
        await db.community_follows.count_documents({"$or": [{"follower": alice}, {"followee": alice}]}) == 0
    )
    assert await db.community_reports.count_documents({"reporter": alice}) == 0
    assert await db.community_comments.count_documents({"target": f"post:{mine}"}) == 0  # bob's comment on it
    post = await found(db.community_posts, {"_id": bobs})
    assert (post["likes"], post["comments"]) == (0, 0)
    bob_profile = (await app.call("GET", f"/api/v1/profiles/{bob}")).json
    assert (bob_profile["followers"], bob_profile["following"]) == (0, 0)
    assert await feed_ids(app) == [bobs]
    [entry] = [e async for e in db.audit.find({"action": "community.erase"})]
    assert entry["target"] == f"user:{alice}" and entry["after"]["reason"] == "privacy request"


async def test_concurrent_hides_and_unhides_move_the_counters_once(app: AppServer) -> None:
    alice, alice_token = await app.register()
    reporters = [await app.register() for _ in range(8)]
    admin = await app.admin_token()
    post = await real_post(app, alice_token, "contested")
    kept = await real_post(app, alice_token, "kept")
    reports = await asyncio.gather(
        *(
            app.call("POST", "/api/v1/reports", {"target": f"post:{post}", "reason": "spam"}, token=token)
            for _user, token in reporters
        )
    )
    assert [r.status for r in reports] == [201] * 8
    hides = await asyncio.gather(
        *(
            app.call(
                "POST",
                f"/api/v1/admin/community/reports/{r.json['id']}/resolve",
                {"action": "hide", "reason": "spam wave"},
                token=admin,
            )
            for r in reports
        )
    )
    assert all(h.status == 200 for h in hides)
    assert sum(h.json["changed"] for h in hides) == 1
    assert sum(h.json["reports"] for h in hides) == 8
    assert (await app.call("GET", f"/api/v1/profiles/{alice}")).json["posts"] == 1
    unhides = await asyncio.gather(
        *(
            app.call(
                "POST", f"/api/v1/admin/community/posts/{post}/unhide", {"reason": "wave over"}, token=admin
            )
            for _ in range(8)
        )
    )
    assert sum(u.json["changed"] for u in unhides) == 1
    visible = await app.ctx.db.community_posts.count_documents({"user_id": alice, "hidden": False})
    assert (await app.call("GET", f"/api/v1/profiles/{alice}")).json["posts"] == visible == 2
    assert await feed_ids(app) == [kept, post]
    assert await app.ctx.db.audit.count_documents({"action": "community.post_unhide"}) == 1
