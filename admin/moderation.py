"""The community's back office (社区, issue 23): the report queue, the latest posts and comments
(hidden ones too), a user's community page (counts, block, erase) and the topics.

Reads come straight from the collections (docs/community.md "Documents"). Every write goes through the
admin-actions service (backoffice/actions.py: `community_*` methods), which authorizes, audits
with the reason, and calls the moderation service (or the feed's, for topics). Post, comment,
note and topic text is user text: the templates render it escaped, never raw.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

import tornado.web

from admin.base import PREFIX, AdminHandler, FormError, parse_int, text_field
from community.moderation import BLOCK_DAYS_MAX, REPORT_STATUSES
from community.rules import REASON_MAX, TOPIC_INTRO_MAX, TOPIC_TITLE_MAX
from persistence.mongo import Document

LISTED: Final = 50  # rows per page of the queue, the posts and the comments
MAX_ID: Final = 2**53 - 1
STATUS_NAMES: Final = {"open": "open 待处理", "resolved": "resolved 已处理", "dismissed": "dismissed 已驳回"}
REASON_NAMES: Final = {
    "spam": "spam 垃圾广告",
    "abuse": "abuse 辱骂",
    "illegal": "illegal 违法",
    "privacy": "privacy 隐私",
    "other": "other 其他",
}


async def user_names(db: Any, ids: Iterable[Any]) -> dict[int, str]:
    wanted = sorted({int(i) for i in ids if i is not None})
    if not wanted:
        return {}
    return {
        int(u["_id"]): u.get("display_name") or u["username"]
        async for u in db.users.find({"_id": {"$in": wanted}}, {"username": 1, "display_name": 1})
    }


def reason_field(handler: AdminHandler) -> str:
    return text_field(handler.form("reason"), "Reason", max_length=REASON_MAX)


class CommunityPage(AdminHandler):
    area = "community"
    nav = "community"

    def before_id(self) -> int | None:
        raw = self.get_query_argument("before", "") or ""
        return int(raw) if raw.isdigit() and 1 <= len(raw) <= 16 and 0 < int(raw) <= MAX_ID else None

    async def contents(self, targets: Iterable[str]) -> dict[str, Document]:
        """Reported posts and comments by target ("post:3"), hidden ones too; deleted ones absent."""
        ids: dict[str, list[int]] = {"post": [], "comment": []}
        for target in targets:
            kind, _, raw = target.partition(":")
            if kind in ids and raw.isdigit():
                ids[kind].append(int(raw))
        found: dict[str, Document] = {}
        for kind, collection in (
            ("post", self.ctx.db.community_posts),
            ("comment", self.ctx.db.community_comments),
        ):
            if ids[kind]:
                async for doc in collection.find({"_id": {"$in": ids[kind]}}):
                    found[f"{kind}:{doc['_id']}"] = doc
        return found

    async def pictures(self, docs: Iterable[Document]) -> dict[str, Document]:
        """`{url: {"url", "srcset", ...}}` of the posts' images, so thumbnails load a small variant."""
        urls = sorted({u for d in docs for u in [d.get("cover") or "", *(d.get("images") or [])] if u})
        if not urls:
            return {}
        found: dict[str, Document] = await self.ctx.catalog.media.pictures(urls)
        return found


# == the report queue =====================================================================================
class QueueHandler(CommunityPage):
    async def get(self) -> None:
        status = self.get_query_argument("status", "open") or "open"
        status = status if status in REPORT_STATUSES else "open"
        after = self.query_int("after", 0, minimum=1, maximum=MAX_ID) or None
        moderation = self.actions.moderation
        groups: list[Document] = []
        next_after = None
        if moderation is not None:
            groups, next_after = await moderation.queue(status, after, LISTED)
        contents = await self.contents(g["target"] for g in groups)
        pictures = await self.pictures(contents.values())
        names = await user_names(
            self.ctx.db, [g["target_user"] for g in groups] + [r for g in groups for r in g["reporters"]]
        )
        counts = {
            s: await self.ctx.db.community_reports.count_documents({"status": s}) for s in REPORT_STATUSES
        }
        self.render(
            "community_queue.html",
            status=status,
            statuses=STATUS_NAMES,
            reasons=REASON_NAMES,
            counts=counts,
            groups=groups,
            contents=contents,
            pictures=pictures,
            names=names,
            next_after=next_after,
            queue_url=queue_url,
            page_title="Community reports",
        )


