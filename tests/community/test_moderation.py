"""ModerationService on in-memory fakes: reports, the queue, resolutions, blocks, privacy erase."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from community.errors import (
    ActionRateLimited,
    AlreadyReported,
    CommunityBlocked,
    OwnContent,
    TargetNotFound,
    TextRejected,
)
from community.moderation import ModerationService

T0 = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
ALICE, BOB, CAROL, DAVE, ADMIN = 1, 2, 3, 4, 99


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


class FakeReports:
    def __init__(self) -> None:
        self.docs: dict[int, dict[str, Any]] = {}

    async def insert(
        self, target: str, target_user: int, reporter: int, reason: str, note: str, now: datetime.datetime
    ) -> int | None:
        if any(
            d["target"] == target and d["reporter"] == reporter and d["status"] == "open"
            for d in self.docs.values()
        ):
            return None
        report_id = len(self.docs) + 1
        self.docs[report_id] = {
            "_id": report_id,
            "target": target,
            "target_user": target_user,
            "reporter": reporter,
            "reason": reason,
            "note": note,
            "status": "open",
            "created_at": now,
            "resolved_by": None,
            "resolved_at": None,
            "resolution": "",
        }
        return report_id

    async def report(self, report_id: int) -> dict[str, Any] | None:
        return self.docs.get(report_id)

    async def open_count(self, target: str) -> int:
        return sum(1 for d in self.docs.values() if d["target"] == target and d["status"] == "open")

    def _close(self, match: Any, status: str, by: int, resolution: str, now: datetime.datetime) -> int:
        moved = 0
        for doc in self.docs.values():
            if doc["status"] == "open" and match(doc):
                doc.update(status=status, resolved_by=by, resolved_at=now, resolution=resolution)
                moved += 1
        return moved

    async def close_target(
        self, target: str, status: str, by: int, resolution: str, now: datetime.datetime
    ) -> int:
        return self._close(lambda d: d["target"] == target, status, by, resolution, now)

    async def close_about_user(
        self, target_user: int, status: str, by: int, resolution: str, now: datetime.datetime
    ) -> int:
        return self._close(lambda d: d["target_user"] == target_user, status, by, resolution, now)

    async def queue(self, status: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        for doc in sorted(self.docs.values(), key=lambda d: d["_id"]):
            if doc["status"] != status:
                continue
            group = groups.setdefault(
                doc["target"],
                {
                    "target": doc["target"],
                    "target_user": doc["target_user"],
                    "count": 0,
                    "reasons": {},
                    "first_id": doc["_id"],
                },
            )
            group["count"] += 1
            group["last_id"] = doc["_id"]
            group["reasons"][doc["reason"]] = group["reasons"].get(doc["reason"], 0) + 1
        items = list(groups.values())
        if status == "open":
            items = sorted(
                (g for g in items if after is None or g["first_id"] > after), key=lambda g: g["first_id"]
            )
        else:
            items = sorted(
                (g for g in items if after is None or g["last_id"] < after), key=lambda g: -g["last_id"]
            )
        return items[:limit]

    async def erase_reporter(self, user_id: int) -> int:
        gone = [k for k, d in self.docs.items() if d["reporter"] == user_id]
        for key in gone:
            del self.docs[key]
        return len(gone)


class FakeBlocks:
    def __init__(self) -> None:
        self.docs: dict[int, dict[str, Any]] = {}

    async def blocked(self, user_id: int, now: datetime.datetime) -> bool:
        doc = self.docs.get(user_id)
        return doc is not None and (doc["until"] is None or doc["until"] > now)

    async def block(
        self, user_id: int, until: datetime.datetime | None, reason: str, by: int, now: datetime.datetime
    ) -> dict[str, Any] | None:
        before = self.docs.get(user_id)
        self.docs[user_id] = {"_id": user_id, "until": until, "reason": reason, "by": by, "at": now}
        return before

    async def unblock(self, user_id: int) -> dict[str, Any] | None:
        return self.docs.pop(user_id, None)

    async def block_of(self, user_id: int) -> dict[str, Any] | None:
        return self.docs.get(user_id)


class FakeLimiter:
    def __init__(self, allowed: int = 1000) -> None:
        self.allowed = allowed
        self.taken: list[tuple[int, str]] = []

    async def take(self, user_id: int, action: str) -> int | None:
        self.taken.append((user_id, action))
        return None if len(self.taken) <= self.allowed else 30


class FakeContent:
    """Posts and comments as the feed and the reactions hold them, with the calls moderation made."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, int], dict[str, Any]] = {
            ("post", 1): {"_id": 1, "user_id": ALICE, "hidden": False},
            ("post", 2): {"_id": 2, "user_id": BOB, "hidden": False},
            ("post", 3): {"_id": 3, "user_id": ALICE, "hidden": True},
            ("comment", 5): {"_id": 5, "user_id": BOB, "hidden": False},
        }
        self.calls: list[tuple[Any, ...]] = []

    async def content(self, kind: str, content_id: int) -> dict[str, Any] | None:
        return self.items.get((kind, content_id))

    def _hide(self, kind: str, content_id: int, hidden: bool) -> bool:
        doc = self.items.get((kind, content_id))
        if doc is None or doc["hidden"] == hidden:
            return False
        doc["hidden"] = hidden
        return True

    def _delete(self, kind: str, content_id: int) -> bool:
        return self.items.pop((kind, content_id), None) is not None


