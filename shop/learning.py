"""Learning delivery: who may open a section now, the signed content link, enrolment validity.

Pure rules (no storage, no I/O), used by `LearningService` (shop/learning_service.py) and by the
enrolment step of a paid order (`grant_enrolment`, called from shop/handlers.py `enrol` inside the
order's unit of work). docs/shop.md "Learning" states them.

- A section is open to anyone when it is a free trial (of a listed course), and otherwise only to a
  user whose enrolment in its course is valid now: status valid (older records: "active") and
  valid_from <= now < valid_to. The time decides, not the sweeper: an enrolment whose end has passed
  is expired even before `expire_enrolments` marks it so.
- Content is reached only through a signed link of ours, `/api/v1/content/{token}`, valid for
  `CONTENT_LINK_SECONDS`: the token carries section, user and expiry, and an HMAC-SHA256 over them
  with a key derived from the installation's secret (`content_key`), compared in constant time.
- One enrolment per user and course: buying again extends it from max(now, valid_to) by the
  policy's days; an ended one (expired, refunded) starts again from now.
"""

import base64
import dataclasses
import datetime
import enum
import hashlib
import hmac
import re
import urllib.parse
from typing import Final, Protocol

from engine.book.errors import GavelError
from shop.model import Record, as_utc

CONTENT_LINK_SECONDS: Final = 10 * 60
# "active" is what enrolments were called before expiry existed; both mean "valid until valid_to".
VALID_STATUSES: Final = ("valid", "active")
ANONYMOUS: Final = 0  # the user id a signed-out caller's free-trial link carries

_TOKEN = re.compile(r"([0-9]{1,16})\.([0-9]{1,16})\.([0-9]{1,16})\.([A-Za-z0-9_-]{43})")
_KEY_LABEL: Final = b"gavel content link key v1"


# -- errors (statuses in web/errors.py) -------------------------------------------------------------
class EnrolmentRequired(GavelError):
    code = "ENROLMENT_REQUIRED"


class EnrolmentExpired(GavelError):
    code = "ENROLMENT_EXPIRED"


class ContentLinkExpired(GavelError):
    code = "CONTENT_LINK_EXPIRED"


class ContentLinkInvalid(GavelError):
    code = "CONTENT_LINK_INVALID"


# -- enrolment validity -----------------------------------------------------------------------------
class EnrolmentState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"  # it was valid once: ended by time, or ended (refunded) by an admin
    NONE = "none"


def enrolment_state(enrolment: Record | None, now: datetime.datetime) -> EnrolmentState:
    if enrolment is None:
        return EnrolmentState.NONE
    if enrolment.get("status") in VALID_STATUSES and as_utc(enrolment["valid_from"]) <= now < as_utc(
        enrolment["valid_to"]
    ):
        return EnrolmentState.VALID
    return EnrolmentState.EXPIRED


def shown_status(enrolment: Record, now: datetime.datetime) -> str:
    """What a student sees: "valid" or "expired" (ended for any reason)."""
    return "valid" if enrolment_state(enrolment, now) is EnrolmentState.VALID else "expired"


def renewed_validity(
    enrolment: Record | None, now: datetime.datetime, days: int
) -> tuple[datetime.datetime, datetime.datetime]:
    """(valid_from, valid_to) after buying `days` more: a valid enrolment is extended from its end
    (max(now, valid_to)) and keeps its start; anything else starts now."""
    if enrolment is not None and enrolment_state(enrolment, now) is EnrolmentState.VALID:
        return as_utc(enrolment["valid_from"]), max(now, as_utc(enrolment["valid_to"])) + datetime.timedelta(
            days=days
        )
    return now, now + datetime.timedelta(days=days)


def orders_of(enrolment: Record) -> list[str]:
    """The orders that bought this enrolment's validity (older records name one, `order_no`)."""
    found = list(enrolment.get("order_nos") or ())
    if not found and enrolment.get("order_no"):
        found.append(str(enrolment["order_no"]))
    return found


class EnrolmentWriter(Protocol):
    """What `grant_enrolment` needs of shop/ports.py's EnrolmentRepository."""

    async def current(self, user_id: int, course_id: int) -> Record | None: ...

    async def add(self, enrolment: Record) -> bool: ...

    async def add_first(self, enrolment: Record) -> bool: ...

    async def extend(self, enrolment_id: str, order_no: str, changes: Record) -> bool: ...


