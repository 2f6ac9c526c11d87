"""`ReactionService`: views, likes, threaded comments and collections, and the counters they move
(docs/community.md "Views, likes, comments and collections").

The counter rule: a counter moves only together with its record, guarded by the record write's
result — a unique insert that inserted → +1, a delete that deleted → −1, a hide that hid → −1.
Two clicks at once, a retry, a crash between the writes: at worst a counter lags its records and
`repair` (persistence/community/repair.py) recomputes it; it never drifts by double counting.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Any, Final

from community.errors import TargetNotFound
from community.guard import check_may_write, check_rate
from community.ports import Blocks, LivePublisher, RateLimiter, ReactionStore, Record, Targets
from community.rules import (
    ARTICLE_COMMENT_MAX,
    COLLECTABLE,
    COMMENTABLE,
    LIKEABLE,
    POST_COMMENT_MAX,
    REASON_MAX,
    VIEWABLE,
    Target,
    clean_text,
    thread_position,
)
from engine.book.errors import GavelError

REPLY_PREVIEW: Final = 3  # replies shown under each root comment in a list (the seed's 3)
# Collections list newest first with keys (at_ms, kind_no, id): kinds as numbers for the cursor.
COLLECTION_KIND_NO: Final = {"article": 1, "course": 2}
# The counter each kind of record moves on its target's document (courses have no counter).
RECORD_COUNTER: Final = {"view": "views", "like": "likes", "collect": "collects"}
EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class NotYourComment(GavelError):
    """Deleting someone else's comment (admins go through moderation): 403."""

    code = "NOT_YOUR_CONTENT"


class BadReply(GavelError):
    """`reply_to` is not a visible comment of the same post or article: 400."""

    code = "VALIDATION"


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def comment_limit(target: Target) -> int:
    return ARTICLE_COMMENT_MAX if target.kind == "article" else POST_COMMENT_MAX


def target_of(raw: str) -> Target:
    kind, _, number = raw.partition(":")
    return Target(kind, int(number))  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    items: list[Record]
    next_keys: tuple[int, ...] | None  # None: the last page


class NoLive:
    """A LivePublisher that tells nobody (tests, the repair CLI)."""

    def counts_changed(self, target: Target) -> None:
        pass

    def comment_counts_changed(self, topic: Target, comment_id: int) -> None:
        pass

    def comment_added(self, comment: Record) -> None:
        pass


