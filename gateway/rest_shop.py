"""The course shop over REST: catalogue, cart, checkout and pay, my orders, and admin catalogue writes.

Wiring (composition/bootstrap.py or a test): put a `SandboxProvider` or `AlipayAdapter` in
`ctx.payment_provider`, then `app.add_handlers(r".*", payment_routes(ctx) + shop_routes(ctx))`;
`shop_routes` builds the `ShopService` (or takes `ctx.shop`) and registers its `shop-` payment
handler on the provider's router. Read from the context: `shop_pending_timeout_seconds` and
`shop_checkout_ttl_seconds` (default 1800 each).

Every error is `{"error": {"code", "message"}}`; the shop's own codes and statuses are in
web/errors.py (the one table of codes and statuses).
"""

import asyncio
import datetime
import re
from collections.abc import Callable
from typing import Any

from engine.book.errors import GavelError
from gateway import rest_shop_orders
from gateway.rest_community import community_routes, user_coupon_view
from gateway.rest_degree import degree_routes
from gateway.rest_degree_buy import my_degree
from gateway.rest_learning import learning_routes, my_course, start_learning
from gateway.rest_mentor import mentor_routes, start_mentoring
from gateway.rest_shop_orders import order_view
from payments.records import ensure_payment_indexes
from payments.sandbox import SandboxProvider
from persistence.mongo import Document, iso_utc
from persistence.read_cache import MISSING
from persistence.shop import ensure_shop_indexes, mongo_shop
from persistence.shop.reads import CACHE_DOMAIN as SHOP_CACHE_DOMAIN
from shop.claims import MAX_CLAIM_QUANTITY
from shop.degree_buy import DEGREE_STATUSES, degree_status
from shop.model import (
    CART_LIMIT,
    COURSE_STATUSES,
    COURSE_TYPES,
    LEVELS,
    MAX_VALID_DAYS,
    SECTION_TYPES,
    TEACHER_ROLES,
    CartLine,
    Checkout,
)
from shop.order_life import STATUSES as ORDER_STATUSES
from shop.pricing import MAX_PERCENT, CouponKind
from shop.service import ShopService, run_sweeper
from shop.storefront import MAX_QUERY_LENGTH, SORTS, CourseQuery
from web.context import AppContext, provider_of
from web.errors import ValidationFailed
from web.http import MAX_SAFE_INT, Fields, JsonHandler

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
ORDER_NO = r"([0-9]{1,24})"
MAX_PRICE = 10**11  # one billion yuan: far beyond any course, far below 2**53
MAX_TEXT = 5000


# -- building ---------------------------------------------------------------------------------------------
def build_shop(ctx: AppContext) -> ShopService:
    """The shop service over the context's stores and payment provider; registers its `shop-` handler."""
    provider = provider_of(ctx)
    shop = mongo_shop(
        ctx.client,
        ctx.db,
        ctx.redis,
        ctx.accounts,
        provider,
        checkout_ttl_seconds=ctx.shop_checkout_ttl_seconds,
        pending_timeout_seconds=ctx.shop_pending_timeout_seconds,
        cache=ctx.read_cache,
    )
    provider.router.register("shop", shop.on_paid, marks_handled=True)
    provider.router.register_settling("shop", shop.settle_paid)  # tried first: one transaction
    ctx.shop = shop
    return shop


async def start_shop(
    ctx: AppContext, *, sweep_interval_seconds: float | None = None
) -> list[asyncio.Task[None]]:
    """Start-up for run.py, after `shop_routes(ctx)`: indexes, undelivered sandbox notifications,
    and the sweeper that cancels unpaid orders. Cancel the returned tasks (and `await
    provider.aclose()` for the sandbox) at shutdown."""
    shop = ctx.shop or build_shop(ctx)
    await ensure_shop_indexes(ctx.db)
    await ensure_payment_indexes(ctx.db)
    provider = provider_of(ctx)
    if isinstance(provider, SandboxProvider):
        await provider.resume_notifications()
    if sweep_interval_seconds is None:
        # Sweep often enough that an order is released soon after SHOP_PENDING_TIMEOUT (within a
        # quarter of it), never more than every 30 s nor more often than twice a second.
        sweep_interval_seconds = min(30.0, max(0.5, shop.pending_timeout_seconds / 4))
    return [
        asyncio.create_task(run_sweeper(shop, interval_seconds=sweep_interval_seconds), name="shop-sweeper"),
        *start_learning(ctx),
        *await start_mentoring(ctx),  # the degree sweeper (issue 22)
    ]


