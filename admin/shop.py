"""Coupons (auction 拍卖优惠券 and course 课程优惠券), courses, categories and price policies.

Writes go through the admin-actions service (backoffice/actions.py), which authorizes, audits and
calls the settlement store (auction coupons) or the shop service (everything of the course shop).
"""

from __future__ import annotations

import re
from typing import Literal

from admin.base import PREFIX, AdminHandler, FormError, parse_int, parse_money, text_field
from persistence.mongo import Document, to_ms

COURSE_TYPES = ("paid", "vip", "degree")
LEVELS = ("beginner", "intermediate", "advanced")
COURSE_STATUSES = ("online", "offline", "pre_online")
COUPON_KINDS = {"flat": "flat 通用券", "threshold": "threshold 满减券", "percent": "percent 折扣券"}
MAX_VALID_DAYS = 3650
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def _optional_int(raw: str, name: str, *, minimum: int = 1, maximum: int = 2**53 - 1) -> int | None:
    return parse_int(raw, name, minimum=minimum, maximum=maximum) if raw.strip() else None


class ShopPage(AdminHandler):
    area = "catalogue"
    nav = "shop"


class CouponsHandler(ShopPage):
    nav = "coupons"
    read_areas = ("auctions",)  # auction coupons are the auction lane's; each list shows to its readers

    async def get(self) -> None:
        auction = [c async for c in self.ctx.db.coupons.find({}).sort("_id", -1).limit(200)]
        titles = {
            int(s["_id"]): s.get("title", "")
            async for s in self.ctx.db.sessions.find(
                {"_id": {"$in": [c["session_id"] for c in auction]}}, {"title": 1}
            )
        }
        for coupon in auction:
            coupon["session_title"] = titles.get(int(coupon["session_id"]), "")
        sessions = [s async for s in self.ctx.db.sessions.find({}, {"title": 1}).sort("_id", -1).limit(100)]
        course_coupons = [c async for c in self.ctx.db.shop_coupons.find({}).sort("_id", -1).limit(200)]
        courses = [c async for c in self.ctx.db.shop_courses.find({}, {"name": 1}).sort("_id", 1).limit(500)]
        self.render(
            "coupons.html",
            auction=auction,
            sessions=sessions,
            course_coupons=course_coupons,
            courses=courses,
            kinds=COUPON_KINDS,
            now_ms=self.ctx.engine.clock.now_ms(),
            page_title="Coupons",
        )


class AuctionCouponCreateHandler(ShopPage):
    area = "auctions"
    nav = "coupons"

    async def post(self) -> None:
        back = f"{PREFIX}/coupons"

        async def run() -> None:
            session_id = parse_int(self.form("session_id"), "Session", minimum=1)
            title = text_field(self.form("title"), "Title", max_length=32)
            amount = parse_money(self.form("amount"), "Amount", minimum=1)
            quantity = parse_int(self.form("quantity"), "Quantity", minimum=1, maximum=1_000_000)
            start = self.form_time("claim_start", "Claim start")
            end = self.form_time("claim_end", "Claim end")
            if start >= end:
                raise FormError("Claim start must be before claim end")
            assert amount is not None
            doc = await self.actions.create_auction_coupon(
                self.actor(), session_id, title, amount, quantity, to_ms(start), to_ms(end)
            )
            self.done(f"Auction coupon {doc['_id']} created.", back)

        await self.guarded(run, back=back)


class CourseCouponCreateHandler(ShopPage):
    nav = "coupons"

    async def post(self) -> None:
        back = f"{PREFIX}/coupons"

        async def run() -> None:
            kind = self.form("kind")
            if kind not in COUPON_KINDS:
                raise FormError("Kind: choose one")
            fields: Document = {
                "name": text_field(self.form("name"), "Name", max_length=64),
                "brief": text_field(
                    self.form("brief"), "Brief", max_length=1024, required=False, multiline=True
                ),
                "kind": kind,
                "value": 0,
                "minimum": 0,
                "off_percent": 0,
                "course_id": _optional_int(self.form("course_id"), "Course"),
                "valid_from": None,
                "valid_to": None,
                "valid_days": _optional_int(self.form("valid_days"), "Valid days", maximum=MAX_VALID_DAYS),
            }
            fields["valid_from"] = self.optional_form_time("valid_from", "Valid from")
            fields["valid_to"] = self.optional_form_time("valid_to", "Valid to")
            # Claimable by students (shop/claims.py): a claim window and a quantity, per-user limit.
            fields["quantity"] = _optional_int(self.form("quantity"), "Quantity", maximum=1_000_000)
            fields["per_user_limit"] = _optional_int(
                self.form("per_user_limit"), "Per-user limit", maximum=1_000_000
            )
            fields["claim_start"] = self.optional_form_time("claim_start", "Claiming starts")
            fields["claim_end"] = self.optional_form_time("claim_end", "Claiming ends")
            if kind == "percent":
                fields["off_percent"] = parse_int(
                    self.form("off_percent"), "Percent off", minimum=1, maximum=100
                )
            else:
                fields["value"] = parse_money(self.form("value"), "Value", minimum=1)
                if kind == "threshold":
                    fields["minimum"] = parse_money(self.form("minimum"), "Minimum price", minimum=1)
            doc = await self.actions.create_course_coupon(self.actor(), fields)
            self.done(f"Course coupon {doc['_id']} created.", back)

        await self.guarded(run, back=back)


