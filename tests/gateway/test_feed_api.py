"""The feed over HTTP on the real MongoDB and Redis (gateway/rest_feed.py): profiles and avatars,
follows, topics, posts with images (multipart) and their views with pictures and a live lot card,
the feeds with cursors, and hostile input answered with stable 4xx codes."""

from __future__ import annotations

import asyncio
import io
import pathlib
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from PIL import Image

from backoffice.actions import Actor
from engine.commands import PlaceBid
from gateway import rest_feed
from tests.gateway.conftest import Answer, AppServer
from web.http import JsonHandler
from web.media import media_of

ADMIN = Actor(1, "admin", True, "127.0.0.1", "rest")


def png(colour: tuple[int, int, int] = (20, 120, 200), size: tuple[int, int] = (700, 500)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def multipart(
    fields: dict[str, str], files: list[tuple[str, bytes]], *, kind: str = "image/png"
) -> tuple[bytes, str]:
    boundary = secrets.token_hex(12)
    body = b""
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for index, (name, data) in enumerate(files):
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f{index}.png"\r\n'
                f"Content-Type: {kind}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture
async def server(app_server: AppServer) -> AsyncIterator[AppServer]:
    await rest_feed.start(app_server.ctx)  # indexes (the composition's start-up does this)
    yield app_server


async def send_post(
    s: AppServer,
    token: str | None,
    fields: dict[str, str],
    files: Sequence[tuple[str, bytes]] = (),
    **kw: Any,
) -> Answer:
    body, content_type = multipart(fields, list(files), **kw)
    return await s.call(
        "POST", "/api/v1/posts", raw=body, token=token, headers={"Content-Type": content_type}
    )


async def media_files(s: AppServer) -> set[str]:
    root = media_of(s.ctx).root
    return {p.name for p in root.iterdir()} if root.exists() else set()


# -- posts --------------------------------------------------------------------------------------
async def test_a_post_with_images_a_topic_and_a_live_lot_card(server: AppServer) -> None:
    s = server
    user_id, token = await s.register("poster")
    topic = await s.ctx.admin_actions.community_topic_create(ADMIN, "拍卖心得 / Auction tips", "tips")  # type: ignore[union-attr]
    session_id = await s.create_session()
    lot_id = await s.create_lot(session_id, title="Celadon vase")
    answer = await send_post(
        s,
        token,
        {
            "text": "<script>alert(1)</script> 看这件",
            "topic_id": str(topic["_id"]),
            "place": "杭州",
            "link_kind": "lot",
            "link_id": str(lot_id),
        },
        [("cover", png((200, 0, 0))), ("images", png()), ("images", png((0, 200, 0)))],
    )
    assert answer.status == 201, answer.body
    post = answer.json
    assert post["text"] == "<script>alert(1)</script> 看这件"  # stored as given, escaped where shown
    assert post["author"] == {"user_id": user_id, "name": "poster", "avatar": ""}
    assert post["topic"] == {"id": topic["_id"], "title": "拍卖心得 / Auction tips"}
    assert post["cover"]["srcset"] and post["cover"]["width"] == 700
    assert [i["width"] for i in post["images"]] == [700, 700] and "w640.webp" in post["images"][0]["srcset"]
    assert post["link"] == {
        "kind": "lot",
        "id": lot_id,
        "title": "Celadon vase",
        "price": s.engine.book.lots[lot_id].price,
        "status": s.engine.book.lots[lot_id].state.name.lower(),
        "session_id": session_id,
    }
    assert (post["likes"], post["comments"], post["views"], post["liked_by_me"], post["mine"]) == (
        0,
        0,
        0,
        False,
        True,
    )
    assert len(await media_files(s)) == 3 * 3  # originals and their 320/640 variants
    # The same post read signed out, in the topic's feed, and on the author's page.
    read = (await s.call("GET", f"/api/v1/posts/{post['id']}")).json
    assert read["mine"] is False and read["link"]["title"] == "Celadon vase"
    topic_feed = (await s.call("GET", f"/api/v1/posts?feed=topic&topic_id={topic['_id']}")).json
    assert [p["id"] for p in topic_feed["items"]] == [post["id"]] and topic_feed["next_cursor"] is None
    mine = (await s.call("GET", f"/api/v1/profiles/{user_id}/posts")).json
    assert [p["id"] for p in mine["items"]] == [post["id"]]
    topics = (await s.call("GET", "/api/v1/topics")).json["items"]
    assert topics[0]["posts"] == 1 and topics[0]["followed_by_me"] is False


async def test_a_json_post_and_deleting_it(server: AppServer) -> None:
    s = server
    _, token = await s.register()
    _, other = await s.register()
    answer = await s.call("POST", "/api/v1/posts", {"text": "text only", "place": ""}, token=token)
    assert answer.status == 201, answer.body
    post_id = answer.json["id"]
    assert answer.json["cover"] is None and answer.json["images"] == []
    refused = await s.call("DELETE", f"/api/v1/posts/{post_id}", token=other)
    assert (refused.status, refused.code) == (403, "NOT_YOUR_CONTENT")
    assert (await s.call("DELETE", f"/api/v1/posts/{post_id}")).status == 401
    assert (await s.call("DELETE", f"/api/v1/posts/{post_id}", token=token)).status == 204
    assert (await s.call("GET", f"/api/v1/posts/{post_id}")).code == "NOT_FOUND"
    assert (await s.call("DELETE", f"/api/v1/posts/{post_id}", token=token)).status == 404


async def test_deleting_a_post_deletes_its_files(server: AppServer) -> None:
    s = server
    _, token = await s.register()
    answer = await send_post(s, token, {"text": "pics"}, [("images", png()), ("images", png((1, 1, 1)))])
    assert answer.status == 201 and len(await media_files(s)) == 6
    assert (await s.call("DELETE", f"/api/v1/posts/{answer.json['id']}", token=token)).status == 204
    assert await media_files(s) == set()


async def test_hostile_posts_get_stable_4xx_codes_and_store_nothing(server: AppServer) -> None:
    s = server
    _, token = await s.register()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    html_as_png = b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>"
    cases: list[tuple[dict[str, str], list[tuple[str, bytes]], int, str]] = [
        ({"text": "x"}, [("images", png())] * 10, 400, "VALIDATION"),  # 10 images (+ the cover: 11)
        ({"text": "x"}, [("cover", png()), ("cover", png())], 400, "VALIDATION"),
        (
            {"text": "x"},
            [("images", b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 1024 * 1024))],
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        ({"text": "x"}, [("images", svg)], 400, "VALIDATION"),
        ({"text": "x"}, [("images", html_as_png)], 400, "VALIDATION"),
        ({"text": "x" * 256}, [], 400, "VALIDATION"),
        ({"text": ""}, [], 400, "VALIDATION"),
        ({}, [], 400, "VALIDATION"),
        ({"text": "x", "evil": "1"}, [], 400, "VALIDATION"),
        ({"text": "x", "topic_id": "999"}, [], 400, "VALIDATION"),
        ({"text": "x", "topic_id": "abc"}, [], 400, "VALIDATION"),
        ({"text": "x", "link_kind": "lot", "link_id": "424242"}, [], 400, "VALIDATION"),
        ({"text": "x", "link_kind": "javascript", "link_id": "1"}, [], 400, "VALIDATION"),
        ({"text": "x", "place": "p" * 65}, [], 400, "VALIDATION"),
    ]
    for fields, files, status, code in cases:
        answer = await send_post(s, token, fields, files)
        assert (answer.status, answer.code) == (status, code), (fields, answer.body[:200])
    eleven = [("cover", png())] + [("images", png())] * 10
    assert (await send_post(s, token, {"text": "x"}, eleven)).status == 400
    assert await media_files(s) == set()
    assert await s.ctx.db.community_posts.count_documents({}) == 0
    unsigned = await send_post(s, None, {"text": "x"})
    assert (unsigned.status, unsigned.code) == (401, "UNAUTHORIZED")
    # A declared body over a cover and nine images is refused before a byte of it is read.
    reader, writer = await asyncio.open_connection("127.0.0.1", int(s.base_url.rsplit(":", 1)[1]))
    writer.write(
        b"POST /api/v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: {60 * 2**20}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413")
    big_json = b'{"text": "' + b"x" * 20_000 + b'"}'
    answer = await s.call(
        "POST", "/api/v1/posts", raw=big_json, token=token, headers={"Content-Type": "application/json"}
    )
    assert (answer.status, answer.code) == (413, "PAYLOAD_TOO_LARGE")
    for raw, kind in ((b"not json", "application/json"), (b"text=x", "application/x-www-form-urlencoded")):
        answer = await s.call("POST", "/api/v1/posts", raw=raw, token=token, headers={"Content-Type": kind})
        assert answer.status == 400, answer.body


async def test_posting_is_rate_limited_and_blocked_users_are_refused(server: AppServer) -> None:
    s = server
    user_id, token = await s.register()
    for i in range(5):
        assert (await s.call("POST", "/api/v1/posts", {"text": f"p{i}"}, token=token)).status == 201
    limited = await s.call("POST", "/api/v1/posts", {"text": "one too many"}, token=token)
    assert (limited.status, limited.code) == (429, "RATE_LIMITED")
    assert int(limited.headers["Retry-After"]) > 0
    blocked_id, blocked = await s.register()
    await s.ctx.db.community_blocks.insert_one({"_id": blocked_id, "until": None, "reason": "spam", "by": 1})
    answer = await s.call("POST", "/api/v1/posts", {"text": "hi"}, token=blocked)
    assert (answer.status, answer.code) == (403, "COMMUNITY_BLOCKED")
    assert user_id != blocked_id


async def test_hidden_posts_are_gone_except_for_admins(server: AppServer) -> None:
    s = server
    _, token = await s.register()
    post_id = (await s.call("POST", "/api/v1/posts", {"text": "to hide"}, token=token)).json["id"]
    actions = s.ctx.admin_actions
    assert actions is not None
    with pytest.raises(Exception, match="reason"):
        await actions.community_moderate(ADMIN, "post", post_id, "hide", "")
    assert (await actions.community_moderate(ADMIN, "post", post_id, "hide", "spam"))["changed"] is True
    assert (await s.call("GET", f"/api/v1/posts/{post_id}", token=token)).status == 404
    assert (await s.call("GET", "/api/v1/posts")).json["items"] == []
    admin_view = await s.call("GET", f"/api/v1/posts/{post_id}", token=await s.admin_token())
    assert admin_view.status == 200 and admin_view.json["hidden_reason"] == "spam"
    audit = await s.ctx.db.audit.find_one({"action": "community.post_hide"})
    assert audit is not None and audit["after"]["reason"] == "spam"
    assert (await actions.community_moderate(ADMIN, "post", post_id, "unhide", "appeal"))["changed"] is True
    assert [p["id"] for p in (await s.call("GET", "/api/v1/posts")).json["items"]] == [post_id]
    assert (await actions.community_moderate(ADMIN, "post", post_id, "delete", "illegal"))["changed"] is True
    assert await s.ctx.db.community_posts.count_documents({}) == 0


# -- feeds and cursors --------------------------------------------------------------------------
async def test_latest_and_following_feeds_with_cursors(server: AppServer) -> None:
    s = server
    s.ctx.community_limiter.enabled = False  # many posts from one user
    alice_id, alice = await s.register("alice_f")
    _, bob = await s.register("bob_f")
    ids = [
        (await s.call("POST", "/api/v1/posts", {"text": f"a{i}"}, token=alice)).json["id"] for i in range(5)
    ]
    await s.call("POST", "/api/v1/posts", {"text": "bob's"}, token=bob)
    assert (await s.call("GET", "/api/v1/posts?feed=following", token=bob)).json["items"] == []
    follow = await s.call("PUT", f"/api/v1/profiles/{alice_id}/follow", token=bob)
    assert follow.json == {"following": True, "followers": 1}
    first = (await s.call("GET", "/api/v1/posts?feed=following&limit=2", token=bob)).json
    await s.call("POST", "/api/v1/posts", {"text": "newer"}, token=alice)
    seen = [p["id"] for p in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (await s.call("GET", f"/api/v1/posts?feed=following&limit=2&cursor={cursor}", token=bob)).json
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ids[::-1]
    assert (await s.call("GET", "/api/v1/posts?feed=following")).status == 401
    for query, code in (
        ("cursor=%21%21", "BAD_CURSOR"),
        ("cursor=WzEsMl0", "BAD_CURSOR"),  # [1,2]: a cursor of two keys
        ("limit=0", "VALIDATION"),
        ("limit=51", "VALIDATION"),
        ("feed=popular", "VALIDATION"),
        ("feed=topic", "VALIDATION"),
        ("feed=topic&topic_id=x", "VALIDATION"),
    ):
        answer = await s.call("GET", f"/api/v1/posts?{query}")
        assert (answer.status, answer.code) == (400, code), query
    assert (await s.call("GET", "/api/v1/posts?feed=topic&topic_id=77")).status == 404


# -- profiles, follows, topics --------------------------------------------------------------------
async def test_profiles_avatars_and_follows(server: AppServer) -> None:
    s = server
    alice_id, alice = await s.register("alice_p")
    bob_id, bob = await s.register("bob_p")
    profile = (await s.call("GET", f"/api/v1/profiles/{alice_id}")).json
    assert profile == {
        "user_id": alice_id,
        "name": "alice_p",
        "avatar": "",
        "avatar_srcset": "",
        "bio": "",
        "followers": 0,
        "following": 0,
        "posts": 0,
        "followed_by_me": False,
        "me": False,
    }
    assert (await s.call("GET", "/api/v1/profiles/999999")).status == 404
    bio = await s.call("PUT", "/api/v1/me/profile", {"bio": "收藏家 <b>"}, token=alice)
    assert bio.status == 200 and bio.json["bio"] == "收藏家 <b>" and bio.json["me"] is True
    assert (await s.call("PUT", "/api/v1/me/profile", {"bio": "b" * 121}, token=alice)).status == 400
    assert (await s.call("PUT", "/api/v1/me/profile", {"nick": "x"}, token=alice)).status == 400
    body, content_type = multipart({}, [("file", png(size=(400, 400)))])
    first = await s.call(
        "PUT", "/api/v1/me/profile/avatar", raw=body, token=alice, headers={"Content-Type": content_type}
    )
    assert first.status == 200, first.body
    assert first.json["avatar"].startswith("/media/") and "w320" in first.json["avatar_srcset"]
    body, content_type = multipart({}, [("file", png((9, 9, 9), size=(400, 400)))])
    second = await s.call(
        "PUT", "/api/v1/me/profile/avatar", raw=body, token=alice, headers={"Content-Type": content_type}
    )
    assert second.status == 200 and len(await media_files(s)) == 2  # the old avatar is gone
    body, content_type = multipart({}, [("file", b"GIF89a<script>")])
    bad = await s.call(
        "PUT", "/api/v1/me/profile/avatar", raw=body, token=alice, headers={"Content-Type": content_type}
    )
    assert bad.status == 400
    self_follow = await s.call("PUT", f"/api/v1/profiles/{alice_id}/follow", token=alice)
    assert (self_follow.status, self_follow.code) == (400, "VALIDATION")
    assert (await s.call("PUT", f"/api/v1/profiles/{bob_id}/follow")).status == 401
    assert (await s.call("PUT", "/api/v1/profiles/999999/follow", token=alice)).status == 404
    assert (await s.call("PUT", f"/api/v1/profiles/{bob_id}/follow", token=alice)).json["followers"] == 1
    assert (await s.call("PUT", f"/api/v1/profiles/{alice_id}/follow", token=bob)).json["followers"] == 1
    followers = (await s.call("GET", f"/api/v1/profiles/{bob_id}/followers")).json
    assert followers["items"] == [{"user_id": alice_id, "name": "alice_p", "avatar": second.json["avatar"]}]
    seen_by_bob = (await s.call("GET", f"/api/v1/profiles/{alice_id}", token=bob)).json
    assert (seen_by_bob["followers"], seen_by_bob["following"], seen_by_bob["followed_by_me"]) == (1, 1, True)
    unfollow = await s.call("DELETE", f"/api/v1/profiles/{bob_id}/follow", token=alice)
    assert unfollow.json == {"following": False, "followers": 0}
    assert (await s.call("GET", f"/api/v1/profiles/{bob_id}/following?cursor=bad")).code == "BAD_CURSOR"


async def test_topics(server: AppServer) -> None:
    s = server
    _, token = await s.register()
    actions = s.ctx.admin_actions
    assert actions is not None
    topic = await actions.community_topic_create(ADMIN, "收藏 / Collecting", "all about collecting")
    hidden = await actions.community_topic_create(ADMIN, "hidden one")
    await actions.community_topic_update(ADMIN, hidden["_id"], {"hidden": True})
    listed = (await s.call("GET", "/api/v1/topics", token=token)).json["items"]
    assert [t["title"] for t in listed] == ["收藏 / Collecting"]
    assert (await s.call("PUT", f"/api/v1/topics/{topic['_id']}/follow", token=token)).json == {
        "following": True,
        "followers": 1,
    }
    one = (await s.call("GET", f"/api/v1/topics/{topic['_id']}", token=token)).json
    assert one["followed_by_me"] is True and one["intro"] == "all about collecting"
    assert (await s.call("GET", f"/api/v1/topics/{hidden['_id']}")).status == 404
    assert (await s.call("PUT", f"/api/v1/topics/{hidden['_id']}/follow", token=token)).status == 404
    assert (await s.call("DELETE", f"/api/v1/topics/{topic['_id']}/follow", token=token)).json[
        "followers"
    ] == 0
    audit = [a["action"] async for a in s.ctx.db.audit.find({"action": {"$regex": "^community"}})]
    assert audit == ["community.topic_create", "community.topic_create", "community.topic_update"]


# == docs/openapi-community.yaml and the routes agree (both directions, this module's routes) ======
def test_every_feed_route_is_documented_and_every_documented_one_served(server: AppServer) -> None:
    spec = yaml.safe_load((pathlib.Path(__file__).parents[2] / "docs" / "openapi-community.yaml").read_text())
    methods = ("get", "post", "put", "patch", "delete")
    served = {}
    for pattern, handler, _args in rest_feed.routes(server.ctx):
        served[pattern] = {m for m in methods if getattr(handler, m) is not getattr(JsonHandler, m)}
    documented: dict[str, set[str]] = {}
    for path, operations in spec["paths"].items():
        matching = [p for p in served if re.fullmatch(p, re.sub(r"\{[^}]+\}", "1", path))]
        if matching:
            [pattern] = matching
            documented.setdefault(pattern, set()).update(m for m in operations if m in methods)
    assert documented == served


async def test_deleting_a_post_takes_its_comments_likes_and_views(server: AppServer) -> None:
    s = server
    _, author = await s.register()
    _, reader = await s.register()
    post_id = (await s.call("POST", "/api/v1/posts", {"text": "talk to me"}, token=author)).json["id"]
    comment = await s.call("POST", f"/api/v1/posts/{post_id}/comments", {"text": "hi"}, token=reader)
    assert comment.status == 201, comment.body
    assert (await s.call("PUT", f"/api/v1/posts/{post_id}/like", token=reader)).status == 200
    assert (await s.call("PUT", f"/api/v1/comments/{comment.json['id']}/like", token=author)).status == 200
    assert (await s.call("POST", f"/api/v1/posts/{post_id}/view", token=reader)).status == 200
    liked = (await s.call("GET", f"/api/v1/posts/{post_id}", token=reader)).json
    assert (liked["likes"], liked["comments"], liked["views"], liked["liked_by_me"]) == (1, 1, 1, True)
    assert (await s.call("DELETE", f"/api/v1/posts/{post_id}", token=author)).status == 204
    db = s.ctx.db
    assert await db.community_comments.count_documents({}) == 0
    assert await db.community_likes.count_documents({}) == 0
    assert await db.community_views.count_documents({}) == 0


async def test_a_lot_card_shows_the_price_of_the_moment(server: AppServer) -> None:
    s = server
    bidder_id, token = await s.register()
    session_id = await s.create_session()
    lot_id = await s.create_lot(session_id, title="Jar", start_price=10_000)
    post_id = (
        await s.call(
            "POST", "/api/v1/posts", {"text": "bid!", "link_kind": "lot", "link_id": lot_id}, token=token
        )
    ).json["id"]
    session_card = await s.call(
        "POST", "/api/v1/posts", {"text": "s", "link_kind": "session", "link_id": session_id}, token=token
    )
    assert (
        session_card.json["link"]["price"] is None and session_card.json["link"]["session_id"] == session_id
    )
    before = (await s.call("GET", f"/api/v1/posts/{post_id}")).json["link"]
    await s.start_bidding(session_id)
    outcome = await s.engine.execute(PlaceBid(lot_id, bidder_id, 12_000, "feed-card-bid"))
    assert outcome.ok, outcome
    after = (await s.call("GET", f"/api/v1/posts/{post_id}")).json["link"]
    assert before["status"] != after["status"] == "bidding" and after["price"] == 12_000