def shop_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    """Every shop route as `(pattern, handler, {"ctx": ctx, "shop": shop})`."""
    shop = ctx.shop or build_shop(ctx)
    args = {"ctx": ctx, "shop": shop}
    routes: list[tuple[str, type]] = [
        (r"/api/v1/shop/categories", CategoriesHandler),
        (r"/api/v1/courses", CoursesHandler),
        (r"/api/v1/courses/([0-9]+)", CourseHandler),
        (r"/api/v1/degree-courses/([0-9]+)", DegreeCourseHandler),
        (r"/api/v1/cart", CartHandler),
        (r"/api/v1/cart/([0-9]+)", CartItemHandler),
        (r"/api/v1/cart/degrees/([0-9]+)", CartDegreeHandler),
        (r"/api/v1/checkout", CheckoutHandler),
        (r"/api/v1/checkout/pay", PayHandler),
        (r"/api/v1/shop/orders", OrdersHandler),
        (rf"/api/v1/shop/orders/{ORDER_NO}", OrderHandler),
        (r"/api/v1/shop/coupons", MyCouponsHandler),
        (r"/api/v1/admin/shop/categories", AdminCategoriesHandler),
        (r"/api/v1/admin/shop/teachers", AdminTeachersHandler),
        (r"/api/v1/admin/shop/degree-courses", AdminDegreeCoursesHandler),
        (r"/api/v1/admin/shop/degree-courses/([0-9]+)", AdminDegreeCourseHandler),
        (r"/api/v1/admin/shop/degree-courses/([0-9]+)/policies", AdminDegreePoliciesHandler),
        (r"/api/v1/admin/shop/courses", AdminCoursesHandler),
        (r"/api/v1/admin/shop/courses/([0-9]+)", AdminCourseHandler),
        (r"/api/v1/admin/shop/courses/([0-9]+)/detail", AdminCourseDetailHandler),
        (r"/api/v1/admin/shop/courses/([0-9]+)/policies", AdminCoursePoliciesHandler),
        (r"/api/v1/admin/shop/policies/([0-9]+)", AdminPolicyHandler),
        (r"/api/v1/admin/shop/courses/([0-9]+)/chapters", AdminChaptersHandler),
        (r"/api/v1/admin/shop/chapters/([0-9]+)/sections", AdminSectionsHandler),
        (r"/api/v1/admin/shop/faqs", AdminFaqsHandler),
        (r"/api/v1/admin/shop/coupons", AdminCouponsHandler),
        (r"/api/v1/admin/shop/coupons/([0-9]+)/grant", AdminGrantHandler),
        *rest_shop_orders.ROUTES,  # the order's life: cancel, pay again, refunds
    ]
    own = [(pattern, handler, args) for pattern, handler in routes]
    own += degree_routes(ctx)  # the degree path's student side (gateway/rest_degree.py)
    return own + learning_routes(ctx) + community_routes(ctx) + mentor_routes(ctx)


# -- JSON views -------------------------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {("id" if k == "_id" else k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def view(doc: Document | None, *, drop: tuple[str, ...] = ()) -> Any:
    """A stored document as JSON: `_id` -> `id`, datetimes as ISO-8601 UTC, `drop`ped keys left out."""
    if doc is None:
        return None
    return _json_value({k: v for k, v in doc.items() if k not in drop})


def policy_view(policy: Document) -> dict[str, Any]:
    return {"id": policy["_id"], "valid_days": policy["valid_days"], "price": policy["price"]}


def course_view(course: Document) -> dict[str, Any]:
    answer: dict[str, Any] = view(course, drop=("policies", "detail", "faqs", "created_at"))
    if "policies" in course:
        answer["policies"] = [policy_view(p) for p in course["policies"]]
    return answer


CARD_FIELDS = ("lowest_price", "hours", "picture", "review_average", "review_count")


def course_card_view(course: Document) -> dict[str, Any]:
    """A catalogue item: the course with its policies and what its card shows (docs/shop.md)."""
    answer = course_view({k: v for k, v in course.items() if k not in ("review_sums", *CARD_FIELDS)})
    answer.update({name: course.get(name) for name in CARD_FIELDS})
    answer["review_count"] = course.get("review_count") or 0
    return answer