class ResolveHandler(CommunityPage):
    async def post(self, raw_id: str) -> None:
        report_id = self.path_id(raw_id, "report")
        back = f"{PREFIX}/community"

        async def run() -> None:
            action = self.form("action")
            if action not in ("hide", "delete", "dismiss"):
                raise FormError("Action: choose hide, delete or dismiss")
            answer = await self.actions.community_resolve_report(
                self.actor(), report_id, action, reason_field(self)
            )
            self.done(f"{answer['target']}: {action} done; {answer['reports']} report(s) closed.", back)

        await self.guarded(run, back=back)


# == the latest posts and comments ========================================================================
class PostsHandler(CommunityPage):
    async def get(self) -> None:
        before = self.before_id()
        query: Document = {} if before is None else {"_id": {"$lt": before}}
        if self.get_query_argument("hidden", "") == "1":
            query["hidden"] = True
        posts = [p async for p in self.ctx.db.community_posts.find(query).sort("_id", -1).limit(LISTED)]
        names = await user_names(self.ctx.db, (p["user_id"] for p in posts))
        pictures = await self.pictures(posts)
        topics = {
            int(t["_id"]): t.get("title", "")
            async for t in self.ctx.db.community_topics.find(
                {"_id": {"$in": [p.get("topic_id") for p in posts if p.get("topic_id")]}}, {"title": 1}
            )
        }
        self.render(
            "community_posts.html",
            posts=posts,
            names=names,
            pictures=pictures,
            topics=topics,
            only_hidden=self.get_query_argument("hidden", "") == "1",
            next_before=posts[-1]["_id"] if len(posts) == LISTED else None,
            page_title="Community posts",
        )


class CommentsHandler(CommunityPage):
    async def get(self) -> None:
        before = self.before_id()
        query: Document = {} if before is None else {"_id": {"$lt": before}}
        if self.get_query_argument("hidden", "") == "1":
            query["hidden"] = True
        comments = [c async for c in self.ctx.db.community_comments.find(query).sort("_id", -1).limit(LISTED)]
        names = await user_names(self.ctx.db, (c["user_id"] for c in comments))
        self.render(
            "community_comments.html",
            comments=comments,
            names=names,
            only_hidden=self.get_query_argument("hidden", "") == "1",
            next_before=comments[-1]["_id"] if len(comments) == LISTED else None,
            page_title="Community comments",
        )


class ContentActionHandler(CommunityPage):
    async def post(self, kinds: str, raw_id: str, action: str) -> None:
        kind = kinds.removesuffix("s")
        content_id = self.path_id(raw_id, kind)
        back = self.form("back")
        if not back.startswith(f"{PREFIX}/community") or "//" in back or any(c < " " for c in back):
            back = f"{PREFIX}/community/{kinds}"

        async def run() -> None:
            answer = await self.actions.community_moderate(
                self.actor(), kind, content_id, action, reason_field(self)
            )
            verb = {"hide": "hidden", "unhide": "shown again", "delete": "deleted"}[action]
            done = verb if answer["changed"] else f"already {verb}"
            self.done(f"{kind.capitalize()} {content_id} {done}.", back)

        await self.guarded(run, back=back)


# == a user's community page ===============================================================================
class UserHandler(CommunityPage):
    async def get(self, raw_id: str) -> None:
        user_id = self.path_id(raw_id, "user")
        db = self.ctx.db
        user = await db.users.find_one({"_id": user_id}, {"username": 1, "display_name": 1})
        if user is None:
            raise tornado.web.HTTPError(404, f"no user {user_id}")
        counts = {
            "posts": await db.community_posts.count_documents({"user_id": user_id}),
            "hidden_posts": await db.community_posts.count_documents({"user_id": user_id, "hidden": True}),
            "images": 0,
            "comments": await db.community_comments.count_documents({"user_id": user_id}),
            "likes": await db.community_likes.count_documents({"user_id": user_id}),
            "views": await db.community_views.count_documents({"user_id": user_id}),
            "follows": await db.community_follows.count_documents(
                {"$or": [{"follower": user_id}, {"followee": user_id}]}
            ),
            "topic_follows": await db.community_topic_follows.count_documents({"user_id": user_id}),
            "collections": await db.community_collections.count_documents({"user_id": user_id}),
            "reports_made": await db.community_reports.count_documents({"reporter": user_id}),
            "reports_about": await db.community_reports.count_documents({"target_user": user_id}),
            "open_reports_about": await db.community_reports.count_documents(
                {"target_user": user_id, "status": "open"}
            ),
        }
        async for post in db.community_posts.find({"user_id": user_id}, {"images": 1, "cover": 1}):
            counts["images"] += len(
                set(post.get("images") or []) | ({post["cover"]} if post.get("cover") else set())
            )
        profile = await db.community_profiles.find_one({"_id": user_id}) or {}
        posts = [p async for p in db.community_posts.find({"user_id": user_id}).sort("_id", -1).limit(20)]
        comments = [
            c async for c in db.community_comments.find({"user_id": user_id}).sort("_id", -1).limit(20)
        ]
        moderation = self.actions.moderation
        block = await moderation.block_of(user_id) if moderation is not None else None
        self.render(
            "community_user.html",
            user=user,
            name=user.get("display_name") or user["username"],
            counts=counts,
            profile=profile,
            posts=posts,
            comments=comments,
            block=block,
            max_days=BLOCK_DAYS_MAX,
            page_title=f"Community · {user['username']}",
        )


