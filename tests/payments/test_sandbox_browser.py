"""The sandbox pay page in a real browser (Debian's chromium via Playwright), phone and desktop.

Only the signed-in payer sees the amount and the Pay button; everyone sees that it is a sandbox.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.admin.test_browser import ARTIFACTS, TIMEOUT_MS
from tests.gateway.conftest import AppServer
from tests.gateway.test_payments import pending_order
from tests.gateway.test_shop_api import ShopServer, running_shop

pytestmark = pytest.mark.browser

SIZES = {"phone": (390, 844), "desktop": (1280, 800)}


@pytest.fixture
async def shop_server(app_server: AppServer) -> AsyncIterator[ShopServer]:
    async with running_shop(app_server) as running:
        yield running


async def open_pay_page(browser: Any, base_url: str, trade_no: str, token: str | None, size: str) -> Any:
    width, height = SIZES[size]
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    # The token lives where the site keeps it after sign-in (gateway/static/app/js/api.js).
    await page.goto(base_url + "/sandbox/pay/" + trade_no)
    if token is not None:
        await page.evaluate("token => localStorage.setItem('gavel-token', token)", token)
        await page.reload()
    page.problems = problems
    return page


@pytest.mark.parametrize("size", SIZES)
async def test_the_payer_pays_on_the_sandbox_page_and_a_stranger_cannot(
    browser: Any, shop_server: ShopServer, size: str
) -> None:
    s = shop_server
    owner_token, trade_no, _ = await pending_order(s)
    _, stranger_token = await s.api.register()

    page = await open_pay_page(browser, s.api.base_url, trade_no, owner_token, size)
    banner = page.locator("#banner")
    assert "SANDBOX" in await banner.inner_text() and await banner.is_visible()
    await page.locator("#pay").wait_for(state="visible")
    assert (await page.locator("#amount").inner_text()).startswith("¥")
    box = await page.locator("#pay").bounding_box()
    # The button is reachable without scrolling sideways, on a phone too.
    assert box is not None and box["x"] + box["width"] <= SIZES[size][0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"sandbox-pay-{size}.png"), full_page=True)
    await page.click("#pay")
    await page.locator("#status").filter(has_text="TRADE_SUCCESS").wait_for()
    assert page.problems == []
    # As Alipay does: a link back to the merchant's return URL, followed by itself a moment later;
    # the return URL sends a browser on to the app's page for the payment.
    link = page.locator("#return")
    assert await link.get_attribute("href") == f"/api/v1/payments/return?out_trade_no={trade_no}"
    await page.wait_for_url(f"**/#/payment/{trade_no}")
    await page.context.close()

    stranger = await open_pay_page(browser, s.api.base_url, trade_no, stranger_token, size)
    assert "SANDBOX" in await stranger.locator("#banner").inner_text()
    # The API answers a stranger as if there were no such payment: the page says so, shows nothing.
    # A locator wait, not wait_for_function: the page's CSP forbids eval, which a string predicate may need.
    await expect(stranger.locator("#subject")).not_to_have_text(re.compile(r"^Sign in"), timeout=TIMEOUT_MS)
    assert await stranger.locator("#pay").is_hidden()
    assert await stranger.locator("#amount").inner_text() == ""
    await stranger.context.close()

    anonymous = await open_pay_page(browser, s.api.base_url, trade_no, None, size)
    assert "Sign in" in await anonymous.locator("#subject").inner_text()
    assert await anonymous.locator("#pay").is_hidden()
    await anonymous.context.close()