def cart_view(lines: list[CartLine]) -> dict[str, Any]:
    return {
        "items": [
            {
                "kind": line.kind,
                "course_id": line.course_id,
                "degree_course_id": line.degree_course_id,
                "name": line.name,
                "image": line.image,
                "policy_id": line.policy_id,
                "price": line.price,
                "valid_days": line.valid_days,
                "available": line.available,
                "reason": line.reason,
                "policies": [policy_view(p) for p in line.policies],
            }
            for line in lines
        ],
        "count": len(lines),
        "limit": CART_LIMIT,
        "total": sum(line.price or 0 for line in lines if line.available),
        "unavailable": sum(1 for line in lines if not line.available),
    }


def coupon_view(coupon_id: int, coupon: Document) -> dict[str, Any]:
    return {"id": coupon_id, **coupon}


def checkout_view(shop: ShopService, checkout: Checkout, balance: int) -> dict[str, Any]:
    quote = shop.quote(checkout, balance, balance)
    priced = {line.course_id: line for line in quote.lines}  # by `CheckoutLine.key`
    return {
        "checkout_id": checkout.checkout_id,
        "expires_in": checkout.ttl_seconds,
        "lines": [
            {
                "kind": line.kind,
                "course_id": line.course_id,
                "degree_course_id": line.degree_course_id,
                "name": line.name,
                "image": line.image,
                "policy_id": line.policy_id,
                "valid_days": line.valid_days,
                "price": line.price,
                "coupons": [coupon_view(c, checkout.coupons[c]) for c in line.coupon_ids],
                "coupon_id": checkout.chosen.get(line.course_id) if line.course_id is not None else None,
                "coupon_discount": priced[line.key].coupon_discount,
                "global_discount_share": priced[line.key].global_discount_share,
                "paid_price": priced[line.key].paid_price,
            }
            for line in checkout.lines
        ],
        "global_coupons": [coupon_view(c, checkout.coupons[c]) for c in checkout.global_coupon_ids],
        "global_coupon_id": checkout.chosen_global,
        "balance": balance,
        "totals": {
            "original_total": quote.original_total,
            "course_discount": quote.course_discount,
            "subtotal": quote.subtotal,
            "global_discount": quote.global_discount,
            "payable": quote.payable,
            "balance_usable": quote.balance_used,
            "to_pay_after_balance": quote.to_pay,
        },
    }


# -- handlers ---------------------------------------------------------------------------------------------
class ShopHandler(JsonHandler):
    shop: ShopService

    def initialize(self, ctx: AppContext, shop: ShopService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.shop = shop


class CategoriesHandler(ShopHandler):
    async def get(self) -> None:
        async def answer() -> Any:
            return {"items": [view(c) for c in await self.shop.categories()]}

        await self.reply_shared(SHOP_CACHE_DOMAIN, ("categories",), answer)


class CoursesHandler(ShopHandler):
    def _choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return None
        if raw not in choices:
            raise ValidationFailed(f"{name} must be one of: {', '.join(choices)}")
        return raw

    def course_query(self) -> CourseQuery:
        """`?category=&level=&course_type=&min_price=&max_price=&q=&sort=` (docs/shop.md)."""
        min_price = self.query_int("min_price", minimum=0, maximum=MAX_PRICE, default=None)
        max_price = self.query_int("max_price", minimum=0, maximum=MAX_PRICE, default=None)
        if min_price is not None and max_price is not None and min_price > max_price:
            raise ValidationFailed("min_price must not exceed max_price")
        q = self.get_query_argument("q", None)
        if q is not None:
            q = q.strip()
            if len(q) > MAX_QUERY_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in q):
                raise ValidationFailed(f"q must be at most {MAX_QUERY_LENGTH} printable characters")
        return CourseQuery(
            category_id=self.query_int("category", minimum=1, maximum=MAX_SAFE_INT, default=None),
            level=self._choice("level", LEVELS),
            course_type=self._choice("course_type", COURSE_TYPES),
            min_price=min_price,
            max_price=max_price,
            q=q or None,
            sort=self._choice("sort", SORTS) or "order",
        )

    async def get(self) -> None:
        page = self.page()
        query = self.course_query()

        async def answer() -> Any:
            courses, total = await self.shop.browse_courses(query, page.skip, page.page_size)
            return page.answer([course_card_view(c) for c in courses], total)

        if query.q is None and query.min_price is None and query.max_price is None:
            # Browsing (category, level, type, sort, page) comes in few shapes and is kept; a
            # search or a price range can take any value, and is answered fresh each time.
            await self.reply_shared(SHOP_CACHE_DOMAIN, ("courses", query, page), answer)
        else:
            self.reply(await answer())


