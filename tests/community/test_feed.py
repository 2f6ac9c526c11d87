"""FeedService on in-memory ports: the feed's rules (text, images, topics, links, self-follow, blocks,
rate limits), visibility of hidden posts, keyset pages stable under new posts, and counters that
move only with their records."""

from __future__ import annotations

import pytest

from community.errors import ActionRateLimited, BadCursor, CommunityBlocked, TargetNotFound, TextRejected
from community.feed import NewPost, NotYourContent, TopicTitleTaken
from community.rules import encode_cursor
from engine.book.errors import GavelError
from tests.community.feed_fakes import World, world

IMG = b"IMG-bytes"


@pytest.fixture
def w() -> World:
    found = world()
    for user_id in (1, 2, 3):
        found.user(user_id)
    return found


async def post(w: World, user_id: int, text: str = "hello", **fields: object) -> int:
    created = await w.feed.create_post(user_id, NewPost(text=text, **fields))  # type: ignore[arg-type]
    return int(created["_id"])


# -- posts ----------------------------------------------------------------
async def test_a_post_stores_clean_text_images_and_cover(w: World) -> None:
    created = await w.feed.create_post(
        1, NewPost(text="  hi\u200b there  ", place="杭州", images=[IMG, IMG + b"2"], cover=IMG + b"c")
    )
    assert created["text"] == "hi there"
    assert created["place"] == "杭州"
    assert len(created["images"]) == 2 and created["cover"] not in created["images"]
    assert (created["likes"], created["comments"], created["views"], created["hidden"]) == (0, 0, 0, False)
    assert len(w.media.files) == 3
    assert w.store.profiles[1]["posts"] == 1


async def test_without_a_cover_the_first_image_is_the_cover(w: World) -> None:
    created = await w.feed.create_post(1, NewPost(text="x", images=[IMG, IMG]))
    assert created["cover"] == created["images"][0]
    assert (await w.feed.create_post(1, NewPost(text="y")))["cover"] == ""


@pytest.mark.parametrize(
    "new",
    [
        NewPost(text=""),
        NewPost(text="   \u200b "),
        NewPost(text="x" * 256),
        NewPost(text="bad\x00byte"),
        NewPost(text=12),
        NewPost(text="ok", place="p" * 65),
        NewPost(text="ok", place="two\nlines"),
        NewPost(text="ok", images=[IMG] * 10),
        NewPost(text="ok", topic_id=999),
        NewPost(text="ok", link_kind="lot", link_id=None),
        NewPost(text="ok", link_kind="order", link_id=1),
        NewPost(text="ok", link_kind="lot", link_id=404),
    ],
)
async def test_refused_posts_store_nothing(w: World, new: NewPost) -> None:
    with pytest.raises(TextRejected):
        await w.feed.create_post(1, new)
    assert w.store.post_docs == {} and w.media.files == {}
    assert w.limiter.taken == {}  # refused before the rate limit counts it


async def test_255_characters_is_the_limit(w: World) -> None:
    assert len((await w.feed.create_post(1, NewPost(text="字" * 255)))["text"]) == 255


async def test_a_bad_image_deletes_the_ones_already_stored(w: World) -> None:
    with pytest.raises(GavelError):
        await w.feed.create_post(1, NewPost(text="x", cover=IMG, images=[IMG, b"<svg onload=alert(1)>"]))
    assert w.media.files == {} and w.store.post_docs == {}
    assert w.store.profiles.get(1, {}).get("posts", 0) == 0


async def test_a_link_to_a_known_lot_and_a_live_topic(w: World) -> None:
    w.links.known.add(("lot", 7))
    topic = await w.feed.create_topic("拍卖心得", "tips")
    created = await w.feed.create_post(
        1, NewPost(text="x", topic_id=topic["_id"], link_kind="lot", link_id=7)
    )
    assert created["link"] == {"kind": "lot", "id": 7} and created["topic_id"] == topic["_id"]
    assert w.store.topic_docs[topic["_id"]]["posts"] == 1
    await w.feed.update_topic(topic["_id"], {"hidden": True})
    with pytest.raises(TextRejected):  # no new posts in a hidden topic
        await w.feed.create_post(1, NewPost(text="y", topic_id=topic["_id"]))


async def test_a_blocked_user_cannot_post_nor_change_the_profile(w: World) -> None:
    w.blocks.blocked_users.add(1)
    with pytest.raises(CommunityBlocked):
        await w.feed.create_post(1, NewPost(text="x", images=[IMG]))
    with pytest.raises(CommunityBlocked):
        await w.feed.set_avatar(1, IMG)
    with pytest.raises(CommunityBlocked):
        await w.feed.set_bio(1, "hi")
    assert w.store.post_docs == {} and w.media.files == {}


async def test_posting_is_rate_limited(w: World) -> None:
    w.limiter.limits["post"] = 2
    await post(w, 1)
    await post(w, 1)
    with pytest.raises(ActionRateLimited) as refused:
        await post(w, 1)
    assert refused.value.retry_after_s == 30
    assert len(w.store.post_docs) == 2


