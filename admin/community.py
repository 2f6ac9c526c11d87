"""Course reviews (hide/show, recommend/unrecommend) and FAQs of courses and degree courses.

Reads come straight from the collections (shop_reviews, shop_review_stats, shop_faqs); every write
goes through the admin-actions service (backoffice/actions.py), which authorizes, audits and calls
the shop's community service (shop/community.py). Review text is rendered escaped, as text.
"""

from __future__ import annotations

import tornado.web

from admin.base import PREFIX, AdminHandler, FormError, parse_int, text_field
from persistence.mongo import Document
from shop.reviews import MODERATIONS, averages

FAQ_TARGETS = {"course": "Course 课程", "degree": "Degree course 学位课程"}


class CourseReviewsHandler(AdminHandler):
    area = "catalogue"
    nav = "shop"

    async def get(self, raw_id: str) -> None:
        course_id = self.path_id(raw_id, "course")
        db = self.ctx.db
        course = await db.shop_courses.find_one({"_id": course_id}, {"name": 1})
        if course is None:
            raise tornado.web.HTTPError(404, f"no course {course_id}")
        reviews = [
            r
            async for r in db.shop_reviews.find({"course_id": course_id})
            .sort([("recommended", -1), ("created_at", -1), ("_id", -1)])
            .limit(500)
        ]
        names = {
            int(u["_id"]): u.get("display_name") or u["username"]
            async for u in db.users.find(
                {"_id": {"$in": [r["user_id"] for r in reviews]}}, {"username": 1, "display_name": 1}
            )
        }
        self.render(
            "course_reviews.html",
            course=course,
            reviews=reviews,
            names=names,
            averages=averages(await db.shop_review_stats.find_one({"_id": course_id})),
            page_title=f"Reviews of {course.get('name', '')}",
        )


class ReviewModerateHandler(AdminHandler):
    area = "catalogue"
    nav = "shop"

    async def post(self, raw_id: str, action: str) -> None:
        review_id = self.path_id(raw_id, "review")
        review = await self.ctx.db.shop_reviews.find_one({"_id": review_id}, {"course_id": 1})
        back = f"{PREFIX}/courses/{review['course_id']}/reviews" if review else f"{PREFIX}/courses"

        async def run() -> None:
            if action not in MODERATIONS:
                raise FormError("choose hide, show, recommend or unrecommend")
            await self.actions.moderate_review(self.actor(), review_id, action)
            self.done(f"Review {review_id}: {action} done.", back)

        await self.guarded(run, back=back)


class FaqsHandler(AdminHandler):
    """`/admin/faqs?target=course|degree&id=N`: one target's FAQs; without them, the targets."""

    area = "catalogue"

    nav = "shop"

    async def get(self) -> None:
        db = self.ctx.db
        target = self.get_query_argument("target", "course")
        target = target if target in FAQ_TARGETS else "course"
        target_id = self.query_int("id", 0, minimum=0, maximum=2**53 - 1)
        courses = [c async for c in db.shop_courses.find({}, {"name": 1}).sort("_id", 1).limit(500)]
        degrees = [d async for d in db.shop_degree_courses.find({}, {"name": 1}).sort("_id", 1).limit(500)]
        counts: dict[tuple[str, int], int] = {}
        async for faq in db.shop_faqs.find({}, {"target": 1, "target_id": 1}):
            key = (str(faq["target"]), int(faq["target_id"]))
            counts[key] = counts.get(key, 0) + 1
        chosen: Document | None = None
        faqs: list[Document] = []
        if target_id:
            collection = db.shop_courses if target == "course" else db.shop_degree_courses
            chosen = await collection.find_one({"_id": target_id}, {"name": 1})
            if chosen is not None:
                faqs = [
                    f
                    async for f in db.shop_faqs.find({"target": target, "target_id": target_id}).sort(
                        "_id", 1
                    )
                ]
        self.render(
            "faqs.html",
            targets=FAQ_TARGETS,
            target=target,
            target_id=target_id,
            chosen=chosen,
            faqs=faqs,
            courses=courses,
            degrees=degrees,
            counts=counts,
            page_title="FAQs",
        )


def _faq_fields(handler: AdminHandler) -> tuple[str, str]:
    return (
        text_field(handler.form("question"), "Question", max_length=255),
        text_field(handler.form("answer"), "Answer", max_length=1024, multiline=True),
    )


class FaqCreateHandler(AdminHandler):
    area = "catalogue"
    nav = "shop"

    async def post(self) -> None:
        target = self.form("target")
        raw_id = self.form("target_id")
        back = f"{PREFIX}/faqs?target={target if target in FAQ_TARGETS else 'course'}&id={raw_id[:16]}"

        async def run() -> None:
            if target not in FAQ_TARGETS:
                raise FormError("Target: choose a course or a degree course")
            target_id = parse_int(raw_id, "Target", minimum=1, maximum=2**53 - 1)
            question, answer = _faq_fields(self)
            await self.actions.add_faq(self.actor(), target, target_id, question, answer)
            self.done("FAQ added.", back)

        await self.guarded(run, back=back)


class FaqEditHandler(AdminHandler):
    area = "catalogue"
    nav = "shop"

    async def post(self, raw_id: str, verb: str) -> None:
        faq_id = self.path_id(raw_id, "FAQ")
        faq = await self.ctx.db.shop_faqs.find_one({"_id": faq_id}, {"target": 1, "target_id": 1})
        back = f"{PREFIX}/faqs?target={faq['target']}&id={faq['target_id']}" if faq else f"{PREFIX}/faqs"

        async def run() -> None:
            if verb == "delete":
                await self.actions.delete_faq(self.actor(), faq_id)
                self.done(f"FAQ {faq_id} deleted.", back)
                return
            question, answer = _faq_fields(self)
            await self.actions.update_faq(self.actor(), faq_id, question, answer)
            self.done(f"FAQ {faq_id} saved.", back)

        await self.guarded(run, back=back)


ROUTES = [
    (r"/admin/courses/([0-9]+)/reviews", CourseReviewsHandler),
    (r"/admin/reviews/([0-9]+)/(hide|show|recommend|unrecommend)", ReviewModerateHandler),
    (r"/admin/faqs", FaqsHandler),
    (r"/admin/faqs/new", FaqCreateHandler),
    (r"/admin/faqs/([0-9]+)/(edit|delete)", FaqEditHandler),
]
