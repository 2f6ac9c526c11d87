"""The community's refusals, each with a stable code (web/errors.py maps codes to HTTP statuses)."""

from __future__ import annotations

from engine.book.errors import GavelError


class CommunityBlocked(GavelError):
    """An admin blocked this user from posting, commenting and reporting: 403."""

    code = "COMMUNITY_BLOCKED"


class BadCursor(GavelError):
    """A feed cursor that this server did not hand out: 400."""

    code = "BAD_CURSOR"


class TextRejected(GavelError):
    """Empty, too long, or made of control characters: 400."""

    code = "VALIDATION"


class TargetNotFound(GavelError):
    """No such post, comment, article or course, or one hidden from this reader: 404."""

    code = "NOT_FOUND"


class ActionRateLimited(GavelError):
    """Too many posts, comments, likes... in the window: 429 with Retry-After."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# == moderation (issue 23) ==============================================================================
class AlreadyReported(GavelError):
    """This user already has an open report on this post or comment: 409."""

    code = "ALREADY_REPORTED"


class OwnContent(GavelError):
    """A report on one's own post or comment: 400."""

    code = "VALIDATION"
