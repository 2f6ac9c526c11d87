"""The feed (动态): profiles, follows between users, topics and posts (docs/community.md "Feed").

`FeedService` decides (who may write what, text limits, visibility, when a counter moves) over the
ports of community/ports.py; persistence/community/feed.py stores. Counters move only with their
record: a follow inserted → +1 on both profiles, removed → -1; a post hidden or deleted while
visible → -1 on its author's and its topic's `posts` (docs/community.md "The counter rule").
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Final

from community.errors import TargetNotFound, TextRejected
from community.guard import check_may_write, check_rate
from community.ports import Blocks, Clock, FeedStore, Links, Media, RateLimiter, ReactionPurger, Record
from community.rules import (
    BIO_MAX,
    PLACE_MAX,
    POST_IMAGES_MAX,
    POST_TEXT_MAX,
    REASON_MAX,
    TOPIC_INTRO_MAX,
    TOPIC_TITLE_MAX,
    Target,
    clean_text,
    decode_cursor,
    encode_cursor,
    page_size,
)
from engine.book.errors import GavelError

FOLLOWING_CAP: Final = 5_000  # the `following` feed reads at most this many followees ($in)
TOPICS_MAX: Final = 200  # GET /topics is not paged
LINK_KINDS: Final = ("lot", "session")
FEEDS: Final = ("latest", "following", "topic")
FOLLOW_DIRECTIONS: Final = ("followers", "following")


class NotYourContent(GavelError):
    """Deleting someone else's post: 403."""

    code = "NOT_YOUR_CONTENT"


class TopicTitleTaken(GavelError):
    code = "VALIDATION"


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)  # what MongoDB keeps


class NoPurger:
    """Until the reactions service is wired: a deleted post leaves nothing else to remove here."""

    async def purge_target(self, target: Target) -> None:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class NewPost:
    """A post as the author sent it (the gateway reads multipart or JSON into this)."""

    text: object
    topic_id: int | None = None
    place: object = ""
    link_kind: str | None = None
    link_id: int | None = None
    cover: bytes | None = None
    images: Sequence[bytes] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class PostPage:
    """Posts with what their views need: authors, topics, and which ones the reader likes."""

    posts: list[Record]
    next_cursor: str | None
    people: dict[int, Record]
    topics: dict[int, Record]
    liked: set[str]


def _reason(raw: object) -> str:
    return clean_text(raw, max_length=REASON_MAX, what="reason", required=False)