class CourseHandler(ShopHandler):
    async def _shared(self, course_id: int) -> dict[str, Any]:
        """The course page as anyone sees it (`my` None), kept with the shop's cached reads."""
        cache = self.ctx.read_cache
        found = cache.get(SHOP_CACHE_DOMAIN, ("course_page", course_id))
        if found is MISSING:
            stamp = cache.stamp(SHOP_CACHE_DOMAIN)
            course = await self.shop.course_page(course_id)
            found = course_view(course)
            found["detail"] = view(course["detail"], drop=("_id",))
            found["faqs"] = [view(f, drop=("target", "target_id")) for f in course["faqs"]]
            found["my"] = None
            cache.put(SHOP_CACHE_DOMAIN, ("course_page", course_id), found, stamp)
        shared: dict[str, Any] = found
        return shared

    async def get(self, raw_id: str) -> None:
        course_id = self.path_id(raw_id, "course")
        user = await self.authenticate()  # signed in: the caller's enrolment and progress
        if user is None:
            await self.reply_shared(
                SHOP_CACHE_DOMAIN, ("course_json", course_id), lambda: self._shared(course_id)
            )
            return
        answer = dict(await self._shared(course_id))
        answer["my"] = await my_course(self.ctx, user.user_id, course_id)
        self.reply(answer)


class DegreeCourseHandler(ShopHandler):
    async def get(self, raw_id: str) -> None:
        degree = await self.shop.degree_course_page(self.path_id(raw_id, "degree course"))
        answer = view(degree, drop=("policies",))
        answer["policies"] = [policy_view(p) for p in degree["policies"]]
        answer["status"] = degree_status(degree)
        user = await self.authenticate()  # signed in: the caller's enrolment (docs/degree.md)
        answer["my"] = None if user is None else await my_degree(self.shop, user.user_id, int(degree["_id"]))
        self.reply(answer)


class CartHandler(ShopHandler):
    """Courses (`course_id`) and degree courses (`degree_course_id`): exactly one per request."""

    async def get(self) -> None:
        user = await self.require_user()
        self.reply(cart_view(await self.shop.cart(user.user_id)))

    def _item(self, body: Fields) -> tuple[str, int]:
        if body.has("course_id") == body.has("degree_course_id"):
            raise ValidationFailed("send exactly one of course_id and degree_course_id")
        if body.has("degree_course_id"):
            return "degree", body.integer("degree_course_id", minimum=1)
        return "course", body.integer("course_id", minimum=1)

    def _choice(self) -> tuple[str, int, int]:
        body = self.fields(("course_id", "degree_course_id", "price_policy_id"))
        kind, item_id = self._item(body)
        return kind, item_id, body.integer("price_policy_id", minimum=1)

    async def post(self) -> None:
        user = await self.require_user()
        kind, item_id, policy_id = self._choice()
        if kind == "degree":
            lines = await self.shop.cart_add_degree(user.user_id, item_id, policy_id)
        else:
            lines = await self.shop.cart_add(user.user_id, item_id, policy_id)
        self.reply(cart_view(lines), 201)

    async def patch(self) -> None:
        user = await self.require_user()
        kind, item_id, policy_id = self._choice()
        if kind == "degree":
            lines = await self.shop.cart_change_degree_policy(user.user_id, item_id, policy_id)
        else:
            lines = await self.shop.cart_change_policy(user.user_id, item_id, policy_id)
        self.reply(cart_view(lines))

    async def delete(self) -> None:
        user = await self.require_user()
        kind, item_id = self._item(self.fields(("course_id", "degree_course_id")))
        if kind == "degree":
            self.reply(cart_view(await self.shop.cart_remove_degree(user.user_id, item_id)))
        else:
            self.reply(cart_view(await self.shop.cart_remove(user.user_id, item_id)))