class FakeFeed:
    def __init__(self, content: FakeContent) -> None:
        self.content = content

    async def set_post_hidden(self, post_id: int, hidden: bool, reason: str) -> bool:
        self.content.calls.append(("set_post_hidden", post_id, hidden, reason))
        return self.content._hide("post", post_id, hidden)

    async def delete_post(self, post_id: int) -> bool:
        self.content.calls.append(("delete_post", post_id))
        return self.content._delete("post", post_id)

    async def erase_user(self, user_id: int) -> dict[str, int]:
        self.content.calls.append(("feed.erase_user", user_id))
        mine = [
            key for key, doc in self.content.items.items() if key[0] == "post" and doc["user_id"] == user_id
        ]
        for key in mine:
            del self.content.items[key]
        return {"posts": len(mine), "follows": 2, "images": 3}


class FakeReactions:
    def __init__(self, content: FakeContent) -> None:
        self.content = content

    async def set_comment_hidden(self, comment_id: int, hidden: bool, reason: str) -> bool:
        self.content.calls.append(("set_comment_hidden", comment_id, hidden, reason))
        return self.content._hide("comment", comment_id, hidden)

    async def delete_comment(self, comment_id: int) -> bool:
        self.content.calls.append(("delete_comment", comment_id))
        return self.content._delete("comment", comment_id)

    async def erase_user(self, user_id: int) -> dict[str, int]:
        self.content.calls.append(("reactions.erase_user", user_id))
        return {"comments": 4, "likes": 5, "views": 6, "collections": 1, "follows": 1}


class World:
    def __init__(self, limit: int = 1000) -> None:
        self.clock = FakeClock()
        self.reports = FakeReports()
        self.blocks = FakeBlocks()
        self.limiter = FakeLimiter(limit)
        self.content = FakeContent()
        self.service = ModerationService(
            reports=self.reports,
            blocks=self.blocks,
            limiter=self.limiter,
            contents=self.content,
            posts=FakeFeed(self.content),
            comments=FakeReactions(self.content),
            clock=self.clock,
        )


@pytest.fixture
def world() -> World:
    return World()


# == reports ==============================================================================================
async def test_a_report_is_stored_open_with_the_author_of_the_content(world: World) -> None:
    report_id = await world.service.report(BOB, "post:1", "spam", "  buy now \u200b ")
    doc = world.reports.docs[report_id]
    assert (doc["target"], doc["target_user"], doc["reporter"]) == ("post:1", ALICE, BOB)
    assert (doc["reason"], doc["note"], doc["status"], doc["created_at"]) == ("spam", "buy now", "open", T0)
    assert world.limiter.taken == [(BOB, "report")]


async def test_one_open_report_per_target_and_reporter_then_again_once_closed(world: World) -> None:
    await world.service.report(BOB, "post:1", "spam")
    with pytest.raises(AlreadyReported) as refused:
        await world.service.report(BOB, "post:1", "abuse")
    assert refused.value.code == "ALREADY_REPORTED"
    # Another reporter is another report; another target too.
    await world.service.report(CAROL, "post:1", "abuse")
    await world.service.report(ALICE, "comment:5", "abuse")
    await world.service.resolve(1, "dismiss", "not spam", ADMIN)
    assert await world.service.report(BOB, "post:1", "spam") > 0


async def test_reporting_your_own_content_is_refused(world: World) -> None:
    with pytest.raises(OwnContent) as refused:
        await world.service.report(ALICE, "post:1", "spam")
    assert refused.value.code == "VALIDATION"
    assert world.reports.docs == {}


