"""In-memory ports for community/reactions.py: the same contract as persistence/community/reactions.py,
kept small (dicts of records and documents)."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Sequence
from typing import Any

from community.ports import Record
from community.reactions import COLLECTION_KIND_NO
from community.rules import Target

NOW = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)


class FakeStore:
    def __init__(self) -> None:
        self.records: dict[str, dict[tuple[str, int], Record]] = {"view": {}, "like": {}, "collect": {}}
        # post, article and comment documents by target string ("post:1"); comments also here.
        self.docs: dict[str, Record] = {}
        self._ids = itertools.count(1)

    def add_doc(self, target: Target, **fields: Any) -> Record:
        doc = {"_id": target.id, "likes": 0, "comments": 0, "views": 0, "collects": 0, "hidden": False}
        doc.update(fields)
        self.docs[str(target)] = doc
        return doc

    async def add_record(self, kind: str, target: str, user_id: int, now: datetime.datetime) -> bool:
        key = (target, user_id)
        if key in self.records[kind]:
            return False
        tkind, _, tid = target.partition(":")
        self.records[kind][key] = {
            "target": target,
            "user_id": user_id,
            "at": now,
            "kind": tkind,
            "kind_no": COLLECTION_KIND_NO.get(tkind, 0),
            "tid": int(tid),
        }
        return True

    async def remove_record(self, kind: str, target: str, user_id: int) -> bool:
        return self.records[kind].pop((target, user_id), None) is not None

    async def has_records(self, kind: str, targets: Sequence[str], user_id: int) -> set[str]:
        return {t for t in targets if (t, user_id) in self.records[kind]}

    async def count_records(self, kind: str, target: str) -> int:
        return sum(1 for t, _ in self.records[kind] if t == target)

    async def user_records(self, kind: str, user_id: int) -> list[str]:
        return [t for t, u in self.records[kind] if u == user_id]

    async def purge_records(self, targets: Sequence[str]) -> None:
        for records in self.records.values():
            for key in [k for k in records if k[0] in targets]:
                del records[key]

    async def inc(self, target: Target, field: str, delta: int) -> Record | None:
        doc = self.docs.get(str(target))
        if doc is None:
            return None
        doc[field] = doc.get(field, 0) + delta
        return dict(doc)

    async def counters(self, target: Target) -> Record | None:
        doc = self.docs.get(str(target))
        return None if doc is None else dict(doc)

    async def insert_comment(self, comment: Record) -> Record:
        stored = {"_id": 1000 + next(self._ids), **comment}
        self.docs[f"comment:{stored['_id']}"] = stored
        return dict(stored)

    def _comments(self) -> list[Record]:
        return sorted((d for k, d in self.docs.items() if k.startswith("comment:")), key=lambda d: d["_id"])

    async def comment(self, comment_id: int) -> Record | None:
        doc = self.docs.get(f"comment:{comment_id}")
        return None if doc is None else dict(doc)

    async def root_comments(self, target: str, after: int | None, limit: int) -> list[Record]:
        found = [
            dict(c)
            for c in self._comments()
            if c["target"] == target and c["root"] is None and not c["hidden"] and c["_id"] > (after or 0)
        ]
        return found[:limit]

    async def replies(self, root_id: int, after: int | None, limit: int) -> list[Record]:
        found = [
            dict(c)
            for c in self._comments()
            if c["root"] == root_id and not c["hidden"] and c["_id"] > (after or 0)
        ]
        return found[:limit]

    async def reply_previews(self, root_ids: Sequence[int], count: int) -> dict[int, list[Record]]:
        return {r: await self.replies(r, None, count) for r in root_ids}

    async def set_comment_hidden(self, comment_id: int, hidden: bool, reason: str) -> Record | None:
        doc = self.docs.get(f"comment:{comment_id}")
        if doc is None or doc["hidden"] == hidden:
            return None
        doc.update(hidden=hidden, hidden_reason=reason if hidden else "")
        return dict(doc)

    async def take_comment(self, comment_id: int) -> Record | None:
        return self.docs.pop(f"comment:{comment_id}", None)

    async def comment_ids(self, *, root: int | None = None, target: str | None = None) -> list[int]:
        if root is not None:
            return [c["_id"] for c in self._comments() if c["root"] == root]
        return [c["_id"] for c in self._comments() if c["target"] == target]

    async def user_comment_ids(self, user_id: int) -> list[int]:
        mine = [c for c in self._comments() if c["user_id"] == user_id]
        return [c["_id"] for c in sorted(mine, key=lambda c: (c["root"] is not None, c["_id"]))]

    async def collections(
        self, user_id: int, kinds: Sequence[str], after: tuple[int, ...] | None, limit: int
    ) -> list[Record]:
        def keys(r: Record) -> tuple[int, int, int]:
            at = r["at"]
            return (int(at.timestamp() * 1000), r["kind_no"], r["tid"])

        mine = [r for (_, u), r in self.records["collect"].items() if u == user_id and r["kind"] in kinds]
        mine.sort(key=keys, reverse=True)
        if after is not None:
            mine = [r for r in mine if keys(r) < after]
        return mine[:limit]

    async def recount(self, dry_run: bool) -> dict[str, int]:
        return {}


class FakeTargets:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.courses: dict[int, Record] = {}

    async def visible(self, target: Target, now: datetime.datetime) -> bool:
        if target.kind == "course":
            return self.courses.get(target.id, {}).get("status") == "online"
        doc = self.store.docs.get(str(target))
        return doc is not None and not doc.get("hidden") and doc.get("online", True)

    async def describe(self, targets: Sequence[Target], now: datetime.datetime) -> dict[Target, Record]:
        found: dict[Target, Record] = {}
        for target in targets:
            if target.kind == "course" and target.id in self.courses:
                course = self.courses[target.id]
                found[target] = {
                    "title": course["name"],
                    "image": "",
                    "available": course["status"] == "online",
                }
            elif str(target) in self.store.docs:
                doc = self.store.docs[str(target)]
                found[target] = {
                    "title": doc.get("title", ""),
                    "image": "",
                    "available": await self.visible(target, now),
                }
        return found


class FakeBlocks:
    def __init__(self) -> None:
        self.blocked_users: set[int] = set()

    async def blocked(self, user_id: int, now: datetime.datetime) -> bool:
        return user_id in self.blocked_users


class FakeLimiter:
    """Allows `allowed` actions per (user, action), then answers a retry of 30 s."""

    def __init__(self, allowed: int = 1_000_000) -> None:
        self.allowed = allowed
        self.taken: dict[tuple[int, str], int] = {}

    async def take(self, user_id: int, action: str) -> int | None:
        count = self.taken[(user_id, action)] = self.taken.get((user_id, action), 0) + 1
        return None if count <= self.allowed else 30


class RecordingLive:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def counts_changed(self, target: Target) -> None:
        self.events.append(("counts", str(target)))

    def comment_counts_changed(self, topic: Target, comment_id: int) -> None:
        self.events.append(("comment_counts", (str(topic), comment_id)))

    def comment_added(self, comment: Record) -> None:
        self.events.append(("comment", comment["_id"]))