class CartItemHandler(ShopHandler):
    async def delete(self, raw_id: str) -> None:
        user = await self.require_user()
        self.reply(cart_view(await self.shop.cart_remove(user.user_id, self.path_id(raw_id, "course"))))


class CartDegreeHandler(ShopHandler):
    async def delete(self, raw_id: str) -> None:
        user = await self.require_user()
        degree_course_id = self.path_id(raw_id, "degree course")
        self.reply(cart_view(await self.shop.cart_remove_degree(user.user_id, degree_course_id)))


def _id_list(body: Fields, name: str) -> list[Any]:
    if not body.has(name) or body.data[name] == []:
        return []
    return body.array(name, max_items=CART_LIMIT)


class CheckoutHandler(ShopHandler):
    async def _answer(
        self, user_id: int, checkout: Checkout, status: int = 200, balance: int | None = None
    ) -> None:
        if balance is None:
            balance = (await self.ctx.accounts.profile(user_id)).balance
        self.reply(checkout_view(self.shop, checkout, balance), status)

    async def get(self) -> None:
        user = await self.require_user()
        await self._answer(user.user_id, await self.shop.checkout(user.user_id))

    async def post(self) -> None:
        user = await self.require_user()
        body = self.fields(("course_ids", "degree_course_ids"))
        # Either list may be empty (a degree alone, courses alone), not both.
        courses = _id_list(body, "course_ids")
        degrees = _id_list(body, "degree_course_ids")
        for name, raw in (("course_ids", courses), ("degree_course_ids", degrees)):
            if any(type(c) is not int or not 1 <= c <= MAX_SAFE_INT for c in raw) or len(set(raw)) != len(
                raw
            ):
                raise ValidationFailed(f"{name} must be distinct positive integers")
        if not courses and not degrees:
            raise ValidationFailed("course_ids or degree_course_ids must list something to buy")
        checkout = await self.shop.create_checkout(user.user_id, courses, degrees)
        # The balance was just read with the checkout (and kept in it): no second read.
        await self._answer(user.user_id, checkout, 201, checkout.balance_seen)

    async def patch(self) -> None:
        user = await self.require_user()
        body = self.fields(("course_id", "coupon_id"))
        if not body.has("course_id") or not body.has("coupon_id"):
            raise ValidationFailed(
                "send course_id (null for the global coupon) and coupon_id (null to clear)"
            )
        course_id = body.optional_integer("course_id", minimum=1)
        coupon_id = body.optional_integer("coupon_id", minimum=1)
        await self._answer(user.user_id, await self.shop.choose_coupon(user.user_id, course_id, coupon_id))


class PayHandler(ShopHandler):
    async def post(self) -> None:
        user = await self.require_user()
        body = self.fields(("balance", "idempotency_key"))
        balance = body.integer("balance", minimum=0, default=0)
        key = body.text("idempotency_key", max_length=100)
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise ValidationFailed("idempotency_key must be 1-100 of A-Z a-z 0-9 _ . : -")
        placed = await self.shop.pay(user.user_id, balance, key)
        self.reply(
            {"order": order_view(placed.order), "pay_url": placed.order.get("pay_url")},
            201 if placed.created else 200,
        )


class OrdersHandler(ShopHandler):
    async def get(self) -> None:
        user = await self.require_user()
        page = self.page()
        status = self.get_query_argument("status", None) or None
        if status is not None and status not in ORDER_STATUSES:
            raise ValidationFailed(f"status must be one of: {', '.join(ORDER_STATUSES)}")
        orders, total = await self.shop.orders(user.user_id, page.skip, page.page_size, status)
        self.reply(page.answer([order_view(o) for o in orders], total))


class OrderHandler(ShopHandler):
    async def get(self, order_no: str) -> None:
        user = await self.require_user()
        self.reply(order_view(await self.shop.find_order(user.user_id, order_no)))


class MyCouponsHandler(ShopHandler):
    async def get(self) -> None:
        user = await self.require_user()
        status = self.get_query_argument("status", None)
        if status is not None and status not in ("unused", "held", "used", "expired"):
            raise ValidationFailed("status must be one of: unused, held, used, expired")
        # An unused coupon past its validity is "expired" at once, before the sweeper stores it.
        now = self.shop.now()
        coupons = [user_coupon_view(c, now) for c in await self.shop.user_coupons(user.user_id)]
        self.reply({"items": [c for c in coupons if status is None or c["status"] == status]})


