"""Reports and moderation (docs/community.md "Reports and moderation").

Users report a post or a comment; admins see the open reports grouped by target, and resolve a
target with one decision (hide, delete, dismiss) that closes all its open reports at once. Admins
also hide, unhide and delete content directly, block a user from posting, commenting and
reporting (for some days or until lifted), and erase a user's community data on request (privacy).

The content itself belongs to the feed (posts) and the reactions (comments): moderation changes
it only through their services (`PostModeration`, `CommentModeration`), which keep the counters
equal to the records. Who may do the admin side is decided by backoffice/actions.py, which also
records the audit entry; this service decides what a report or a resolution is.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Final, Literal

from community.errors import AlreadyReported, OwnContent, TargetNotFound, TextRejected
from community.guard import check_may_write
from community.ports import (
    BlockStore,
    Clock,
    CommentModeration,
    Contents,
    PostModeration,
    RateLimiter,
    ReportStore,
)
from community.rules import (
    REASON_MAX,
    REPORT_NOTE_MAX,
    REPORTABLE,
    Target,
    clean_text,
    page_size,
    parse_target,
)

REASONS: Final = ("spam", "abuse", "illegal", "privacy", "other")
REPORT_STATUSES: Final = ("open", "resolved", "dismissed")
RESOLUTIONS: Final = ("hide", "delete", "dismiss")
CONTENT_ACTIONS: Final = ("hide", "unhide", "delete")
BLOCK_DAYS_MAX: Final = 3650
Resolution = Literal["hide", "delete", "dismiss"]
ContentAction = Literal["hide", "unhide", "delete"]


def admin_reason(raw: object) -> str:
    """The reason an admin gives for a hide, delete, block or erase: required, one line, ≤255."""
    return clean_text(raw, max_length=REASON_MAX, what="reason", multiline=False)


def report_reason(raw: object) -> str:
    if not isinstance(raw, str) or raw not in REASONS:
        raise TextRejected(f"reason must be one of: {', '.join(REASONS)}")
    return raw


def block_until(now: datetime.datetime, days: int | None) -> datetime.datetime | None:
    """The end of a block of `days` days from now; None (until lifted) without days."""
    if days is None:
        return None
    if type(days) is not int or not 1 <= days <= BLOCK_DAYS_MAX:
        raise TextRejected(f"days must be an integer from 1 to {BLOCK_DAYS_MAX}")
    return now + datetime.timedelta(days=days)


def snapshot(content: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the audit entry keeps of moderated content: its author, whether hidden, its text."""
    if content is None:
        return None
    return {
        "user_id": content.get("user_id"),
        "hidden": bool(content.get("hidden")),
        "text": str(content.get("text", ""))[:REASON_MAX],
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a moderation decision did: `changed` whether the content changed (hidden, shown,
    deleted), `reports` how many open reports it closed."""

    target: str
    action: str
    reason: str
    changed: bool
    reports: int
    content: dict[str, Any] | None = None  # the content before: author, hidden, text (for the audit)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ModerationService:
    def __init__(
        self,
        *,
        reports: ReportStore,
        blocks: BlockStore,
        limiter: RateLimiter,
        contents: Contents,
        posts: PostModeration,
        comments: CommentModeration,
        clock: Clock,
    ) -> None:
        self.reports = reports
        self.blocks = blocks
        self.limiter = limiter
        self.contents = contents
        self.posts = posts
        self.comments = comments
        self.clock = clock

    # == users' reports ==================================================================================
    async def report(
        self, user_id: int, raw_target: object, raw_reason: object, raw_note: object = ""
    ) -> int:
        """A new open report's id. Refusals, in order: bad input 400; blocked 403; rate 429; a
        target gone or hidden 404; one's own content 400; a second open report 409."""
        target = parse_target(raw_target, REPORTABLE)
        reason = report_reason(raw_reason)
        note = clean_text(raw_note, max_length=REPORT_NOTE_MAX, what="note", required=False)
        now = self.clock()
        await check_may_write(self.blocks, self.limiter, user_id, "report", now)
        content = await self.contents.content(target.kind, target.id)
        if content is None or content.get("hidden"):
            raise TargetNotFound(f"no {target.kind} {target.id}")
        author = int(content["user_id"])
        if author == user_id:
            raise OwnContent("you cannot report your own content")
        report_id = await self.reports.insert(str(target), author, user_id, reason, note, now)
        if report_id is None:
            raise AlreadyReported(f"you already reported this {target.kind}; it is waiting for review")
        return report_id

    # == the admins' queue ===============================================================================
    async def queue(
        self, status: str, after: int | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of report groups (one per target) of that status and the key of the next page
        (None: the last page). Open groups oldest first: the longest-waiting target is on top."""
        if status not in REPORT_STATUSES:
            raise TextRejected(f"status must be one of: {', '.join(REPORT_STATUSES)}")
        size = page_size(limit)
        groups = await self.reports.queue(status, after, size + 1)
        more = len(groups) > size
        groups = groups[:size]
        key = "first_id" if status == "open" else "last_id"
        return groups, int(groups[-1][key]) if more and groups else None

    # == decisions ======================================================================================
    async def resolve(self, report_id: int, raw_action: object, raw_reason: object, by: int) -> Outcome:
        """Hide or delete the reported content, or dismiss the reports: every open report of that
        target is closed with this one decision. A report already closed (and nothing open on its
        target) changes nothing."""
        if raw_action not in RESOLUTIONS:
            raise TextRejected(f"action must be one of: {', '.join(RESOLUTIONS)}")
        action: Resolution = raw_action
        reason = admin_reason(raw_reason)
        found = await self.reports.report(report_id)
        if found is None:
            raise TargetNotFound(f"no report {report_id}")
        target = parse_target(found["target"], REPORTABLE)
        content = snapshot(await self.contents.content(target.kind, target.id))
        changed = False
        if action != "dismiss" and await self.reports.open_count(str(target)) > 0:
            changed = await self._change(target, action, reason)
        status = "dismissed" if action == "dismiss" else "resolved"
        closed = await self.reports.close_target(str(target), status, by, f"{action}: {reason}", self.clock())
        return Outcome(str(target), action, reason, changed, closed, content)

    async def moderate(
        self, kind: str, content_id: int, raw_action: object, raw_reason: object, by: int
    ) -> Outcome:
        """An admin's direct hide / unhide / delete of a post or comment. Hiding or deleting also
        resolves the target's open reports (the decision answers them)."""
        if kind not in REPORTABLE:
            raise TargetNotFound(f"no {kind} {content_id}")
        if raw_action not in CONTENT_ACTIONS:
            raise TextRejected(f"action must be one of: {', '.join(CONTENT_ACTIONS)}")
        action: ContentAction = raw_action
        reason = admin_reason(raw_reason)
        target = Target(kind, content_id)  # type: ignore[arg-type]
        content = snapshot(await self.contents.content(kind, content_id))
        if content is None:
            raise TargetNotFound(f"no {kind} {content_id}")
        changed = await self._change(target, action, reason)
        closed = 0
        if action != "unhide":
            closed = await self.reports.close_target(
                str(target), "resolved", by, f"{action}: {reason}", self.clock()
            )
        return Outcome(str(target), action, reason, changed, closed, content)

    async def _change(self, target: Target, action: ContentAction, reason: str) -> bool:
        if target.kind == "post":
            if action == "delete":
                return await self.posts.delete_post(target.id)
            return await self.posts.set_post_hidden(target.id, action == "hide", reason)
        if action == "delete":
            return await self.comments.delete_comment(target.id)
        return await self.comments.set_comment_hidden(target.id, action == "hide", reason)

    # == blocks ==========================================================================================
    async def block(
        self, user_id: int, raw_reason: object, days: int | None, by: int
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Block (or re-block: the new term replaces the old) a user's community writes. Returns the
        previous block (or None) and the new one."""
        reason = admin_reason(raw_reason)
        now = self.clock()
        until = block_until(now, days)
        before = await self.blocks.block(user_id, until, reason, by, now)
        return before, {"user_id": user_id, "until": until, "reason": reason, "by": by, "at": now}

    async def unblock(self, user_id: int) -> dict[str, Any] | None:
        """Lift a block; the block lifted (None: there was none, nothing changed)."""
        return await self.blocks.unblock(user_id)

    async def block_of(self, user_id: int) -> dict[str, Any] | None:
        """The user's block while it is in force (an expired one reads as None)."""
        block = await self.blocks.block_of(user_id)
        if block is None or not await self.blocks.blocked(user_id, self.clock()):
            return None
        return block

    # == privacy =========================================================================================
    async def erase_user(self, user_id: int, by: int) -> dict[str, int]:
        """Everything the user put in the community: their posts (with their images, comments,
        likes, views), their comments, likes, views, follows, collections, profile and avatar, and
        the reports they made. Counts per kind; counters of what stays are adjusted by the owners.
        Open reports about the erased content are closed as resolved."""
        counts: dict[str, int] = {}
        for part in (await self.posts.erase_user(user_id), await self.comments.erase_user(user_id)):
            for name, count in part.items():
                counts[name] = counts.get(name, 0) + int(count)
        counts["reports"] = await self.reports.erase_reporter(user_id)
        counts["reports_closed"] = await self.reports.close_about_user(
            user_id, "resolved", by, "erase: the author's community data was erased", self.clock()
        )
        return counts

    @staticmethod
    def reason_of(raw: object) -> str:
        """An admin's reason, checked (for actions whose service call takes none, e.g. erase)."""
        return admin_reason(raw)