async def test_only_the_author_deletes_a_post_and_everything_goes(w: World) -> None:
    topic = await w.feed.create_topic("收藏")
    post_id = int(
        (await w.feed.create_post(1, NewPost(text="x", topic_id=topic["_id"], images=[IMG])))["_id"]
    )
    with pytest.raises(NotYourContent):
        await w.feed.delete_own_post(2, post_id)
    with pytest.raises(TargetNotFound):
        await w.feed.delete_own_post(2, 999)
    await w.feed.delete_own_post(1, post_id)
    assert w.store.post_docs == {} and w.media.files == {}
    assert w.purger.purged == [f"post:{post_id}"]
    assert w.store.profiles[1]["posts"] == 0 and w.store.topic_docs[topic["_id"]]["posts"] == 0
    assert await w.feed.delete_post(post_id) is False  # twice: nothing moves again
    assert w.store.profiles[1]["posts"] == 0


# -- visibility and counters ----------------------------------------------------------------
async def test_hidden_posts_leave_every_feed_and_their_counters(w: World) -> None:
    topic = await w.feed.create_topic("学习打卡")
    await w.feed.follow(2, 1)
    post_id = await post(w, 1, topic_id=topic["_id"])
    assert await w.feed.set_post_hidden(post_id, True, "spam") is True
    assert await w.feed.set_post_hidden(post_id, True, "spam") is False  # no second decrement
    assert w.store.profiles[1]["posts"] == 0 and w.store.topic_docs[topic["_id"]]["posts"] == 0
    for page in (
        await w.feed.feed(None, "latest"),
        await w.feed.feed(2, "following"),
        await w.feed.feed(None, "topic", topic_id=topic["_id"]),
        await w.feed.user_posts(None, 1),
    ):
        assert page.posts == []
    with pytest.raises(TargetNotFound):
        await w.feed.read_post(1, post_id)
    assert (await w.feed.read_post(None, post_id, admin=True)).posts[0]["hidden_reason"] == "spam"
    assert await w.feed.set_post_hidden(post_id, False, "") is True
    assert w.store.profiles[1]["posts"] == 1 and w.store.topic_docs[topic["_id"]]["posts"] == 1
    # Deleting a hidden post does not take it off the counters a second time.
    await w.feed.set_post_hidden(post_id, True, "spam")
    await w.feed.delete_post(post_id)
    assert w.store.profiles[1]["posts"] == 0 and w.store.topic_docs[topic["_id"]]["posts"] == 0


async def test_follow_counts_move_once_and_self_follow_is_refused(w: World) -> None:
    with pytest.raises(TextRejected):
        await w.feed.follow(1, 1)
    with pytest.raises(TargetNotFound):
        await w.feed.follow(1, 99)
    assert await w.feed.follow(1, 2) == {"following": True, "followers": 1}
    assert await w.feed.follow(1, 2) == {"following": True, "followers": 1}  # idempotent
    assert await w.feed.follow(3, 2) == {"following": True, "followers": 2}
    assert w.store.profiles[1]["following"] == 1
    assert await w.feed.unfollow(1, 2) == {"following": False, "followers": 1}
    assert await w.feed.unfollow(1, 2) == {"following": False, "followers": 1}
    assert w.store.profiles[1]["following"] == 0
    profile = await w.feed.profile(3, 2)
    assert profile["followers"] == 1 and profile["followed_by_me"] and not profile["me"]


async def test_topic_follows_and_titles(w: World) -> None:
    topic = await w.feed.create_topic("拍卖心得 / Auction tips", "intro")
    with pytest.raises(TopicTitleTaken):
        await w.feed.create_topic("拍卖心得 / Auction tips")
    with pytest.raises(TextRejected):
        await w.feed.create_topic("t" * 33)
    assert (await w.feed.follow_topic(1, topic["_id"])) == {"following": True, "followers": 1}
    assert (await w.feed.follow_topic(1, topic["_id"])) == {"following": True, "followers": 1}
    [listed] = await w.feed.topics(1)
    assert listed["followed_by_me"] and listed["followers"] == 1
    assert (await w.feed.unfollow_topic(1, topic["_id"])) == {"following": False, "followers": 0}
    await w.feed.update_topic(topic["_id"], {"hidden": True})
    assert await w.feed.topics(1) == []
    with pytest.raises(TargetNotFound):
        await w.feed.follow_topic(1, topic["_id"])


# -- feeds and cursors ----------------------------------------------------------------
async def test_pages_are_stable_under_new_posts(w: World) -> None:
    ids = [await post(w, 1, f"p{i}") for i in range(7)]
    first = await w.feed.feed(None, "latest", limit=3)
    assert [p["_id"] for p in first.posts] == ids[::-1][:3]
    for i in range(5):  # new posts at the head do not shift the pages behind the cursor
        await post(w, 2, f"new{i}")
    second = await w.feed.feed(None, "latest", cursor=first.next_cursor, limit=3)
    third = await w.feed.feed(None, "latest", cursor=second.next_cursor, limit=3)
    assert [p["_id"] for p in second.posts + third.posts] == ids[::-1][3:]
    assert third.next_cursor is None


