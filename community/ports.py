"""What the community's services need from the outside, as small structural ports.

`persistence/community/` implements them on MongoDB and Redis; tests/community/ has in-memory fakes.
Each service module adds the ports it needs here, in its own block.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
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
        """Recompute every counter from its records (api.md's list); how many documents were wrong
        per counter, corrected unless `dry_run`."""
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
