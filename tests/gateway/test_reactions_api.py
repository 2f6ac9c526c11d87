"""Views, likes, comments and collections over HTTP on the real MongoDB and Redis, and the live counts
over the websocket: two sockets watch a post, a like over REST reaches the other as a `counts` frame,
a burst of likes is coalesced, bad topics and the 65th topic are refused, rate limits answer 429
with Retry-After, and blocked users cannot comment."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import yaml

from backoffice.actions import Actor
from community.rules import RateLimit
from engine.book.errors import GavelError
from gateway import community_live, rest_reactions
from gateway.rest_reactions import reactions_of
from gateway.ws import MAX_TOPICS
from persistence.community.limits import RedisRateLimiter
from tests.gateway.conftest import AppServer
from tests.gateway.test_ws import Bidder
from web.http import JsonHandler


async def seed(server: AppServer, author: int) -> None:
    db = server.ctx.db
    now = datetime.datetime.now(datetime.UTC)
    await db.community_posts.insert_one(
        {
            "_id": 1,
            "user_id": author,
            "text": "my first vase",
            "cover": "",
            "images": [],
            "topic_id": None,
            "place": "",
            "link": None,
            "hidden": False,
            "hidden_reason": "",
            "created_at": now,
            "likes": 0,
            "comments": 0,
            "views": 0,
        }
    )
    await db.community_posts.insert_one({"_id": 2, "user_id": author, "text": "hidden", "hidden": True})
    await db.community_articles.insert_one(
        {
            "_id": 3,
            "title": "Chips",
            "head_img": "",
            "status": "online",
            "pub_at": now - datetime.timedelta(hours=1),
            "offline_at": None,
            "likes": 0,
            "comments": 0,
            "views": 0,
            "collects": 0,
        }
    )
    await db.shop_courses.insert_one({"_id": 7, "name": "Go in depth", "image": "", "status": "online"})


@pytest.fixture
async def server(app_server: AppServer) -> AsyncIterator[AppServer]:
    tasks = await rest_reactions.start(app_server.ctx)
    yield app_server
    for task in tasks:
        task.cancel()


async def users(server: AppServer, count: int) -> list[tuple[int, str]]:
    return [await server.register() for _ in range(count)]


async def test_views_count_once_per_user_and_never_signed_out(server: AppServer) -> None:
    [(author, _), (_, token)] = await users(server, 2)
    await seed(server, author)
    first = await server.call("POST", "/api/v1/posts/1/view", token=token)
    assert (first.status, first.json) == (200, {"views": 1, "counted": True})
    again = await server.call("POST", "/api/v1/posts/1/view", token=token)
    assert again.json == {"views": 1, "counted": False}
    anonymous = await server.call("POST", "/api/v1/articles/3/view")
    assert anonymous.json == {"views": 0, "counted": False}
    assert (await server.call("POST", "/api/v1/posts/2/view", token=token)).code == "NOT_FOUND"
    assert (await server.call("POST", "/api/v1/articles/99/view")).status == 404


async def test_likes_toggle_with_put_and_delete(server: AppServer) -> None:
    [(author, _), (_, alice), (_, bob)] = await users(server, 3)
    await seed(server, author)
    assert (await server.call("PUT", "/api/v1/posts/1/like")).code == "UNAUTHORIZED"
    liked = await server.call("PUT", "/api/v1/posts/1/like", token=alice)
    assert (liked.status, liked.json) == (200, {"liked": True, "likes": 1})
    assert (await server.call("PUT", "/api/v1/posts/1/like", token=alice)).json["likes"] == 1
    assert (await server.call("PUT", "/api/v1/posts/1/like", token=bob)).json["likes"] == 2
    unliked = await server.call("DELETE", "/api/v1/posts/1/like", token=alice)
    assert unliked.json == {"liked": False, "likes": 1}
    assert (await server.call("PUT", "/api/v1/articles/3/like", token=bob)).json == {
        "liked": True,
        "likes": 1,
    }
    assert (await server.call("PUT", "/api/v1/posts/2/like", token=bob)).status == 404


async def test_comments_replies_and_their_views(server: AppServer) -> None:
    [(author, author_token), (alice_id, alice), (bob_id, bob)] = await users(server, 3)
    await seed(server, author)
    root = await server.call("POST", "/api/v1/posts/1/comments", {"text": "<b>nice</b> vase"}, token=alice)
    assert root.status == 201, root.body
    view = root.json
    assert view["text"] == "<b>nice</b> vase"  # stored as written; clients render it as text
    assert (view["root"], view["depth"], view["reply_to"], view["reply_to_user"]) == (None, 1, None, None)
    assert view["author"]["user_id"] == alice_id and view["author"]["name"]
    assert view["mine"] is True and view["liked_by_me"] is False
    replies = []
    for n in range(5):
        reply = await server.call(
            "POST", "/api/v1/posts/1/comments", {"text": f"reply {n}", "reply_to": view["id"]}, token=bob
        )
        assert reply.status == 201
        replies.append(reply.json)
    assert replies[0]["reply_to_user"]["user_id"] == alice_id and replies[0]["depth"] == 2
    like = await server.call("PUT", f"/api/v1/comments/{view['id']}/like", token=bob)
    assert like.json == {"liked": True, "likes": 1}

    listed = await server.call("GET", "/api/v1/posts/1/comments", token=bob)
    assert listed.status == 200 and listed.json["next_cursor"] is None
    [item] = listed.json["items"]
    assert item["replies"] == 5 and item["liked_by_me"] is True and item["mine"] is False
    assert [r["id"] for r in item["reply_preview"]] == [r["id"] for r in replies[:3]]
    assert item["reply_preview"][0]["mine"] is True

    page = await server.call("GET", f"/api/v1/comments/{view['id']}/replies?limit=2")
    assert [r["id"] for r in page.json["items"]] == [r["id"] for r in replies[:2]]
    rest = await server.call(
        "GET", f"/api/v1/comments/{view['id']}/replies?cursor={page.json['next_cursor']}"
    )
    assert [r["id"] for r in rest.json["items"]] == [r["id"] for r in replies[2:]]
    assert (await server.call("GET", "/api/v1/posts/1/comments?cursor=nonsense")).code == "BAD_CURSOR"

    post = await server.ctx.db.community_posts.find_one({"_id": 1})
    assert post is not None and post["comments"] == 6
    assert (
        await server.call("DELETE", f"/api/v1/comments/{view['id']}", token=bob)
    ).code == "NOT_YOUR_CONTENT"
    gone = await server.call("DELETE", f"/api/v1/comments/{view['id']}", token=alice)
    assert gone.status == 204
    post = await server.ctx.db.community_posts.find_one({"_id": 1})
    assert post is not None and post["comments"] == 0
    assert (await server.call("GET", "/api/v1/posts/1/comments")).json["items"] == []
    assert bob_id and author_token


async def test_comment_input_is_checked(server: AppServer) -> None:
    [(author, _), (_, alice)] = await users(server, 2)
    await seed(server, author)
    too_long = await server.call("POST", "/api/v1/posts/1/comments", {"text": "x" * 256}, token=alice)
    assert too_long.code == "VALIDATION"
    on_article = await server.call("POST", "/api/v1/articles/3/comments", {"text": "x" * 1024}, token=alice)
    assert on_article.status == 201
    wrong_thread = await server.call(
        "POST", "/api/v1/posts/1/comments", {"text": "hi", "reply_to": on_article.json["id"]}, token=alice
    )
    assert wrong_thread.code == "VALIDATION"
    for body in ({}, {"text": 5}, {"text": "hi", "extra": 1}, {"text": "hi", "reply_to": "1"}):
        assert (await server.call("POST", "/api/v1/posts/1/comments", body, token=alice)).status == 400
    assert (await server.call("POST", "/api/v1/posts/2/comments", {"text": "hi"}, token=alice)).status == 404
    signed_out = await server.call("POST", "/api/v1/posts/1/comments", {"text": "hi"})
    assert signed_out.code == "UNAUTHORIZED"


async def test_blocked_users_cannot_comment(server: AppServer) -> None:
    [(author, _), (alice_id, alice)] = await users(server, 2)
    await seed(server, author)
    await server.ctx.db.community_blocks.insert_one({"_id": alice_id, "until": None, "reason": "spam"})
    refused = await server.call("POST", "/api/v1/posts/1/comments", {"text": "hi"}, token=alice)
    assert (refused.status, refused.code) == (403, "COMMUNITY_BLOCKED")


async def test_likes_past_the_rate_limit_answer_429_with_retry_after(server: AppServer) -> None:
    [(author, _), (_, alice)] = await users(server, 2)
    await seed(server, author)
    reactions_of(server.ctx).limiter = RedisRateLimiter(server.ctx.redis, {"like": RateLimit(2, 60)})
    assert (await server.call("PUT", "/api/v1/posts/1/like", token=alice)).status == 200
    assert (await server.call("DELETE", "/api/v1/posts/1/like", token=alice)).status == 200
    refused = await server.call("PUT", "/api/v1/posts/1/like", token=alice)
    assert (refused.status, refused.code) == (429, "RATE_LIMITED")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


async def test_collections_of_articles_and_courses(server: AppServer) -> None:
    [(author, _), (_, alice)] = await users(server, 2)
    await seed(server, author)
    assert (await server.call("GET", "/api/v1/me/collections")).code == "UNAUTHORIZED"
    article = await server.call("PUT", "/api/v1/me/collections/article/3", token=alice)
    assert article.json == {"collected": True, "collects": 1}
    course = await server.call("PUT", "/api/v1/me/collections/course/7", token=alice)
    assert course.json == {"collected": True, "collects": 1}
    assert (await server.call("PUT", "/api/v1/me/collections/course/8", token=alice)).status == 404
    await server.ctx.db.shop_courses.update_one({"_id": 7}, {"$set": {"status": "offline"}})
    listed = await server.call("GET", "/api/v1/me/collections?kind=all&limit=1", token=alice)
    assert listed.status == 200 and listed.json["next_cursor"]
    rest = await server.call(
        "GET", f"/api/v1/me/collections?cursor={listed.json['next_cursor']}", token=alice
    )
    items = listed.json["items"] + rest.json["items"]
    assert {(i["kind"], i["id"], i["available"]) for i in items} == {
        ("article", 3, True),
        ("course", 7, False),
    }
    assert all(i["title"] and i["collected_at"].endswith("Z") for i in items)
    only = await server.call("GET", "/api/v1/me/collections?kind=course", token=alice)
    assert [i["id"] for i in only.json["items"]] == [7]
    assert (await server.call("GET", "/api/v1/me/collections?kind=post", token=alice)).status == 400
    out = await server.call("DELETE", "/api/v1/me/collections/course/7", token=alice)
    assert out.json == {"collected": False, "collects": 0}


# == live counts ==========================================================================================
async def test_a_like_reaches_the_other_watcher_as_a_counts_frame(server: AppServer) -> None:
    [(author, _), (_, alice), (_, bob)] = await users(server, 3)
    await seed(server, author)
    watcher = await Bidder.connect(server)  # anonymous sockets may watch
    liker = await Bidder.connect(server, alice)
    for socket in (watcher, liker):
        assert await socket.request({"op": "watch", "topic": "post:1"}) == {
            "type": "watching",
            "topic": "post:1",
        }
    assert (await server.call("PUT", "/api/v1/posts/1/like", token=bob)).status == 200
    counts = await watcher.until("counts", topic="post:1")
    assert counts == {"type": "counts", "topic": "post:1", "likes": 1, "comments": 0, "views": 0}
    await liker.until("counts", topic="post:1", likes=1)

    comment = await server.call("POST", "/api/v1/posts/1/comments", {"text": "hello"}, token=alice)
    frame = await watcher.until("comment", topic="post:1")
    assert frame["comment"]["id"] == comment.json["id"] and "mine" not in frame["comment"]
    await watcher.until("counts", topic="post:1", comments=1)
    await server.call(
        "POST", "/api/v1/posts/1/comments", {"text": "re", "reply_to": comment.json["id"]}, token=bob
    )
    replies = await watcher.until("comment_counts", topic="post:1")
    assert replies["comment_id"] == comment.json["id"] and replies["replies"] == 1

    assert await watcher.request({"op": "unwatch", "topic": "post:1"}) == {
        "type": "unwatched",
        "topic": "post:1",
    }
    assert "post:1" in server.ctx.hub.by_topic  # the liker still watches
    liker.close()
    await server.wait_for(lambda: "post:1" not in server.ctx.hub.by_topic)
    watcher.close()


async def test_an_article_page_gets_collects_too(server: AppServer) -> None:
    [(author, _), (_, alice)] = await users(server, 2)
    await seed(server, author)
    watcher = await Bidder.connect(server)
    await watcher.request({"op": "watch", "topic": "article:3"})
    await server.call("PUT", "/api/v1/me/collections/article/3", token=alice)
    counts = await watcher.until("counts", topic="article:3")
    assert counts == {
        "type": "counts",
        "topic": "article:3",
        "likes": 0,
        "comments": 0,
        "views": 0,
        "collects": 1,
    }
    watcher.close()


async def test_a_burst_of_likes_is_coalesced_and_ends_with_the_right_count(server: AppServer) -> None:
    likers = await users(server, 31)
    (author, _), likers = likers[0], likers[1:]
    await seed(server, author)
    watcher = await Bidder.connect(server)
    await watcher.request({"op": "watch", "topic": "post:1"})
    answers = await asyncio.gather(*(server.call("PUT", "/api/v1/posts/1/like", token=t) for _, t in likers))
    assert all(a.status == 200 for a in answers)
    await watcher.until("counts", topic="post:1", likes=30)
    frames = [f for f in watcher.frames if f["type"] == "counts"]
    assert len(frames) < 30
    watcher.close()


async def test_bad_topics_and_too_many_topics_are_refused(server: AppServer) -> None:
    watcher = await Bidder.connect(server)
    for topic in ("post:0", "comment:1", "post:x", 12, None, "article:" + "9" * 17):
        refused = await watcher.request({"op": "watch", "topic": topic})
        assert (refused["type"], refused["code"]) == ("error", "BAD_REQUEST"), topic
    for n in range(1, MAX_TOPICS + 1):
        assert (await watcher.request({"op": "watch", "topic": f"post:{n}"}))["type"] == "watching"
    refused = await watcher.request({"op": "watch", "topic": "article:1"})
    assert (refused["type"], refused["code"]) == ("error", "TOO_MANY_SUBSCRIPTIONS")
    again = await watcher.request({"op": "watch", "topic": "post:1"})  # one already watched is fine
    assert again["type"] == "watching"
    pong = await watcher.request({"op": "ping"})  # nothing else broke
    assert pong["type"] == "pong"
    watcher.close()
    await server.wait_for(lambda: not server.ctx.hub.by_topic)


# == admin actions =========================================================================================
async def test_admins_hide_unhide_and_delete_comments_with_a_reason_audited(server: AppServer) -> None:
    [(author, _), (_, alice)] = await users(server, 2)
    await seed(server, author)
    actions = server.ctx.admin_actions
    assert actions is not None
    admin = Actor(1, "admin", True, "127.0.0.1", "rest")
    root = (await server.call("POST", "/api/v1/posts/1/comments", {"text": "spam!"}, token=alice)).json
    reply = await server.call(
        "POST", "/api/v1/posts/1/comments", {"text": "re", "reply_to": root["id"]}, token=alice
    )

    def moderate(actor: Actor, comment_id: int, action: str, reason: str) -> Any:
        return actions.community_moderate(actor, "comment", comment_id, action, reason)

    with pytest.raises(GavelError) as refused:
        await moderate(Actor(5, "mallory", False), root["id"], "hide", "no")
    assert refused.value.code == "FORBIDDEN"
    with pytest.raises(GavelError):
        await moderate(admin, root["id"], "hide", "")  # a reason is required
    assert (await moderate(admin, root["id"], "hide", "spam"))["changed"] is True
    assert (await moderate(admin, root["id"], "hide", "spam"))["changed"] is False  # no change, no entry
    assert (await server.call("GET", "/api/v1/posts/1/comments")).json["items"] == []
    assert (await moderate(admin, root["id"], "unhide", "appeal upheld"))["changed"] is True
    assert (await moderate(admin, reply.json["id"], "delete", "abuse"))["changed"] is True
    with pytest.raises(GavelError) as missing:
        await moderate(admin, reply.json["id"], "delete", "abuse")
    assert missing.value.code == "NOT_FOUND"
    post = await server.ctx.db.community_posts.find_one({"_id": 1})
    assert post is not None and post["comments"] == 1

    entries = [e async for e in server.ctx.db.audit.find({}).sort("_id", 1)]
    assert [(e["action"], e["target"], e["after"]["reason"]) for e in entries] == [
        ("community.comment_hide", f"comment:{root['id']}", "spam"),
        ("community.comment_unhide", f"comment:{root['id']}", "appeal upheld"),
        ("community.comment_delete", f"comment:{reply.json['id']}", "abuse"),
    ]
    assert entries[0]["before"]["content"]["text"] == "spam!"

    await server.ctx.db.community_posts.update_one({"_id": 1}, {"$set": {"comments": 40}})
    wrong = await actions.community_repair(admin, reason="after the outage")
    assert wrong["posts.comments"] == 1
    post = await server.ctx.db.community_posts.find_one({"_id": 1})
    assert post is not None and post["comments"] == 1
    last = await server.ctx.db.audit.find_one({"action": "community.repair"})
    assert last is not None and last["after"]["wrong"]["posts.comments"] == 1


# == docs/openapi-community.yaml and the routes agree (both directions, this module's routes) ============
def test_every_reactions_route_is_documented_and_every_documented_one_served(server: AppServer) -> None:
    spec = yaml.safe_load((pathlib.Path(__file__).parents[2] / "docs" / "openapi-community.yaml").read_text())
    methods = ("get", "post", "put", "patch", "delete")
    served = {}
    for pattern, handler, _args in rest_reactions.routes(server.ctx):
        served[pattern] = {m for m in methods if getattr(handler, m) is not getattr(JsonHandler, m)}
    documented: dict[str, set[str]] = {}
    for path, operations in spec["paths"].items():
        sample = re.sub(r"\{[^}]+\}", "1", path).replace("/collections/1/", "/collections/article/")
        matching = [p for p in served if re.fullmatch(p, sample)]
        if matching:
            [pattern] = matching
            documented.setdefault(pattern, set()).update(m for m in operations if m in methods)
    assert documented == served


async def test_frames_from_other_gateways_reach_local_watchers_but_not_our_own(server: AppServer) -> None:
    watcher = await Bidder.connect(server)
    await watcher.request({"op": "watch", "topic": "article:3"})
    frame = b'{"type":"counts","topic":"article:3","likes":4,"comments":0,"views":9,"collects":1}'
    ours = orjson.dumps({"origin": "me", "topic": "article:3", "frame": frame.decode()})
    theirs = orjson.dumps({"origin": "gw2", "topic": "article:3", "frame": frame.decode()})
    assert community_live.on_envelope(server.ctx, "me", ours) is False
    assert community_live.on_envelope(server.ctx, "me", b"not json") is False
    assert community_live.on_envelope(server.ctx, "me", theirs) is True
    assert (await watcher.until("counts", topic="article:3"))["likes"] == 4
    watcher.close()
