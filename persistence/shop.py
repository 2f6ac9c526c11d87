"""The course shop: catalogue (MongoDB), cart and checkout (Redis), orders, enrolments and coupons.

The rules come from the course-shop notes (seed 004) and are made safe here:

- money is integer fen, priced by `engine.settle.shop_pricing` (pure);
- a coupon is spent by a conditional update (`unused -> held|used`) inside the order transaction,
  so two concurrent orders can never spend it twice;
- the balance moves only through `Accounts.debit` / `Accounts.credit` (conditional, with a ledger
  entry and a unique ref) inside the same transaction;
- a checkout yields at most one order (unique `checkout_id`), and an idempotency key returns the
  order it created.

MongoDB collections: `shop_categories`, `shop_teachers`, `shop_degree_courses`, `shop_courses`,
`shop_course_details`, `shop_price_policies`, `shop_chapters`, `shop_sections`, `shop_faqs`,
`shop_coupons` (templates), `shop_user_coupons` (a user's coupon), `shop_orders` (lines embedded),
`shop_enrolments`. Redis: `shop:cart:{user_id}` (hash course_id -> choice) and
`shop:checkout:{user_id}` (hash: `data` + the chosen coupons, with a time-to-live).
"""

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Final

import orjson
import redis.asyncio
import redis.exceptions
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure
from redis.commands.core import AsyncScript

from engine.book.errors import GavelError, NotFound
from engine.settle.ports import PaymentProvider, PaymentRequest
from engine.settle.shop_pricing import (
    CouponKind,
    CouponTerms,
    LineInput,
    PricingError,
    Quote,
    coupon_applies,
    price_checkout,
)
from payments.trade_numbers import new_trade_no
from persistence.accounts import Accounts, InvalidInput, RefReused
from persistence.mongo import (
    Client,
    Database,
    Document,
    Session,
    as_utc,
    next_id,
    run_in_transaction,
    to_ms,
    utc_now,
)

log = logging.getLogger("gavel.shop")

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


# -- errors (their HTTP statuses are in gateway/errors.py) ------------------------------------------
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


class PriceChanged(GavelError):
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


# Codes not (yet) in gateway/errors.py's table; the shop's handlers map them themselves.


@contextlib.asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """The one place Redis outages become `UNAVAILABLE` (503) instead of a 500."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        log.warning("redis unavailable: %s", exc)
        raise ShopUnavailable("the cart service is unavailable; try again shortly") from None


def _transaction_conflict(exc: OperationFailure) -> bool:
    """A write conflict the driver gave up retrying (or that escaped its retry loop).

    Not a timeout: a stalled MongoDB is a 503 UNAVAILABLE (gateway/errors.py), not a 409."""
    if exc.timeout:
        return False
    return exc.code == 112 or exc.has_error_label("TransientTransactionError")


# -- values ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class CartLine:
    course_id: int
    policy_id: int
    name: str
    image: str
    price: int | None  # None when the policy is gone
    valid_days: int | None
    policies: tuple[Document, ...]  # every current policy of the course (to change the choice)
    available: bool
    reason: str | None  # course_missing | offline | policy_removed


@dataclasses.dataclass(frozen=True, slots=True)
class CheckoutLine:
    course_id: int
    name: str
    image: str
    policy_id: int
    valid_days: int
    price: int
    coupon_ids: tuple[int, ...]  # course coupons offered for this line


@dataclasses.dataclass(frozen=True, slots=True)
class Checkout:
    """The settlement centre (结算中心) as stored in Redis: lines, offered coupons, the choices."""

    checkout_id: str
    user_id: int
    lines: tuple[CheckoutLine, ...]
    global_coupon_ids: tuple[int, ...]
    coupons: dict[int, Document]  # every offered coupon (id -> terms and display fields)
    chosen: dict[int, int]  # course_id -> chosen course coupon
    chosen_global: int | None
    ttl_seconds: int

    def line_inputs(self, terms: dict[int, CouponTerms]) -> list[LineInput]:
        return [
            LineInput(line.course_id, line.price, terms.get(self.chosen.get(line.course_id, 0)))
            for line in self.lines
        ]


@dataclasses.dataclass(frozen=True, slots=True)
class PlacedOrder:
    order: Document
    created: bool  # False when the idempotency key returned an existing order


def coupon_terms(doc: Document) -> CouponTerms:
    """The pricing terms of a coupon (template or user coupon) document."""
    return CouponTerms(
        coupon_id=int(doc["_id"]),
        kind=CouponKind(doc["kind"]),
        value=int(doc.get("value", 0)),
        minimum=int(doc.get("minimum", 0)),
        off_percent=int(doc.get("off_percent", 0)),
    )


def coupon_valid_at(doc: Document, now: datetime.datetime) -> bool:
    valid_from, valid_to = doc.get("valid_from"), doc.get("valid_to")
    if valid_from is not None and as_utc(valid_from) > now:
        return False
    return valid_to is None or as_utc(valid_to) > now


def out_trade_no_for(order_no: str) -> str:
    """A new, random trade number for a pending order (the order stores it); `order_no` stays the
    readable (sequential) number the user sees, and no longer names the payment."""
    return new_trade_no(OUT_TRADE_PREFIX)


def order_no_from(out_trade_no: str) -> str | None:
    """An older installation's `shop-{order_no}` (new numbers are looked up on the order)."""
    prefix, dash, order_no = out_trade_no.partition("-")
    return order_no if prefix == OUT_TRADE_PREFIX and dash and order_no else None


