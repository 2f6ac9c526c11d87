"""An in-memory stand-in for the community's REST and live frames (issue 23, api.md), served to the
app's browser contexts through Playwright's routing, for the app's tests while (or where) the real
backends are not deployed: `await CommunityFake(users).install(context)`.

It keeps to the contract's shapes (post, comment, profile, article and collection views, cursor
pages, `{"error": {"code", "message"}}`) and its live frames (`counts`, `comment`,
`comment_counts` to the sockets watching a topic); everything else (sign-in, lots, sessions, the
socket's own frames) goes to the real gateway. Uploaded images are kept and served back at
/fake-media/<n>.
"""

from __future__ import annotations

import base64
import email
import email.policy
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

NOW = "2026-12-06T12:00:00Z"
COMMUNITY = re.compile(
    r"/api/v1/(posts|profiles|topics|comments|articles|article-sources|reports|me/profile|me/collections)(/|\?|$)"
)


class Refused(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code


def page_of(items: list[dict[str, Any]], query: dict[str, str], key: str = "id") -> dict[str, Any]:
    """A cursor page: `items` in order, after the cursor's position; limit 1..50 (default 20)."""
    limit = min(50, max(1, int(query.get("limit") or 20)))
    start = 0
    if query.get("cursor"):
        try:
            last = json.loads(base64.urlsafe_b64decode(query["cursor"]))
        except ValueError as error:
            raise Refused(400, "BAD_CURSOR") from error
        start = next((i + 1 for i, item in enumerate(items) if item[key] == last), len(items))
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    cursor = base64.urlsafe_b64encode(json.dumps(chunk[-1][key]).encode()).decode() if more else None
    return {"items": chunk, "next_cursor": cursor}


@dataclass
class CommunityFake:
    users: dict[str, tuple[int, str]]  # token -> (user_id, display name)
    posts: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    likes: set[tuple[str, int]] = field(default_factory=set)  # (target, user)
    views: set[tuple[str, int]] = field(default_factory=set)
    follows: set[tuple[int, int]] = field(default_factory=set)
    topic_follows: set[tuple[int, int]] = field(default_factory=set)
    collections: dict[tuple[int, str], int] = field(default_factory=dict)  # (user, target) -> seq
    profiles: dict[int, dict[str, Any]] = field(default_factory=dict)
    media: dict[str, bytes] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    topics: dict[int, dict[str, Any]] = field(default_factory=dict)
    articles: dict[int, dict[str, Any]] = field(default_factory=dict)
    watchers: dict[str, list[Any]] = field(default_factory=dict)  # topic -> page sockets
    seq: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.topics[1] = {"id": 1, "title": "瓷器 Ceramics", "intro": "Bowls, jars and glazes.", "posts": 0}
        self.topics[2] = {"id": 2, "title": "书画 Paintings", "intro": "", "posts": 0}

    # -- what tests set up directly ---------------------------------------------------------------------
    def add_article(self, title: str, body_html: str, position: str = "feed", weight: int = 0) -> int:
        article_id = len(self.articles) + 1
        self.articles[article_id] = {
            "id": article_id, "title": title, "kind": "news", "vid": "", "brief": "A short brief.",
            "head_img": None, "source": {"id": 1, "name": "Gavel 研究"}, "pub_at": NOW, "position": position,
            "weight": weight, "views": 0, "likes": 0, "comments": 0, "collects": 0, "body_html": body_html,
        }  # fmt: skip
        return article_id

    # -- routing ---------------------------------------------------------------------------------------
    async def install(self, context: Any) -> None:
        await context.route(COMMUNITY, self._route)
        await context.route("**/fake-media/**", self._media)
        await context.route_web_socket(re.compile(r"/ws"), self._socket)

    async def _media(self, route: Any) -> None:
        name = route.request.url.rsplit("/", 1)[1]
        await route.fulfill(status=200, body=self.media.get(name, b""), content_type="image/png")

    def _socket(self, ws: Any) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            try:
                frame = json.loads(message)
            except ValueError:
                frame = {}
            if isinstance(frame, dict) and frame.get("op") in ("watch", "unwatch"):
                sockets = self.watchers.setdefault(str(frame.get("topic")), [])
                if frame["op"] == "watch":
                    sockets.append(ws)
                elif ws in sockets:
                    sockets.remove(ws)
                return
            server.send(message)

        ws.on_message(from_page)
        server.on_message(lambda message: ws.send(message))

    def publish(self, topic: str, frame: dict[str, Any]) -> None:
        for ws in list(self.watchers.get(topic, [])):
            try:
                ws.send(json.dumps({**frame, "topic": topic}))
            except Exception:  # a closed page: forget it
                self.watchers[topic].remove(ws)

    async def _route(self, route: Any) -> None:
        request = route.request
        path, _, raw_query = request.url.split("/api/v1", 1)[1].partition("?")
        query = {k: v[-1] for k, v in _parse_qs(raw_query).items()}
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        user = self.users.get(token)
        try:
            status, body = self.answer(request.method, path, query, user, request)
        except Refused as refused:
            status, body = refused.status, {"error": {"code": refused.code, "message": refused.code}}
        if status == 204:
            await route.fulfill(status=204, body="")
        else:
            await route.fulfill(status=status, body=json.dumps(body), content_type="application/json")

    # -- views -----------------------------------------------------------------------------------------
    def _name(self, user_id: int) -> str:
        return next((name for uid, name in self.users.values() if uid == user_id), f"user{user_id}")

    def _profile(self, user_id: int) -> dict[str, Any]:
        return self.profiles.setdefault(user_id, {"bio": "", "avatar": ""})

    def _person(self, user_id: int) -> dict[str, Any]:
        return {"user_id": user_id, "name": self._name(user_id), "avatar": self._profile(user_id)["avatar"]}

    def _picture(self, url: str) -> dict[str, Any]:
        return {"url": url, "srcset": "", "width": 64, "height": 64}

    def _post_view(self, post: dict[str, Any], me: int | None) -> dict[str, Any]:
        target = f"post:{post['id']}"
        topic = self.topics.get(post["topic_id"]) if post["topic_id"] else None
        return {
            "id": post["id"], "author": self._person(post["user_id"]), "text": post["text"],
            "cover": self._picture(post["images"][0]) if post["images"] else None,
            "images": [self._picture(url) for url in post["images"]],
            "topic": {"id": topic["id"], "title": topic["title"]} if topic else None, "place": post["place"],
            "link": post.get("link"), "created_at": NOW, "likes": self._count_likes(target),
            "comments": sum(1 for c in self.comments.values() if c["target"] == target),
            "views": sum(1 for t, _ in self.views if t == target), "liked_by_me": (target, me) in self.likes,
            "mine": post["user_id"] == me,
        }  # fmt: skip

    def _count_likes(self, target: str) -> int:
        return sum(1 for t, _ in self.likes if t == target)

    def _comment_view(self, comment: dict[str, Any], me: int | None) -> dict[str, Any]:
        target = f"comment:{comment['id']}"
        reply_user = comment["reply_to_user"]
        return {
            "id": comment["id"], "target": comment["target"], "author": self._person(comment["user_id"]),
            "text": comment["text"], "root": comment["root"], "depth": comment["depth"],
            "reply_to": comment["reply_to"],
            "reply_to_user": {"user_id": reply_user, "name": self._name(reply_user)} if reply_user else None,
            "likes": self._count_likes(target), "liked_by_me": (target, me) in self.likes, "created_at": NOW,
            "mine": comment["user_id"] == me,
        }  # fmt: skip

    def _replies(self, root: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["root"] == root]

    def _root_view(self, comment: dict[str, Any], me: int | None) -> dict[str, Any]:
        replies = self._replies(comment["id"])
        return {
            **self._comment_view(comment, me),
            "replies": len(replies),
            "reply_preview": [self._comment_view(c, me) for c in replies[:3]],
        }

    def _profile_view(self, user_id: int, me: int | None) -> dict[str, Any]:
        profile = self._profile(user_id)
        return {
            **self._person(user_id), "avatar_srcset": "", "bio": profile["bio"],
            "followers": sum(1 for _, b in self.follows if b == user_id),
            "following": sum(1 for a, _ in self.follows if a == user_id),
            "posts": sum(1 for p in self.posts.values() if p["user_id"] == user_id),
            "followed_by_me": (me, user_id) in self.follows, "me": me == user_id,
        }  # fmt: skip

    def _topic_view(self, topic: dict[str, Any], me: int | None) -> dict[str, Any]:
        return {
            **topic, "followers": sum(1 for _, t in self.topic_follows if t == topic["id"]),
            "posts": sum(1 for p in self.posts.values() if p["topic_id"] == topic["id"]),
            "followed_by_me": (me, topic["id"]) in self.topic_follows,
        }  # fmt: skip

    def _article_counts(self, article_id: int) -> dict[str, int]:
        target = f"article:{article_id}"
        return {
            "views": sum(1 for t, _ in self.views if t == target), "likes": self._count_likes(target),
            "comments": sum(1 for c in self.comments.values() if c["target"] == target),
            "collects": sum(1 for _, t in self.collections if t == target),
        }  # fmt: skip

    def _article_view(self, article_id: int, me: int | None, full: bool = False) -> dict[str, Any]:
        article = {k: v for k, v in self.articles[article_id].items() if full or k != "body_html"}
        article.update(self._article_counts(article_id))
        if full:
            article["liked_by_me"] = (f"article:{article_id}", me) in self.likes
            article["collected_by_me"] = (me, f"article:{article_id}") in self.collections
        return article

    def _counts(self, target: str) -> None:
        kind, _, raw = target.partition(":")
        if kind == "post":
            view = self._post_view(self.posts[int(raw)], None)
            self.publish(target, {"type": "counts", **{k: view[k] for k in ("likes", "comments", "views")}})
        elif kind == "article":
            self.publish(target, {"type": "counts", **self._article_counts(int(raw))})
        elif kind == "comment":
            comment = self.comments[int(raw)]
            replies = len(self._replies(comment["id"])) if comment["depth"] == 1 else 0
            frame = {
                "type": "comment_counts",
                "comment_id": comment["id"],
                "likes": self._count_likes(target),
            }
            self.publish(comment["target"], {**frame, "replies": replies})

    # -- the endpoints ---------------------------------------------------------------------------------
    def answer(
        self, method: str, path: str, query: dict[str, str], user: tuple[int, str] | None, request: Any
    ) -> tuple[int, Any]:
        me = user[0] if user else None

        def need() -> int:
            if me is None:
                raise Refused(401, "UNAUTHORIZED")
            return me

        def body() -> dict[str, Any]:
            data = json.loads(request.post_data or "{}")
            if not isinstance(data, dict):
                raise Refused(400, "VALIDATION")
            return data

        if m := re.fullmatch(r"/(posts|articles|comments)/(\d+)/like", path):
            kind, target_id = m[1][:-1], int(m[2])
            target = f"{kind}:{target_id}"
            record = (target, need())
            if method == "PUT":
                self.likes.add(record)
            else:
                self.likes.discard(record)
            self._counts(target)
            return 200, {"liked": method == "PUT", "likes": self._count_likes(target)}
        if m := re.fullmatch(r"/(posts|articles)/(\d+)/view", path):
            target = f"{m[1][:-1]}:{m[2]}"
            counted = me is not None and (target, me) not in self.views
            if me is not None and counted:
                self.views.add((target, me))
                self._counts(target)
            return 200, {"views": sum(1 for t, _ in self.views if t == target), "counted": counted}
        if m := re.fullmatch(r"/(posts|articles)/(\d+)/comments", path):
            target = f"{m[1][:-1]}:{m[2]}"
            if method == "GET":
                roots = [
                    self._root_view(c, me)
                    for c in self.comments.values()
                    if c["target"] == target and c["depth"] == 1
                ]
                return 200, page_of(roots, query)
            data = body()
            text = str(data.get("text", "")).strip()
            limit = 255 if target.startswith("post") else 1024
            if not text or len(text) > limit:
                raise Refused(400, "VALIDATION")
            reply_to = self.comments.get(int(data["reply_to"])) if data.get("reply_to") else None
            comment_id = next(self.seq)
            comment = {
                "id": comment_id, "target": target, "user_id": need(), "text": text,
                "root": (reply_to["root"] or reply_to["id"]) if reply_to else None,
                "depth": min(reply_to["depth"] + 1, 3) if reply_to else 1,
                "reply_to": reply_to["id"] if reply_to else None,
                "reply_to_user": reply_to["user_id"] if reply_to else None,
            }  # fmt: skip
            self.comments[comment_id] = comment
            view = self._comment_view(comment, me)
            self.publish(
                target,
                {
                    "type": "comment",
                    "comment": {k: v for k, v in view.items() if k not in ("liked_by_me", "mine")},
                },
            )
            self._counts(target)
            if comment["root"]:
                self._counts(f"comment:{comment['root']}")
            return 201, view
        if m := re.fullmatch(r"/comments/(\d+)/replies", path):
            return 200, page_of([self._comment_view(c, me) for c in self._replies(int(m[1]))], query)
        if m := re.fullmatch(r"/comments/(\d+)", path):
            found = self.comments.get(int(m[1]))
            if not found:
                raise Refused(404, "NOT_FOUND")
            if found["user_id"] != need():
                raise Refused(403, "NOT_YOUR_CONTENT")
            for gone in [found, *([] if found["root"] else self._replies(found["id"]))]:
                self.comments.pop(gone["id"], None)
            self._counts(found["target"])
            return 204, None
        if path == "/posts" and method == "POST":
            return 201, self._new_post(need(), request)
        if path == "/posts":
            feed = query.get("feed", "latest")
            posts = sorted(self.posts.values(), key=lambda p: -p["id"])
            if feed == "following":
                followees = {b for a, b in self.follows if a == need()}
                posts = [p for p in posts if p["user_id"] in followees]
            elif feed == "topic":
                posts = [p for p in posts if p["topic_id"] == int(query.get("topic_id", 0))]
            return 200, page_of([self._post_view(p, me) for p in posts], query)
        if m := re.fullmatch(r"/posts/(\d+)", path):
            post = self.posts.get(int(m[1]))
            if not post:
                raise Refused(404, "NOT_FOUND")
            if method == "DELETE":
                if post["user_id"] != need():
                    raise Refused(403, "NOT_YOUR_CONTENT")
                del self.posts[post["id"]]
                return 204, None
            return 200, self._post_view(post, me)
        if m := re.fullmatch(r"/profiles/(\d+)(/follow|/posts|/followers|/following)?", path):
            user_id, tail = int(m[1]), m[2]
            if tail == "/follow":
                if user_id == need():
                    raise Refused(400, "VALIDATION")
                (self.follows.add if method == "PUT" else self.follows.discard)((need(), user_id))
                return 200, {
                    "following": method == "PUT",
                    "followers": self._profile_view(user_id, me)["followers"],
                }
            if tail == "/posts":
                posts = sorted(
                    (p for p in self.posts.values() if p["user_id"] == user_id), key=lambda p: -p["id"]
                )
                return 200, page_of([self._post_view(p, me) for p in posts], query)
            if tail in ("/followers", "/following"):
                people = [
                    b if tail == "/following" else a
                    for a, b in self.follows
                    if (a if tail == "/following" else b) == user_id
                ]
                return 200, page_of([self._person(u) for u in people], query, key="user_id")
            return 200, self._profile_view(user_id, me)
        if path == "/me/profile":
            data = body()
            if len(str(data.get("bio", ""))) > 120:
                raise Refused(400, "VALIDATION")
            self._profile(need())["bio"] = str(data.get("bio", ""))
            return 200, self._profile_view(me, me)  # type: ignore[arg-type]
        if path == "/me/profile/avatar":
            files = _multipart(request)
            name = f"{next(self.seq)}.png"
            self.media[name] = files["file"][0]
            self._profile(need())["avatar"] = "/fake-media/" + name
            return 200, self._profile_view(me, me)  # type: ignore[arg-type]
        if path == "/topics":
            return 200, {"items": [self._topic_view(t, me) for t in self.topics.values()]}
        if m := re.fullmatch(r"/topics/(\d+)(/follow)?", path):
            topic = self.topics.get(int(m[1]))
            if not topic:
                raise Refused(404, "NOT_FOUND")
            if m[2]:
                (self.topic_follows.add if method == "PUT" else self.topic_follows.discard)(
                    (need(), topic["id"])
                )
                view = self._topic_view(topic, me)
                return 200, {"following": view["followed_by_me"], "followers": view["followers"]}
            return 200, self._topic_view(topic, me)
        if path == "/articles":
            chosen = [a for a in self.articles.values() if a["position"] == query.get("position", "feed")]
            chosen.sort(key=lambda a: (-a["weight"], -a["id"]))
            return 200, page_of([self._article_view(a["id"], me) for a in chosen], query)
        if m := re.fullmatch(r"/articles/(\d+)", path):
            if int(m[1]) not in self.articles:
                raise Refused(404, "NOT_FOUND")
            return 200, self._article_view(int(m[1]), me, full=True)
        if path == "/article-sources":
            return 200, {"items": [{"id": 1, "name": "Gavel 研究"}]}
        if m := re.fullmatch(r"/me/collections/(article|course)/(\d+)", path):
            target = f"{m[1]}:{m[2]}"
            if method == "PUT":
                self.collections.setdefault((need(), target), next(self.seq))
            else:
                self.collections.pop((need(), target), None)
            if m[1] == "article":
                self._counts(target)
            return 200, {
                "collected": method == "PUT",
                "collects": sum(1 for _, t in self.collections if t == target),
            }
        if path == "/me/collections":
            kind = query.get("kind", "all")
            mine = sorted(((seq, t) for (u, t), seq in self.collections.items() if u == need()), reverse=True)
            items = []
            for seq, target in mine:
                item_kind, _, raw = target.partition(":")
                if kind in ("all", item_kind):
                    title = (
                        self.articles[int(raw)]["title"]
                        if item_kind == "article" and int(raw) in self.articles
                        else f"{item_kind} {raw}"
                    )
                    items.append(
                        {
                            "kind": item_kind,
                            "id": int(raw),
                            "title": title,
                            "image": "",
                            "collected_at": NOW,
                            "available": True,
                            "seq": seq,
                        }
                    )
            return 200, page_of(items, query, key="seq")
        if path == "/reports":
            data = body()
            if any(r["target"] == data.get("target") and r["reporter"] == need() for r in self.reports):
                raise Refused(409, "ALREADY_REPORTED")
            self.reports.append(
                {
                    "id": len(self.reports) + 1,
                    "target": data.get("target"),
                    "reporter": me,
                    "reason": data.get("reason"),
                }
            )
            return 201, {"id": len(self.reports), "status": "open"}
        raise Refused(404, "NOT_FOUND")

    def _new_post(self, me: int, request: Any) -> dict[str, Any]:
        if "multipart/form-data" in (request.headers.get("content-type") or ""):
            parts = _multipart(request)
            fields = {
                name: values[0].decode() for name, values in parts.items() if name not in ("images", "cover")
            }
            images = parts.get("images", [])
        else:
            fields, images = json.loads(request.post_data or "{}"), []
        text = str(fields.get("text", "")).strip()
        if not text or len(text) > 255 or len(images) > 9:
            raise Refused(400, "VALIDATION")
        urls = []
        for image in images:
            name = f"{next(self.seq)}.png"
            self.media[name] = image
            urls.append("/fake-media/" + name)
        post_id = next(self.seq)
        self.posts[post_id] = {
            "id": post_id, "user_id": me, "text": text, "images": urls,
            "topic_id": int(fields["topic_id"]) if fields.get("topic_id") else None,
            "place": fields.get("place", ""),
        }  # fmt: skip
        return self._post_view(self.posts[post_id], me)


def _parse_qs(raw: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(raw)


def _multipart(request: Any) -> dict[str, list[bytes]]:
    """{field name: [values as bytes]} of a multipart/form-data request."""
    head = f"Content-Type: {request.headers['content-type']}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.message_from_bytes(head + (request.post_data_buffer or b""), policy=email.policy.HTTP)
    found: dict[str, list[bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        found.setdefault(str(name), []).append(payload if isinstance(payload, bytes) else b"")
    return found
