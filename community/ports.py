"""What the community's services need from the outside, as small structural ports.

`persistence/community/` implements them on MongoDB and Redis; tests/community/ has in-memory fakes.
Each service module adds the ports it needs here, in its own block.
"""

from __future__ import annotations

import datetime
from typing import Any, Protocol


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