def _indexes() -> dict[str, list[IndexModel]]:
    return {
        "shop_categories": [IndexModel([("name", ASCENDING)], unique=True, name="name_unique")],
        "shop_degree_courses": [IndexModel([("name", ASCENDING)], unique=True, name="name_unique")],
        "shop_courses": [
            IndexModel([("name", ASCENDING)], unique=True, name="name_unique"),
            IndexModel(
                [("status", ASCENDING), ("sub_category_id", ASCENDING), ("order", ASCENDING)],
                name="listing",
            ),
        ],
        "shop_price_policies": [
            # One policy per validity period of a course or degree course (seed: unique_together).
            IndexModel(
                [("target", ASCENDING), ("target_id", ASCENDING), ("valid_days", ASCENDING)],
                unique=True,
                name="one_policy_per_validity",
            ),
        ],
        "shop_chapters": [
            IndexModel([("course_id", ASCENDING), ("chapter", ASCENDING)], unique=True, name="course_chapter")
        ],
        "shop_sections": [
            IndexModel([("chapter_id", ASCENDING), ("order", ASCENDING)], name="chapter_order")
        ],
        "shop_faqs": [
            IndexModel(
                [("target", ASCENDING), ("target_id", ASCENDING), ("question", ASCENDING)],
                unique=True,
                name="one_question",
            )
        ],
        "shop_user_coupons": [
            IndexModel([("user_id", ASCENDING), ("status", ASCENDING)], name="user_status"),
            IndexModel([("order_no", ASCENDING)], name="order_no"),
            IndexModel([("status", ASCENDING), ("valid_to", ASCENDING)], name="status_valid_to"),
            IndexModel(
                [("grant_ref", ASCENDING)],
                unique=True,
                partialFilterExpression={"grant_ref": {"$type": "string"}},
                name="grant_ref_unique",
            ),
        ],
        "shop_orders": [
            IndexModel(
                [("user_id", ASCENDING), ("idempotency_key", ASCENDING)], unique=True, name="idempotency"
            ),
            # One order per checkout: a second concurrent pay of the same checkout cannot buy twice.
            IndexModel([("checkout_id", ASCENDING)], unique=True, name="checkout_unique"),
            IndexModel([("status", ASCENDING), ("pay_deadline", ASCENDING)], name="pending_deadline"),
            IndexModel([("user_id", ASCENDING), ("created_at", DESCENDING)], name="user_orders"),
            # A verified notification names the payment by its random number.
            IndexModel(
                [("out_trade_no", ASCENDING)],
                partialFilterExpression={"out_trade_no": {"$type": "string"}},
                name="out_trade_no",
            ),
        ],
        "shop_enrolments": [
            IndexModel([("user_id", ASCENDING), ("course_id", ASCENDING)], name="user_course"),
        ],
    }


# Id counters the shop allocates from (`next_id`).
SHOP_COUNTERS: Final = (
    "shop_categories",
    "shop_teachers",
    "shop_degree_courses",
    "shop_courses",
    "shop_price_policies",
    "shop_chapters",
    "shop_sections",
    "shop_faqs",
    "shop_coupons",
    "shop_user_coupons",
    "shop_orders",
)


async def ensure_shop_indexes(db: Database) -> None:
    """Create the shop's indexes and id counters (idempotent; call at every start).

    The counters are created here, one at a time, because two concurrent first calls of
    `next_id` for the same counter can race on the upsert (seen with SecantusDB).
    """
    for collection, models in _indexes().items():
        await db[collection].create_indexes(models)
    for name in SHOP_COUNTERS:
        await db.counters.update_one({"_id": name}, {"$setOnInsert": {"seq": 0}}, upsert=True)


