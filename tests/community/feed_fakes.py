"""In-memory fakes of the feed's ports (community/ports.py "feed" block), for tests/community/."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from collections.abc import Iterable

from community.feed import FeedService, TopicTitleTaken
from community.ports import Record
from community.rules import Target

NOW = datetime.datetime(2026, 3, 1, 9, 30, tzinfo=datetime.UTC)


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> datetime.datetime:
        return self.at

    def tick(self, seconds: float = 1) -> None:
        self.at += datetime.timedelta(seconds=seconds)


class FakeFeedStore:
    def __init__(self) -> None:
        self.users: dict[int, str] = {}
        self.profiles: dict[int, Record] = {}
        self.follows: dict[tuple[int, int], datetime.datetime] = {}
        self.topic_docs: dict[int, Record] = {}
        self.topic_follow: set[tuple[int, int]] = set()
        self.post_docs: dict[int, Record] = {}
        self.likes: set[tuple[int, str]] = set()
        self._ids = itertools.count(1)

    # users and profiles
    async def user_exists(self, user_id: int) -> bool:
        return user_id in self.users

    async def profile(self, user_id: int) -> Record | None:
        found = self.profiles.get(user_id)
        return dict(found) if found is not None else None

    async def people(self, user_ids: Iterable[int], *, cached: bool = True) -> dict[int, Record]:
        return {
            u: {"name": self.users[u], "avatar": self.profiles.get(u, {}).get("avatar", "")}
            for u in set(user_ids)
            if u in self.users
        }

    async def set_bio(self, user_id: int, bio: str, now: datetime.datetime) -> None:
        self.profiles.setdefault(user_id, {"_id": user_id}).update(bio=bio, updated_at=now)

    async def set_avatar(self, user_id: int, url: str, now: datetime.datetime) -> str:
        profile = self.profiles.setdefault(user_id, {"_id": user_id})
        old = str(profile.get("avatar", ""))
        profile.update(avatar=url, updated_at=now)
        return old

    async def delete_profile(self, user_id: int) -> bool:
        return self.profiles.pop(user_id, None) is not None

    async def inc_profile(self, user_id: int, field: str, by: int) -> None:
        profile = self.profiles.setdefault(user_id, {"_id": user_id})
        profile[field] = profile.get(field, 0) + by

    # follows
    async def add_follow(self, follower: int, followee: int, now: datetime.datetime) -> bool:
        if (follower, followee) in self.follows:
            return False
        self.follows[follower, followee] = now
        return True

    async def remove_follow(self, follower: int, followee: int) -> bool:
        return self.follows.pop((follower, followee), None) is not None

    async def following_among(self, follower: int, user_ids: Iterable[int]) -> set[int]:
        return {u for u in user_ids if (follower, u) in self.follows}

    async def follow_page(
        self, user_id: int, direction: str, after: tuple[int, ...] | None, limit: int
    ) -> list[tuple[int, int]]:
        if direction == "followers":
            rows = [(a, int(at.timestamp() * 1000)) for (a, b), at in self.follows.items() if b == user_id]
        else:
            rows = [(b, int(at.timestamp() * 1000)) for (a, b), at in self.follows.items() if a == user_id]
        rows.sort(key=lambda r: (r[1], r[0]), reverse=True)
        if after is not None:
            rows = [r for r in rows if (r[1], r[0]) < (after[0], after[1])]
        return rows[:limit]

    async def followees(self, user_id: int, cap: int) -> list[int]:
        return [b for (a, b) in self.follows if a == user_id][:cap]

    async def followers_of(self, user_id: int, cap: int) -> list[int]:
        return [a for (a, b) in self.follows if b == user_id][:cap]

    # topics
    async def topics(self, *, include_hidden: bool, limit: int) -> list[Record]:
        found = [dict(t) for _, t in sorted(self.topic_docs.items()) if include_hidden or not t["hidden"]]
        return found[:limit]

    async def topic(self, topic_id: int) -> Record | None:
        found = self.topic_docs.get(topic_id)
        return dict(found) if found else None

    async def topics_by_id(self, topic_ids: Iterable[int]) -> dict[int, Record]:
        return {t: dict(self.topic_docs[t]) for t in topic_ids if t in self.topic_docs}

    async def insert_topic(self, title: str, intro: str, now: datetime.datetime) -> Record:
        if any(t["title"] == title for t in self.topic_docs.values()):
            raise TopicTitleTaken("taken")
        topic_id = next(self._ids)
        topic = {
            "_id": topic_id,
            "title": title,
            "intro": intro,
            "followers": 0,
            "posts": 0,
            "created_at": now,
            "hidden": False,
        }
        self.topic_docs[topic_id] = topic
        return dict(topic)

    async def update_topic(self, topic_id: int, changes: Record) -> Record | None:
        if topic_id not in self.topic_docs:
            return None
        self.topic_docs[topic_id].update(changes)
        return dict(self.topic_docs[topic_id])

    async def inc_topic(self, topic_id: int, field: str, by: int) -> None:
        if topic_id in self.topic_docs:
            self.topic_docs[topic_id][field] += by

    async def add_topic_follow(self, user_id: int, topic_id: int, now: datetime.datetime) -> bool:
        if (user_id, topic_id) in self.topic_follow:
            return False
        self.topic_follow.add((user_id, topic_id))
        return True

    async def remove_topic_follow(self, user_id: int, topic_id: int) -> bool:
        if (user_id, topic_id) not in self.topic_follow:
            return False
        self.topic_follow.discard((user_id, topic_id))
        return True

    async def topic_follows(self, user_id: int, topic_ids: Iterable[int] | None = None) -> set[int]:
        mine = {t for u, t in self.topic_follow if u == user_id}
        return mine if topic_ids is None else mine & set(topic_ids)

    # posts
    async def new_post_id(self) -> int:
        return next(self._ids)

    async def insert_post(self, post: Record) -> None:
        self.post_docs[post["_id"]] = dict(post)

    async def post(self, post_id: int) -> Record | None:
        found = self.post_docs.get(post_id)
        return dict(found) if found else None

    async def posts(
        self,
        *,
        before: int | None,
        limit: int,
        authors: list[int] | None = None,
        topic_id: int | None = None,
        include_hidden: bool = False,
    ) -> list[Record]:
        found = [
            dict(p)
            for pid, p in sorted(self.post_docs.items(), reverse=True)
            if (include_hidden or not p["hidden"])
            and (before is None or pid < before)
            and (authors is None or p["user_id"] in authors)
            and (topic_id is None or p["topic_id"] == topic_id)
        ]
        return found[:limit]

    async def set_post_hidden(self, post_id: int, hidden: bool, reason: str) -> Record | None:
        post = self.post_docs.get(post_id)
        if post is None or post["hidden"] == hidden:
            return None
        before = dict(post)
        post.update(hidden=hidden, hidden_reason=reason if hidden else "")
        return before

    async def delete_post(self, post_id: int) -> Record | None:
        return self.post_docs.pop(post_id, None)

    async def post_ids_of(self, user_id: int) -> list[int]:
        return [pid for pid, p in self.post_docs.items() if p["user_id"] == user_id]

    async def liked(self, user_id: int, targets: Iterable[str]) -> set[str]:
        return {t for t in targets if (user_id, t) in self.likes}


class FakeMedia:
    """Accepts bytes starting with b"IMG"; "stores" them under a counter's URL."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self._ids = itertools.count(1)

    async def save(self, data: bytes) -> str:
        from engine.book.errors import GavelError

        if not data.startswith(b"IMG"):
            raise GavelError("only images", code="VALIDATION")
        url = f"/media/{next(self._ids):032x}.png"
        self.files[url] = data
        return url

    async def delete(self, url: str) -> bool:
        return self.files.pop(url, None) is not None


