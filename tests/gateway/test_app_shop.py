"""The course shop in the bidder app (issue 21), in chromium at 390 × 844 and 1280 × 800 against the
real gateway (MongoDB, Redis, the sandbox provider): browse with a filter and a search, open a
course, put two courses in the cart with different plans and change one, check out with a coupon,
the balance and the sandbox for the rest, see the order; a free preview opens, an unpaid section
is refused; once paid it opens through a signed link and marking it done shows in my courses.

The second test takes a student through the rest of an order's life in the app: claim a coupon,
buy with it and the balance, write a review, cancel another (pending) order, and request a refund
that an admin approves.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.gateway.app_kit import (
    DESKTOP,
    AppWorld,
    app_world,  # noqa: F401  (a fixture)
    browser,  # noqa: F401  (a fixture: the admin tests' chromium)
    new_context,
    no_horizontal_overflow,
    open_app,
    phone_context,
    sign_in_as,
)

pytestmark = pytest.mark.browser


@dataclass
class ShopWorld:
    python: int  # two plans: 30 days ¥99.00, 60 days ¥199.00; chapters with a free preview
    asyncio: int  # one plan: 30 days ¥299.00; advanced
    vip: int  # VIP, ¥49.00
    policies: dict[int, list[int]]
    free_section: int
    paid_section: int


async def seed_shop(world: AppWorld) -> ShopWorld:
    """A small catalogue (idempotent per world: seeded once)."""
    cached = getattr(world, "_shop", None)
    if cached is not None:
        return cached
    s = world.shop
    sub = await s.category()
    teacher = await s.admin("POST", "/api/v1/admin/shop/teachers", {"name": "Lin 林老师", "title": "Senior"})
    python, py_policies = await s.course(
        sub, 9900, 19_900, name="Python basics 零基础学 Python", level="beginner", order=1,
        brief="From variables to a small web service.\n从变量到一个小型 Web 服务。",
    )  # fmt: skip
    asyncio_id, a_policies = await s.course(sub, 29_900, name="Asyncio in depth", level="advanced", order=2)
    vip, v_policies = await s.course(sub, 4900, name="VIP clinic", course_type="vip", order=3)
    await s.admin(
        "PUT",
        f"/api/v1/admin/shop/courses/{python}/detail",
        {
            "hours": 40,
            "slogan": "Learn by building",
            "why_study": "Python runs the web, data and automation.",
            "what_to_study_brief": "Syntax, functions, modules, asyncio.",
            "teacher_ids": [teacher["id"]],
            "recommend_course_ids": [asyncio_id],
        },
    )
    chapter = await s.admin(
        "POST", f"/api/v1/admin/shop/courses/{python}/chapters", {"chapter": 1, "name": "Start"}
    )
    sections = []
    for order, free in ((1, True), (2, False)):
        section = await s.admin(
            "POST",
            f"/api/v1/admin/shop/chapters/{chapter['id']}/sections",
            {"name": f"Lesson {order}", "order": order, "link": f"https://example.com/v/{order}",
             "video_time": "12:30", "free_trial": free},
        )  # fmt: skip
        sections.append(int(section["id"]))
    await s.admin(
        "POST",
        "/api/v1/admin/shop/faqs",
        {"target": "course", "target_id": python, "question": "Refunds?", "answer": "Within 7 days."},
    )
    shop = ShopWorld(
        python, asyncio_id, vip, {python: py_policies, asyncio_id: a_policies, vip: v_policies}, *sections
    )
    world._shop = shop  # type: ignore[attr-defined]
    return shop


async def settle(page: Any) -> None:
    await page.wait_for_load_state("networkidle")
    await page.wait_for_function("() => !document.querySelector('main [role=status].state')")


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_browse_buy_and_learn(browser: Any, app_world: AppWorld, size: str) -> None:  # noqa: F811
    shop = await seed_shop(app_world)
    user_id, token = await app_world.funded_bidder(balance=150_00)
    coupon = await app_world.shop.coupon(user_id, kind="flat", value=20_00, course_id=shop.python)
    context = (
        await phone_context(browser, locale="en") if size == "phone" else await new_context(browser, DESKTOP)
    )
    try:
        page = await open_app(context, app_world, "#/courses")
        await sign_in_as(page, token, "#/courses")
        await settle(page)
        # The catalogue: three cards; a search and a level filter narrow it.
        cards = page.locator(".shop-card")
        assert await cards.count() == 3
        assert "¥99.00" in await cards.first.inner_text()
        await page.fill("#shop-q", "python")
        await page.press("#shop-q", "Enter")
        await page.wait_for_function("() => document.querySelectorAll('.shop-card').length === 1")
        assert "python" in await page.evaluate("() => location.hash")
        await page.evaluate("() => { location.hash = '/courses?level=advanced'; }")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('.shop-card-title')].map(e => e.textContent).join()"
            " === 'Asyncio in depth'"
        )
        assert await no_horizontal_overflow(page) == []

        # The course page: outline with a free preview and a lock marker, the plans; add to cart.
        await page.evaluate(f"() => {{ location.hash = '/course/{shop.python}'; }}")
        await settle(page)
        assert "Learn by building" in await page.locator("main").inner_text()
        assert await page.locator(".shop-section").count() == 2
        assert await page.locator(".shop-section .badge.good").count() == 1  # the free preview
        await page.locator(".shop-plans input[type=radio]").nth(1).check()  # 60 days, ¥199.00
        await page.get_by_role("button", name="Add to cart").click()
        await page.locator(".toast.good").last.wait_for()
        await page.evaluate(f"() => {{ location.hash = '/course/{shop.asyncio}'; }}")
        await settle(page)
        await page.get_by_role("button", name="Add to cart").click()
        await page.locator(".toast.good").last.wait_for()

        # The cart: two lines; change the Python plan back to 30 days; the total follows.
        await page.evaluate("() => { location.hash = '/cart'; }")
        await settle(page)
        assert "¥498.00" in await page.locator("main").inner_text()  # 199 + 299
        await page.select_option(f"#shop-plan-{shop.python}", str(shop.policies[shop.python][0]))
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('¥398.00')")
        assert await no_horizontal_overflow(page) == []

        # Checkout: the course coupon, ¥150 of balance; the totals are the server's.
        await page.get_by_role("button", name="Check out").click()
        await page.wait_for_function("() => location.hash === '#/checkout'")
        await settle(page)
        await page.select_option(f"#shop-coupon-{shop.python}", str(coupon))
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('¥378.00')")
        await page.fill("#shop-balance", "150")
        text = await page.locator("main").inner_text()
        assert "¥228.00" in text  # 398 - 20 - 150, to pay through the provider
        assert await no_horizontal_overflow(page) == []
        # Learning before paying: a free preview opens for anyone; a paid section is refused.
        free = await app_world.server.call("GET", f"/api/v1/sections/{shop.free_section}/content")
        assert free.status == 200 and "/api/v1/content/" in free.json["content_url"]
        paid_section = f"/api/v1/sections/{shop.paid_section}/content"
        refused = await app_world.server.call("GET", paid_section, token=token)
        assert (refused.status, refused.code) == (403, "ENROLMENT_REQUIRED")
        await page.get_by_role("button", name="Pay ¥228.00").click()
        # Off to the sandbox's pay page (the provider), then back through #/payment/… to the order.
        await page.wait_for_url("**/sandbox/pay/**")
        out_trade_no = page.url.rsplit("/", 1)[1]
        stored = await page.evaluate(f"() => sessionStorage.getItem('gavel-payment-{out_trade_no}')")
        assert stored and '"/shop/orders/' in stored
        orders = (await app_world.server.call("GET", "/api/v1/shop/orders", token=token)).json["items"]
        assert orders[0]["to_pay"] == 228_00 and orders[0]["balance_used"] == 150_00
        await page.locator("#pay").click()
        await page.wait_for_url(re.compile(rf".*#/shop/orders/{orders[0]['order_no']}$"), timeout=30_000)
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('Paid')")
        assert "¥228.00" in await page.locator("main").inner_text()

        # Enrolled now: the paid section opens through a signed link; marking it done counts.
        await page.evaluate(f"() => {{ location.hash = '/learn/{shop.python}'; }}")
        await settle(page)
        await page.locator(".shop-section-open").nth(1).click()
        await page.locator(".shop-content a").wait_for()
        assert "/api/v1/content/" in (await page.locator(".shop-content a").get_attribute("href") or "")
        await page.locator(".shop-done-check input").nth(1).check()
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('1 of 2')")
        await page.evaluate("() => { location.hash = '/me/courses'; }")
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('1 of 2')")
        assert "Python basics" in await page.locator("main").inner_text()
        assert await no_horizontal_overflow(page) == []
        assert page.problems == []
    finally:
        await context.close()


async def test_signed_out_course_page_sends_to_sign_in(browser: Any, app_world: AppWorld) -> None:  # noqa: F811
    shop = await seed_shop(app_world)
    context = await phone_context(browser, locale="zh-CN")
    try:
        page = await open_app(context, app_world, f"#/course/{shop.python}")
        await settle(page)
        assert "免费试看" in await page.locator("main").inner_text()
        await page.get_by_role("button", name="加入购物车").click()
        await page.wait_for_function("() => location.hash.startsWith('#/signin')")
        assert page.problems == []
    finally:
        await context.close()


async def visit(page: Any, path: str) -> None:
    await page.evaluate(f"() => {{ location.hash = '{path}'; }}")
    await settle(page)


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_claim_buy_review_cancel_and_refund(
    browser: Any,  # noqa: F811
    app_world: AppWorld,  # noqa: F811
    size: str,
) -> None:
    shop = await seed_shop(app_world)
    api = app_world.server
    _user_id, token = await app_world.funded_bidder(balance=100_00)
    # The server's clock (the test app's fake clock), not this process's: the window must hold there.
    now = datetime.datetime.fromtimestamp(app_world.server.clock.now_ms() / 1000, datetime.UTC)
    await app_world.shop.admin(
        "POST",
        "/api/v1/admin/shop/coupons",
        {
            "name": "Spring ¥30 off",
            "kind": "flat",
            "value": 30_00,
            "claim_start": (now - datetime.timedelta(hours=1)).isoformat(),
            "claim_end": (now + datetime.timedelta(days=1)).isoformat(),
            "quantity": 5,
            "per_user_limit": 1,
            "valid_days": 30,
        },
    )
    context = (
        await phone_context(browser, locale="en") if size == "phone" else await new_context(browser, DESKTOP)
    )
    try:
        page = await open_app(context, app_world, "#/courses")
        await sign_in_as(page, token, "#/shop/coupons")
        await settle(page)
        # Claim the coupon; it is then mine.
        try:
            await page.get_by_role("heading", name="Coupons to claim").wait_for()
        except Exception as error:
            shown = await page.evaluate("() => location.hash + ' | ' + document.body.innerText")
            raise AssertionError(shown) from error
        card = page.locator("li", has_text="Spring ¥30 off").first
        await card.get_by_role("button", name="Claim").click()
        await page.locator(".toast.good").last.wait_for()
        mine = (await api.call("GET", "/api/v1/shop/coupons", token=token)).json["items"]
        assert [c["status"] for c in mine] == ["unused"]

        # Buy the VIP course (¥49.00) with the coupon (−¥30.00) and ¥19.00 of balance.
        await visit(page, f"/course/{shop.vip}")
        await page.get_by_role("button", name="Add to cart").click()
        await page.locator(".toast.good", has_text="Added to your cart").last.wait_for()
        await visit(page, "/cart")
        await page.get_by_role("button", name="Check out").click()
        await page.wait_for_function("() => location.hash === '#/checkout'")
        await settle(page)
        await page.select_option("#shop-coupon-global", str(mine[0]["id"]))
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('¥19.00')")
        await page.get_by_role("button", name="Pay with the balance").click()
        await page.wait_for_function("() => /#\\/shop\\/orders\\/\\w+$/.test(location.hash)")
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('Paid')")
        vip_order = page.url.rsplit("/", 1)[1]
        me = (await api.call("GET", "/api/v1/me", token=token)).json
        assert me["balance"] == 100_00 - 19_00

        # A review of the course just bought.
        await visit(page, f"/course/{shop.vip}")
        await page.get_by_role("button", name="Write a review").click()
        await page.select_option("#shop-score-clarity", "4")
        await page.fill("#shop-review-text", "Clear and practical <b>not bold</b>")
        await page.get_by_role("button", name="Save").click()
        review = page.locator("#reviews .shop-text", has_text="Clear and practical")
        await review.wait_for()
        assert await review.inner_text() == "Clear and practical <b>not bold</b>"  # shown as text
        assert await page.locator("#reviews b").count() == 0

        # Another order left pending (nothing from the balance), then cancelled by its owner.
        await visit(page, f"/course/{shop.asyncio}")
        await page.get_by_role("button", name="Add to cart").click()
        await page.locator(".toast.good", has_text="Added to your cart").last.wait_for()
        await visit(page, "/cart")
        await page.get_by_role("button", name="Check out").click()
        await page.wait_for_function("() => location.hash === '#/checkout'")
        await settle(page)
        await page.locator("label.check input[type=checkbox]").uncheck()
        await page.get_by_role("button", name="Pay ¥299.00").click()
        await page.wait_for_url("**/sandbox/pay/**")
        orders = (await api.call("GET", "/api/v1/shop/orders?status=pending", token=token)).json["items"]
        [pending] = orders
        await page.goto(f"{app_world.base_url}/#/shop/orders/{pending['order_no']}")
        await settle(page)
        await page.get_by_role("button", name="Cancel the order").click()
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('Cancelled')")
        order = (await api.call("GET", f"/api/v1/shop/orders/{pending['order_no']}", token=token)).json
        assert order["status"] == "cancelled_by_user"

        # A refund of the VIP order: requested in the app, approved by an admin; the balance comes back.
        await visit(page, f"/shop/orders/{vip_order}")
        await page.get_by_role("button", name="Request a refund").click()
        await page.fill("#shop-refund-reason", "Bought the wrong course")
        await page.get_by_role("button", name="Send the request").click()
        await page.wait_for_function(
            "() => document.querySelector('main').innerText.includes('Refund requested')"
        )
        await app_world.shop.admin(
            "POST", f"/api/v1/admin/shop/orders/{vip_order}/refund/approve", {"reason": "as asked"}
        )
        await page.reload()
        await settle(page)
        await page.wait_for_function("() => document.querySelector('main').innerText.includes('Refunded')")
        assert (await api.call("GET", "/api/v1/me", token=token)).json["balance"] == 100_00
        assert await no_horizontal_overflow(page) == []
        assert page.problems == []
    finally:
        await context.close()
