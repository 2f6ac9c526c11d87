"""The course shop's records, values and errors (no storage, no I/O).

Records (courses, policies, coupons, orders, enrolments) are plain dictionaries shaped as they are
stored (`_id` and the field names of docs/shop.md): the REST views and the admin pages render them
as they are, and the handlers read only the fields named here.
"""

import dataclasses
import datetime
from typing import Any, Final

from engine.book.errors import GavelError
from shop.pricing import CouponKind, CouponTerms, LineInput

Record = dict[str, Any]

COURSE_TYPES: Final = ("paid", "vip", "degree")  # 付费, VIP专享, 学位课程
LEVELS: Final = ("beginner", "intermediate", "advanced")  # 初级, 中级, 高级
COURSE_STATUSES: Final = ("online", "offline", "pre_online")  # 上线, 下线, 预上线
LISTED_STATUSES: Final = ("online", "pre_online")  # shown to clients; only "online" is sold
SECTION_TYPES: Final = ("document", "exercise", "video")
TEACHER_ROLES: Final = ("lecturer", "mentor")
POLICY_TARGETS: Final = ("course", "degree")

CART_LIMIT = 50
DEFAULT_CHECKOUT_TTL_SECONDS = 30 * 60
DEFAULT_PENDING_TIMEOUT_SECONDS = 30 * 60
MAX_VALID_DAYS = 3650
OUT_TRADE_PREFIX = "shop"


# -- errors (their HTTP statuses are in web/errors.py) ------------------------------------------
class ShopUnavailable(GavelError):
    code = "UNAVAILABLE"


class CartFull(GavelError):
    code = "CART_FULL"


class CourseNotOnSale(GavelError):
    code = "COURSE_NOT_ON_SALE"


class InvalidPolicy(GavelError):
    code = "INVALID_POLICY"


class NotInCart(GavelError):
    code = "NOT_IN_CART"


class CartItemUnavailable(GavelError):
    code = "CART_ITEM_UNAVAILABLE"


class CheckoutMissing(GavelError):
    code = "CHECKOUT_MISSING"


class CouponNotOffered(GavelError):
    code = "COUPON_NOT_OFFERED"


class CouponUnavailable(GavelError):
    code = "COUPON_UNAVAILABLE"


class CoursePriceChanged(GavelError):
    code = "PRICE_CHANGED"


class CheckoutAlreadyOrdered(GavelError):
    code = "CHECKOUT_ALREADY_ORDERED"


class ShopConflict(GavelError):
    code = "CONFLICT"


class NameExists(GavelError):
    code = "NAME_EXISTS"


class PolicyExists(GavelError):
    code = "POLICY_EXISTS"


class ChapterExists(GavelError):
    code = "CHAPTER_EXISTS"


class FaqExists(GavelError):
    code = "FAQ_EXISTS"


# -- values ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class CartLine:
    course_id: int | None  # None for a degree course
    policy_id: int
    name: str
    image: str
    price: int | None  # None when the policy is gone
    valid_days: int | None
    policies: tuple[Record, ...]  # every current policy of the course (to change the choice)
    available: bool
    reason: str | None  # course_missing | offline | policy_removed
    kind: str = "course"  # course | degree
    degree_course_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CheckoutLine:
    course_id: int | None  # None for a degree course
    name: str
    image: str
    policy_id: int
    valid_days: int
    price: int
    coupon_ids: tuple[int, ...]  # course coupons offered for this line (never for a degree)
    kind: str = "course"  # course | degree
    degree_course_id: int | None = None

    @property
    def key(self) -> int:
        """The line's label in pricing (shop/pricing.py): the course's id, or minus the degree's
        (courses and degree courses are numbered apart, so their ids may be equal)."""
        if self.degree_course_id is not None:
            return -self.degree_course_id
        return int(self.course_id or 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Checkout:
    """The settlement centre (结算中心) as stored: lines, offered coupons, the choices."""

    checkout_id: str
    user_id: int
    lines: tuple[CheckoutLine, ...]
    global_coupon_ids: tuple[int, ...]
    coupons: dict[int, Record]  # every offered coupon (id -> terms and display fields)
    chosen: dict[int, int]  # course_id -> chosen course coupon
    chosen_global: int | None
    ttl_seconds: int
    # The user's balance when the checkout was built (shown with it): paying debits it without
    # reading the balance back when it has not changed since (BalanceLedger.debit_new).
    balance_seen: int | None = None

    def line_inputs(self, terms: dict[int, CouponTerms]) -> list[LineInput]:
        return [
            LineInput(
                line.key,
                line.price,
                terms.get(self.chosen.get(line.course_id, 0)) if line.course_id is not None else None,
            )
            for line in self.lines
        ]


@dataclasses.dataclass(frozen=True, slots=True)
class PlacedOrder:
    order: Record
    created: bool  # False when the idempotency key returned an existing order


def coupon_terms(doc: Record) -> CouponTerms:
    """The pricing terms of a coupon (template or user coupon) record."""
    return CouponTerms(
        coupon_id=int(doc["_id"]),
        kind=CouponKind(doc["kind"]),
        value=int(doc.get("value", 0)),
        minimum=int(doc.get("minimum", 0)),
        off_percent=int(doc.get("off_percent", 0)),
    )


def as_utc(value: datetime.datetime) -> datetime.datetime:
    """Aware UTC (stored dates may come back naive, meaning UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


def to_ms(value: datetime.datetime) -> int:
    """Epoch milliseconds, integer arithmetic only."""
    delta = as_utc(value) - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def coupon_valid_at(doc: Record, now: datetime.datetime) -> bool:
    valid_from, valid_to = doc.get("valid_from"), doc.get("valid_to")
    if valid_from is not None and as_utc(valid_from) > now:
        return False
    return valid_to is None or as_utc(valid_to) > now


def coupon_display(doc: Record) -> Record:
    """What a checkout shows (and prices) of an offered coupon; JSON-ready."""
    valid_to = doc.get("valid_to")
    return {
        "name": doc.get("name", ""),
        "kind": doc["kind"],
        "value": int(doc.get("value", 0)),
        "minimum": int(doc.get("minimum", 0)),
        "off_percent": int(doc.get("off_percent", 0)),
        "course_id": doc.get("course_id"),
        "valid_to_ms": None if valid_to is None else to_ms(valid_to),
    }


def order_no_from(out_trade_no: str) -> str | None:
    """An older installation's `shop-{order_no}` (new numbers are looked up on the order)."""
    prefix, dash, order_no = out_trade_no.partition("-")
    return order_no if prefix == OUT_TRADE_PREFIX and dash and order_no else None
