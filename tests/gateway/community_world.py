"""The community the app's browser tests run against: the real gateway when its community REST
answers (feed and articles deployed), else tests/gateway/community_fake.py routed into the browser.
Both are set up and read through the same few methods, so one test body serves both.

    community = await community_for(app_world, users)   # users: [(user_id, token, name)]
    await community.install(context)                     # the fake's routes; nothing for the real one
"""

from __future__ import annotations

from typing import Any

from persistence.mongo import iso_from_ms
from tests.gateway.app_kit import AppWorld
from tests.gateway.community_fake import CommunityFake

User = tuple[int, str, str]  # (user_id, token, display name)
DAY_MS = 86_400_000  # articles published a day before the fake clock's now: visible by either clock


class FakeCommunity:
    real = False

    def __init__(self, users: list[User]) -> None:
        self.fake = CommunityFake({token: (user_id, name) for user_id, token, name in users})

    async def install(self, context: Any) -> None:
        await self.fake.install(context)

    async def topic(self) -> int:
        return 1

    async def article(self, title: str, md: str, html: str, position: str = "feed", weight: int = 0) -> int:
        return self.fake.add_article(title, html, position=position, weight=weight)

    async def post(
        self, who: User, text: str, *, topic: int | None = None, place: str = "", link: Any = None
    ) -> int:
        post_id = 1000 + len(self.fake.posts)
        self.fake.posts[post_id] = {
            "id": post_id, "user_id": who[0], "text": text, "images": [], "topic_id": topic, "place": place,
            "link": link and {"kind": link[0], "id": link[1], "title": link[2], "price": link[3],
                              "status": "bidding", "session_id": link[4]},
        }  # fmt: skip
        return post_id

    async def comment(self, who: User, post_id: int, text: str) -> int:
        comment_id = 5000 + len(self.fake.comments)
        self.fake.comments[comment_id] = {
            "id": comment_id, "target": f"post:{post_id}", "user_id": who[0], "text": text,
            "root": None, "depth": 1, "reply_to": None, "reply_to_user": None,
        }  # fmt: skip
        return comment_id

    async def bio(self, who: User, text: str) -> None:
        self.fake._profile(who[0])["bio"] = text

    async def counts(self, post_id: int) -> dict[str, int] | None:
        """The post's likes, comments and views (None: gone)."""
        post = self.fake.posts.get(post_id)
        if post is None:
            return None
        view = self.fake._post_view(post, None)
        return {name: view[name] for name in ("likes", "comments", "views")}

    async def can_report(self) -> bool:
        return True

    async def reports(self) -> list[str]:
        return [str(report["reason"]) for report in self.fake.reports]

    async def collected(self, who: User, article: int) -> bool:
        return (who[0], f"article:{article}") in self.fake.collections


class RealCommunity:
    """The gateway's own community: set-up through its REST (admin REST for articles), topics
    through the feed service (no REST creates one), reads from its documents."""

    real = True

    def __init__(self, world: AppWorld) -> None:
        self.world = world
        self.server = world.server
        self._source: int | None = None

    async def install(self, context: Any) -> None:
        return None

    async def _setup(self, method: str, path: str, body: Any, token: str, status: int) -> Any:
        """A set-up write by a user, the rate limits lifted for it (a test writes faster than people)."""
        from gateway.rest_reactions import limiter_of

        limiter = limiter_of(self.server.ctx)
        enabled, limiter.enabled = limiter.enabled, False
        try:
            return await self._call(method, path, body, token, status)
        finally:
            limiter.enabled = enabled

    async def _call(
        self, method: str, path: str, body: Any = None, token: str | None = None, status: int = 200
    ) -> Any:
        answer = (
            await self.server.call(method, path, body, token=token)
            if body is not None
            else await self.server.call(method, path, token=token)
        )
        assert answer.status == status, (path, answer.status, answer.body)
        return answer.json if answer.body else None

    async def topic(self) -> int:
        from gateway.rest_feed import feed_of

        made = await feed_of(self.server.ctx).create_topic(
            f"瓷器 Ceramics {id(self) % 100000}", "Bowls and jars."
        )
        return int(made["_id"])

    async def article(self, title: str, md: str, html: str, position: str = "feed", weight: int = 0) -> int:
        admin = await self.server.admin_token()
        if self._source is None:
            made = await self._call(
                "POST",
                "/api/v1/admin/article-sources",
                {"name": f"Gavel 研究 {id(self) % 100000}"},
                admin,
                201,
            )
            self._source = int(made["id"])
        body = {
            "title": title, "source_id": self._source, "brief": "A short brief.", "body_md": md,
            "pub_at": iso_from_ms(self.server.clock.now_ms() - DAY_MS), "position": position,
            "weight": weight, "publish": True,
        }  # fmt: skip
        made = await self._call("POST", "/api/v1/admin/articles", body, admin, 201)
        return int(made["id"])

    async def post(
        self, who: User, text: str, *, topic: int | None = None, place: str = "", link: Any = None
    ) -> int:
        body: dict[str, Any] = {"text": text, "place": place}
        if topic:
            body["topic_id"] = topic
        if link:
            body |= {"link_kind": link[0], "link_id": link[1]}
        return int((await self._setup("POST", "/api/v1/posts", body, who[1], 201))["id"])

    async def comment(self, who: User, post_id: int, text: str) -> int:
        return int(
            (await self._setup("POST", f"/api/v1/posts/{post_id}/comments", {"text": text}, who[1], 201))[
                "id"
            ]
        )

    async def bio(self, who: User, text: str) -> None:
        await self._call("PUT", "/api/v1/me/profile", {"bio": text}, who[1])

    async def counts(self, post_id: int) -> dict[str, int] | None:
        post = await self.server.ctx.db.community_posts.find_one({"_id": post_id})
        return None if post is None else {name: int(post[name]) for name in ("likes", "comments", "views")}

    async def can_report(self) -> bool:
        """Whether reports are deployed (moderation): signed out, a deployed POST /reports is 401."""
        return (await self.server.call("POST", "/api/v1/reports", {})).status != 404

    async def reports(self) -> list[str]:
        return [str(doc["reason"]) async for doc in self.server.ctx.db.community_reports.find({})]

    async def collected(self, who: User, article: int) -> bool:
        found = await self.server.ctx.db.community_collections.find_one(
            {"user_id": who[0], "target": f"article:{article}"}
        )
        return found is not None


async def community_for(
    world: AppWorld, users: list[User], needs: tuple[str, ...] = ("feed", "articles")
) -> FakeCommunity | RealCommunity:
    """The real community when the gateway serves what the test `needs` (its feed, its articles);
    the fake otherwise (which then answers all of the community's REST)."""
    probes = {"feed": "/api/v1/posts?feed=latest", "articles": "/api/v1/articles"}
    for need in needs:
        if (await world.server.call("GET", probes[need])).status != 200:
            return FakeCommunity(users)
    return RealCommunity(world)