class UserActionHandler(CommunityPage):
    async def post(self, raw_id: str, action: str) -> None:
        user_id = self.path_id(raw_id, "user")
        back = f"{PREFIX}/community/users/{user_id}"
        if await self.ctx.db.users.find_one({"_id": user_id}, {"_id": 1}) is None:
            raise tornado.web.HTTPError(404, f"no user {user_id}")

        async def run() -> None:
            actor = self.actor()
            if action == "block":
                raw_days = self.form("days").strip()
                days = parse_int(raw_days, "Days", minimum=1, maximum=BLOCK_DAYS_MAX) if raw_days else None
                block = await self.actions.community_block(actor, user_id, reason_field(self), days)
                until = (
                    "until lifted" if block["until"] is None else f"until {block['until']:%Y-%m-%d %H:%M} UTC"
                )
                self.done(f"User {user_id} blocked from the community {until}.", back)
            elif action == "unblock":
                reason = text_field(self.form("reason"), "Reason", max_length=REASON_MAX, required=False)
                changed = await self.actions.community_unblock(actor, user_id, reason)
                self.done("Block lifted." if changed else "There was no block.", back)
            else:
                if self.form("confirm") != "erase":
                    raise FormError("Tick the box to confirm the erase: it cannot be undone")
                counts = await self.actions.community_erase(actor, user_id, reason_field(self))
                listed = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
                self.done(f"Erased user {user_id}'s community data: {listed or 'nothing was left'}.", back)

        await self.guarded(run, back=back)


# == topics (written through the feed's admin actions) ====================================================
class TopicsHandler(CommunityPage):
    async def get(self) -> None:
        topics = [t async for t in self.ctx.db.community_topics.find({}).sort("_id", 1).limit(500)]
        self.render(
            "community_topics.html",
            topics=topics,
            title_max=TOPIC_TITLE_MAX,
            intro_max=TOPIC_INTRO_MAX,
            writable=hasattr(self.actions, "community_topic_create"),
            page_title="Community topics",
        )


class TopicWriteHandler(CommunityPage):
    async def post(self, raw_id: str | None = None) -> None:
        back = f"{PREFIX}/community/topics"

        async def run() -> None:
            title = text_field(self.form("title"), "Title", max_length=TOPIC_TITLE_MAX)
            intro = text_field(self.form("intro"), "Intro", max_length=TOPIC_INTRO_MAX, required=False)
            hidden = self.form("hidden") == "1"
            if raw_id is None:
                create = getattr(self.actions, "community_topic_create", None)
                if create is None:
                    raise FormError("topics are not available in this application")
                await create(self.actor(), title, intro)
                self.done(f"Topic {title} created.", back)
                return
            topic_id = self.path_id(raw_id, "topic")
            update = getattr(self.actions, "community_topic_update", None)
            if update is None:
                raise FormError("topics are not available in this application")
            await update(self.actor(), topic_id, {"title": title, "intro": intro, "hidden": hidden})
            self.done(f"Topic {topic_id} saved.", back)

        await self.guarded(run, back=back)


def queue_url(status: str, after: int | None) -> str:
    query = {"status": status} | ({"after": str(after)} if after else {})
    return f"{PREFIX}/community?{urllib.parse.urlencode(query)}"


ROUTES = [
    (r"/admin/community", QueueHandler),
    (r"/admin/community/reports/([0-9]+)/resolve", ResolveHandler),
    (r"/admin/community/posts", PostsHandler),
    (r"/admin/community/comments", CommentsHandler),
    (r"/admin/community/(posts|comments)/([0-9]+)/(hide|unhide|delete)", ContentActionHandler),
    (r"/admin/community/users/([0-9]+)", UserHandler),
    (r"/admin/community/users/([0-9]+)/(block|unblock|erase)", UserActionHandler),
    (r"/admin/community/topics", TopicsHandler),
    (r"/admin/community/topics/new", TopicWriteHandler),
    (r"/admin/community/topics/([0-9]+)", TopicWriteHandler),
]
