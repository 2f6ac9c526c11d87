"""What the community's services need from the outside, as small structural ports.

`persistence/community/` implements them on MongoDB and Redis; tests/community/ has in-memory fakes.
Each service module adds the ports it needs here, in its own block.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
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


# == feed (issue 23): community/feed.py's ports; persistence/community/feed.py implements FeedStore ==
Record = dict[str, Any]


class FeedStore(Protocol):
    """Profiles, follows, topics and posts. Writes report whether the record changed, so the service
    moves a counter only together with its record (api.md "Counter rule")."""

    # users and profiles
    async def user_exists(self, user_id: int) -> bool: ...
    async def profile(self, user_id: int) -> Record | None: ...
    async def people(self, user_ids: Iterable[int]) -> dict[int, Record]:
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
    async def purge_target(self, target: Any) -> None:
        """Remove a deleted post's comments, likes and views (community.reactions)."""
        ...