async def test_following_feed_is_the_followees_posts(w: World) -> None:
    mine, theirs, other = await post(w, 2), await post(w, 1), await post(w, 3)
    assert (await w.feed.feed(2, "following")).posts == []
    await w.feed.follow(2, 1)
    assert [p["_id"] for p in (await w.feed.feed(2, "following")).posts] == [theirs]
    with pytest.raises(GavelError) as refused:
        await w.feed.feed(None, "following")
    assert refused.value.code == "UNAUTHORIZED"
    assert {mine, other} < {p["_id"] for p in (await w.feed.feed(None, "latest")).posts}


async def test_topic_feed_and_liked_by_me(w: World) -> None:
    topic = await w.feed.create_topic("收藏 / Collecting")
    in_topic, _ = await post(w, 1, topic_id=topic["_id"]), await post(w, 1)
    w.store.likes.add((2, f"post:{in_topic}"))
    page = await w.feed.feed(2, "topic", topic_id=topic["_id"])
    assert [p["_id"] for p in page.posts] == [in_topic] and page.liked == {f"post:{in_topic}"}
    assert page.topics[topic["_id"]]["title"] == "收藏 / Collecting" and page.people[1]["name"] == "user1"
    with pytest.raises(TextRejected):
        await w.feed.feed(None, "topic")
    with pytest.raises(TargetNotFound):
        await w.feed.feed(None, "topic", topic_id=404)
    with pytest.raises(TextRejected):
        await w.feed.feed(None, "popular")


@pytest.mark.parametrize("cursor", ["garbage!", encode_cursor((1, 2)), "x" * 300, "bnVsbA"])
async def test_bad_cursors_are_refused(w: World, cursor: str) -> None:
    with pytest.raises(BadCursor):
        await w.feed.feed(None, "latest", cursor=cursor)


async def test_follower_pages(w: World) -> None:
    for follower in range(10, 16):
        w.user(follower)
        await w.feed.follow(follower, 1)
        w.clock.tick()
    first, cursor = await w.feed.follow_list(1, "followers", None, 4)
    rest, end = await w.feed.follow_list(1, "followers", cursor, 4)
    assert [i["user_id"] for i in first + rest] == [15, 14, 13, 12, 11, 10] and end is None
    following, _ = await w.feed.follow_list(10, "following", None, None)
    assert following == [{"user_id": 1, "name": "user1", "avatar": ""}]


# -- profiles and privacy ----------------------------------------------------------------
async def test_a_new_avatar_deletes_the_old_file(w: World) -> None:
    first = (await w.feed.set_avatar(1, IMG))["avatar"]
    second = (await w.feed.set_avatar(1, IMG + b"2"))["avatar"]
    assert first != second and list(w.media.files) == [second]
    assert (await w.feed.set_bio(1, " collector "))["bio"] == "collector"
    with pytest.raises(TextRejected):
        await w.feed.set_bio(1, "b" * 121)


async def test_erase_user_removes_their_feed_and_fixes_the_counters(w: World) -> None:
    topic = await w.feed.create_topic("t")
    await w.feed.set_avatar(1, IMG)
    for _ in range(3):
        await w.feed.create_post(1, NewPost(text="x", images=[IMG], topic_id=topic["_id"]))
    kept = await post(w, 2)
    await w.feed.follow(1, 2)
    await w.feed.follow(3, 1)
    await w.feed.follow_topic(1, topic["_id"])
    counts = await w.feed.erase_user(1)
    assert counts == {"posts": 3, "following": 1, "followers": 1, "topic_follows": 1, "avatar": 1}
    assert list(w.store.post_docs) == [kept] and w.media.files == {}
    assert w.store.follows == {} and 1 not in w.store.profiles
    assert w.store.profiles[2]["followers"] == 0 and w.store.profiles[3]["following"] == 0
    assert (w.store.topic_docs[topic["_id"]]["posts"], w.store.topic_docs[topic["_id"]]["followers"]) == (
        0,
        0,
    )
    assert len(w.purger.purged) == 3


async def test_the_back_office_sees_hidden_posts_and_topics(w: World) -> None:
    shown, hidden = await post(w, 1), await post(w, 2)
    await w.feed.set_post_hidden(hidden, True, "spam")
    page = await w.feed.moderation_posts()
    assert [p["_id"] for p in page.posts] == [hidden, shown] and page.posts[0]["hidden"]
    assert [p["_id"] for p in (await w.feed.moderation_posts(user_id=2)).posts] == [hidden]
    topic = await w.feed.create_topic("hidden")
    await w.feed.update_topic(topic["_id"], {"hidden": True})
    assert [t["hidden"] for t in await w.feed.all_topics()] == [True]