class FeedService:
    def __init__(
        self,
        store: FeedStore,
        media: Media,
        *,
        blocks: Blocks,
        limiter: RateLimiter,
        links: Links,
        purger: ReactionPurger | None = None,
        now: Clock = _utc_now,
    ) -> None:
        self.store = store
        self.media = media
        self.blocks = blocks
        self.limiter = limiter
        self.links = links
        self.purger: ReactionPurger = purger or NoPurger()
        self.now = now

    # == profiles ===============================================================================
    async def profile(self, viewer: int | None, user_id: int) -> Record:
        """`{"user_id","name","avatar","bio","followers","following","posts","followed_by_me","me"}`."""
        people = await self.store.people([user_id], cached=False)
        if user_id not in people:
            raise TargetNotFound(f"no user {user_id}")
        doc = await self.store.profile(user_id) or {}
        followed = viewer is not None and bool(await self.store.following_among(viewer, [user_id]))
        return {
            "user_id": user_id,
            "name": people[user_id]["name"],
            "avatar": doc.get("avatar", ""),
            "bio": doc.get("bio", ""),
            "followers": max(0, int(doc.get("followers", 0))),
            "following": max(0, int(doc.get("following", 0))),
            "posts": max(0, int(doc.get("posts", 0))),
            "followed_by_me": followed,
            "me": viewer == user_id,
        }

    async def set_bio(self, user_id: int, raw: object) -> Record:
        bio = clean_text(raw, max_length=BIO_MAX, what="bio", multiline=False, required=False)
        # Profile edits share the upload budget: both are content others see.
        await check_may_write(self.blocks, self.limiter, user_id, "upload", self.now())
        await self.store.set_bio(user_id, bio, self.now())
        return await self.profile(user_id, user_id)

    async def set_avatar(self, user_id: int, data: bytes) -> Record:
        await check_may_write(self.blocks, self.limiter, user_id, "upload", self.now())
        url = await self.media.save(data)
        old = await self.store.set_avatar(user_id, url, self.now())
        if old and old != url:
            await self.media.delete(old)
        return await self.profile(user_id, user_id)

    # == follows between users ====================================================================
    async def follow(self, follower: int, followee: int) -> Record:
        if follower == followee:
            raise TextRejected("you cannot follow yourself")
        if not await self.store.user_exists(followee):
            raise TargetNotFound(f"no user {followee}")
        await check_rate(self.limiter, follower, "follow")
        if await self.store.add_follow(follower, followee, self.now()):
            await self.store.inc_profile(follower, "following", 1)
            await self.store.inc_profile(followee, "followers", 1)
        return await self._follow_state(follower, followee)

    async def unfollow(self, follower: int, followee: int) -> Record:
        if follower == followee:
            raise TextRejected("you cannot follow yourself")
        if not await self.store.user_exists(followee):
            raise TargetNotFound(f"no user {followee}")
        await check_rate(self.limiter, follower, "follow")
        await self._unfollow(follower, followee)
        return await self._follow_state(follower, followee)

    async def _unfollow(self, follower: int, followee: int) -> bool:
        if not await self.store.remove_follow(follower, followee):
            return False
        await self.store.inc_profile(follower, "following", -1)
        await self.store.inc_profile(followee, "followers", -1)
        return True

    async def _follow_state(self, follower: int, followee: int) -> Record:
        doc = await self.store.profile(followee) or {}
        following = bool(await self.store.following_among(follower, [followee]))
        return {"following": following, "followers": max(0, int(doc.get("followers", 0)))}

    async def follow_list(
        self, user_id: int, direction: str, cursor: str | None, limit: int | None
    ) -> tuple[list[Record], str | None]:
        """A page of `{"user_id","name","avatar"}`, newest follow first."""
        if direction not in FOLLOW_DIRECTIONS:
            raise TextRejected(f"direction must be one of {', '.join(FOLLOW_DIRECTIONS)}")
        after = decode_cursor(cursor, 2)
        size = page_size(limit)
        if not await self.store.user_exists(user_id):
            raise TargetNotFound(f"no user {user_id}")
        rows = await self.store.follow_page(user_id, direction, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        people = await self.store.people(other for other, _at in rows)
        items = [
            {"user_id": other, "name": people[other]["name"], "avatar": people[other]["avatar"]}
            for other, _at in rows
            if other in people
        ]
        next_cursor = encode_cursor((rows[-1][1], rows[-1][0])) if more and rows else None
        return items, next_cursor

    # == topics ===================================================================================
    async def topics(self, viewer: int | None) -> list[Record]:
        topics = await self.store.topics(include_hidden=False, limit=TOPICS_MAX)
        followed = await self.store.topic_follows(viewer) if viewer is not None else set()
        return [self._topic_view(t, t["_id"] in followed) for t in topics]

    async def topic(self, viewer: int | None, topic_id: int, *, admin: bool = False) -> Record:
        topic = await self._visible_topic(topic_id, admin=admin)
        followed = viewer is not None and bool(await self.store.topic_follows(viewer, [topic_id]))
        return self._topic_view(topic, followed)

    async def all_topics(self) -> list[Record]:
        """For the back office: every topic, hidden ones included (with `hidden`)."""
        topics = await self.store.topics(include_hidden=True, limit=TOPICS_MAX)
        return [{**self._topic_view(t, False), "hidden": bool(t.get("hidden"))} for t in topics]

    @staticmethod
    def _topic_view(topic: Record, followed: bool) -> Record:
        return {
            "id": topic["_id"],
            "title": topic["title"],
            "intro": topic.get("intro", ""),
            "followers": max(0, int(topic.get("followers", 0))),
            "posts": max(0, int(topic.get("posts", 0))),
            "followed_by_me": followed,
        }

    async def _visible_topic(self, topic_id: int, *, admin: bool = False) -> Record:
        topic = await self.store.topic(topic_id)
        if topic is None or (topic.get("hidden") and not admin):
            raise TargetNotFound(f"no topic {topic_id}")
        return topic

    async def create_topic(self, title: object, intro: object = "") -> Record:
        """For admins (backoffice/actions.py topic_create, which authorizes and audits)."""
        clean_title = clean_text(title, max_length=TOPIC_TITLE_MAX, what="title", multiline=False)
        clean_intro = clean_text(intro, max_length=TOPIC_INTRO_MAX, what="intro", required=False)
        return await self.store.insert_topic(clean_title, clean_intro, self.now())

    async def update_topic(self, topic_id: int, changes: Record) -> tuple[Record, Record]:
        """`changes` of title, intro, hidden; (before, after). Hiding a topic keeps its posts."""
        unknown = set(changes) - {"title", "intro", "hidden"}
        if unknown:
            raise TextRejected(f"unknown field(s): {', '.join(sorted(unknown))}")
        clean: Record = {}
        if "title" in changes:
            clean["title"] = clean_text(
                changes["title"], max_length=TOPIC_TITLE_MAX, what="title", multiline=False
            )
        if "intro" in changes:
            clean["intro"] = clean_text(
                changes["intro"], max_length=TOPIC_INTRO_MAX, what="intro", required=False
            )
        if "hidden" in changes:
            if not isinstance(changes["hidden"], bool):
                raise TextRejected("hidden must be true or false")
            clean["hidden"] = changes["hidden"]
        before = await self.store.topic(topic_id)
        if before is None:
            raise TargetNotFound(f"no topic {topic_id}")
        after = await self.store.update_topic(topic_id, clean) if clean else before
        if after is None:
            raise TargetNotFound(f"no topic {topic_id}")
        return before, after

    async def follow_topic(self, user_id: int, topic_id: int) -> Record:
        await self._visible_topic(topic_id)
        await check_rate(self.limiter, user_id, "follow")
        if await self.store.add_topic_follow(user_id, topic_id, self.now()):
            await self.store.inc_topic(topic_id, "followers", 1)
        return await self._topic_follow_state(user_id, topic_id)

    async def unfollow_topic(self, user_id: int, topic_id: int) -> Record:
        await self._visible_topic(topic_id)
        await check_rate(self.limiter, user_id, "follow")
        if await self.store.remove_topic_follow(user_id, topic_id):
            await self.store.inc_topic(topic_id, "followers", -1)
        return await self._topic_follow_state(user_id, topic_id)

    async def _topic_follow_state(self, user_id: int, topic_id: int) -> Record:
        topic = await self.store.topic(topic_id) or {}
        following = bool(await self.store.topic_follows(user_id, [topic_id]))
        return {"following": following, "followers": max(0, int(topic.get("followers", 0)))}

    # == posts ====================================================================================
    async def create_post(self, user_id: int, new: NewPost) -> Record:
        """Validate everything, check the block and the rate, then store the images and the post.
        Images already stored are deleted again when a later one (or the insert) fails."""
        text = clean_text(new.text, max_length=POST_TEXT_MAX, what="text")
        place = clean_text(new.place, max_length=PLACE_MAX, what="place", multiline=False, required=False)
        if len(new.images) > POST_IMAGES_MAX:
            raise TextRejected(f"a post has at most {POST_IMAGES_MAX} images besides its cover")
        topic_id = new.topic_id
        if topic_id is not None:
            topic = await self.store.topic(topic_id)
            if topic is None or topic.get("hidden"):
                raise TextRejected(f"no topic {topic_id}")
        link: Record | None = None
        if new.link_kind is not None or new.link_id is not None:
            if new.link_kind not in LINK_KINDS or new.link_id is None:
                raise TextRejected("a link is link_kind (lot or session) with link_id")
            if not await self.links.exists(new.link_kind, new.link_id):
                raise TextRejected(f"no {new.link_kind} {new.link_id}")
            link = {"kind": new.link_kind, "id": new.link_id}
        now = self.now()
        await check_may_write(self.blocks, self.limiter, user_id, "post", now)
        saved: list[str] = []
        try:
            cover = await self.media.save(new.cover) if new.cover is not None else ""
            if cover:
                saved.append(cover)
            images = []
            for data in new.images:
                images.append(await self.media.save(data))
                saved.append(images[-1])
            post: Record = {
                "_id": await self.store.new_post_id(),
                "user_id": user_id,
                "text": text,
                "cover": cover or (images[0] if images else ""),
                "images": images,
                "topic_id": topic_id,
                "place": place,
                "link": link,
                "hidden": False,
                "hidden_reason": "",
                "created_at": now,
                "likes": 0,
                "comments": 0,
                "views": 0,
            }
            await self.store.insert_post(post)
        except BaseException:
            for url in saved:
                await self.media.delete(url)
            raise
        await self.store.inc_profile(user_id, "posts", 1)
        if topic_id is not None:
            await self.store.inc_topic(topic_id, "posts", 1)
        return post

    async def post(self, post_id: int) -> Record | None:
        """The raw post, hidden or not (for moderation)."""
        return await self.store.post(post_id)

    async def read_post(self, viewer: int | None, post_id: int, *, admin: bool = False) -> PostPage:
        """One post as a page of one; NOT_FOUND when hidden, except to admins."""
        post = await self.store.post(post_id)
        if post is None or (post.get("hidden") and not admin):
            raise TargetNotFound(f"no post {post_id}")
        return await self._page([post], None, viewer)

    async def feed(
        self,
        viewer: int | None,
        kind: str,
        *,
        topic_id: int | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> PostPage:
        """latest | following (needs a reader) | topic: visible posts, newest first, keyset on id."""
        if kind not in FEEDS:
            raise TextRejected(f"feed must be one of {', '.join(FEEDS)}")
        before = decode_cursor(cursor, 1)
        size = page_size(limit)
        authors: list[int] | None = None
        if kind == "following":
            if viewer is None:
                raise GavelError("log in to read the posts of the people you follow", code="UNAUTHORIZED")
            authors = await self.store.followees(viewer, FOLLOWING_CAP)
            if not authors:
                return PostPage([], None, {}, {}, set())
        if kind == "topic":
            if topic_id is None:
                raise TextRejected("topic_id is required for feed=topic")
            await self._visible_topic(topic_id)
        else:
            topic_id = None
        return await self._read(viewer, before, size, authors=authors, topic_id=topic_id)

    async def user_posts(
        self, viewer: int | None, user_id: int, *, cursor: str | None = None, limit: int | None = None
    ) -> PostPage:
        before = decode_cursor(cursor, 1)
        size = page_size(limit)
        if not await self.store.user_exists(user_id):
            raise TargetNotFound(f"no user {user_id}")
        return await self._read(viewer, before, size, authors=[user_id])

    async def moderation_posts(
        self, *, user_id: int | None = None, cursor: str | None = None, limit: int | None = None
    ) -> PostPage:
        """For the back office: the latest posts, hidden ones included, optionally one user's."""
        before = decode_cursor(cursor, 1)
        authors = None if user_id is None else [user_id]
        return await self._read(None, before, page_size(limit), authors=authors, include_hidden=True)

    async def _read(
        self,
        viewer: int | None,
        before: tuple[int, ...] | None,
        size: int,
        *,
        authors: list[int] | None = None,
        topic_id: int | None = None,
        include_hidden: bool = False,
    ) -> PostPage:
        posts = await self.store.posts(
            before=before[0] if before else None,
            limit=size + 1,
            authors=authors,
            topic_id=topic_id,
            include_hidden=include_hidden,
        )
        more = len(posts) > size
        posts = posts[:size]
        next_cursor = encode_cursor((int(posts[-1]["_id"]),)) if more and posts else None
        return await self._page(posts, next_cursor, viewer)

    async def _page(self, posts: list[Record], next_cursor: str | None, viewer: int | None) -> PostPage:
        people = await self.store.people({int(p["user_id"]) for p in posts})
        topics = await self.store.topics_by_id({int(p["topic_id"]) for p in posts if p.get("topic_id")})
        liked: set[str] = set()
        if viewer is not None and posts:
            liked = await self.store.liked(viewer, [f"post:{p['_id']}" for p in posts])
        return PostPage(posts, next_cursor, people, topics, liked)

    async def delete_own_post(self, user_id: int, post_id: int) -> None:
        post = await self.store.post(post_id)
        if post is None:
            raise TargetNotFound(f"no post {post_id}")
        if int(post["user_id"]) != user_id:
            raise NotYourContent("only its author can delete a post")
        await self.delete_post(post_id)

    async def set_post_hidden(self, post_id: int, hidden: bool, reason: str = "") -> bool:
        """Hide or show a post (moderation); whether it changed. Counters follow the change."""
        before = await self.store.set_post_hidden(post_id, hidden, _reason(reason))
        if before is None:
            return False
        step = -1 if hidden else 1
        await self.store.inc_profile(int(before["user_id"]), "posts", step)
        if before.get("topic_id") is not None:
            await self.store.inc_topic(int(before["topic_id"]), "posts", step)
        return True

    async def delete_post(self, post_id: int) -> bool:
        """Delete the post, its images from storage, and (through the purger) its comments, likes
        and views; whether it was there. The reactions go first: if anything fails half-way the
        post is still there, so the same call again finishes the job (nothing is left orphaned)."""
        if await self.store.post(post_id) is None:
            return False
        await self.purger.purge_target(Target("post", post_id))
        post = await self.store.delete_post(post_id)
        if post is None:  # a concurrent delete won
            return False
        if not post.get("hidden"):  # a hidden post was already taken off the counters
            await self.store.inc_profile(int(post["user_id"]), "posts", -1)
            if post.get("topic_id") is not None:
                await self.store.inc_topic(int(post["topic_id"]), "posts", -1)
        for url in {post.get("cover") or "", *post.get("images", ())} - {""}:
            await self.media.delete(url)
        return True

    # == privacy ==================================================================================
    async def erase_user(self, user_id: int) -> dict[str, int]:
        """Everything of the user's in the feed: posts (with images, comments...), follows both ways
        and topic follows (counters adjusted), the avatar file and the profile."""
        counts = {"posts": 0, "following": 0, "followers": 0, "topic_follows": 0, "avatar": 0}
        for post_id in await self.store.post_ids_of(user_id):
            counts["posts"] += await self.delete_post(post_id)
        while followees := await self.store.followees(user_id, 1000):
            for other in followees:
                counts["following"] += await self._unfollow(user_id, other)
        while followers := await self.store.followers_of(user_id, 1000):
            for other in followers:
                counts["followers"] += await self._unfollow(other, user_id)
        for topic_id in await self.store.topic_follows(user_id):
            if await self.store.remove_topic_follow(user_id, topic_id):
                await self.store.inc_topic(topic_id, "followers", -1)
                counts["topic_follows"] += 1
        profile = await self.store.profile(user_id)
        if profile and profile.get("avatar"):
            counts["avatar"] = int(await self.media.delete(str(profile["avatar"])))
        await self.store.delete_profile(user_id)
        return counts