# Atomic cart edits: the limit check and the write happen in one Redis step.
_CART_ADD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
_HSET_IF_FIELD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
# Chooses a coupon only while the checkout exists: an expired checkout is never half re-created.
_HSET_IF_KEY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# Forgets a checkout only if it is still the one that was ordered: the same user may have checked
# out again (another tab) while the older one was being paid, and that newer one must survive.
_DELETE_IF_CHECKOUT = """
local data = redis.call('HGET', KEYS[1], 'data')
if not data or cjson.decode(data)['checkout_id'] ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class Shop:
    """Everything the shop stores; `now` is injectable so tests can move time."""

    def __init__(
        self,
        client: Client,
        db: Database,
        redis_client: redis.asyncio.Redis,
        accounts: Accounts,
        provider: PaymentProvider,
        *,
        checkout_ttl_seconds: int = DEFAULT_CHECKOUT_TTL_SECONDS,
        pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT_SECONDS,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self.client = client
        self.db = db
        self.redis = redis_client
        self.accounts = accounts
        self.provider = provider
        self.checkout_ttl_seconds = checkout_ttl_seconds
        self.pending_timeout_seconds = pending_timeout_seconds
        self.now = now
        self._cart_add = AsyncScript(redis_client, _CART_ADD)
        self._hset_if_field = AsyncScript(redis_client, _HSET_IF_FIELD)
        self._hset_if_key = AsyncScript(redis_client, _HSET_IF_KEY)
        self._delete_if_checkout = AsyncScript(redis_client, _DELETE_IF_CHECKOUT)

    # == catalogue: admin writes ==========================================================================
    async def _insert_named(self, collection: str, doc: Document, what: str) -> Document:
        doc["_id"] = await next_id(self.db, collection)
        try:
            await self.db[collection].insert_one(doc)
        except DuplicateKeyError:
            raise NameExists(f"a {what} named {doc.get('name')!r} exists") from None
        return doc

    async def create_category(self, name: str, parent_id: int | None) -> Document:
        """A category (课程大类) or, with `parent_id`, a subcategory (课程子类); two levels only."""
        if parent_id is not None:
            parent = await self.db.shop_categories.find_one({"_id": parent_id})
            if parent is None or parent.get("parent_id") is not None:
                raise NotFound(f"no top-level category {parent_id}")
        return await self._insert_named("shop_categories", {"name": name, "parent_id": parent_id}, "category")

    async def categories(self) -> list[Document]:
        return [doc async for doc in self.db.shop_categories.find().sort("_id", ASCENDING)]

    async def create_teacher(self, fields: Document) -> Document:
        doc = dict(fields)
        doc["_id"] = await next_id(self.db, "shop_teachers")
        await self.db.shop_teachers.insert_one(doc)
        return doc

    async def _check_ids(self, collection: str, ids: Iterable[int], what: str) -> None:
        wanted = set(ids)
        if not wanted:
            return
        found = {
            int(d["_id"]) async for d in self.db[collection].find({"_id": {"$in": list(wanted)}}, {"_id": 1})
        }
        missing = sorted(wanted - found)
        if missing:
            raise NotFound(f"no {what} {missing[0]}")

    async def create_degree_course(self, fields: Document) -> Document:
        await self._check_ids("shop_teachers", fields.get("teacher_ids", ()), "teacher")
        return await self._insert_named("shop_degree_courses", dict(fields), "degree course")

    async def create_course(self, fields: Document) -> Document:
        doc = dict(fields)
        category = await self.db.shop_categories.find_one({"_id": doc["sub_category_id"]})
        if category is None or category.get("parent_id") is None:
            raise NotFound(f"no subcategory {doc['sub_category_id']}")
        await self._check_degree_link(doc.get("course_type"), doc.get("degree_course_id"))
        doc["created_at"] = self.now()
        return await self._insert_named("shop_courses", doc, "course")

    async def _check_degree_link(self, course_type: str | None, degree_course_id: int | None) -> None:
        # Seed rule: a degree module must name its degree course (and only a degree module may).
        if course_type == "degree" and degree_course_id is None:
            raise InvalidInput("a degree module needs degree_course_id")
        if course_type not in (None, "degree") and degree_course_id is not None:
            raise InvalidInput("only a degree module (course_type degree) has a degree_course_id")
        if degree_course_id is not None:
            await self._check_ids("shop_degree_courses", [degree_course_id], "degree course")

    async def update_course(self, course_id: int, changes: Document) -> Document:
        """Change some fields of a course, e.g. take it offline (its cart entries become unavailable)."""
        current = await self.db.shop_courses.find_one({"_id": course_id})
        if current is None:
            raise NotFound(f"no course {course_id}")
        merged = {**current, **changes}
        if "sub_category_id" in changes:
            category = await self.db.shop_categories.find_one({"_id": changes["sub_category_id"]})
            if category is None or category.get("parent_id") is None:
                raise NotFound(f"no subcategory {changes['sub_category_id']}")
        if "course_type" in changes or "degree_course_id" in changes:
            await self._check_degree_link(merged.get("course_type"), merged.get("degree_course_id"))
        if not changes:
            return current
        try:
            doc = await self.db.shop_courses.find_one_and_update(
                {"_id": course_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            raise NameExists(f"a course named {changes.get('name')!r} exists") from None
        if doc is None:
            raise NotFound(f"no course {course_id}")
        return doc

    async def put_course_detail(self, course_id: int, fields: Document) -> Document:
        """The course page (CourseDetail), one per course, replaced as a whole."""
        await self._check_ids("shop_courses", [course_id], "course")
        await self._check_ids("shop_teachers", fields.get("teacher_ids", ()), "teacher")
        await self._check_ids("shop_courses", fields.get("recommend_course_ids", ()), "course")
        doc = {"_id": course_id, **fields}
        await self.db.shop_course_details.replace_one({"_id": course_id}, doc, upsert=True)
        return doc

    async def add_policy(self, target: str, target_id: int, valid_days: int, price: int) -> Document:
        collection = "shop_courses" if target == "course" else "shop_degree_courses"
        await self._check_ids(collection, [target_id], "course" if target == "course" else "degree course")
        doc: Document = {"target": target, "target_id": target_id, "valid_days": valid_days, "price": price}
        doc["_id"] = await next_id(self.db, "shop_price_policies")
        try:
            await self.db.shop_price_policies.insert_one(doc)
        except DuplicateKeyError:
            raise PolicyExists(f"{target} {target_id} already has a {valid_days}-day policy") from None
        return doc

    async def remove_policy(self, policy_id: int) -> None:
        """Delete a policy; carts holding it show the line as unavailable, orders keep their copy."""
        result = await self.db.shop_price_policies.delete_one({"_id": policy_id})
        if result.deleted_count != 1:
            raise NotFound(f"no price policy {policy_id}")

    async def add_chapter(self, course_id: int, fields: Document) -> Document:
        await self._check_ids("shop_courses", [course_id], "course")
        doc = {"course_id": course_id, **fields}
        doc["_id"] = await next_id(self.db, "shop_chapters")
        try:
            await self.db.shop_chapters.insert_one(doc)
        except DuplicateKeyError:
            raise ChapterExists(f"course {course_id} already has chapter {fields['chapter']}") from None
        return doc

    async def add_section(self, chapter_id: int, fields: Document) -> Document:
        chapter = await self.db.shop_chapters.find_one({"_id": chapter_id})
        if chapter is None:
            raise NotFound(f"no chapter {chapter_id}")
        doc = {"chapter_id": chapter_id, "course_id": chapter["course_id"], **fields}
        doc["_id"] = await next_id(self.db, "shop_sections")
        await self.db.shop_sections.insert_one(doc)
        return doc

    async def add_faq(self, target: str, target_id: int, question: str, answer: str) -> Document:
        collection = "shop_courses" if target == "course" else "shop_degree_courses"
        await self._check_ids(collection, [target_id], target)
        doc: Document = {"target": target, "target_id": target_id, "question": question, "answer": answer}
        doc["_id"] = await next_id(self.db, "shop_faqs")
        try:
            await self.db.shop_faqs.insert_one(doc)
        except DuplicateKeyError:
            raise FaqExists("this question is already answered") from None
        return doc

    # == catalogue: reads =================================================================================
    async def list_courses(
        self, category_id: int | None, skip: int, limit: int
    ) -> tuple[list[Document], int]:
        """Listed (online and pre-online) courses by display order, each with `policies`."""
        query: Document = {"status": {"$in": list(LISTED_STATUSES)}}
        if category_id is not None:
            category = await self.db.shop_categories.find_one({"_id": category_id})
            if category is None:
                raise NotFound(f"no category {category_id}")
            if category.get("parent_id") is None:
                children = self.db.shop_categories.find({"parent_id": category_id}, {"_id": 1})
                query["sub_category_id"] = {"$in": [int(c["_id"]) async for c in children]}
            else:
                query["sub_category_id"] = category_id
        total = await self.db.shop_courses.count_documents(query)
        cursor = self.db.shop_courses.find(query).sort([("order", ASCENDING), ("_id", ASCENDING)])
        courses = [doc async for doc in cursor.skip(skip).limit(limit)]
        policies = await self._policies_by_course([int(c["_id"]) for c in courses])
        for course in courses:
            course["policies"] = policies.get(int(course["_id"]), [])
        return courses, total

    async def _policies_by_course(self, course_ids: Sequence[int]) -> dict[int, list[Document]]:
        found: dict[int, list[Document]] = {}
        if not course_ids:
            return found
        cursor = self.db.shop_price_policies.find(
            {"target": "course", "target_id": {"$in": list(course_ids)}}
        ).sort([("target_id", ASCENDING), ("valid_days", ASCENDING)])
        async for policy in cursor:
            found.setdefault(int(policy["target_id"]), []).append(policy)
        return found

    async def course_page(self, course_id: int) -> Document:
        """A listed course with its policies, detail (teachers, recommended courses) and FAQs."""
        course = await self.db.shop_courses.find_one(
            {"_id": course_id, "status": {"$in": list(LISTED_STATUSES)}}
        )
        if course is None:
            raise NotFound(f"no course {course_id}")
        course["policies"] = (await self._policies_by_course([course_id])).get(course_id, [])
        detail = await self.db.shop_course_details.find_one({"_id": course_id})
        if detail is not None:
            detail["teachers"] = [
                t async for t in self.db.shop_teachers.find({"_id": {"$in": detail.get("teacher_ids", [])}})
            ]
            detail["recommended"] = [
                c
                async for c in self.db.shop_courses.find(
                    {
                        "_id": {"$in": detail.get("recommend_course_ids", [])},
                        "status": {"$in": list(LISTED_STATUSES)},
                    },
                    {"name": 1, "image": 1, "brief": 1},
                )
            ]
        course["detail"] = detail
        course["faqs"] = [
            f
            async for f in self.db.shop_faqs.find({"target": "course", "target_id": course_id}).sort("_id", 1)
        ]
        return course

    async def degree_course_page(self, degree_course_id: int) -> Document:
        degree = await self.db.shop_degree_courses.find_one({"_id": degree_course_id})
        if degree is None:
            raise NotFound(f"no degree course {degree_course_id}")
        degree["policies"] = [
            p
            async for p in self.db.shop_price_policies.find(
                {"target": "degree", "target_id": degree_course_id}
            ).sort("valid_days", 1)
        ]
        degree["modules"] = [
            c
            async for c in self.db.shop_courses.find(
                {"degree_course_id": degree_course_id, "status": {"$in": list(LISTED_STATUSES)}},
                {"name": 1, "image": 1, "order": 1},
            ).sort("order", 1)
        ]
        degree["teachers"] = [
            t async for t in self.db.shop_teachers.find({"_id": {"$in": degree.get("teacher_ids", [])}})
        ]
        degree["faqs"] = [
            f
            async for f in self.db.shop_faqs.find({"target": "degree", "target_id": degree_course_id}).sort(
                "_id", 1
            )
        ]
        return degree

    async def chapters(self, course_id: int) -> list[Document]:
        """Chapters in order, each with its sections in order (`free_trial` marks the free ones)."""
        course = await self.db.shop_courses.find_one(
            {"_id": course_id, "status": {"$in": list(LISTED_STATUSES)}}
        )
        if course is None:
            raise NotFound(f"no course {course_id}")
        chapters = [c async for c in self.db.shop_chapters.find({"course_id": course_id}).sort("chapter", 1)]
        sections: dict[int, list[Document]] = {}
        cursor = self.db.shop_sections.find({"course_id": course_id}).sort([("order", 1), ("_id", 1)])
        async for section in cursor:
            sections.setdefault(int(section["chapter_id"]), []).append(section)
        for chapter in chapters:
            chapter["sections"] = sections.get(int(chapter["_id"]), [])
        return chapters

    # == coupons ==========================================================================================
    async def create_coupon(self, fields: Document) -> Document:
        """A coupon template (优惠券生成规则). `course_id` binds it to a course; else it is global."""
        doc = dict(fields)
        try:
            coupon_terms({"_id": 0, **doc})
        except (PricingError, ValueError) as exc:
            raise InvalidInput(str(exc)) from None
        if doc.get("course_id") is not None:
            await self._check_ids("shop_courses", [doc["course_id"]], "course")
        valid_from, valid_to = doc.get("valid_from"), doc.get("valid_to")
        if valid_from is not None and valid_to is not None and valid_to <= valid_from:
            raise InvalidInput("valid_to must be later than valid_from")
        doc["_id"] = await next_id(self.db, "shop_coupons")
        doc["created_at"] = self.now()
        await self.db.shop_coupons.insert_one(doc)
        return doc

    async def grant_coupon(
        self, coupon_id: int, user_id: int, *, idempotency_key: str | None = None
    ) -> Document:
        """Give `user_id` one coupon of template `coupon_id` (the admin UI's action).

        The terms are copied, so later edits of the template never change a granted coupon. Validity:
        the template's window, or `valid_days` from now (seed: coupon_valid_days, counted from the
        grant). With `idempotency_key`, a repeated grant returns the first one.
        """
        template = await self.db.shop_coupons.find_one({"_id": coupon_id})
        if template is None:
            raise NotFound(f"no coupon {coupon_id}")
        await self._check_ids("users", [user_id], "user")
        grant_ref = f"{coupon_id}:{user_id}:{idempotency_key}" if idempotency_key is not None else None
        if grant_ref is not None:
            existing = await self.db.shop_user_coupons.find_one({"grant_ref": grant_ref})
            if existing is not None:
                return existing
        now = self.now()
        valid_from = template.get("valid_from") or now
        valid_to = template.get("valid_to")
        if valid_to is None and template.get("valid_days"):
            valid_to = now + datetime.timedelta(days=int(template["valid_days"]))
        doc: Document = {
            "user_id": user_id,
            "coupon_id": coupon_id,
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
        if grant_ref is not None:
            doc["grant_ref"] = grant_ref
        doc["_id"] = await next_id(self.db, "shop_user_coupons")
        try:
            await self.db.shop_user_coupons.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.db.shop_user_coupons.find_one({"grant_ref": grant_ref})
            if existing is None:
                raise
            return existing
        return doc

    async def user_coupons(self, user_id: int, status: str | None = None) -> list[Document]:
        query: Document = {"user_id": user_id}
        if status is not None:
            query["status"] = status
        return [c async for c in self.db.shop_user_coupons.find(query).sort("_id", 1)]

    async def _usable_coupons(self, user_id: int, now: datetime.datetime) -> list[Document]:
        docs = self.db.shop_user_coupons.find({"user_id": user_id, "status": "unused"}).sort("_id", 1)
        return [doc async for doc in docs if coupon_valid_at(doc, now)]

    # == cart (Redis) =====================================================================================
    @staticmethod
    def cart_key(user_id: int) -> str:
        return f"shop:cart:{user_id}"

    @staticmethod
    def checkout_key(user_id: int) -> str:
        return f"shop:checkout:{user_id}"

    async def _sellable(self, course_id: int, policy_id: int) -> tuple[Document, Document]:
        """The course and policy, provided the course is on sale and the policy is one of its own."""
        course = await self.db.shop_courses.find_one({"_id": course_id})
        if course is None:
            raise NotFound(f"no course {course_id}")
        if course.get("status") != "online":
            raise CourseNotOnSale(f"course {course_id} is not on sale")
        policy = await self.db.shop_price_policies.find_one({"_id": policy_id})
        if policy is None or policy["target"] != "course" or policy["target_id"] != course_id:
            raise InvalidPolicy(f"price policy {policy_id} does not belong to course {course_id}")
        return course, policy

    async def cart_add(self, user_id: int, course_id: int, policy_id: int) -> list[CartLine]:
        """Put a course with its chosen policy in the cart (again: the new choice replaces the old)."""
        await self._sellable(course_id, policy_id)
        value = orjson.dumps({"policy_id": policy_id, "added_ms": to_ms(self.now())})
        async with redis_errors():
            added = await self._cart_add(
                keys=[self.cart_key(user_id)], args=[str(course_id), value, CART_LIMIT], client=self.redis
            )
        if not added:
            raise CartFull(f"the cart holds at most {CART_LIMIT} courses")
        return await self.cart(user_id)

    async def cart_change_policy(self, user_id: int, course_id: int, policy_id: int) -> list[CartLine]:
        await self._sellable(course_id, policy_id)
        async with redis_errors():
            raw = await self.redis.hget(self.cart_key(user_id), str(course_id))
            if raw is None:
                raise NotInCart(f"course {course_id} is not in the cart")
            entry = orjson.loads(raw)
            entry["policy_id"] = policy_id
            changed = await self._hset_if_field(
                keys=[self.cart_key(user_id)], args=[str(course_id), orjson.dumps(entry)], client=self.redis
            )
        if not changed:
            raise NotInCart(f"course {course_id} is not in the cart")
        return await self.cart(user_id)

    async def cart_remove(self, user_id: int, course_id: int) -> list[CartLine]:
        async with redis_errors():
            removed = await self.redis.hdel(self.cart_key(user_id), str(course_id))
        if not removed:
            raise NotInCart(f"course {course_id} is not in the cart")
        return await self.cart(user_id)

    async def _cart_entries(self, user_id: int) -> dict[int, int]:
        """course_id -> chosen policy_id, as stored."""
        async with redis_errors():
            raw = await self.redis.hgetall(self.cart_key(user_id))
        entries: dict[int, int] = {}
        for field, value in raw.items():
            try:
                entries[int(field)] = int(orjson.loads(value)["policy_id"])
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                log.error("unreadable cart entry %r of user %s; ignored", field, user_id)
        return entries

    async def cart(self, user_id: int) -> list[CartLine]:
        """The cart against the current catalogue: offline courses and removed policies are unavailable."""
        entries = await self._cart_entries(user_id)
        course_ids = sorted(entries)
        courses = {int(c["_id"]): c async for c in self.db.shop_courses.find({"_id": {"$in": course_ids}})}
        policies = await self._policies_by_course(course_ids)
        lines = []
        for course_id in course_ids:
            policy_id = entries[course_id]
            course = courses.get(course_id)
            own = policies.get(course_id, [])
            chosen = next((p for p in own if int(p["_id"]) == policy_id), None)
            reason = None
            if course is None:
                reason = "course_missing"
            elif course.get("status") != "online":
                reason = "offline"
            elif chosen is None:
                reason = "policy_removed"
            lines.append(
                CartLine(
                    course_id=course_id,
                    policy_id=policy_id,
                    name=course["name"] if course else "",
                    image=course.get("image", "") if course else "",
                    price=int(chosen["price"]) if chosen else None,
                    valid_days=int(chosen["valid_days"]) if chosen else None,
                    policies=tuple(own),
                    available=reason is None,
                    reason=reason,
                )
            )
        return lines

    # == checkout (Redis, with a time-to-live) ============================================================
    async def create_checkout(self, user_id: int, course_ids: Sequence[int]) -> Checkout:
        """Build the settlement centre for `course_ids` (all in the cart, all available) and store it.

        Offers, per course, the user's unused, unexpired coupons bound to it (a threshold coupon only
        when the price reaches its minimum) and, globally, the unbound ones. Replaces any earlier
        checkout of the user (and its choices).
        """
        if not course_ids or len(set(course_ids)) != len(course_ids):
            raise InvalidInput("course_ids must list distinct courses")
        cart = {line.course_id: line for line in await self.cart(user_id)}
        lines = []
        for course_id in course_ids:
            cart_line = cart.get(course_id)
            if cart_line is None:
                raise NotInCart(f"course {course_id} is not in the cart; add it first")
            if not cart_line.available or cart_line.price is None or cart_line.valid_days is None:
                raise CartItemUnavailable(f"course {course_id} is unavailable ({cart_line.reason})")
            lines.append(cart_line)
        now = self.now()
        coupons = await self._usable_coupons(user_id, now)
        offered: dict[int, Document] = {}
        checkout_lines = []
        for cart_line in lines:
            assert cart_line.price is not None and cart_line.valid_days is not None
            ids = []
            for coupon in coupons:
                if coupon.get("course_id") == cart_line.course_id and coupon_applies(
                    coupon_terms(coupon), cart_line.price
                ):
                    ids.append(int(coupon["_id"]))
                    offered[int(coupon["_id"])] = coupon
            checkout_lines.append(
                CheckoutLine(
                    cart_line.course_id,
                    cart_line.name,
                    cart_line.image,
                    cart_line.policy_id,
                    cart_line.valid_days,
                    cart_line.price,
                    tuple(ids),
                )
            )
        global_ids = []
        for coupon in coupons:
            if coupon.get("course_id") is None:
                global_ids.append(int(coupon["_id"]))
                offered[int(coupon["_id"])] = coupon
        checkout = Checkout(
            checkout_id=uuid.uuid4().hex,
            user_id=user_id,
            lines=tuple(checkout_lines),
            global_coupon_ids=tuple(global_ids),
            coupons={cid: _coupon_display(doc) for cid, doc in offered.items()},
            chosen={},
            chosen_global=None,
            ttl_seconds=self.checkout_ttl_seconds,
        )
        data = orjson.dumps(
            {
                "checkout_id": checkout.checkout_id,
                "lines": [dataclasses.asdict(line) for line in checkout.lines],
                "global_coupon_ids": list(checkout.global_coupon_ids),
                "coupons": {str(k): v for k, v in checkout.coupons.items()},
            }
        )
        key = self.checkout_key(user_id)
        # MULTI/EXEC: the old checkout and its choices go and the new one appears in one step.
        async with redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, "data", data)
            pipe.expire(key, self.checkout_ttl_seconds)
            await pipe.execute()
        return checkout

    async def checkout(self, user_id: int) -> Checkout:
        key = self.checkout_key(user_id)
        async with redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.ttl(key)
            raw, ttl = await pipe.execute()
        if not raw or b"data" not in raw:
            raise CheckoutMissing("there is no checkout (or it expired); POST /api/v1/checkout first")
        data = orjson.loads(raw[b"data"])
        chosen: dict[int, int] = {}
        chosen_global = None
        for field, value in raw.items():
            name = field.decode()
            if not name.startswith("coupon:") or not value:
                continue
            if name == "coupon:global":
                chosen_global = int(value)
            else:
                chosen[int(name.removeprefix("coupon:"))] = int(value)
        return Checkout(
            checkout_id=data["checkout_id"],
            user_id=user_id,
            lines=tuple(
                CheckoutLine(
                    int(line["course_id"]),
                    line["name"],
                    line["image"],
                    int(line["policy_id"]),
                    int(line["valid_days"]),
                    int(line["price"]),
                    tuple(int(c) for c in line["coupon_ids"]),
                )
                for line in data["lines"]
            ),
            global_coupon_ids=tuple(int(c) for c in data["global_coupon_ids"]),
            coupons={int(k): v for k, v in data["coupons"].items()},
            chosen=chosen,
            chosen_global=chosen_global,
            ttl_seconds=max(int(ttl), 0),
        )

    async def choose_coupon(self, user_id: int, course_id: int | None, coupon_id: int | None) -> Checkout:
        """Choose (or with `coupon_id` None, clear) the coupon of one line, or the global one."""
        checkout = await self.checkout(user_id)
        if course_id is None:
            offered = checkout.global_coupon_ids
        else:
            line = next((ln for ln in checkout.lines if ln.course_id == course_id), None)
            if line is None:
                raise NotFound(f"course {course_id} is not in the checkout")
            offered = line.coupon_ids
        if coupon_id is not None and coupon_id not in offered:
            raise CouponNotOffered(f"coupon {coupon_id} is not offered here")
        field = "coupon:global" if course_id is None else f"coupon:{course_id}"
        async with redis_errors():
            stored = await self._hset_if_key(
                keys=[self.checkout_key(user_id)],
                args=[field, "" if coupon_id is None else str(coupon_id)],
                client=self.redis,
            )
        if not stored:
            raise CheckoutMissing("the checkout expired; POST /api/v1/checkout again")
        return await self.checkout(user_id)

    def quote(self, checkout: Checkout, balance_requested: int, balance_available: int) -> Quote:
        """Price a checkout with its choices, from the terms shown to the user."""
        terms = {cid: coupon_terms({"_id": cid, **doc}) for cid, doc in checkout.coupons.items()}
        chosen_global = terms.get(checkout.chosen_global) if checkout.chosen_global is not None else None
        return price_checkout(
            checkout.line_inputs(terms),
            chosen_global,
            balance_requested=balance_requested,
            balance_available=balance_available,
        )

    # == orders ===========================================================================================
    async def find_order(self, user_id: int, order_no: str) -> Document:
        order = await self.db.shop_orders.find_one({"_id": order_no, "user_id": user_id})
        if order is None:
            raise NotFound(f"no order {order_no}")
        return order

    async def orders(self, user_id: int, skip: int, limit: int) -> tuple[list[Document], int]:
        query = {"user_id": user_id}
        total = await self.db.shop_orders.count_documents(query)
        cursor = (
            self.db.shop_orders.find(query).sort([("created_at", -1), ("_id", -1)]).skip(skip).limit(limit)
        )
        return [o async for o in cursor], total

    async def enrolments(self, user_id: int) -> list[Document]:
        cursor = self.db.shop_enrolments.find({"user_id": user_id}).sort([("valid_from", 1), ("_id", 1)])
        return [e async for e in cursor]

    async def pay(self, user_id: int, balance: int, idempotency_key: str) -> PlacedOrder:
        """`POST /api/v1/checkout/pay`: the user's current checkout becomes an order (see `place_order`)."""
        existing = await self._order_for_key(user_id, idempotency_key, balance)
        if existing is not None:
            return PlacedOrder(await self._ensure_pay_url(existing), created=False)
        checkout = await self.checkout(user_id)
        return await self.place_order(checkout, balance, idempotency_key)

    async def _order_for_key(self, user_id: int, idempotency_key: str, balance: int) -> Document | None:
        order = await self.db.shop_orders.find_one({"user_id": user_id, "idempotency_key": idempotency_key})
        if order is not None and order["balance_requested"] != balance:
            raise RefReused(f"the idempotency key {idempotency_key!r} was used for a different payment")
        return order

    async def place_order(self, checkout: Checkout, balance: int, idempotency_key: str) -> PlacedOrder:
        """One transaction: the order and its lines, the coupons spent (`unused -> used`, or `held`
        while payment is pending), the balance debited with a ledger entry, and, when nothing is left
        to pay, the enrolments. Then, for a pending order, the provider's payment.
        """
        user_id = checkout.user_id
        await self._check_prices(checkout)
        order_no = f"{self.now():%Y%m%d}{await next_id(self.db, 'shop_orders'):08d}"

        async def transaction(s: Session) -> Document:
            return await self._place_in(s, checkout, order_no, balance, idempotency_key)

        try:
            order = await run_in_transaction(self.client, transaction)
        except DuplicateKeyError:
            # A concurrent request with the same key, or a second order from the same checkout.
            existing = await self._order_for_key(user_id, idempotency_key, balance)
            if existing is not None:
                return PlacedOrder(await self._ensure_pay_url(existing), created=False)
            raise CheckoutAlreadyOrdered("this checkout has already become an order") from None
        except OperationFailure as exc:
            if _transaction_conflict(exc):
                raise ShopConflict("another payment changed your coupons or balance; try again") from None
            raise
        await self._forget_checkout(checkout)
        return PlacedOrder(await self._ensure_pay_url(order), created=True)

    async def _check_prices(self, checkout: Checkout) -> None:
        """The catalogue may have changed since the checkout was built: never charge an unseen price."""
        course_ids = [line.course_id for line in checkout.lines]
        courses = {int(c["_id"]): c async for c in self.db.shop_courses.find({"_id": {"$in": course_ids}})}
        policies = await self._policies_by_course(course_ids)
        for line in checkout.lines:
            course = courses.get(line.course_id)
            if course is None or course.get("status") != "online":
                raise CartItemUnavailable(f"course {line.course_id} is no longer on sale")
            policy = next(
                (p for p in policies.get(line.course_id, []) if int(p["_id"]) == line.policy_id), None
            )
            if policy is None:
                raise CartItemUnavailable(f"the chosen price policy of course {line.course_id} was removed")
            if int(policy["price"]) != line.price or int(policy["valid_days"]) != line.valid_days:
                raise PriceChanged(f"the price of course {line.course_id} changed; check out again")

    async def _place_in(
        self, s: Session, checkout: Checkout, order_no: str, balance: int, idempotency_key: str
    ) -> Document:
        user_id = checkout.user_id
        now = self.now()
        # The chosen coupons, read again inside the transaction: the Redis copy is only a display.
        chosen_ids = [
            *checkout.chosen.values(),
            *([checkout.chosen_global] if checkout.chosen_global else []),
        ]
        for course_id, coupon_id in checkout.chosen.items():
            line = next((ln for ln in checkout.lines if ln.course_id == course_id), None)
            if line is None or coupon_id not in line.coupon_ids:
                raise CouponNotOffered(f"coupon {coupon_id} is not offered for course {course_id}")
        if checkout.chosen_global is not None and checkout.chosen_global not in checkout.global_coupon_ids:
            raise CouponNotOffered(f"coupon {checkout.chosen_global} is not a global coupon offered")
        docs = {
            int(d["_id"]): d
            async for d in self.db.shop_user_coupons.find({"_id": {"$in": chosen_ids}}, session=s)
        }
        terms: dict[int, CouponTerms] = {}
        for coupon_id in chosen_ids:
            doc = docs.get(coupon_id)
            if (
                doc is None
                or doc["user_id"] != user_id
                or doc["status"] != "unused"
                or not coupon_valid_at(doc, now)
            ):
                raise CouponUnavailable(f"coupon {coupon_id} is used, held or expired")
            terms[coupon_id] = coupon_terms(doc)
        user = await self.db.users.find_one({"_id": user_id}, {"balance": 1}, session=s)
        if user is None:
            raise NotFound(f"no user {user_id}")
        global_terms = terms.get(checkout.chosen_global) if checkout.chosen_global is not None else None
        quote = price_checkout(
            checkout.line_inputs(terms),
            global_terms,
            balance_requested=balance,
            balance_available=int(user["balance"]),
        )
        paid_now = quote.to_pay == 0
        coupon_status = "used" if paid_now else "held"
        for coupon_id in quote.spent_coupon_ids:
            # Conditional: of two concurrent orders only one finds the coupon unused.
            result = await self.db.shop_user_coupons.update_one(
                {"_id": coupon_id, "user_id": user_id, "status": "unused"},
                {"$set": {"status": coupon_status, "order_no": order_no, "used_at": now}},
                session=s,
            )
            if result.matched_count != 1:
                raise CouponUnavailable(f"coupon {coupon_id} was just used by another order")
        if quote.balance_used > 0:
            kind, ref = (
                ("shop_pay", f"shop-pay:{order_no}") if paid_now else ("shop_hold", f"shop-hold:{order_no}")
            )
            await self.accounts.debit(user_id, quote.balance_used, kind, ref, session=s)
        lines_by_course = {line.course_id: line for line in checkout.lines}
        order: Document = {
            "_id": order_no,
            "user_id": user_id,
            "checkout_id": checkout.checkout_id,
            "idempotency_key": idempotency_key,
            "status": "paid" if paid_now else "pending",
            "lines": [
                {
                    "course_id": priced.course_id,
                    "course_name": lines_by_course[priced.course_id].name,
                    "policy_id": lines_by_course[priced.course_id].policy_id,
                    "valid_days": lines_by_course[priced.course_id].valid_days,
                    "original_price": priced.original_price,
                    "coupon_id": priced.coupon_id,
                    "coupon_discount": priced.coupon_discount,
                    "global_discount_share": priced.global_discount_share,
                    "paid_price": priced.paid_price,
                }
                for priced in quote.lines
            ],
            "original_total": quote.original_total,
            "course_discount": quote.course_discount,
            "global_coupon_id": quote.global_coupon_id,
            "global_discount": quote.global_discount,
            "payable": quote.payable,
            "balance_requested": balance,
            "balance_used": quote.balance_used,
            "to_pay": quote.to_pay,
            "coupon_ids": list(quote.spent_coupon_ids),
            "out_trade_no": None if paid_now else out_trade_no_for(order_no),
            "pay_url": None,
            "created_at": now,
            "pay_deadline": None
            if paid_now
            else now + datetime.timedelta(seconds=self.pending_timeout_seconds),
            "paid_at": now if paid_now else None,
            "cancelled_at": None,
        }
        await self.db.shop_orders.insert_one(order, session=s)
        if paid_now:
            await self._enrol(s, order, now)
        return order

    async def _enrol(self, s: Session, order: Document, now: datetime.datetime) -> None:
        """One enrolment per line, valid from `now` for the policy's days (ids make retries no-ops)."""
        for line in order["lines"]:
            await self.db.shop_enrolments.update_one(
                {"_id": f"{order['_id']}:{line['course_id']}"},
                {
                    "$setOnInsert": {
                        "user_id": order["user_id"],
                        "course_id": line["course_id"],
                        "course_name": line["course_name"],
                        "order_no": order["_id"],
                        "valid_from": now,
                        "valid_to": now + datetime.timedelta(days=int(line["valid_days"])),
                        "status": "active",
                    }
                },
                upsert=True,
                session=s,
            )

    async def _ensure_pay_url(self, order: Document) -> Document:
        """A pending order's provider payment (idempotent on `out_trade_no`)."""
        if order["status"] != "pending" or order.get("pay_url"):
            return order
        names = ", ".join(line["course_name"] for line in order["lines"])
        request = PaymentRequest(
            order["out_trade_no"], int(order["to_pay"]), f"Courses: {names}"[:120], int(order["user_id"])
        )
        order["pay_url"] = await self.provider.create_payment(request)
        await self.db.shop_orders.update_one({"_id": order["_id"]}, {"$set": {"pay_url": order["pay_url"]}})
        return order

    async def _forget_checkout(self, checkout: Checkout) -> None:
        """After the order is committed: drop the checkout (only if it is still this one: compare
        and delete in one Lua step) and the bought courses from the cart.

        Best effort: the order stands whatever Redis does, and a retry with the same key finds it.
        """
        try:
            await self._delete_if_checkout(
                keys=[self.checkout_key(checkout.user_id)], args=[checkout.checkout_id], client=self.redis
            )
            await self.redis.hdel(
                self.cart_key(checkout.user_id), *(str(line.course_id) for line in checkout.lines)
            )
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            log.warning("order placed but the cart of user %s was not cleared: %s", checkout.user_id, exc)

    # == payment outcome and timeout ======================================================================
    async def on_paid(self, out_trade_no: str, amount: int) -> None:
        """`PaymentRouter` handler for `shop-…`: a verified notification says the order was paid.

        pending -> paid: held coupons become used, the balance hold stays spent, enrolments start.
        Idempotent. An order already cancelled (timed out) is not revived: the late payment is
        refunded through the provider, never silently kept.
        """
        owner = await self.db.shop_orders.find_one({"out_trade_no": out_trade_no}, {"_id": 1})
        order_no = str(owner["_id"]) if owner is not None else order_no_from(out_trade_no)
        if order_no is None:
            raise NotFound(f"{out_trade_no!r} is not a shop payment")

        async def transaction(s: Session) -> str:
            order = await self.db.shop_orders.find_one({"_id": order_no}, session=s)
            if order is None:
                raise NotFound(f"no shop order {order_no}")
            if order["status"] != "pending":
                return str(order["status"])
            if int(order["to_pay"]) != amount:
                # The notify endpoint checks the amount against the payment record; this is a bug.
                raise GavelError(f"order {order_no} costs {order['to_pay']} fen, paid {amount}")
            now = self.now()
            await self.db.shop_orders.update_one(
                {"_id": order_no, "status": "pending"},
                {"$set": {"status": "paid", "paid_at": now}},
                session=s,
            )
            await self.db.shop_user_coupons.update_many(
                {"order_no": order_no, "status": "held"},
                {"$set": {"status": "used", "used_at": now}},
                session=s,
            )
            await self._enrol(s, order, now)
            return "now_paid"

        outcome = await run_in_transaction(self.client, transaction)
        if outcome == "cancelled":
            await self._refund_late_payment(order_no, out_trade_no, amount)

    async def _refund_late_payment(self, order_no: str, out_trade_no: str, amount: int) -> None:
        refund_ref = f"late:{out_trade_no}"
        log.warning("payment for cancelled shop order %s arrived; refunding %s fen", order_no, amount)
        await self.provider.refund(out_trade_no, amount, refund_ref)
        await self.db.shop_orders.update_one(
            {"_id": order_no},
            {
                "$set": {
                    "late_payment": {"amount": amount, "refund_ref": refund_ref, "refunded_at": self.now()}
                }
            },
        )

    async def expire_pending_orders(self, now: datetime.datetime) -> int:
        """Cancel orders unpaid past their deadline; returns how many were cancelled now.

        Per order, one transaction: pending -> cancelled (conditional, so a concurrent payment wins or
        loses cleanly), held coupons back to unused, and the held balance credited back (ledger kind
        `shop_release`, ref `shop-release:{order_no}`: at most once). Also marks unused coupons past
        their validity as expired.
        """
        cancelled = 0
        cursor = self.db.shop_orders.find({"status": "pending", "pay_deadline": {"$lte": now}}, {"_id": 1})
        for order_no in [str(doc["_id"]) async for doc in cursor]:
            if await self._cancel_pending(order_no, now, reason="timeout"):
                cancelled += 1
        await self.db.shop_user_coupons.update_many(
            {"status": "unused", "valid_to": {"$ne": None, "$lte": now}}, {"$set": {"status": "expired"}}
        )
        return cancelled

    async def _cancel_pending(self, order_no: str, now: datetime.datetime, *, reason: str) -> bool:
        async def transaction(s: Session) -> bool:
            order = await self.db.shop_orders.find_one_and_update(
                {"_id": order_no, "status": "pending"},
                {"$set": {"status": "cancelled", "cancelled_at": now, "cancel_reason": reason}},
                return_document=ReturnDocument.AFTER,
                session=s,
            )
            if order is None:
                return False  # paid or cancelled meanwhile
            await self.db.shop_user_coupons.update_many(
                {"order_no": order_no, "status": "held"},
                {"$set": {"status": "unused", "order_no": None, "used_at": None}},
                session=s,
            )
            if int(order["balance_used"]) > 0:
                await self.accounts.credit(
                    int(order["user_id"]),
                    int(order["balance_used"]),
                    "shop_release",
                    f"shop-release:{order_no}",
                    session=s,
                )
            return True

        try:
            return await run_in_transaction(self.client, transaction)
        except OperationFailure as exc:
            if _transaction_conflict(exc):
                log.info("cancelling order %s conflicted; the next sweep retries", order_no)
                return False
            raise


def _coupon_display(doc: Document) -> Document:
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


async def run_sweeper(shop: Shop, *, interval_seconds: float = 30.0) -> None:
    """The background loop the service starts: cancel expired pending orders every `interval_seconds`.

    Runs until cancelled; an error (e.g. MongoDB briefly down) is logged and the loop goes on.
    """
    while True:
        try:
            cancelled = await shop.expire_pending_orders(shop.now())
            if cancelled:
                log.info("cancelled %d unpaid shop order(s)", cancelled)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shop sweeper pass failed")
        await asyncio.sleep(interval_seconds)