# -- admin ------------------------------------------------------------------------------------------------
def _ids(body: Fields, name: str, max_items: int = 50) -> list[int]:
    value = body.data.get(name, [])
    if (
        not isinstance(value, list)
        or len(value) > max_items
        or any(type(v) is not int or not 1 <= v <= MAX_SAFE_INT for v in value)
    ):
        raise ValidationFailed(f"{name} must be a list of at most {max_items} positive integer ids")
    return list(dict.fromkeys(value))


def _long_text(body: Fields, name: str) -> str:
    """Optional multi-line text (absent: empty)."""
    return body.text(name, min_length=0, max_length=MAX_TEXT, multiline=True, default="")


COURSE_FIELDS = (
    "name",
    "image",
    "sub_category_id",
    "course_type",
    "degree_course_id",
    "brief",
    "level",
    "status",
    "order",
    "period_days",
    "attachment_path",
)


def read_course(body: Fields, *, partial: bool) -> Document:
    readers: dict[str, Callable[[], Any]] = {
        "name": lambda: body.text("name", max_length=128),
        "image": lambda: body.text("image", min_length=0, max_length=255),
        "sub_category_id": lambda: body.integer("sub_category_id", minimum=1),
        "course_type": lambda: body.one_of("course_type", COURSE_TYPES),
        "degree_course_id": lambda: body.optional_integer("degree_course_id", minimum=1),
        "brief": lambda: body.text("brief", min_length=0, max_length=2048, multiline=True),
        "level": lambda: body.one_of("level", LEVELS),
        "status": lambda: body.one_of("status", COURSE_STATUSES),
        "order": lambda: body.integer("order", minimum=0, maximum=1_000_000),
        "period_days": lambda: body.integer("period_days", minimum=1, maximum=MAX_VALID_DAYS),
        "attachment_path": lambda: body.text("attachment_path", min_length=0, max_length=128),
    }
    if partial:
        return {name: read() for name, read in readers.items() if body.has(name)}
    defaults = {
        "image": "",
        "degree_course_id": None,
        "brief": "",
        "level": "intermediate",
        "status": "online",
        "order": 0,
        "period_days": 7,
        "attachment_path": "",
    }
    return {
        name: (read() if body.has(name) or name not in defaults else defaults[name])
        for name, read in readers.items()
    }


class AdminHandler(ShopHandler):
    admin_area = "catalogue"

    async def prepare(self) -> None:  # type: ignore[override]
        super().prepare()
        await self.require_admin()


class AdminCategoriesHandler(AdminHandler):
    async def post(self) -> None:
        body = self.fields(("name", "parent_id"))
        name = body.text("name", max_length=64)
        parent_id = body.optional_integer("parent_id", minimum=1)
        self.reply(view(await self.shop.create_category(name, parent_id)), 201)


class AdminTeachersHandler(AdminHandler):
    async def post(self) -> None:
        body = self.fields(("name", "role", "title", "signature", "image", "brief"))
        fields = {
            "name": body.text("name", max_length=32),
            "role": body.one_of("role", TEACHER_ROLES, default="lecturer"),
            "title": body.text("title", min_length=0, max_length=64, default=""),
            "signature": body.text("signature", min_length=0, max_length=255, default=""),
            "image": body.text("image", min_length=0, max_length=128, default=""),
            "brief": _long_text(body, "brief"),
        }
        self.reply(view(await self.shop.create_teacher(fields)), 201)


