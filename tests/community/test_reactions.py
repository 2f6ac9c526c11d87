"""ReactionService on in-memory ports: one view per user, idempotent likes and collections, the
counter rule (records and counters move together), comment threading and its limits, hiding and
deleting with counters following, purging a target, erasing a user, blocks and rate limits."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from community.errors import ActionRateLimited, CommunityBlocked, TargetNotFound, TextRejected
from community.reactions import BadReply, NotYourComment, ReactionService
from community.rules import ARTICLE_COMMENT_MAX, POST_COMMENT_MAX, Target
from tests.community.fakes_reactions import (
    NOW,
    FakeBlocks,
    FakeLimiter,
    FakeStore,
    FakeTargets,
    RecordingLive,
)

POST = Target("post", 1)
ARTICLE = Target("article", 3)
COURSE = Target("course", 7)


@dataclasses.dataclass
class World:
    service: ReactionService
    store: FakeStore
    targets: FakeTargets
    blocks: FakeBlocks
    limiter: FakeLimiter
    live: RecordingLive
    clock: list[datetime.datetime]


@pytest.fixture
def world() -> World:
    store = FakeStore()
    store.add_doc(POST, user_id=50)
    store.add_doc(ARTICLE, title="Chips")
    targets = FakeTargets(store)
    targets.courses[7] = {"name": "Go in depth", "status": "online"}
    blocks, limiter, live = FakeBlocks(), FakeLimiter(), RecordingLive()
    clock = [NOW]
    service = ReactionService(store, targets, blocks, limiter, live, now=lambda: clock[0])
    return World(service, store, targets, blocks, limiter, live, clock)


def counters(w: World, target: Target) -> dict[str, int]:
    doc = w.store.docs[str(target)]
    return {k: doc.get(k, 0) for k in ("likes", "comments", "views", "collects", "replies")}


# == views ===============================================================================================
async def test_a_user_views_a_post_once_and_signed_out_views_are_not_counted(world: World) -> None:
    assert await world.service.view(1, POST) == {"views": 1, "counted": True}
    assert await world.service.view(1, POST) == {"views": 1, "counted": False}
    assert await world.service.view(None, POST) == {"views": 1, "counted": False}
    assert await world.service.view(2, POST) == {"views": 2, "counted": True}
    assert len(world.store.records["view"]) == 2


async def test_a_hidden_post_cannot_be_viewed_nor_a_comment(world: World) -> None:
    world.store.docs[str(POST)]["hidden"] = True
    with pytest.raises(TargetNotFound):
        await world.service.view(1, POST)
    with pytest.raises(TargetNotFound):
        await world.service.view(1, Target("comment", 1))


# == likes ===============================================================================================
async def test_likes_are_idempotent_and_move_with_their_records(world: World) -> None:
    assert await world.service.like(1, POST, True) == {"liked": True, "likes": 1}
    assert await world.service.like(1, POST, True) == {"liked": True, "likes": 1}
    assert await world.service.like(2, POST, True) == {"liked": True, "likes": 2}
    assert await world.service.like(1, POST, False) == {"liked": False, "likes": 1}
    assert await world.service.like(1, POST, False) == {"liked": False, "likes": 1}
    assert await world.service.liked_by(2, [POST, ARTICLE]) == {"post:1"}
    assert await world.service.liked_by(None, [POST]) == set()
    assert ("counts", "post:1") in world.live.events


async def test_a_like_needs_a_visible_target_but_taking_it_back_does_not(world: World) -> None:
    await world.service.like(1, POST, True)
    world.store.docs[str(POST)]["hidden"] = True
    with pytest.raises(TargetNotFound):
        await world.service.like(2, POST, True)
    assert await world.service.like(1, POST, False) == {"liked": False, "likes": 0}


async def test_courses_cannot_be_liked_and_posts_cannot_be_collected(world: World) -> None:
    with pytest.raises(TargetNotFound):
        await world.service.like(1, COURSE, True)
    with pytest.raises(TargetNotFound):
        await world.service.collect(1, POST, True)


async def test_likes_are_rate_limited(world: World) -> None:
    world.limiter.allowed = 2
    await world.service.like(1, POST, True)
    await world.service.like(1, POST, False)
    with pytest.raises(ActionRateLimited) as refused:
        await world.service.like(1, POST, True)
    assert refused.value.retry_after_s == 30
    assert counters(world, POST)["likes"] == 0


async def test_a_comment_like_tells_the_page_of_its_post(world: World) -> None:
    comment = await world.service.add_comment(2, POST, "first!", None)
    world.live.events.clear()
    assert await world.service.like(1, Target("comment", comment["_id"]), True) == {"liked": True, "likes": 1}
    assert world.live.events == [("comment_counts", ("post:1", comment["_id"]))]


# == collections =========================================================================================
async def test_collections_over_articles_and_courses(world: World) -> None:
    assert await world.service.collect(1, ARTICLE, True) == {"collected": True, "collects": 1}
    assert await world.service.collect(1, ARTICLE, True) == {"collected": True, "collects": 1}
    world.clock[0] = NOW + datetime.timedelta(seconds=1)
    assert await world.service.collect(1, COURSE, True) == {"collected": True, "collects": 1}
    assert await world.service.collect(2, COURSE, True) == {"collected": True, "collects": 2}
    assert counters(world, ARTICLE)["collects"] == 1
    page = await world.service.collections(1, "all", None, 20)
    assert [(i["kind"], i["id"], i["title"], i["available"]) for i in page.items] == [
        ("course", 7, "Go in depth", True),
        ("article", 3, "Chips", True),
    ]
    assert page.next_keys is None
    only = await world.service.collections(1, "article", None, 20)
    assert [i["id"] for i in only.items] == [3]


async def test_an_offline_article_stays_collected_unavailable_and_can_be_taken_out(world: World) -> None:
    await world.service.collect(1, ARTICLE, True)
    world.store.docs[str(ARTICLE)]["online"] = False
    with pytest.raises(TargetNotFound):
        await world.service.collect(2, ARTICLE, True)
    [item] = (await world.service.collections(1, "all", None, 20)).items
    assert item["available"] is False
    assert await world.service.collect(1, ARTICLE, False) == {"collected": False, "collects": 0}
    assert (await world.service.collections(1, "all", None, 20)).items == []


async def test_collections_page_with_keyset_cursors(world: World) -> None:
    for n in range(5):
        world.targets.courses[100 + n] = {"name": f"C{n}", "status": "online"}
        await world.service.collect(1, Target("course", 100 + n), True)  # same instant: ids break ties
    first = await world.service.collections(1, "all", None, 2)
    assert [i["id"] for i in first.items] == [104, 103]
    assert first.next_keys is not None
    second = await world.service.collections(1, "all", first.next_keys, 2)
    third = await world.service.collections(1, "all", second.next_keys, 2)
    assert [i["id"] for i in second.items] == [102, 101]
    assert [i["id"] for i in third.items] == [100] and third.next_keys is None


# == comments ============================================================================================
async def test_comments_thread_under_their_root(world: World) -> None:
    root = await world.service.add_comment(1, POST, "  root  ", None)
    assert (root["text"], root["root"], root["depth"], root["reply_to"]) == ("root", None, 1, None)
    reply = await world.service.add_comment(2, POST, "a reply", root["_id"])
    assert (reply["root"], reply["depth"], reply["reply_to"], reply["reply_to_user"]) == (
        root["_id"],
        2,
        root["_id"],
        1,
    )
    deeper = await world.service.add_comment(3, POST, "reply to the reply", reply["_id"])
    assert (deeper["root"], deeper["depth"], deeper["reply_to_user"]) == (root["_id"], 3, 2)
    assert counters(world, POST)["comments"] == 3
    assert world.store.docs[f"comment:{root['_id']}"]["replies"] == 2
    page = await world.service.comments(POST, None, 20)
    assert [c["_id"] for c in page.items] == [root["_id"]]
    assert [r["_id"] for r in page.items[0]["reply_preview"]] == [reply["_id"], deeper["_id"]]
    replies = await world.service.replies(root["_id"], None, 1)
    assert [r["_id"] for r in replies.items] == [reply["_id"]] and replies.next_keys == (reply["_id"],)
    assert ("comment", deeper["_id"]) in world.live.events


async def test_comment_text_limits_depend_on_the_target(world: World) -> None:
    await world.service.add_comment(1, POST, "x" * POST_COMMENT_MAX, None)
    with pytest.raises(TextRejected):
        await world.service.add_comment(1, POST, "x" * (POST_COMMENT_MAX + 1), None)
    await world.service.add_comment(1, ARTICLE, "x" * ARTICLE_COMMENT_MAX, None)
    with pytest.raises(TextRejected):
        await world.service.add_comment(1, ARTICLE, "x" * (ARTICLE_COMMENT_MAX + 1), None)
    with pytest.raises(TextRejected):
        await world.service.add_comment(1, POST, " \u200b ", None)
    assert counters(world, POST)["comments"] == 1


async def test_a_reply_must_answer_a_visible_comment_of_the_same_target(world: World) -> None:
    on_article = await world.service.add_comment(1, ARTICLE, "on the article", None)
    with pytest.raises(BadReply):
        await world.service.add_comment(2, POST, "wrong thread", on_article["_id"])
    with pytest.raises(BadReply):
        await world.service.add_comment(2, POST, "no such", 99999)
    root = await world.service.add_comment(1, POST, "root", None)
    await world.service.set_comment_hidden(root["_id"], True, "spam")
    with pytest.raises(BadReply):
        await world.service.add_comment(2, POST, "to a hidden one", root["_id"])


async def test_blocked_users_cannot_comment_and_comments_are_rate_limited(world: World) -> None:
    world.blocks.blocked_users.add(1)
    with pytest.raises(CommunityBlocked):
        await world.service.add_comment(1, POST, "hello", None)
    world.limiter.allowed = 1
    await world.service.add_comment(2, POST, "hello", None)
    with pytest.raises(ActionRateLimited):
        await world.service.add_comment(2, POST, "again", None)
    assert counters(world, POST)["comments"] == 1


async def test_hiding_a_comment_takes_it_out_of_lists_and_counts_once(world: World) -> None:
    root = await world.service.add_comment(1, POST, "root", None)
    reply = await world.service.add_comment(2, POST, "reply", root["_id"])
    assert await world.service.set_comment_hidden(reply["_id"], True, "abuse") is True
    assert await world.service.set_comment_hidden(reply["_id"], True, "abuse") is False
    assert counters(world, POST)["comments"] == 1
    assert world.store.docs[f"comment:{root['_id']}"]["replies"] == 0
    assert (await world.service.replies(root["_id"], None, 20)).items == []
    assert await world.service.set_comment_hidden(reply["_id"], False, "") is True
    assert counters(world, POST)["comments"] == 2
    assert world.store.docs[f"comment:{root['_id']}"]["replies"] == 1
    with pytest.raises(TargetNotFound):
        await world.service.set_comment_hidden(424242, True, "gone")


async def test_deleting_a_root_deletes_its_thread_and_their_likes(world: World) -> None:
    root = await world.service.add_comment(1, POST, "root", None)
    reply = await world.service.add_comment(2, POST, "reply", root["_id"])
    other = await world.service.add_comment(3, POST, "another root", None)
    await world.service.like(4, Target("comment", reply["_id"]), True)
    with pytest.raises(NotYourComment):
        await world.service.delete_own_comment(2, root["_id"])
    await world.service.delete_own_comment(1, root["_id"])
    assert counters(world, POST)["comments"] == 1
    assert [c["_id"] for c in (await world.service.comments(POST, None, 20)).items] == [other["_id"]]
    assert world.store.records["like"] == {}
    with pytest.raises(TargetNotFound):
        await world.service.delete_own_comment(1, root["_id"])


async def test_deleting_a_reply_updates_its_root(world: World) -> None:
    root = await world.service.add_comment(1, POST, "root", None)
    reply = await world.service.add_comment(2, POST, "reply", root["_id"])
    assert await world.service.delete_comment(reply["_id"]) is True
    assert await world.service.delete_comment(reply["_id"]) is False
    assert world.store.docs[f"comment:{root['_id']}"]["replies"] == 0
    assert counters(world, POST)["comments"] == 1


async def test_purging_a_target_removes_every_reaction_of_it(world: World) -> None:
    root = await world.service.add_comment(1, POST, "root", None)
    await world.service.like(2, Target("comment", root["_id"]), True)
    await world.service.like(2, POST, True)
    await world.service.view(2, POST)
    await world.service.like(2, ARTICLE, True)
    await world.service.purge_target(POST)
    assert not any(k.startswith("comment:") for k in world.store.docs)
    assert list(world.store.records["like"]) == [("article:3", 2)]
    assert world.store.records["view"] == {}


async def test_erasing_a_user_removes_their_reactions_with_the_counters(world: World) -> None:
    mine = await world.service.add_comment(1, POST, "mine", None)
    theirs = await world.service.add_comment(2, POST, "theirs", None)
    await world.service.add_comment(1, POST, "my reply", theirs["_id"])
    await world.service.add_comment(2, POST, "reply under mine", mine["_id"])
    await world.service.like(1, POST, True)
    await world.service.like(2, POST, True)
    await world.service.like(1, Target("comment", theirs["_id"]), True)
    await world.service.view(1, ARTICLE)
    await world.service.collect(1, ARTICLE, True)
    await world.service.collect(1, COURSE, True)
    removed = await world.service.erase_user(1)
    assert removed == {"likes": 2, "views": 1, "collections": 2, "comments": 2}
    assert counters(world, POST)["likes"] == 1
    assert counters(world, POST)["comments"] == 1  # "theirs" (the reply under mine went with it)
    assert world.store.docs[f"comment:{theirs['_id']}"]["likes"] == 0
    assert world.store.docs[f"comment:{theirs['_id']}"]["replies"] == 0
    assert counters(world, ARTICLE)["views"] == 0 and counters(world, ARTICLE)["collects"] == 0
    assert all(user != 1 for records in world.store.records.values() for _, user in records)