class FakeLimiter:
    def __init__(self) -> None:
        self.limits: dict[str, int] = {}
        self.taken: dict[tuple[int, str], int] = {}

    async def take(self, user_id: int, action: str) -> int | None:
        count = self.taken[user_id, action] = self.taken.get((user_id, action), 0) + 1
        limit = self.limits.get(action)
        return 30 if limit is not None and count > limit else None


class FakeBlocks:
    def __init__(self) -> None:
        self.blocked_users: set[int] = set()

    async def blocked(self, user_id: int, now: datetime.datetime) -> bool:
        return user_id in self.blocked_users


class FakeLinks:
    def __init__(self) -> None:
        self.known: set[tuple[str, int]] = set()

    async def exists(self, kind: str, link_id: int) -> bool:
        return (kind, link_id) in self.known


class FakePurger:
    def __init__(self) -> None:
        self.purged: list[str] = []

    async def purge_target(self, target: Target) -> None:
        self.purged.append(str(target))


@dataclasses.dataclass
class World:
    feed: FeedService
    store: FakeFeedStore
    media: FakeMedia
    limiter: FakeLimiter
    blocks: FakeBlocks
    links: FakeLinks
    purger: FakePurger
    clock: Clock

    def user(self, user_id: int, name: str = "") -> int:
        self.store.users[user_id] = name or f"user{user_id}"
        return user_id


def world() -> World:
    store, media, limiter = FakeFeedStore(), FakeMedia(), FakeLimiter()
    blocks, links, purger, clock = FakeBlocks(), FakeLinks(), FakePurger(), Clock()
    feed = FeedService(store, media, blocks=blocks, limiter=limiter, links=links, purger=purger, now=clock)
    return World(feed, store, media, limiter, blocks, links, purger, clock)
