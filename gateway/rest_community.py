"""Reviews, votes and claimable shop coupons over REST (docs/shop.md "Reviews", "Coupons a student
claims"; the contract of /work issue 21). `community_routes(ctx)` is added to `shop_routes`; the
admin moderation endpoints (`ADMIN_ROUTES`) write through the admin-actions service (audited) and
are served by gateway/app.py with the REST admin endpoints.

Review text is returned as plain text: clients render it as text, never as HTML.
"""

from typing import Any

from backoffice.actions import AdminActions
from persistence.mongo import Document, iso_utc, to_ms
from persistence.shop.community import mongo_community
from shop.claims import displayed_status
from shop.community import CommunityService
from shop.reviews import MAX_REVIEW_TEXT, SCORE_NAMES, VOTES
from web.context import AppContext
from web.errors import ValidationFailed
from web.http import Fields, JsonHandler


def community_routes(ctx: AppContext) -> list[tuple[str, type, dict[str, Any]]]:
    args = {"ctx": ctx, "community": mongo_community(ctx.client, ctx.db, cache=ctx.read_cache)}
    routes: list[tuple[str, type]] = [
        (r"/api/v1/courses/([0-9]+)/reviews", ReviewsHandler),
        (r"/api/v1/reviews/([0-9]+)", ReviewHandler),
        (r"/api/v1/reviews/([0-9]+)/vote", VoteHandler),
        (r"/api/v1/shop/coupons/claimable", ClaimableHandler),
        (r"/api/v1/shop/coupons/([0-9]+)/claim", ClaimHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in routes]


# -- views ------------------------------------------------------------------------------------------------
def _ms(value: Any) -> int | None:
    return None if value is None else to_ms(value)


def review_view(review: Document, *, admin: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": review["_id"],
        "course_id": review["course_id"],
        "author": review.get("author", ""),
        "scores": {name: int(review["scores"][name]) for name in SCORE_NAMES},
        "text": review.get("text", ""),
        "agree": int(review.get("agree", 0)),
        "disagree": int(review.get("disagree", 0)),
        "my_vote": review.get("my_vote"),
        "recommended": bool(review.get("recommended")),
        "mine": bool(review.get("mine")),
        "created_at_ms": _ms(review["created_at"]),
        "updated_at_ms": _ms(review["updated_at"]),
        "created_at": iso_utc(review["created_at"]),
        "updated_at": iso_utc(review["updated_at"]),
    }
    if admin:
        answer["hidden"] = bool(review.get("hidden"))
        answer["user_id"] = review["user_id"]
    return answer


def claimable_view(template: Document) -> dict[str, Any]:
    return {
        "id": template["_id"],
        "title": template.get("name", ""),
        "brief": template.get("brief", ""),
        "kind": template["kind"],
        "value": int(template.get("value", 0)),
        "minimum": int(template.get("minimum", 0)),
        "off_percent": int(template.get("off_percent", 0)),
        "course_id": template.get("course_id"),
        "course_name": template.get("course_name"),
        "claim_start_ms": _ms(template.get("claim_start")),
        "claim_end_ms": _ms(template.get("claim_end")),
        "quantity": int(template.get("quantity", 0)),
        "left": int(template.get("left", 0)),
        "per_user_limit": int(template.get("per_user_limit") or 1),
        "claimed_by_me": int(template.get("claimed_by_me", 0)),
        "valid_from_ms": _ms(template.get("valid_from")),
        "valid_to_ms": _ms(template.get("valid_to")),
        "valid_days": template.get("valid_days"),
    }


def user_coupon_view(coupon: Document, now: Any) -> dict[str, Any]:
    """A user's coupon as `GET /api/v1/shop/coupons` lists it: status expired as soon as it is."""
    answer: dict[str, Any] = {}
    for key, value in coupon.items():
        if key in ("user_id", "grant_ref"):
            continue
        name = "id" if key == "_id" else key
        answer[name] = iso_utc(value) if hasattr(value, "tzinfo") else value
    answer["status"] = displayed_status(coupon, now)
    answer["valid_from_ms"] = _ms(coupon.get("valid_from"))
    answer["valid_to_ms"] = _ms(coupon.get("valid_to"))
    return answer


def read_scores(body: Fields, *, partial: bool) -> dict[str, object]:
    raw = body.data.get("scores")
    if raw is None and partial:
        return {}
    if not isinstance(raw, dict):
        raise ValidationFailed("scores must be an object {teacher, content, clarity} of integers 1-5")
    scores = Fields(raw, SCORE_NAMES)
    return {
        name: scores.integer(name, minimum=1, maximum=5)
        for name in SCORE_NAMES
        if not partial or scores.has(name)
    }


def read_text(body: Fields, *, default: str | None) -> str | None:
    """The review text (absent: `default`); its final length (≤ 1,024) is checked once cleaned."""
    if not body.has("text"):
        return default
    return body.text("text", min_length=0, max_length=MAX_REVIEW_TEXT * 2, multiline=True)


# -- handlers ---------------------------------------------------------------------------------------------
class CommunityHandler(JsonHandler):
    community: CommunityService

    def initialize(self, ctx: AppContext, community: CommunityService) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.community = community


class ReviewsHandler(CommunityHandler):
    async def get(self, raw_id: str) -> None:
        viewer = await self.authenticate()
        page = self.page()
        found = await self.community.reviews(
            self.path_id(raw_id, "course"), viewer.user_id if viewer else None, page.skip, page.page_size
        )
        answer = page.answer([review_view(r) for r in found.items], found.total)
        answer["averages"] = found.averages
        self.reply(answer)

    async def post(self, raw_id: str) -> None:
        user = await self.require_user()
        body = self.fields(("scores", "text"))
        scores = read_scores(body, partial=False)
        review = await self.community.write_review(
            user.user_id, self.path_id(raw_id, "course"), scores, read_text(body, default="") or ""
        )
        self.reply(review_view(review), 201)


class ReviewHandler(CommunityHandler):
    async def patch(self, raw_id: str) -> None:
        user = await self.require_user()
        body = self.fields(("scores", "text"))
        scores = read_scores(body, partial=True)
        text = read_text(body, default=None)
        review = await self.community.edit_review(user.user_id, self.path_id(raw_id, "review"), scores, text)
        self.reply(review_view(review))


class VoteHandler(CommunityHandler):
    async def post(self, raw_id: str) -> None:
        user = await self.require_user()
        clicked = self.fields(("vote",)).one_of("vote", VOTES)
        review, mine = await self.community.vote(
            user.user_id,
            self.path_id(raw_id, "review"),
            "agree" if clicked == "agree" else "disagree",
        )
        self.reply({"agree": int(review["agree"]), "disagree": int(review["disagree"]), "my_vote": mine})


class ClaimableHandler(CommunityHandler):
    async def get(self) -> None:
        user = await self.authenticate()
        templates = await self.community.claimable(user.user_id if user else None)
        self.reply({"items": [claimable_view(t) for t in templates]})


class ClaimHandler(CommunityHandler):
    async def post(self, raw_id: str) -> None:
        user = await self.require_user()
        coupon = await self.community.claim(user.user_id, self.path_id(raw_id, "coupon"))
        self.reply(user_coupon_view(coupon, self.community.now()), 201)


# -- admin ------------------------------------------------------------------------------------------------
class AdminReviewHandler(JsonHandler):
    admin_area = "catalogue"
    actions: AdminActions

    def initialize(self, ctx: AppContext, actions: AdminActions) -> None:  # type: ignore[override]
        super().initialize(ctx)
        self.actions = actions

    async def post(self, raw_id: str, action: str) -> None:
        user = await self.require_admin()
        actor = self.staff_actor(user)
        review = await self.actions.moderate_review(actor, self.path_id(raw_id, "review"), action)
        review.setdefault("author", "")
        self.reply(review_view(review, admin=True))


ADMIN_ROUTES: list[tuple[str, type]] = [
    (r"/api/v1/admin/shop/reviews/([0-9]+)/(hide|show|recommend|unrecommend)", AdminReviewHandler),
]