class ReactionService:
    def __init__(
        self,
        store: ReactionStore,
        targets: Targets,
        blocks: Blocks,
        limiter: RateLimiter,
        live: LivePublisher | None = None,
        *,
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.targets = targets
        self.blocks = blocks
        self.limiter = limiter
        self.live: LivePublisher = live or NoLive()
        self.now = now

    async def _require_visible(self, target: Target) -> None:
        if not await self.targets.visible(target, self.now()):
            raise TargetNotFound(f"no {target.kind} {target.id}")

    async def _count(self, target: Target, field: str) -> int:
        if target.kind == "course":  # no document counter: the records are the count
            return await self.store.count_records("collect", str(target))
        counters = await self.store.counters(target)
        return int((counters or {}).get(field, 0))

    async def _move(self, target: Target, field: str, delta: int) -> Record | None:
        """Move a counter; the document's counters after it (None for a course: no counter)."""
        if target.kind == "course":
            return None
        return await self.store.inc(target, field, delta)

    async def _counted(self, target: Target, field: str, after: Record | None) -> int:
        """The count to answer: from the counters a move returned, else read."""
        if after is not None:
            return int(after.get(field, 0))
        return await self._count(target, field)

    # == views =========================================================================================
    async def view(self, user_id: int | None, target: Target) -> Record:
        """One view per user per post or article; signed-out readers are not counted."""
        _require_kind(target, VIEWABLE, "viewed")
        await self._require_visible(target)
        counted, after = False, None
        if user_id is not None:
            counted = await self.store.add_record("view", str(target), user_id, self.now())
            if counted:
                after = await self._move(target, "views", +1)
                self.live.counts_changed(target)
        return {"views": await self._counted(target, "views", after), "counted": counted}

    # == likes =========================================================================================
    async def like(self, user_id: int, target: Target, liked: bool) -> Record:
        """PUT like (liked=True) / DELETE (False), idempotent. Liking needs a visible target; taking
        a like back does not (a post hidden since keeps the user's way back)."""
        _require_kind(target, LIKEABLE, "liked")
        await check_rate(self.limiter, user_id, "like")
        if liked:
            await self._require_visible(target)
            changed = await self.store.add_record("like", str(target), user_id, self.now())
        else:
            changed = await self.store.remove_record("like", str(target), user_id)
        after = None
        if changed:
            after = await self._move(target, "likes", +1 if liked else -1)
            self._announce(target, after)
        return {"liked": liked, "likes": await self._counted(target, "likes", after)}

    def _announce(self, target: Target, after: Record | None) -> None:
        """Live frames for a changed counter: a comment's go to the page of its post or article."""
        if target.kind == "comment":
            if after is not None and after.get("target"):
                self.live.comment_counts_changed(target_of(after["target"]), target.id)
        elif target.kind in VIEWABLE:
            self.live.counts_changed(target)

    async def liked_by(self, user_id: int | None, targets: Sequence[Target]) -> set[str]:
        if user_id is None or not targets:
            return set()
        return await self.store.has_records("like", [str(t) for t in targets], user_id)

    # == collections ===================================================================================
    async def collect(self, user_id: int, target: Target, collected: bool) -> Record:
        """PUT (collected=True) / DELETE, idempotent; an article or a course. Taking an offline
        article or a withdrawn course out of one's collection always works."""
        _require_kind(target, COLLECTABLE, "collected")
        await check_rate(self.limiter, user_id, "collect")
        if collected:
            await self._require_visible(target)
            changed = await self.store.add_record("collect", str(target), user_id, self.now())
        else:
            changed = await self.store.remove_record("collect", str(target), user_id)
        after = None
        if changed:
            after = await self._move(target, "collects", +1 if collected else -1)
            if target.kind == "article":
                self.live.counts_changed(target)
        return {"collected": collected, "collects": await self._counted(target, "collects", after)}

    async def collected_by(self, user_id: int | None, targets: Sequence[Target]) -> set[str]:
        if user_id is None or not targets:
            return set()
        return await self.store.has_records("collect", [str(t) for t in targets], user_id)

    async def collections(self, user_id: int, kind: str, after: tuple[int, ...] | None, limit: int) -> Page:
        """The user's collections, newest first, each with what it is now (`title`, `image`,
        `available`: an offline article stays listed, unavailable)."""
        kinds = sorted(COLLECTABLE) if kind == "all" else [kind]
        records = await self.store.collections(user_id, kinds, after, limit + 1)
        more = len(records) > limit
        records = records[:limit]
        targets = [target_of(r["target"]) for r in records]
        described = await self.targets.describe(targets, self.now())
        items = []
        for record, target in zip(records, targets, strict=True):
            about = described.get(target, {"title": "", "image": "", "available": False})
            items.append(
                {
                    "kind": target.kind,
                    "id": target.id,
                    "title": about["title"],
                    "image": about["image"],
                    "available": bool(about["available"]),
                    "collected_at": record["at"],
                }
            )
        next_keys = None
        if more and records:
            last = records[-1]
            target = targets[-1]
            next_keys = (_ms(last["at"]), COLLECTION_KIND_NO[target.kind], target.id)
        return Page(items, next_keys)

    # == comments ======================================================================================
    async def add_comment(
        self, user_id: int, target: Target, raw_text: object, reply_to: int | None
    ) -> Record:
        """A root comment, or a reply to a visible comment of the same target (threaded under its
        root, `reply_to_user` naming whom it answers). Blocked users cannot comment."""
        _require_kind(target, COMMENTABLE, "commented")
        text = clean_text(raw_text, max_length=comment_limit(target), what="comment")
        await check_may_write(self.blocks, self.limiter, user_id, "comment", self.now())
        await self._require_visible(target)
        parent: Record | None = None
        if reply_to is not None:
            parent = await self.store.comment(reply_to)
            if parent is None or parent.get("hidden") or parent["target"] != str(target):
                raise BadReply(f"reply_to {reply_to} is not a comment of this {target.kind}")
        position = thread_position(
            None if parent is None else int(parent["_id"]),
            None if parent is None else parent.get("root"),
            0 if parent is None else int(parent["depth"]),
            0 if parent is None else int(parent["user_id"]),
        )
        comment = await self.store.insert_comment(
            {
                "target": str(target),
                "user_id": user_id,
                "text": text,
                "root": position.root_id,
                "depth": position.depth,
                "reply_to": position.reply_to,
                "reply_to_user": position.reply_to_user,
                "likes": 0,
                "replies": 0,
                "hidden": False,
                "hidden_reason": "",
                "created_at": self.now(),
            }
        )
        await self.store.inc(target, "comments", +1)
        if position.root_id is not None:
            await self.store.inc(Target("comment", position.root_id), "replies", +1)
        self.live.comment_added(comment)
        self.live.counts_changed(target)
        if position.root_id is not None:
            self.live.comment_counts_changed(target, position.root_id)
        return comment

    async def comment(self, comment_id: int) -> Record:
        """A visible comment (404 otherwise)."""
        comment = await self.store.comment(comment_id)
        if comment is None or comment.get("hidden"):
            raise TargetNotFound(f"no comment {comment_id}")
        return comment

    async def comments(self, target: Target, after: int | None, limit: int) -> Page:
        """Root comments, oldest first, each with `reply_preview` (its first replies)."""
        _require_kind(target, COMMENTABLE, "commented")
        await self._require_visible(target)
        roots = await self.store.root_comments(str(target), after, limit + 1)
        more = len(roots) > limit
        roots = roots[:limit]
        previews = await self.store.reply_previews([int(r["_id"]) for r in roots], REPLY_PREVIEW)
        for root in roots:
            root["reply_preview"] = previews.get(int(root["_id"]), [])
        return Page(roots, (int(roots[-1]["_id"]),) if more and roots else None)

    async def replies(self, root_id: int, after: int | None, limit: int) -> Page:
        """A root comment's visible descendants, oldest first (the root and its target visible)."""
        root = await self.comment(root_id)
        await self._require_visible(target_of(root["target"]))
        found = await self.store.replies(int(root.get("root") or root_id), after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return Page(found, (int(found[-1]["_id"]),) if more and found else None)

    async def delete_own_comment(self, user_id: int, comment_id: int) -> None:
        comment = await self.store.comment(comment_id)
        if comment is None or comment.get("hidden"):
            raise TargetNotFound(f"no comment {comment_id}")
        if int(comment["user_id"]) != user_id:
            raise NotYourComment("only its author (or a moderator) can delete a comment")
        await self.delete_comment(comment_id)

    async def set_comment_hidden(self, comment_id: int, hidden: bool, reason: str) -> bool:
        """Hide (or show again) a comment; whether it changed. A hidden comment leaves its
        target's `comments` and its root's `replies`; its own replies stay counted and listed
        under the root (a hidden root takes its thread out of the list: delete it to remove them)."""
        reason = clean_text(reason, max_length=REASON_MAX, what="reason", required=False)
        changed = await self.store.set_comment_hidden(comment_id, hidden, reason)
        if changed is None:
            if await self.store.comment(comment_id) is None:
                raise TargetNotFound(f"no comment {comment_id}")
            return False
        await self._uncount(changed, -1 if hidden else +1)
        return True

    async def _uncount(self, comment: Record, delta: int) -> None:
        target = target_of(comment["target"])
        await self.store.inc(target, "comments", delta)
        root = comment.get("root")
        if root is not None:
            await self.store.inc(Target("comment", int(root)), "replies", delta)
            self.live.comment_counts_changed(target, int(root))
        self.live.counts_changed(target)

    async def delete_comment(self, comment_id: int) -> bool:
        """Delete a comment, and for a root its whole thread, with their likes; counters follow
        each comment actually deleted (a visible one leaves its target's `comments`)."""
        taken = await self.store.take_comment(comment_id)
        if taken is None:
            return False
        thread = [taken]
        if taken.get("root") is None:
            for reply_id in await self.store.comment_ids(root=comment_id):
                reply = await self.store.take_comment(reply_id)
                if reply is not None:
                    thread.append(reply)
        await self.store.purge_records([f"comment:{c['_id']}" for c in thread])
        target = target_of(taken["target"])
        visible = sum(1 for c in thread if not c.get("hidden"))
        if visible:
            await self.store.inc(target, "comments", -visible)
        root = taken.get("root")
        if root is not None and not taken.get("hidden"):
            await self.store.inc(Target("comment", int(root)), "replies", -1)
            self.live.comment_counts_changed(target, int(root))
        self.live.counts_changed(target)
        return True

    async def purge_target(self, target: Target) -> None:
        """Every comment (with their likes), like, view and collection of a target being deleted."""
        ids = await self.store.comment_ids(target=str(target))
        for comment_id in ids:
            await self.store.take_comment(comment_id)
        await self.store.purge_records([str(target), *(f"comment:{i}" for i in ids)])

    # == privacy and repair ============================================================================
    async def erase_user(self, user_id: int) -> dict[str, int]:
        """Every like, view, collection and comment of the user, counters following each record
        removed; their root comments take their threads with them."""
        removed: dict[str, int] = {}
        for kind, name in (("like", "likes"), ("view", "views"), ("collect", "collections")):
            count = 0
            for raw in await self.store.user_records(kind, user_id):
                if await self.store.remove_record(kind, raw, user_id):
                    count += 1
                    await self._move(target_of(raw), RECORD_COUNTER[kind], -1)
            removed[name] = count
        comments = 0
        for comment_id in await self.store.user_comment_ids(user_id):
            comments += int(await self.delete_comment(comment_id))
        removed["comments"] = comments
        return removed

    async def repair(self, dry_run: bool = False) -> dict[str, int]:
        """Recompute every counter from its records; how many documents were wrong per counter."""
        return await self.store.recount(dry_run)


def _require_kind(target: Target, allowed: frozenset[str], what: str) -> None:
    if target.kind not in allowed:
        raise TargetNotFound(f"a {target.kind} cannot be {what}")


def _ms(value: Any) -> int:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int((value - EPOCH) // datetime.timedelta(milliseconds=1))  # exact, no float
    return int(value)