class CourseCouponGrantHandler(ShopPage):
    nav = "coupons"

    async def post(self, raw_id: str) -> None:
        coupon_id = self.path_id(raw_id, "coupon")
        back = f"{PREFIX}/coupons"

        async def run() -> None:
            who = self.form("user").strip()
            if who.isdigit():
                user = await self.ctx.db.users.find_one({"_id": int(who)}, {"username": 1})
            else:
                user = await self.ctx.db.users.find_one({"username_key": who.lower()[:64]}, {"username": 1})
            if user is None:
                raise FormError("User: no such user (give a user id or username)")
            key = self.form("idempotency_key").strip()
            await self.actions.grant_course_coupon(
                self.actor(),
                coupon_id,
                int(user["_id"]),
                key if IDEMPOTENCY_KEY.fullmatch(key) else None,
            )
            self.done(f"Coupon {coupon_id} granted to {user['username']}.", back)

        await self.guarded(run, back=back)


class CoursesHandler(ShopPage):
    async def get(self) -> None:
        courses = [
            c async for c in self.ctx.db.shop_courses.find({}).sort([("order", 1), ("_id", 1)]).limit(500)
        ]
        policies: dict[int, list[Document]] = {}
        async for policy in self.ctx.db.shop_price_policies.find({"target": "course"}).sort("valid_days", 1):
            policies.setdefault(int(policy["target_id"]), []).append(policy)
        categories = [c async for c in self.ctx.db.shop_categories.find({}).sort("_id", 1)]
        names = {int(c["_id"]): c["name"] for c in categories}
        for course in courses:
            course["policies"] = policies.get(int(course["_id"]), [])
            course["category"] = names.get(int(course.get("sub_category_id") or 0), "")
        self.render(
            "courses.html",
            courses=courses,
            categories=categories,
            names=names,
            course_types=COURSE_TYPES,
            levels=LEVELS,
            statuses=COURSE_STATUSES,
            page_title="Courses",
        )


class CategoryCreateHandler(ShopPage):
    async def post(self) -> None:
        back = f"{PREFIX}/courses"

        async def run() -> None:
            name = text_field(self.form("name"), "Name", max_length=64)
            parent_id = _optional_int(self.form("parent_id"), "Parent")
            await self.actions.create_category(self.actor(), name, parent_id)
            self.done(f"Category {name} created.", back)

        await self.guarded(run, back=back)


class CourseCreateHandler(ShopPage):
    async def post(self) -> None:
        back = f"{PREFIX}/courses"

        async def run() -> None:
            course_type = self.form("course_type")
            level = self.form("level")
            status = self.form("status")
            if course_type not in COURSE_TYPES or level not in LEVELS or status not in COURSE_STATUSES:
                raise FormError("choose a type, a level and a status")
            fields: Document = {
                "name": text_field(self.form("name"), "Name", max_length=128),
                "image": "",
                "sub_category_id": parse_int(self.form("sub_category_id"), "Subcategory", minimum=1),
                "course_type": course_type,
                "degree_course_id": _optional_int(self.form("degree_course_id"), "Degree course"),
                "brief": text_field(
                    self.form("brief"), "Brief", max_length=2048, required=False, multiline=True
                ),
                "level": level,
                "status": status,
                "order": parse_int(self.form("order") or "0", "Order", maximum=1_000_000),
                "period_days": parse_int(
                    self.form("period_days") or "7", "Period (days)", minimum=1, maximum=MAX_VALID_DAYS
                ),
                "attachment_path": "",
            }
            doc = await self.actions.create_course(self.actor(), fields)
            self.done(f"Course {doc['_id']} created.", back)

        await self.guarded(run, back=back)


