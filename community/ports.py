"""What the community's services need from the outside, as small structural ports.

`persistence/community/` implements them on MongoDB and Redis; tests/community/ has in-memory fakes.
Each service module adds the ports it needs here, in its own block.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from community.rules import Target


class Clock(Protocol):
    def __call__(self) -> datetime.datetime: ...  # aware, UTC


class RateLimiter(Protocol):
    async def take(self, user_id: int, action: str) -> int | None:
        """Count one `action` (a key of rules.RATE_LIMITS) by the user; None when allowed, else the
        seconds until the window lets one through again."""
        ...


class Blocks(Protocol):
    async def blocked(self, user_id: int, now: datetime.datetime) -> bool:
        """Whether an admin's block on posting, commenting and reporting is in force."""
        ...


# == moderation (issue 23): reports, blocks, and what moderation asks of the feed and the reactions ======
class ReportStore(Protocol):
    async def insert(
        self,
        target: str,
        target_user: int,
        reporter: int,
        reason: str,
        note: str,
        now: datetime.datetime,
    ) -> int | None:
        """A new open report's id; None when the reporter already has an open one on this target
        (a unique key on open reports decides, so two at once make one)."""
        ...

    async def report(self, report_id: int) -> dict[str, Any] | None: ...

    async def open_count(self, target: str) -> int: ...

    async def close_target(
        self, target: str, status: str, by: int, resolution: str, now: datetime.datetime
    ) -> int:
        """Every open report of the target → `status` ("resolved" | "dismissed"); how many moved."""
        ...

    async def queue(self, status: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        """Reports of that status grouped by target: `{target, target_user, count, reasons: {reason:
        n}, notes: [..], reporters: [..], first_id, last_id, first_at, last_at}`. Open ones oldest
        first (keys: first_id ascending, strictly after `after`); others newest first (last_id
        descending, strictly before `after`)."""
        ...

    async def close_about_user(
        self, target_user: int, status: str, by: int, resolution: str, now: datetime.datetime
    ) -> int:
        """Every open report on the user's content → `status`; how many moved."""
        ...

    async def erase_reporter(self, user_id: int) -> int:
        """Delete every report the user made (privacy erase); how many."""
        ...


class BlockStore(Protocol):
    async def blocked(self, user_id: int, now: datetime.datetime) -> bool: ...

    async def block(
        self, user_id: int, until: datetime.datetime | None, reason: str, by: int, now: datetime.datetime
    ) -> dict[str, Any] | None:
        """Set (or replace) the user's block; the previous block document, if any."""
        ...

    async def unblock(self, user_id: int) -> dict[str, Any] | None:
        """Lift the block; the removed document (None: there was none)."""
        ...

    async def block_of(self, user_id: int) -> dict[str, Any] | None: ...


class Contents(Protocol):
    async def content(self, kind: str, content_id: int) -> dict[str, Any] | None:
        """The raw post ("post") or comment ("comment") document, hidden or not; None if gone."""
        ...


class PostModeration(Protocol):
    """The feed's service (community.feed.FeedService), as moderation uses it."""

    async def set_post_hidden(self, post_id: int, hidden: bool, reason: str) -> bool: ...

    async def delete_post(self, post_id: int) -> bool: ...

    async def erase_user(self, user_id: int) -> dict[str, int]: ...


class CommentModeration(Protocol):
    """The reactions' service (community.reactions.ReactionService), as moderation uses it."""

    async def set_comment_hidden(self, comment_id: int, hidden: bool, reason: str) -> bool: ...

    async def delete_comment(self, comment_id: int) -> bool: ...

    async def erase_user(self, user_id: int) -> dict[str, int]: ...


# == reactions (issue 23): views, likes, comments, collections ===========================================
# Records are dicts as stored (`community_views`, `community_likes`, `community_comments`,
# `community_collections`); targets are "post:12"-style strings (community.rules.Target).
Record = dict[str, Any]


class ReactionStore(Protocol):
    """Stores the reaction records and moves the counters on the targets' documents; it decides
    nothing. Every insert is guarded by a unique key and says whether it inserted; every delete and
    hide says whether it changed a record: the service moves a counter only then (the counter rule)."""

    async def add_record(self, kind: str, target: str, user_id: int, now: datetime.datetime) -> bool:
        """Insert the (target, user) record of `kind` ("view" | "like" | "collect"); False when it
        was there already (the unique index refused it)."""
        ...

    async def remove_record(self, kind: str, target: str, user_id: int) -> bool:
        """Delete the (target, user) record of `kind`; whether one was deleted."""
        ...

    async def has_records(self, kind: str, targets: Sequence[str], user_id: int) -> set[str]:
        """Which of `targets` the user has a record of `kind` for."""
        ...

    async def count_records(self, kind: str, target: str) -> int: ...

    async def user_records(self, kind: str, user_id: int) -> list[str]:
        """The targets of every record of `kind` the user has (for erasing them)."""
        ...

    async def purge_records(self, targets: Sequence[str]) -> None:
        """Delete every view, like and collection of these targets (their documents are going)."""
        ...

    async def inc(self, target: Target, field: str, delta: int) -> Record | None:
        """Add `delta` to a counter of the target's document (post, article or comment); its
        counters afterwards, None when the document is gone."""
        ...

    async def counters(self, target: Target) -> Record | None:
        """The target document's counters (likes, comments, views, collects, replies as it has)."""
        ...

    async def insert_comment(self, comment: Record) -> Record:
        """Store a new comment (its `_id` is assigned here); the stored document."""
        ...

    async def comment(self, comment_id: int) -> Record | None:
        """The comment, hidden or not."""
        ...

    async def root_comments(self, target: str, after: int | None, limit: int) -> list[Record]:
        """Visible root comments of the target, oldest first, ids above `after`."""
        ...

    async def replies(self, root_id: int, after: int | None, limit: int) -> list[Record]:
        """Visible descendants of a root, oldest first, ids above `after`."""
        ...

    async def reply_previews(self, root_ids: Sequence[int], count: int) -> dict[int, list[Record]]:
        """The first `count` visible replies of each root."""
        ...

    async def set_comment_hidden(self, comment_id: int, hidden: bool, reason: str) -> Record | None:
        """Flip `hidden` only if it is not so already; the comment when it changed, else None."""
        ...

    async def take_comment(self, comment_id: int) -> Record | None:
        """Delete the comment and return it as it was (None: already gone), in one atomic step."""
        ...

    async def comment_ids(self, *, root: int | None = None, target: str | None = None) -> list[int]:
        """Ids of a root's descendants, or of every comment of a target."""
        ...

    async def user_comment_ids(self, user_id: int) -> list[int]: ...

    async def collections(
        self, user_id: int, kinds: Sequence[str], after: tuple[int, ...] | None, limit: int
    ) -> list[Record]:
        """The user's collection records of those kinds, newest first (keys (at_ms, kind_no, id))."""
        ...

    async def recount(self, dry_run: bool) -> dict[str, int]:
        """Recompute every counter from its records (docs/community.md "The counter rule"); how many
        documents were wrong per counter, corrected unless `dry_run`."""
        ...


class Targets(Protocol):
    """Whether a reaction's target exists and readers may see it now, and what a collection shows."""

    async def visible(self, target: Target, now: datetime.datetime) -> bool:
        """A post or comment not hidden, an article online now, a course on sale."""
        ...

    async def describe(self, targets: Sequence[Target], now: datetime.datetime) -> dict[Target, Record]:
        """{target: {"title", "image", "available"}} for collected articles and courses (missing
        ones are absent)."""
        ...


class LivePublisher(Protocol):
    """Tells open pages what changed (gateway/community_live.py); called after the write, never
    blocks, coalesces bursts."""

    def counts_changed(self, target: Target) -> None: ...

    def comment_counts_changed(self, topic: Target, comment_id: int) -> None: ...

    def comment_added(self, comment: Record) -> None: ...


# == feed (issue 23): community/feed.py's ports; persistence/community/feed.py implements FeedStore ==
class FeedStore(Protocol):
    """Profiles, follows, topics and posts. Writes report whether the record changed, so the service
    moves a counter only together with its record (docs/community.md "The counter rule")."""

    # users and profiles
    async def user_exists(self, user_id: int) -> bool: ...
    async def profile(self, user_id: int) -> Record | None: ...
    async def people(self, user_ids: Iterable[int], *, cached: bool = True) -> dict[int, Record]:
        """`{user_id: {"name", "avatar"}}` for users that exist (display name, else username)."""
        ...

    async def set_bio(self, user_id: int, bio: str, now: datetime.datetime) -> None: ...
    async def set_avatar(self, user_id: int, url: str, now: datetime.datetime) -> str:
        """Store the new avatar; returns the previous one ("" for none)."""
        ...

    async def delete_profile(self, user_id: int) -> bool: ...
    async def inc_profile(self, user_id: int, field: str, by: int) -> None: ...

    # follows between users
    async def add_follow(self, follower: int, followee: int, now: datetime.datetime) -> bool:
        """Insert the unique record; False when it was there already."""
        ...

    async def remove_follow(self, follower: int, followee: int) -> bool: ...
    async def following_among(self, follower: int, user_ids: Iterable[int]) -> set[int]: ...
    async def follow_page(
        self, user_id: int, direction: str, after: tuple[int, ...] | None, limit: int
    ) -> list[tuple[int, int]]:
        """(other user, at_ms) newest first: "followers" of user_id or whom user_id is "following";
        keyset on (at_ms, other user) strictly after `after`."""
        ...

    async def followees(self, user_id: int, cap: int) -> list[int]: ...
    async def followers_of(self, user_id: int, cap: int) -> list[int]: ...

    # topics
    async def topics(self, *, include_hidden: bool, limit: int) -> list[Record]: ...
    async def topic(self, topic_id: int) -> Record | None: ...
    async def topics_by_id(self, topic_ids: Iterable[int]) -> dict[int, Record]: ...
    async def insert_topic(self, title: str, intro: str, now: datetime.datetime) -> Record:
        """TopicTitleTaken when the title exists."""
        ...

    async def update_topic(self, topic_id: int, changes: Record) -> Record | None: ...
    async def inc_topic(self, topic_id: int, field: str, by: int) -> None: ...
    async def add_topic_follow(self, user_id: int, topic_id: int, now: datetime.datetime) -> bool: ...
    async def remove_topic_follow(self, user_id: int, topic_id: int) -> bool: ...
    async def topic_follows(self, user_id: int, topic_ids: Iterable[int] | None = None) -> set[int]:
        """The topics (of `topic_ids`, or all) the user follows."""
        ...

    # posts
    async def new_post_id(self) -> int: ...
    async def insert_post(self, post: Record) -> None: ...
    async def post(self, post_id: int) -> Record | None: ...
    async def posts(
        self,
        *,
        before: int | None,
        limit: int,
        authors: list[int] | None = None,
        topic_id: int | None = None,
        include_hidden: bool = False,
    ) -> list[Record]:
        """Visible posts (all with `include_hidden`), newest first, with `_id < before`; optionally
        only these authors or this topic."""
        ...

    async def set_post_hidden(self, post_id: int, hidden: bool, reason: str) -> Record | None:
        """Flip `hidden` guarded on its current value; the post as it was before, None if unchanged."""
        ...

    async def delete_post(self, post_id: int) -> Record | None:
        """Remove the post; the removed document, None if it was not there."""
        ...

    async def post_ids_of(self, user_id: int) -> list[int]: ...
    async def liked(self, user_id: int, targets: Iterable[str]) -> set[str]:
        """Of `targets` ("post:12"), those the user likes (community_likes, written by reactions)."""
        ...


class Media(Protocol):
    """Uploaded images (web/media.py's MediaStore): checks type by magic bytes and size, strips the
    location, writes the resized variants."""

    async def save(self, data: bytes) -> str:
        """Store an image; its URL. Raises a GavelError (400/413) for what it refuses."""
        ...

    async def delete(self, url: str) -> bool: ...


class Links(Protocol):
    async def exists(self, kind: str, link_id: int) -> bool:
        """Whether a post may link this lot or session."""
        ...


class ReactionPurger(Protocol):
    async def purge_target(self, target: Target) -> None:
        """Remove a deleted post's comments, likes and views (community.reactions)."""
        ...


# == articles (深科技; community/articles.py, persistence/community/articles.py) ===========================
Document = dict[str, Any]


class ArticleStore(Protocol):
    """`community_articles` and `community_article_sources` (docs/community.md "Documents"). It stores and
    loads; the service decides. Titles and source names are unique: a duplicate raises the
    service's ArticleTitleExists / SourceNameExists."""

    async def create_source(self, name: str) -> Document: ...

    async def source(self, source_id: int) -> Document | None: ...

    async def sources(self) -> list[Document]: ...

    async def source_names(self, ids: list[int]) -> dict[int, str]: ...

    async def insert(self, fields: Document) -> Document:
        """A new article: the store allocates the id (counter "community_article")."""
        ...

    async def article(self, article_id: int) -> Document | None: ...

    async def update(
        self, article_id: int, changes: Document, *, status_from: str | None = None
    ) -> Document | None:
        """`$set` the changes; with `status_from`, only while the status is still that one (None:
        it was not, nothing written). Returns the document after."""
        ...

    async def visible_page(
        self,
        now: datetime.datetime,
        position: str | None,
        source_id: int | None,
        after: tuple[int, int, int] | None,
        limit: int,
    ) -> list[Document]:
        """Visible articles (docs/community.md) ordered by (weight, pub_at, _id) descending, strictly
        after the keys `after` (weight, pub_at in ms, id)."""
        ...

    async def due(self, now: datetime.datetime) -> list[Document]:
        """Articles the scheduler may have to move: scheduled with pub_at or offline_at reached,
        online with offline_at reached."""
        ...

    async def reader_flags(self, user_id: int, article_id: int) -> dict[str, bool]:
        """`liked_by_me` and `collected_by_me` (the reactions' records, read-only here)."""
        ...


class MediaFiles(Protocol):
    async def delete(self, url_or_name: str) -> bool:
        """Remove an uploaded file of ours (and its variants); whether it was there."""
        ...
