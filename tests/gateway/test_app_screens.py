"""Every screen of the bidder app at 360 × 740, 390 × 844 and 1280 × 800, signed out and signed in:
no horizontal scroll, touch targets of 44 px at least, a label on every input, no script errors.

The screens are those of js/auction.js, js/account.js, js/signin.js and the course shop's js/shop*.js;
the world they show is tests/gateway/app_kit.py's (live, deposit, upcoming and ended sessions; a won
lot with its order) plus test_app_shop.py's small catalogue.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.app_kit import (
    SIZES,
    AppWorld,
    app_world,  # noqa: F401  (a fixture)
    browser,  # noqa: F401  (a fixture: the admin tests' chromium)
    new_context,
    no_horizontal_overflow,
    open_app,
    sign_in_as,
    sign_up,
    small_targets,
    unlabelled_inputs,
)
from tests.gateway.test_app_shop import seed_shop

pytestmark = pytest.mark.browser


def signed_out_screens(world: AppWorld) -> list[str]:
    return [
        "#/",
        f"#/s/{world.live_session}",
        f"#/s/{world.deposit_session}",
        f"#/s/{world.upcoming_session}",
        f"#/s/{world.ended_session}",
        f"#/lot/{world.plain_lot}",
        f"#/lot/{world.deposit_lot}",
        f"#/lot/{world.session_deposit_lot}",
        f"#/lot/{world.upcoming_lot}",
        f"#/lot/{world.sold_lot}",
        "#/signin",
        "#/signin?mode=register",
        "#/courses",
        "#/courses?level=beginner&sort=price",
        f"#/course/{world._shop.python}",  # type: ignore[attr-defined]  (seed_shop, in the test)
    ]


async def signed_in_screens(world: AppWorld, token: str) -> list[str]:
    """The account screens, and the lot and order screens as the winner of `sold_lot` sees them."""
    screens = [
        "#/",
        f"#/lot/{world.plain_lot}",
        f"#/lot/{world.deposit_lot}",
        f"#/lot/{world.sold_lot}",
        "#/me",
        "#/me/orders",
        "#/me/addresses",
        "#/me/coupons",
        "#/me/wallet",
        "#/me/deposits",
        "#/courses",
        f"#/course/{world._shop.python}",  # type: ignore[attr-defined]
        "#/cart",
        "#/shop/orders",
        "#/shop/coupons",
        "#/me/courses",
        f"#/learn/{world._shop.python}",  # type: ignore[attr-defined]
    ]
    shop = world._shop  # type: ignore[attr-defined]
    choice = {"course_id": shop.python, "price_policy_id": shop.policies[shop.python][0]}
    if (await world.server.call("POST", "/api/v1/cart", choice, token=token)).status == 201:
        ids = {"course_ids": [shop.python]}
        if (await world.server.call("POST", "/api/v1/checkout", ids, token=token)).status == 201:
            screens.append("#/checkout")
    orders = await world.server.call("GET", "/api/v1/orders", token=token)
    if orders.status == 200:
        for order in orders.json.get("items", [])[:1]:
            screens.append(f"#/me/orders/{order['id']}")
            if order.get("no"):
                screens.append(f"#/payment/{order['no']}")
    return screens


async def settled(page: Any) -> None:
    """The screen has loaded what it shows (no loading state left) and the fonts are in."""
    await page.wait_for_load_state("networkidle")
    await page.wait_for_function("() => !document.querySelector('main [role=status].state')")
    await page.evaluate("() => document.fonts.ready.then(() => true)")


async def check_screens(page: Any, screens: list[str], size: str) -> list[str]:
    failures: list[str] = []
    for screen in screens:
        await page.evaluate("path => { location.hash = path.slice(1); }", screen)
        await settled(page)
        for kind, found in (
            ("overflow", await no_horizontal_overflow(page)),
            ("small target", await small_targets(page)),
            ("unlabelled input", await unlabelled_inputs(page)),
        ):
            failures.extend(f"{size} {screen}: {kind}: {item}" for item in found)
    return failures


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
@pytest.mark.parametrize("size", list(SIZES))
async def test_no_screen_overflows_and_every_control_is_reachable_and_labelled(
    browser: Any,  # noqa: F811
    app_world: AppWorld,  # noqa: F811
    size: str,
    locale: str,
) -> None:
    await seed_shop(app_world)
    context = await new_context(browser, SIZES[size], locale=locale, mobile=size != "desktop")
    try:
        page = await open_app(context, app_world)
        failures = await check_screens(page, signed_out_screens(app_world), size)
        await sign_in_as(page, app_world.seller_bidder[1])
        screens = await signed_in_screens(app_world, app_world.seller_bidder[1])
        failures += await check_screens(page, screens, size)
        assert failures == [], "\n".join(failures)
        assert page.problems == []
    finally:
        await context.close()


async def test_sign_up_through_the_form_with_a_chinese_display_name(
    browser: Any,  # noqa: F811
    app_world: AppWorld,  # noqa: F811
) -> None:
    context = await new_context(browser, SIZES["phone"], locale="zh-CN", mobile=True)
    try:
        page = await open_app(context, app_world)
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        await sign_up(page, "wang_lei", "王磊")
        token = await page.evaluate("localStorage.getItem('gavel-token')")
        me = await app_world.server.call("GET", "/api/v1/me", token=token)
        assert me.status == 200 and me.json["display_name"] == "王磊", me.body
        assert page.problems == []
    finally:
        await context.close()