class AdminDegreeCoursesHandler(AdminHandler):
    admin_area = "degree"

    async def post(self) -> None:
        body = self.fields(
            (
                "name",
                "image",
                "brief",
                "total_scholarship",
                "mentor_fee",
                "period_days",
                "prerequisite",
                "teacher_ids",
                "scholarships",
            )
        )
        tiers = []
        for tier in body.objects("scholarships", allowed=("time_percent", "value"), max_items=20):
            tiers.append(
                {
                    "time_percent": tier.integer("time_percent", minimum=1, maximum=100),
                    "value": tier.integer("value", minimum=0, maximum=MAX_PRICE),
                }
            )
        fields = {
            "name": body.text("name", max_length=128),
            "image": body.text("image", min_length=0, max_length=255, default=""),
            "brief": _long_text(body, "brief"),
            # 贝里 amounts, in fen like every balance (seed defaults: 40000 and 15000).
            "total_scholarship": body.integer("total_scholarship", maximum=MAX_PRICE, default=40_000),
            "mentor_fee": body.integer("mentor_fee", maximum=MAX_PRICE, default=15_000),
            "period_days": body.integer("period_days", minimum=1, maximum=MAX_VALID_DAYS, default=150),
            "prerequisite": _long_text(body, "prerequisite"),
            "teacher_ids": _ids(body, "teacher_ids"),
            "scholarships": sorted(tiers, key=lambda t: t["time_percent"]),
        }
        self.reply(view(await self.shop.create_degree_course(fields)), 201)


class AdminDegreeCourseHandler(AdminHandler):
    admin_area = "degree"

    async def patch(self, raw_id: str) -> None:
        """`{status: "online"|"offline"}`, through AdminActions (one audit entry)."""
        user = await self.require_admin()
        status = self.fields(("status",)).one_of("status", DEGREE_STATUSES)
        actions = self.ctx.admin_actions
        if actions is None:
            raise GavelError("admin actions are not wired into this application", code="UNAVAILABLE")
        actor = self.staff_actor(user)
        degree = await actions.set_degree_status(actor, self.path_id(raw_id, "degree course"), status)
        self.reply(view(degree))


class AdminCoursesHandler(AdminHandler):
    async def post(self) -> None:
        body = self.fields(COURSE_FIELDS)
        self.reply(view(await self.shop.create_course(read_course(body, partial=False))), 201)


class AdminCourseHandler(AdminHandler):
    async def patch(self, raw_id: str) -> None:
        body = self.fields(COURSE_FIELDS)
        changes = read_course(body, partial=True)
        course = await self.shop.update_course(self.path_id(raw_id, "course"), changes)
        self.reply(view(course))


class AdminCourseDetailHandler(AdminHandler):
    async def put(self, raw_id: str) -> None:
        body = self.fields(
            (
                "hours",
                "slogan",
                "video_brief_link",
                "why_study",
                "what_to_study_brief",
                "career_improvement",
                "prerequisite",
                "recommend_course_ids",
                "teacher_ids",
            )
        )
        fields = {
            "hours": body.integer("hours", minimum=0, maximum=100_000),
            "slogan": body.text("slogan", min_length=0, max_length=125, default=""),
            "video_brief_link": body.text("video_brief_link", min_length=0, max_length=255, default=""),
            "why_study": _long_text(body, "why_study"),
            "what_to_study_brief": _long_text(body, "what_to_study_brief"),
            "career_improvement": _long_text(body, "career_improvement"),
            "prerequisite": _long_text(body, "prerequisite"),
            "recommend_course_ids": _ids(body, "recommend_course_ids"),
            "teacher_ids": _ids(body, "teacher_ids"),
        }
        self.reply(view(await self.shop.put_course_detail(self.path_id(raw_id, "course"), fields)))


class _PoliciesHandler(AdminHandler):
    target = "course"

    async def post(self, raw_id: str) -> None:
        body = self.fields(("valid_days", "price"))
        valid_days = body.integer("valid_days", minimum=1, maximum=MAX_VALID_DAYS)
        price = body.integer("price", minimum=0, maximum=MAX_PRICE)
        policy = await self.shop.add_policy(self.target, self.path_id(raw_id, self.target), valid_days, price)
        self.reply(view(policy), 201)


class AdminCoursePoliciesHandler(_PoliciesHandler):
    target = "course"


class AdminDegreePoliciesHandler(_PoliciesHandler):
    admin_area = "degree"
    target = "degree"


class AdminPolicyHandler(AdminHandler):
    async def delete(self, raw_id: str) -> None:
        await self.shop.remove_policy(self.path_id(raw_id, "price policy"))
        self.set_status(204)
        self.finish()


class AdminChaptersHandler(AdminHandler):
    async def post(self, raw_id: str) -> None:
        body = self.fields(("chapter", "name", "summary"))
        fields = {
            "chapter": body.integer("chapter", minimum=1, maximum=10_000),
            "name": body.text("name", max_length=128),
            "summary": _long_text(body, "summary"),
        }
        self.reply(view(await self.shop.add_chapter(self.path_id(raw_id, "course"), fields)), 201)