@pytest.mark.parametrize("target", ["post:3", "post:404", "comment:404"])
async def test_hidden_or_missing_content_cannot_be_reported(world: World, target: str) -> None:
    with pytest.raises(TargetNotFound):
        await world.service.report(BOB, target, "spam")


@pytest.mark.parametrize(
    ("target", "reason", "note"),
    [
        ("article:1", "spam", ""),  # articles are not reportable
        ("course:1", "spam", ""),
        ("post:0", "spam", ""),
        ("post:1 ", "spam", ""),
        (12, "spam", ""),
        ("post:1", "rude", ""),
        ("post:1", None, ""),
        ("post:1", "other", "x" * 256),
        ("post:1", "other", "bell\x07"),
        ("post:1", "other", 5),
    ],
)
async def test_bad_input_is_a_validation_error(world: World, target: Any, reason: Any, note: Any) -> None:
    with pytest.raises(TextRejected) as refused:
        await world.service.report(BOB, target, reason, note)
    assert refused.value.code == "VALIDATION"
    assert world.limiter.taken == []  # bad input spends no rate


async def test_a_blocked_user_cannot_report_until_the_block_ends(world: World) -> None:
    await world.service.block(BOB, "spamming reports", 2, ADMIN)
    with pytest.raises(CommunityBlocked):
        await world.service.report(BOB, "post:1", "spam")
    world.clock.now = T0 + datetime.timedelta(days=2, seconds=1)
    assert await world.service.report(BOB, "post:1", "spam") == 1


async def test_reports_are_rate_limited(world: World) -> None:
    limited = World(limit=1)
    await limited.service.report(BOB, "post:1", "spam")
    with pytest.raises(ActionRateLimited) as refused:
        await limited.service.report(BOB, "comment:5", "spam")
    assert refused.value.retry_after_s == 30


# == the queue ============================================================================================
async def test_the_queue_groups_open_reports_by_target_oldest_first_and_pages(world: World) -> None:
    await world.service.report(BOB, "post:1", "spam")
    await world.service.report(ALICE, "comment:5", "abuse")
    await world.service.report(CAROL, "post:1", "abuse")
    await world.service.report(DAVE, "post:1", "spam")
    await world.service.report(ALICE, "post:2", "other")
    first, after = await world.service.queue("open", None, 2)
    assert [(g["target"], g["count"]) for g in first] == [("post:1", 3), ("comment:5", 1)]
    assert first[0]["reasons"] == {"spam": 2, "abuse": 1}
    assert after == 2
    rest, end = await world.service.queue("open", after, 2)
    assert [(g["target"], g["count"]) for g in rest] == [("post:2", 1)]
    assert end is None


async def test_an_unknown_status_is_refused(world: World) -> None:
    with pytest.raises(TextRejected):
        await world.service.queue("everything", None, 20)


# == resolutions ===========================================================================================
async def test_hide_resolves_every_open_report_of_the_target_at_once(world: World) -> None:
    await world.service.report(BOB, "post:1", "spam")
    await world.service.report(CAROL, "post:1", "abuse")
    other = await world.service.report(ALICE, "comment:5", "abuse")
    outcome = await world.service.resolve(2, "hide", "advertising", ADMIN)
    assert outcome.as_dict() == {
        "target": "post:1",
        "action": "hide",
        "reason": "advertising",
        "changed": True,
        "reports": 2,
        "content": {"user_id": ALICE, "hidden": False, "text": ""},
    }
    assert world.content.items[("post", 1)]["hidden"] is True
    assert ("set_post_hidden", 1, True, "advertising") in world.content.calls
    for report_id in (1, 2):
        doc = world.reports.docs[report_id]
        assert (doc["status"], doc["resolved_by"], doc["resolution"]) == (
            "resolved",
            ADMIN,
            "hide: advertising",
        )
    assert world.reports.docs[other]["status"] == "open"
    # The same decision again: nothing open, nothing changes.
    again = await world.service.resolve(1, "hide", "advertising", ADMIN)
    assert (again.changed, again.reports) == (False, 0)
    assert [c for c in world.content.calls if c[0] == "set_post_hidden"] == [
        ("set_post_hidden", 1, True, "advertising")
    ]


async def test_delete_a_reported_comment_goes_through_the_reactions(world: World) -> None:
    report_id = await world.service.report(ALICE, "comment:5", "abuse")
    outcome = await world.service.resolve(report_id, "delete", "insults", ADMIN)
    assert (outcome.target, outcome.changed, outcome.reports) == ("comment:5", True, 1)
    assert ("delete_comment", 5) in world.content.calls
    assert ("comment", 5) not in world.content.items


