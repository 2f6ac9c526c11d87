"""Shop coupons a student claims (领取): the claim window, the quantity, the per-user limit.

A coupon template (`shop_coupons`) is claimable when it has a claim window (`claim_start` ≤ now <
`claim_end`) and a `quantity`; `left` counts down. A claim is, in one unit of work: the user's claim
count raised only while it is below `per_user_limit`, `left` lowered only while it is above zero and
the window is open (both conditional updates, so concurrent claims never overshoot), and the user's
coupon added with the terms copied. Validity: the template's fixed `valid_from`/`valid_to`, or
`valid_days` from the claim. A coupon whose validity has ended is shown as `expired` at once (the
sweeper also stores that) and is never offered nor accepted at checkout (shop/handlers.py checks
`coupon_valid_at`).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Final, Protocol

from engine.book.errors import GavelError, InvalidInput
from shop.model import Record, as_utc

MAX_CLAIM_QUANTITY: Final = 1_000_000
CLAIM_FIELDS: Final = ("claim_start", "claim_end", "quantity", "per_user_limit")


class CouponNotClaimable(GavelError):
    code = "COUPON_NOT_CLAIMABLE"


class CouponSoldOut(GavelError):
    code = "COUPON_SOLD_OUT"


class CouponAlreadyClaimed(GavelError):
    code = "COUPON_ALREADY_CLAIMED"


# == pure rules =============================================================================================
def is_claimable_template(template: Record) -> bool:
    return template.get("claim_start") is not None and template.get("claim_end") is not None


def check_claim_terms(doc: Record) -> None:
    """A new template's claim terms: all of window and quantity or none; sets `left` = quantity."""
    given = [name for name in CLAIM_FIELDS if doc.get(name) is not None]
    if not given:
        return
    missing = [name for name in ("claim_start", "claim_end", "quantity") if doc.get(name) is None]
    if missing:
        raise InvalidInput(f"a claimable coupon needs claim_start, claim_end and quantity ({missing[0]})")
    start, end = as_utc(doc["claim_start"]), as_utc(doc["claim_end"])
    if end <= start:
        raise InvalidInput("claim_end must be later than claim_start")
    quantity = doc["quantity"]
    if type(quantity) is not int or not 1 <= quantity <= MAX_CLAIM_QUANTITY:
        raise InvalidInput(f"quantity must be an integer from 1 to {MAX_CLAIM_QUANTITY}")
    limit = doc.get("per_user_limit")
    if limit is None:
        limit = 1
    if type(limit) is not int or not 1 <= limit <= quantity:
        raise InvalidInput("per_user_limit must be an integer from 1 to the quantity")
    valid_to = doc.get("valid_to")
    if valid_to is not None and as_utc(valid_to) <= start:
        raise InvalidInput("a coupon valid only until before its claim window opens could never be used")
    doc["per_user_limit"] = limit
    doc["left"] = quantity


def claim_window_open(template: Record, now: datetime.datetime) -> bool:
    """Claiming is open now, and a coupon claimed now would not be born expired."""
    if not is_claimable_template(template):
        return False
    if not as_utc(template["claim_start"]) <= now < as_utc(template["claim_end"]):
        return False
    valid_to = template.get("valid_to")
    return valid_to is None or as_utc(valid_to) > now


def user_coupon_record(template: Record, user_id: int, now: datetime.datetime) -> Record:
    """A user's coupon of `template`, unused: the terms copied (later edits of the template never
    change it); valid over the template's window, or `valid_days` from `now` (seed:
    coupon_valid_days, counted from the grant or the claim)."""
    valid_from = template.get("valid_from") or now
    valid_to = template.get("valid_to")
    if valid_to is None and template.get("valid_days"):
        valid_to = now + datetime.timedelta(days=int(template["valid_days"]))
    return {
        "user_id": user_id,
        "coupon_id": int(template["_id"]),
        "name": template["name"],
        "kind": template["kind"],
        "value": template.get("value", 0),
        "minimum": template.get("minimum", 0),
        "off_percent": template.get("off_percent", 0),
        "course_id": template.get("course_id"),
        "status": "unused",
        "valid_from": valid_from,
        "valid_to": valid_to,
        "order_no": None,
        "granted_at": now,
        "used_at": None,
    }


def displayed_status(coupon: Record, now: datetime.datetime) -> str:
    """unused | held | used | expired: an unused coupon past its validity is expired now, whether
    or not the sweeper has stored that yet."""
    status = str(coupon.get("status", "unused"))
    valid_to = coupon.get("valid_to")
    if status == "unused" and valid_to is not None and as_utc(valid_to) <= now:
        return "expired"
    return status


# == ports ==================================================================================================
class ClaimRepository(Protocol):
    async def claimable(self, now: datetime.datetime) -> list[Record]:
        """Templates with a claim window that has not closed yet (open or upcoming), closing first."""
        ...

    async def count_claim(self, coupon_id: int, user_id: int, limit: int) -> int | None:
        """Raise the user's claim count of the coupon if below `limit`: the count after, else None."""
        ...

    async def take_one(self, coupon_id: int, now: datetime.datetime) -> bool:
        """`left` − 1 if above zero and the claim window is open at `now`; False otherwise."""
        ...

    async def claims_of(self, user_id: int, coupon_ids: Iterable[int]) -> dict[int, int]:
        """How many of each coupon the user has claimed."""
        ...