class CourseStatusHandler(ShopPage):
    async def post(self, raw_id: str) -> None:
        course_id = self.path_id(raw_id, "course")
        back = f"{PREFIX}/courses"

        async def run() -> None:
            status = self.form("status")
            if status not in COURSE_STATUSES:
                raise FormError("Status: choose one")
            await self.actions.set_course_status(self.actor(), course_id, status)
            self.done(f"Course {course_id} is now {status}.", back)

        await self.guarded(run, back=back)


class PolicyCreateHandler(ShopPage):
    async def post(self, raw_id: str) -> None:
        course_id = self.path_id(raw_id, "course")
        back = f"{PREFIX}/courses"

        async def run() -> None:
            valid_days = parse_int(self.form("valid_days"), "Valid days", minimum=1, maximum=MAX_VALID_DAYS)
            price = parse_money(self.form("price"), "Price", minimum=0)
            assert price is not None
            await self.actions.add_policy(self.actor(), course_id, valid_days, price)
            self.done(f"Price policy added to course {course_id}.", back)

        await self.guarded(run, back=back)


class PolicyRemoveHandler(ShopPage):
    async def post(self, raw_id: str) -> None:
        policy_id = self.path_id(raw_id, "price policy")
        back = f"{PREFIX}/courses"

        async def run() -> None:
            await self.actions.remove_policy(self.actor(), policy_id)
            self.done(f"Price policy {policy_id} removed.", back)

        await self.guarded(run, back=back)


REFUND_TABS = {
    "requested": "Waiting",
    "approved": "Approved, provider pending",
    "refunded": "Refunded",
    "rejected": "Rejected",
}


class ShopRefundsHandler(ShopPage):
    """The course shop's refund queue: requests waiting for a decision first (oldest first)."""

    area = "orders"

    nav = "shop_refunds"

    async def get(self) -> None:
        status = self.get_query_argument("status", "requested") or "requested"
        if status not in REFUND_TABS:
            status = "requested"
        counts = {s: await self.ctx.db.shop_orders.count_documents({"refund.status": s}) for s in REFUND_TABS}
        order = 1 if status == "requested" else -1
        cursor = self.ctx.db.shop_orders.find({"refund.status": status}).sort("refund.requested_at", order)
        orders = [o async for o in cursor.limit(200)]
        names = {
            int(u["_id"]): u.get("username", "")
            async for u in self.ctx.db.users.find(
                {"_id": {"$in": list({int(o["user_id"]) for o in orders})}}, {"username": 1}
            )
        }
        for doc in orders:
            doc["username"] = names.get(int(doc["user_id"]), "")
        self.render(
            "shop_refunds.html",
            orders=orders,
            status=status,
            labels=REFUND_TABS,
            counts=counts,
            page_title="Course refunds",
        )


class ShopRefundDecisionHandler(ShopPage):
    area = "orders"
    nav = "shop_refunds"

    async def post(self, order_no: str, decision: str) -> None:
        back = f"{PREFIX}/shop/refunds"

        async def run() -> None:
            reason = text_field(self.form("reason"), "Reason", max_length=200, required=False)
            approve_or_reject: Literal["approve", "reject"] = "approve" if decision == "approve" else "reject"
            order = await self.actions.decide_shop_refund(self.actor(), order_no, approve_or_reject, reason)
            self.done(f"Order {order_no}: refund {order['refund']['status']}.", back)

        await self.guarded(run, back=back)


ROUTES = [
    (r"/admin/coupons", CouponsHandler),
    (r"/admin/coupons/auction", AuctionCouponCreateHandler),
    (r"/admin/coupons/course", CourseCouponCreateHandler),
    (r"/admin/coupons/course/([0-9]+)/grant", CourseCouponGrantHandler),
    (r"/admin/courses", CoursesHandler),
    (r"/admin/courses/categories", CategoryCreateHandler),
    (r"/admin/courses/new", CourseCreateHandler),
    (r"/admin/courses/([0-9]+)/status", CourseStatusHandler),
    (r"/admin/courses/([0-9]+)/policies", PolicyCreateHandler),
    (r"/admin/policies/([0-9]+)/remove", PolicyRemoveHandler),
    (r"/admin/shop/refunds", ShopRefundsHandler),
    (r"/admin/shop/orders/([0-9]{1,24})/refund/(approve|reject)", ShopRefundDecisionHandler),
]