async def grant_enrolment(
    enrolments: EnrolmentWriter,
    *,
    user_id: int,
    course_id: int,
    course_name: str,
    order_no: str,
    days: int,
    now: datetime.datetime,
) -> None:
    """Give `user_id` `days` of course `course_id` bought by `order_no`, inside the order's unit of
    work: a new enrolment (`_id` "{user_id}:{course_id}", so there is one per user and course), or
    the current one extended. Idempotent per order: an order already counted changes nothing."""

    def validity(current: Record | None) -> Record:
        valid_from, valid_to = renewed_validity(current, now, days)
        return {
            "course_name": course_name,
            "order_no": order_no,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "status": "valid",
            "updated_at": now,
        }

    # The common case, the user's first enrolment in the course: one write and no read (any
    # enrolment of theirs in it, an older one under another id too, makes it insert nothing).
    first = {"_id": f"{user_id}:{course_id}", "user_id": user_id, "course_id": course_id, **validity(None)}
    if await enrolments.add_first({**first, "order_nos": [order_no], "created_at": now}):
        return
    for _attempt in range(2):
        current = await enrolments.current(user_id, course_id)
        if current is not None and order_no in orders_of(current):
            return
        fields = validity(current)
        if current is None:
            record = {"_id": f"{user_id}:{course_id}", "user_id": user_id, "course_id": course_id, **fields}
            if await enrolments.add({**record, "order_nos": [order_no], "created_at": now}):
                return
        elif await enrolments.extend(str(current["_id"]), order_no, fields):
            return
        # Another order of the same user and course got there first: read it again and extend.
    raise GavelError(f"enrolment of user {user_id} in course {course_id} kept changing")


# -- access -----------------------------------------------------------------------------------------
class Access(enum.Enum):
    FREE_TRIAL = "free_trial"
    ENROLLED = "enrolled"


def section_access(
    section: Record, course_listed: bool, enrolment: Record | None, now: datetime.datetime
) -> Access:
    """May the holder of `enrolment` (None: not enrolled, or signed out) open `section` now?
    Raises EnrolmentRequired / EnrolmentExpired when not."""
    state = enrolment_state(enrolment, now)
    if state is EnrolmentState.VALID:
        return Access.ENROLLED
    if section.get("free_trial") and course_listed:
        return Access.FREE_TRIAL
    if state is EnrolmentState.EXPIRED:
        raise EnrolmentExpired("your enrolment in this course has ended; buy it again to continue")
    raise EnrolmentRequired("this section is for students enrolled in the course")


def locked(section: Record, course_listed: bool, enrolment: Record | None, now: datetime.datetime) -> bool:
    try:
        section_access(section, course_listed, enrolment, now)
    except (EnrolmentRequired, EnrolmentExpired):
        return True
    return False


def playable_link(link: object) -> str | None:
    """The section's link if it is one we may redirect to (an absolute http(s) URL), else None."""
    if not isinstance(link, str) or not link or any(ch.isspace() or ch < " " for ch in link):
        return None
    try:
        parts = urllib.parse.urlsplit(link)
    except ValueError:
        return None
    return link if parts.scheme in ("http", "https") and parts.netloc else None


# -- the signed content link ------------------------------------------------------------------------
def content_key(secret: bytes) -> bytes:
    """The links' key: derived from the installation's secret (shared by every gateway), yet a
    different key from the pseudonyms' and the cookies'."""
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _signature(key: bytes, section_id: int, user_id: int, expires_ms: int) -> str:
    message = f"content:{section_id}:{user_id}:{expires_ms}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign_content_token(key: bytes, section_id: int, user_id: int, expires_ms: int) -> str:
    return f"{section_id}.{user_id}.{expires_ms}.{_signature(key, section_id, user_id, expires_ms)}"


@dataclasses.dataclass(frozen=True, slots=True)
class ContentGrant:
    section_id: int
    user_id: int  # ANONYMOUS for a signed-out caller's free trial
    expires_ms: int


def read_content_token(key: bytes, token: str, now_ms: int) -> ContentGrant:
    """The grant a token carries; ContentLinkInvalid if it is not one we signed (any change to
    section, user or expiry breaks the signature), ContentLinkExpired once its time is up."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise ContentLinkInvalid("this content link is not valid")
    section_id, user_id, expires_ms = (int(match.group(i)) for i in (1, 2, 3))
    expected = _signature(key, section_id, user_id, expires_ms)
    if not hmac.compare_digest(expected.encode("ascii"), match.group(4).encode("ascii")):
        raise ContentLinkInvalid("this content link is not valid")
    if now_ms >= expires_ms:
        raise ContentLinkExpired("this content link has expired; open the section again")
    return ContentGrant(section_id, user_id, expires_ms)
