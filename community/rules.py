"""The community's pure rules: text limits and cleaning, targets, feed cursors, comment threading,
rate-limit policy. No I/O, no clock: callers pass what they read and the time.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import unicodedata
from typing import Final, Literal

import orjson

from community.errors import BadCursor, TextRejected

# -- limits --------------------------------------------------------------------------------------------
POST_TEXT_MAX: Final = 255  # the seed's News.content
POST_IMAGES_MAX: Final = 9  # besides the cover
PLACE_MAX: Final = 64
POST_COMMENT_MAX: Final = 255  # the seed's CommentRecord.content
ARTICLE_COMMENT_MAX: Final = 1024  # the seed's Comment.content
TOPIC_TITLE_MAX: Final = 32  # the seed's Topic.title
TOPIC_INTRO_MAX: Final = 255
BIO_MAX: Final = 120
REPORT_NOTE_MAX: Final = 255
REASON_MAX: Final = 255  # an admin's reason for a hide, delete, block or erase
PAGE_DEFAULT: Final = 20
PAGE_MAX: Final = 50
MAX_ID: Final = 2**53 - 1  # ids survive JavaScript's number type

# Characters that rearrange or hide text without showing themselves: bidirectional overrides and
# isolates (the "evil.exe" → "exe.live" trick), zero-width spaces and joiners used to dodge word
# filters, the BOM, the soft hyphen. Removed from user text; ZWJ (U+200D) stays, emoji need it.
INVISIBLE: Final = re.compile("[\u00ad\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
CONTROL: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(
    raw: object, *, max_length: int, what: str, multiline: bool = True, required: bool = True
) -> str:
    """User text as stored: NFC, invisible formatting characters removed, ends stripped, control
    characters refused (newlines only where `multiline`), then the length checked in characters.

    Text is stored as written otherwise and escaped where it is rendered: no HTML is ever trusted."""
    if not isinstance(raw, str):
        raise TextRejected(f"{what} must be a string")
    text = INVISIBLE.sub("", unicodedata.normalize("NFC", raw)).strip()
    text = text.replace("\r\n", "\n")
    if CONTROL.search(text) or (not multiline and ("\n" in text or "\r" in text)) or "\r" in text:
        raise TextRejected(f"{what} has control characters")
    if required and not text:
        raise TextRejected(f"{what} is empty")
    if len(text) > max_length:
        raise TextRejected(f"{what} is limited to {max_length} characters")
    return text


# -- targets: what a like, a view, a comment, a collection or a report is about ------------------------
TargetKind = Literal["post", "comment", "article", "course"]
TARGET_PATTERN: Final = re.compile(r"(post|comment|article|course):([1-9][0-9]{0,15})")
LIKEABLE: Final = frozenset({"post", "comment", "article"})
VIEWABLE: Final = frozenset({"post", "article"})
COMMENTABLE: Final = frozenset({"post", "article"})
COLLECTABLE: Final = frozenset({"article", "course"})
REPORTABLE: Final = frozenset({"post", "comment"})


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    id: int

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def parse_target(raw: object, allowed: frozenset[str]) -> Target:
    """ "post:12" → Target("post", 12); anything else, or a kind not in `allowed`, is refused."""
    if not isinstance(raw, str):
        raise TextRejected("target must be a string such as 'post:12'")
    found = TARGET_PATTERN.fullmatch(raw)
    if found is None or found.group(1) not in allowed or int(found.group(2)) > MAX_ID:
        raise TextRejected(f"target must be one of {', '.join(sorted(allowed))} as 'kind:id'")
    return Target(found.group(1), int(found.group(2)))  # type: ignore[arg-type]


# -- cursors -------------------------------------------------------------------------------------------
def encode_cursor(keys: tuple[int, ...]) -> str:
    """An opaque, URL-safe cursor for the sort keys of the last item served (e.g. (id,) or
    (weight, published_ms, id)). Keyset pagination: a page starts strictly after these keys, so
    new items at the head never shift the pages a reader is walking (offsets would)."""
    return base64.urlsafe_b64encode(orjson.dumps(list(keys))).decode().rstrip("=")


def decode_cursor(raw: str | None, arity: int) -> tuple[int, ...] | None:
    """The keys of a cursor made by `encode_cursor` with `arity` keys; None for no cursor (the first
    page); BadCursor (400) for anything else."""
    if raw is None or raw == "":
        return None
    if len(raw) > 200:
        raise BadCursor("cursor is not one this server handed out")
    try:
        keys = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise BadCursor("cursor is not one this server handed out") from None
    if (
        not isinstance(keys, list)
        or len(keys) != arity
        or not all(type(k) is int and -(2**63) < k < 2**63 for k in keys)
    ):
        raise BadCursor("cursor is not one this server handed out")
    return tuple(keys)


def page_size(raw: int | None) -> int:
    return PAGE_DEFAULT if raw is None else max(1, min(PAGE_MAX, raw))


# -- comment threads (the seed's CommentRecord: reply, depth, root) --------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ThreadPosition:
    root_id: int | None  # None: a root comment
    depth: int  # 1 for a root comment
    reply_to: int | None  # the comment answered
    reply_to_user: int | None  # its author, named in the reply ("回复 @小明")


def thread_position(
    parent_id: int | None, parent_root: int | None, parent_depth: int, parent_user: int
) -> ThreadPosition:
    """Where a new comment sits: a root (no parent), or under the parent's root one level deeper.
    A whole thread hangs off its root, so one indexed query on `root` reads every descendant."""
    if parent_id is None:
        return ThreadPosition(None, 1, None, None)
    return ThreadPosition(parent_root or parent_id, parent_depth + 1, parent_id, parent_user)


# -- rate limits ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    count: int  # at most this many actions...
    seconds: int  # ...per user in this window


# Per user. A person posts a few times an hour and likes in bursts; scripts do neither at these rates.
RATE_LIMITS: Final[dict[str, RateLimit]] = {
    "post": RateLimit(5, 600),
    "comment": RateLimit(20, 60),
    "like": RateLimit(120, 60),
    "follow": RateLimit(60, 60),
    "collect": RateLimit(60, 60),
    "report": RateLimit(20, 3600),
    "upload": RateLimit(60, 600),
}
