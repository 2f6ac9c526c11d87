"""The bidder app end to end, as two people use it on phones (390 × 844), against the real service
(`run.py` in development mode: embedded-style MongoDB and Redis from the suite, the sandbox payment
provider, the settlement worker):

two bidders register in the app (one with a Chinese display name), each pays the lot's deposit
through the sandbox and comes back to the lot, they bid against each other with the quick-price
buttons and a maximum and each sees being outbid within a second; the connection drops in the middle
of a bid (the acknowledgement is lost) and the app's retry places no second bid; the lot closes, the
winner is told live and pays the order with a coupon and the balance, and the other bidder sees
"lost" and the deposit refund.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin.test_browser import ARTIFACTS, browser  # noqa: F401  (a fixture: Debian chromium)
from tests.test_run import ServiceProcess, call

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
ADMIN_PASSWORD = "admin-password-for-tests"
LIVE_MS = 1_000  # "sees being outbid within a second"
STEP_MS = 15_000  # page loads, payments and the close: generous on a busy 2-core machine


def iso(moment: datetime.datetime) -> str:
    return moment.isoformat()


@pytest.fixture
def service(tmp_path: Path, mongo_url: str, redis_url: str) -> Iterator[ServiceProcess]:
    service = ServiceProcess(tmp_path / "data", mongo_url, redis_url, f"gavel_app_{uuid.uuid4().hex[:8]}")
    service.env["SEED_DEMO"] = "0"
    service.start()
    try:
        yield service
    finally:
        service.kill()


class Admin:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        code, answer = await call(method, self.base + path, body, self.token)
        assert code in (200, 201), (path, code, answer)
        return answer


async def admin_of(service: ServiceProcess) -> Admin:
    code, answer = await call(
        "POST", service.base + "/api/v1/admin/login", {"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert code == 200, answer
    return Admin(service.base, answer["token"])


async def live_lot(admin: Admin) -> tuple[int, int]:
    """A session bidding now with one lot that needs a ¥100 deposit; a ¥20 coupon for the session."""
    now = datetime.datetime.now(datetime.UTC)
    session = await admin.call(
        "POST",
        "/api/v1/admin/sessions",
        {
            "title": "春季瓷器专场",
            "preview_start": iso(now + datetime.timedelta(seconds=1)),
            "preview_end": iso(now + datetime.timedelta(seconds=2)),
            "bidding_start": iso(now + datetime.timedelta(seconds=2)),
            "bidding_end": iso(now + datetime.timedelta(hours=1)),
            "deposit": 0,
            "soft_close_seconds": 60,
            "soft_close_cap_seconds": 600,
        },
    )
    lot = await admin.call(
        "POST",
        f"/api/v1/admin/sessions/{session['id']}/lots",
        {
            "catalogue_no": "A001",
            "title": "青花缠枝莲纹盘",
            "start_price": 50_000,
            "unit": 5_000,
            "reserve_price": 0,
            "highest_price": 0,
            "deposit": 10_000,
            "description": "清中期，口径 28 cm。",
        },
    )
    await admin.call(
        "POST",
        f"/api/v1/admin/sessions/{session['id']}/coupons",
        {
            "title": "新人立减 20 元",
            "amount": 2_000,
            "quantity": 10,
            "claim_start": iso(now - datetime.timedelta(minutes=1)),
            "claim_end": iso(now + datetime.timedelta(days=1)),
        },
    )
    for _ in range(100):
        code, view = await call("GET", f"{admin.base}/api/v1/lots/{lot['id']}")
        if code == 200 and view["state"] == 3:
            return int(session["id"]), int(lot["id"])
        await asyncio.sleep(0.1)
    raise AssertionError("the lot never opened for bidding")


class Bidder:
    """One person's phone: a browser context at 390 × 844 with the page's errors collected."""

    def __init__(self, page: Any, base: str, name: str) -> None:
        self.page = page
        self.base = base
        self.name = name
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"{name}: {error}"))

    @classmethod
    async def open(cls, chromium: Any, base: str, name: str, locale: str) -> Bidder:
        context = await chromium.new_context(viewport=PHONE, locale=locale, has_touch=True, is_mobile=True)
        page = await context.new_page()
        page.set_default_timeout(STEP_MS)
        return cls(page, base, name)

    async def register(self, username: str, display_name: str) -> None:
        page = self.page
        await page.goto(self.base + "/#/signin?mode=register")
        await page.fill("#username", username)
        await page.fill("#password", "correct-horse-battery")
        await page.fill("#display_name", display_name)
        await page.locator("form button[type=submit]").click()
        # Polled from here: the app's CSP (no eval) rules out wait_for_function's in-page polling.
        for _ in range(200):
            if await page.evaluate("localStorage.getItem('gavel-token')"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} could not register")

    async def token(self) -> str:
        return str(await self.page.evaluate("localStorage.getItem('gavel-token')"))

    async def open_lot(self, lot_id: int) -> None:
        await self.page.goto(f"{self.base}/#/lot/{lot_id}")
        await self.page.locator(".price-block").wait_for()

    async def pay_deposit_in_sandbox(self, lot_id: int) -> None:
        """The bid panel offers the deposit in place; the sandbox takes the payment and the app
        comes back to the lot, where the bid buttons now show."""
        page = self.page
        await page.locator(".deposit-offer .pay-online").first.click()
        await page.wait_for_url(re.compile(r".*/sandbox/pay/.*"))
        await page.locator("#pay").click()
        await page.wait_for_url(re.compile(rf".*#/lot/{lot_id}$"), timeout=30_000)
        await page.locator(".quick-bids button").first.wait_for()

    async def price_text(self) -> str:
        return str(await self.page.locator(".price-block .price").inner_text())


async def bid_count(base: str, lot_id: int) -> int:
    code, view = await call("GET", f"{base}/api/v1/lots/{lot_id}/bids?page_size=1")
    assert code == 200
    return int(view["total"])


async def test_two_bidders_deposit_bid_reconnect_win_pay_and_lose(
    service: ServiceProcess,
    browser: Any,  # noqa: F811
) -> None:
    base = service.base
    admin = await admin_of(service)
    _session_id, lot_id = await live_lot(admin)

    ming = await Bidder.open(browser, base, "ming", "zh-CN")
    anna = await Bidder.open(browser, base, "anna", "en-GB")
    await ming.register(f"ming{uuid.uuid4().hex[:6]}", "小明")
    await anna.register(f"anna{uuid.uuid4().hex[:6]}", "Anna")
    assert await ming.page.evaluate("document.documentElement.lang") == "zh-CN"
    assert await anna.page.evaluate("document.documentElement.lang") == "en"

    # Deposits through the sandbox, each coming back to the lot.
    for bidder in (ming, anna):
        await bidder.open_lot(lot_id)
        await bidder.pay_deposit_in_sandbox(lot_id)

    # Ming bids the next minimum (¥500.00) with the first quick button; Anna sees it within a second.
    await ming.page.locator(".quick-bids button").first.click()
    await ming.page.locator(".bid-status.leading").wait_for()
    await anna.page.locator(".price-block .price", has_text="¥500.00").wait_for(timeout=LIVE_MS)

    # Anna sets a maximum of ¥800.00: she leads at ¥550.00, Ming is told within a second.
    await anna.page.fill(".max-form input", "800")
    await anna.page.locator(".max-form button[type=submit]").click()
    await anna.page.locator(".bid-status.leading", has_text="¥550.00").wait_for()
    assert "¥800.00" in await anna.page.locator(".bid-status").inner_text()
    await ming.page.locator(".bid-status.outbid").wait_for(timeout=LIVE_MS)
    assert "¥550.00" in await ming.price_text()

    # The network drops in the middle of Ming's next bid: the acknowledgement never reaches the
    # phone and the socket closes. The app reconnects and retries under the same ref: one bid.
    drop = {"armed": False, "dropped": 0}
    closing: set[asyncio.Future[None]] = set()

    async def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if drop["armed"] and isinstance(message, str) and '"type":"accepted"' in message:
                drop["armed"] = False
                drop["dropped"] += 1
                closed = asyncio.ensure_future(ws.close(code=4000, reason="network lost"))
                closing.add(closed)
                closed.add_done_callback(closing.discard)
                return
            ws.send(message)

        server.on_message(from_server)

    await ming.page.route_web_socket(re.compile(r".*/ws.*"), route)
    await ming.page.reload()  # the next socket goes through the route
    await ming.page.locator(".bid-status.outbid, .bid-status").first.wait_for()
    before = await bid_count(base, lot_id)
    drop["armed"] = True
    await ming.page.locator(".quick-bids button").first.click()  # ¥600.00: Anna's maximum answers
    await ming.page.locator(".offline").wait_for()
    await ming.page.locator(".offline").wait_for(state="detached")
    # The retry got the first answer (accepted, then outbid by Anna's maximum at ¥650.00); a retry
    # under a new ref would have been a second bid, refused as too low.
    message = ming.page.locator(".bid-message.warn")
    await message.wait_for()
    assert "¥650.00" in await message.inner_text()
    assert drop["dropped"] == 1
    # Ming's ¥600 and Anna's automatic ¥650: two ladder lines.
    assert await bid_count(base, lot_id) == before + 2
    assert "¥650.00" in await ming.price_text()

    # An offline phone shows the banner and recovers when the network is back.
    await anna.page.context.set_offline(True)
    await anna.page.locator(".offline").wait_for()
    await anna.page.context.set_offline(False)
    await anna.page.locator(".offline").wait_for(state="detached")

    # The close: Anna wins (pushed live, with her order and deadline), Ming lost and sees his refund.
    await admin.call("POST", f"/api/v1/admin/lots/{lot_id}/close", {})
    await anna.page.locator(".result.won a.button").wait_for(timeout=30_000)
    await ming.page.locator(".result.lost").wait_for()
    ming_result = await ming.page.locator(".result.lost").inner_text()
    assert "¥100.00" in ming_result, ming_result

    # Anna pays: ¥650 − ¥20 coupon − ¥100 deposit = ¥530 from her balance.
    code, me = await call("GET", base + "/api/v1/me", token=await anna.token())
    assert code == 200
    await admin.call("POST", f"/api/v1/admin/users/{me['user_id']}/credit", {"amount": 100_000})
    await anna.page.locator(".result.won a.button").click()
    await anna.page.wait_for_url(re.compile(r".*#/me/orders/\d+$"))
    await pay_order_with_coupon_and_balance(anna)
    code, ledger = await call("GET", base + "/api/v1/me/ledger", token=await anna.token())
    assert code == 200
    assert ledger["items"][0]["amount"] == -53_000
    assert ledger["items"][0]["balance_after"] == 100_000 - 53_000

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await anna.page.screenshot(path=str(ARTIFACTS / "app-e2e-anna.png"), full_page=True)
    await ming.page.screenshot(path=str(ARTIFACTS / "app-e2e-ming.png"), full_page=True)
    assert ming.problems == [] and anna.problems == []


async def pay_order_with_coupon_and_balance(bidder: Bidder) -> None:
    """On the order's payment page: claim the session's coupon (in My coupons), add a delivery
    address in place, pick the coupon, see the server's split and pay ¥530.00 from the balance."""
    page = bidder.page
    order_path = page.url.split("#", 1)[1]
    await page.goto(bidder.base + "/#/me/coupons")
    offer = page.locator(".acct-coupon", has_text="新人立减 20 元").first
    await offer.get_by_role("button", name="Claim", exact=False).click()
    await offer.get_by_text("Claimed", exact=True).wait_for()

    await page.goto(bidder.base + "/#" + order_path)
    await page.get_by_role("button", name="Add an address").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Recipient", exact=False).fill("Anna Li")
    await dialog.get_by_label("Phone", exact=False).fill("138 0000 0000")
    await dialog.get_by_label("Street and number", exact=False).fill("1 Fuxing Road")
    await dialog.get_by_role("button", name="Save").click()
    await dialog.wait_for(state="detached")

    pay = page.get_by_role("button", name="Pay ¥")
    await pay.filter(has_text="¥550.00").wait_for()  # ¥650 − ¥100 deposit
    await page.get_by_role("radio", name="新人立减 20 元", exact=False).check()
    await pay.filter(has_text="¥530.00").wait_for()  # and − ¥20 coupon
    split = await page.locator(".acct-split").inner_text()
    assert "−¥20.00" in split and "−¥100.00" in split, split
    await pay.click()
    await page.locator(".badge", has_text="To receive").wait_for()