class AdminSectionsHandler(AdminHandler):
    async def post(self, raw_id: str) -> None:
        body = self.fields(("name", "order", "section_type", "link", "video_time", "free_trial"))
        free_trial = body.data.get("free_trial", False)
        if not isinstance(free_trial, bool):
            raise ValidationFailed("free_trial must be true or false")
        fields = {
            "name": body.text("name", max_length=128),
            "order": body.integer("order", minimum=0, maximum=100_000),
            "section_type": body.one_of("section_type", SECTION_TYPES, default="video"),
            "link": body.text("link", min_length=0, max_length=255, default=""),
            "video_time": body.text("video_time", min_length=0, max_length=32, default=""),
            "free_trial": free_trial,
        }
        self.reply(view(await self.shop.add_section(self.path_id(raw_id, "chapter"), fields)), 201)


class AdminFaqsHandler(AdminHandler):
    async def post(self) -> None:
        body = self.fields(("target", "target_id", "question", "answer"))
        faq = await self.shop.add_faq(
            body.one_of("target", ("course", "degree")),
            body.integer("target_id", minimum=1),
            body.text("question", max_length=255),
            body.text("answer", max_length=1024, multiline=True),
        )
        self.reply(view(faq), 201)


class AdminCouponsHandler(AdminHandler):
    async def post(self) -> None:
        body = self.fields(
            (
                "name",
                "brief",
                "kind",
                "value",
                "minimum",
                "off_percent",
                "course_id",
                "valid_from",
                "valid_to",
                "valid_days",
                "claim_start",
                "claim_end",
                "quantity",
                "per_user_limit",
            )
        )
        kind = body.one_of("kind", tuple(CouponKind))
        fields: Document = {
            "name": body.text("name", max_length=64),
            "brief": _long_text(body, "brief"),
            "kind": kind,
            "value": 0,
            "minimum": 0,
            "off_percent": 0,
            "course_id": body.optional_integer("course_id", minimum=1),
            "valid_from": body.timestamp("valid_from") if body.data.get("valid_from") is not None else None,
            "valid_to": body.timestamp("valid_to") if body.data.get("valid_to") is not None else None,
            "valid_days": body.optional_integer("valid_days", minimum=1, maximum=MAX_VALID_DAYS),
            # Claimable by students (shop/claims.py) when the window and the quantity are given.
            "claim_start": body.timestamp("claim_start")
            if body.data.get("claim_start") is not None
            else None,
            "claim_end": body.timestamp("claim_end") if body.data.get("claim_end") is not None else None,
            "quantity": body.optional_integer("quantity", minimum=1, maximum=MAX_CLAIM_QUANTITY),
            "per_user_limit": body.optional_integer("per_user_limit", minimum=1, maximum=MAX_CLAIM_QUANTITY),
        }
        if kind == CouponKind.PERCENT:
            fields["off_percent"] = body.integer("off_percent", minimum=1, maximum=MAX_PERCENT)
            if body.has("value") or body.has("minimum"):
                raise ValidationFailed("a percent coupon has off_percent, not value or minimum")
        else:
            fields["value"] = body.integer("value", minimum=1, maximum=MAX_PRICE)
            if body.has("off_percent"):
                raise ValidationFailed("off_percent is for percent coupons only")
            if kind == CouponKind.THRESHOLD:
                fields["minimum"] = body.integer("minimum", minimum=1, maximum=MAX_PRICE)
            elif body.has("minimum"):
                raise ValidationFailed("minimum is for threshold coupons only")
        self.reply(view(await self.shop.create_coupon(fields)), 201)


class AdminGrantHandler(AdminHandler):
    async def post(self, raw_id: str) -> None:
        body = self.fields(("user_id", "idempotency_key"))
        user_id = body.integer("user_id", minimum=1)
        key = body.data.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not IDEMPOTENCY_KEY.fullmatch(key)):
            raise ValidationFailed("idempotency_key must be 1-100 of A-Z a-z 0-9 _ . : -")
        granted = await self.shop.grant_coupon(self.path_id(raw_id, "coupon"), user_id, idempotency_key=key)
        self.reply(view(granted, drop=("grant_ref",)), 201)