async def test_dismiss_leaves_the_content_and_closes_the_reports_as_dismissed(world: World) -> None:
    report_id = await world.service.report(BOB, "post:1", "spam")
    outcome = await world.service.resolve(report_id, "dismiss", "fine as it is", ADMIN)
    assert (outcome.changed, outcome.reports) == (False, 1)
    assert world.content.calls == []
    assert world.reports.docs[report_id]["status"] == "dismissed"
    dismissed, _ = await world.service.queue("dismissed", None, 20)
    assert [g["target"] for g in dismissed] == ["post:1"]


@pytest.mark.parametrize(
    ("action", "reason"), [("ban", "x"), ("hide", ""), ("hide", "a\nb"), ("hide", "r" * 256)]
)
async def test_a_resolution_needs_a_known_action_and_a_reason(world: World, action: str, reason: str) -> None:
    report_id = await world.service.report(BOB, "post:1", "spam")
    with pytest.raises(TextRejected):
        await world.service.resolve(report_id, action, reason, ADMIN)
    assert world.reports.docs[report_id]["status"] == "open"


async def test_resolving_an_unknown_report_is_not_found(world: World) -> None:
    with pytest.raises(TargetNotFound):
        await world.service.resolve(77, "hide", "x", ADMIN)


async def test_direct_hide_and_unhide_and_delete(world: World) -> None:
    await world.service.report(BOB, "post:1", "spam")
    hidden = await world.service.moderate("post", 1, "hide", "spam", ADMIN)
    assert (hidden.changed, hidden.reports) == (True, 1)
    shown = await world.service.moderate("post", 1, "unhide", "appeal granted", ADMIN)
    assert (shown.changed, shown.reports) == (True, 0)
    assert (await world.service.moderate("post", 1, "unhide", "again", ADMIN)).changed is False
    deleted = await world.service.moderate("comment", 5, "delete", "insults", ADMIN)
    assert deleted.changed is True
    with pytest.raises(TargetNotFound):
        await world.service.moderate("comment", 5, "hide", "gone", ADMIN)
    with pytest.raises(TargetNotFound):
        await world.service.moderate("article", 1, "hide", "not ours", ADMIN)


# == blocks ===============================================================================================
async def test_block_for_days_or_until_lifted(world: World) -> None:
    before, block = await world.service.block(BOB, "abuse", 7, ADMIN)
    assert before is None
    assert block["until"] == T0 + datetime.timedelta(days=7)
    assert (await world.service.block_of(BOB) or {})["reason"] == "abuse"
    before, block = await world.service.block(BOB, "worse", None, ADMIN)
    assert before is not None and before["reason"] == "abuse"
    assert block["until"] is None
    world.clock.now = T0 + datetime.timedelta(days=3650)
    assert await world.blocks.blocked(BOB, world.clock.now)
    assert await world.service.unblock(BOB) is not None
    assert await world.service.unblock(BOB) is None
    assert await world.service.block_of(BOB) is None


async def test_an_expired_block_reads_as_none(world: World) -> None:
    await world.service.block(BOB, "cool down", 1, ADMIN)
    world.clock.now = T0 + datetime.timedelta(days=1)
    assert await world.service.block_of(BOB) is None


@pytest.mark.parametrize("days", [0, 3651, -1, True, 1.5])
async def test_block_days_are_1_to_3650(world: World, days: Any) -> None:
    with pytest.raises(TextRejected):
        await world.service.block(BOB, "abuse", days, ADMIN)
    assert world.blocks.docs == {}


# == privacy erase ========================================================================================
async def test_erase_removes_content_everywhere_and_the_users_reports(world: World) -> None:
    await world.service.report(ALICE, "post:2", "spam")  # by Alice: erased with her
    await world.service.report(BOB, "post:1", "spam")  # about Alice's post: closed
    await world.service.report(CAROL, "comment:5", "spam")  # about Bob's comment: stays open
    counts = await world.service.erase_user(ALICE, ADMIN)
    assert counts == {
        "posts": 2,
        "follows": 3,
        "images": 3,
        "comments": 4,
        "likes": 5,
        "views": 6,
        "collections": 1,
        "reports": 1,
        "reports_closed": 1,
    }
    assert ("feed.erase_user", ALICE) in world.content.calls
    assert ("reactions.erase_user", ALICE) in world.content.calls
    assert all(d["reporter"] != ALICE for d in world.reports.docs.values())
    statuses = {d["target"]: d["status"] for d in world.reports.docs.values()}
    assert statuses == {"post:1": "resolved", "comment:5": "open"}
