"""The admin UI in a real browser: Debian's chromium, headless, driven by Playwright (async API).

The app runs on this test's event loop (`app_server`), so it keeps serving while the browser
drives it. One browser per module; each test gets a fresh context (cookies, storage) and saves a
screenshot under tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import tornado.websocket

from tests.admin.conftest import ADMIN_PASSWORD, AppServer, png_bytes

pytestmark = pytest.mark.browser

CHROMIUM = pathlib.Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ARTIFACTS = pathlib.Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>\"'&amp;"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    async_api = pytest.importorskip("playwright.async_api")
    async with async_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Tab:
    """One browser context and page on the test's app, with the page's JS errors collected."""

    def __init__(self, page: Any, server: AppServer) -> None:
        self.page = page
        self.server = server
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"console {message.type}: {message.text}")
                if message.type == "error"
                else None
            ),
        )

    async def sign_in(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        await self.page.goto(self.server.base_url + "/admin/login")
        await self.page.fill("input[name=username]", username)
        await self.page.fill("input[name=password]", password)
        await self.page.click("form.stack button[type=submit]")
        await self.page.wait_for_load_state()

    async def screenshot(self, name: str) -> pathlib.Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        # Broken images of the XSS payload (src=x) would show as console errors; none may appear.
        assert self.problems == [], self.problems


@pytest.fixture
async def tab(browser: Any, app_server: AppServer, tmp_path: pathlib.Path) -> AsyncIterator[Tab]:
    app_server.ctx.media_dir = tmp_path / "media"
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Shanghai")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        yield Tab(page, app_server)
    finally:
        await context.close()


async def test_sign_in_and_out(tab: Tab) -> None:
    page, base = tab.page, tab.server.base_url
    await page.goto(base + "/admin/sessions")
    assert "/admin/login?next=" in page.url  # refused before signing in
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", ADMIN_PASSWORD)
    await page.click("form.stack button[type=submit]")
    await page.wait_for_url(re.compile(r".*/admin/sessions$"))
    assert await page.text_content("form.signout .who") == "admin"
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["gavel_admin"]["httpOnly"] and cookies["gavel_admin"]["sameSite"] == "Strict"
    await page.goto(base + "/admin/")
    await tab.screenshot("sign_in")
    await page.click("form.signout button")
    await page.wait_for_url(re.compile(r".*/admin/login$"))
    await page.goto(base + "/admin/")
    assert "/admin/login" in page.url
    tab.assert_clean()


async def test_create_session_and_lot_with_image(tab: Tab) -> None:
    page, server = tab.page, tab.server
    await tab.sign_in()
    await page.goto(server.base_url + "/admin/sessions/new")
    # Typed in the business zone (Asia/Shanghai, UTC+8): the form must store these times in UTC.
    start = datetime.datetime.fromtimestamp(server.clock.now_ms() / 1000, datetime.UTC) + datetime.timedelta(
        days=2
    )
    start = start.replace(minute=0, second=0, microsecond=0)
    shanghai = datetime.timezone(datetime.timedelta(hours=8))

    def local(moment: datetime.datetime) -> str:
        return moment.astimezone(shanghai).strftime("%Y-%m-%dT%H:%M")

    await page.fill("input[name=title]", "Autumn ceramics 秋季瓷器")
    await page.fill("textarea[name=description]", "Song and Ming pieces")
    await page.fill("input[name=preview_start]", local(start))
    await page.fill("input[name=preview_end]", local(start + datetime.timedelta(hours=1)))
    await page.fill("input[name=bidding_start]", local(start + datetime.timedelta(hours=1)))
    await page.fill("input[name=bidding_end]", local(start + datetime.timedelta(hours=3)))
    await page.fill("input[name=deposit]", "500")
    await page.fill("input[name=soft_close_seconds]", "120")
    await page.fill("input[name=soft_close_cap_seconds]", "900")
    await page.click("form.grid button[type=submit]")
    await page.wait_for_url(re.compile(r".*/admin/sessions/[0-9]+$"))
    session_id = int(page.url.rsplit("/", 1)[1])
    session = await server.ctx.db.sessions.find_one({"_id": session_id})
    assert session["title"] == "Autumn ceramics 秋季瓷器"
    assert session["preview_start"] == start and session["deposit"] == 500_00
    assert session["bidding_end"] == start + datetime.timedelta(hours=3)
    assert session["soft_close_seconds"] == 120

    await page.click("text=New lot")
    await page.fill("input[name=catalogue_no]", "A-001")
    await page.fill("input[name=title]", "Celadon bowl 青瓷碗")
    await page.fill("input[name=start_price]", "1200")
    await page.fill("input[name=unit]", "100")
    await page.fill("input[name=reserve_price]", "3000")
    await page.fill("input[name=highest_price]", "8000.50")
    await page.fill("input[name=deposit]", "200")
    await page.locator("input[name=spec_key]").nth(0).fill("Size 尺寸")
    await page.locator("input[name=spec_value]").nth(0).fill("Ø 18 cm")
    await page.click("[data-add-spec]")
    await page.locator("input[name=spec_key]").nth(2).fill("Era 年代")
    await page.locator("input[name=spec_value]").nth(2).fill("Song")
    await page.click("form.grid button[type=submit]")
    await page.wait_for_url(re.compile(r".*/admin/lots/[0-9]+$"))
    lot_id = int(page.url.rsplit("/", 1)[1])

    upload = page.locator("form[data-upload] input[type=file]")
    await upload.set_input_files({"name": "bowl.png", "mimeType": "image/png", "buffer": png_bytes(64, 48)})
    await page.locator("form[data-upload] img.preview").wait_for(state="visible")
    async with page.expect_navigation():
        await page.click("form[data-upload] button[type=submit]")
    image = page.locator("ol.images img").first
    await image.wait_for(state="visible")
    assert await image.evaluate("img => img.complete && img.naturalWidth") == 64
    lot = await server.ctx.db.lots.find_one({"_id": lot_id})
    assert lot["start_price"] == 1200_00 and lot["unit"] == 100_00 and lot["highest_price"] == 8000_50
    assert lot["specs"] == [{"key": "Size 尺寸", "value": "Ø 18 cm"}, {"key": "Era 年代", "value": "Song"}]
    assert len(lot["images"]) == 1 and re.search(r"/media/[0-9a-f]{32}\.png$", lot["images"][0])
    await tab.screenshot("create_session_lot_image")
    tab.assert_clean()


async def _bid(ws_url: str, token: str, lot_id: int, price: int, ref: str) -> dict[str, Any]:
    socket = await tornado.websocket.websocket_connect(f"{ws_url}?token={token}")
    try:
        assert orjson.loads(await socket.read_message())["type"] == "hello"
        await socket.write_message(
            orjson.dumps({"op": "bid", "lot_id": lot_id, "price": price, "ref": ref}).decode()
        )
        while True:
            frame = orjson.loads(await asyncio.wait_for(socket.read_message(), 5))
            if frame["type"] in ("accepted", "rejected"):
                return frame
    finally:
        socket.close()


async def test_monitor_shows_bids_live(tab: Tab) -> None:
    page, server = tab.page, tab.server
    session_id = await server.create_session()
    lot_id = await server.create_lot(session_id, title="Blue and white vase", start_price=10_000, unit=1_000)
    other = await server.create_lot(session_id, title="Tea set for four", start_price=5_000, unit=500)
    await server.start_bidding(session_id)
    alice_id, alice = await server.register()
    bob_id, bob = await server.register()
    await tab.sign_in()
    await page.goto(f"{server.base_url}/admin/sessions/{session_id}/monitor")
    await page.wait_for_selector("#conn[data-state=live]")
    await page.wait_for_selector("#chart-note:has-text('No bids yet')")
    await page.evaluate("window.__sameDocument = true")
    price_cell = page.locator(f"tr[data-lot-id='{lot_id}'] [data-field=price]")
    countdown = page.locator(f"tr[data-lot-id='{lot_id}'] [data-field=countdown]")
    assert re.fullmatch(r"(\d+h )?\d+m \d\ds", (await countdown.text_content()) or ""), (
        await countdown.text_content()
    )

    assert (await _bid(server.ws_url, alice, lot_id, 10_000, "a1"))["type"] == "accepted"
    await page.wait_for_selector(f"tr[data-lot-id='{lot_id}'] [data-field=price]:text-is('¥100.00')")
    await server.advance_to(server.clock.now_ms() + 20_000)  # the next bid comes 20 s later
    assert (await _bid(server.ws_url, bob, lot_id, 12_000, "b1"))["type"] == "accepted"
    await page.wait_for_selector(f"tr[data-lot-id='{lot_id}'] [data-field=price]:text-is('¥120.00')")
    row = page.locator(f"tr[data-lot-id='{lot_id}']")
    assert await row.locator("[data-field=leader]").text_content() == server.ctx.pseudonym(session_id, bob_id)
    assert await row.locator("[data-field=bid_count]").text_content() == "2"
    assert await row.locator("[data-field=bpm]").text_content() == "2"
    assert await price_cell.text_content() == "¥120.00"
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    await page.wait_for_selector("#chart-note:has-text('2 price point(s)')")
    assert await page.locator("#chart canvas").count() == 1
    other_price = page.locator(f"tr[data-lot-id='{other}'] [data-field=price]")
    assert await other_price.text_content() == "—"  # untouched lot: no bid yet
    await tab.screenshot("monitor_live")
    await page.set_viewport_size({"width": 375, "height": 812})
    await page.wait_for_timeout(300)
    await tab.screenshot("monitor_phone")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways on a phone ({width} px)"
    tab.assert_clean()
    assert alice_id != bob_id


async def test_non_admin_is_refused(tab: Tab) -> None:
    page, server = tab.page, tab.server
    await server.register("carol", "carol-password")
    await tab.sign_in("carol", "carol-password")
    assert "/admin/login" in page.url
    assert "Wrong username or password, or not an admin account." in (await page.text_content("main") or "")
    await tab.screenshot("non_admin_refused")
    for path in ("/admin/", "/admin/users", "/admin/audit"):
        await page.goto(server.base_url + path)
        assert "/admin/login" in page.url, path
    answer = await page.request.get(server.base_url + "/admin/api/sessions/1")
    assert answer.status == 401 and (await answer.json())["error"]["code"] == "UNAUTHORIZED"
    # Problems here are the expected 401s of the refused requests, nothing else.
    assert all("401" in problem for problem in tab.problems), tab.problems


async def test_xss_in_lot_title_shows_as_text(tab: Tab) -> None:
    page, server = tab.page, tab.server
    session_id = await server.create_session()
    await tab.sign_in()
    await page.goto(f"{server.base_url}/admin/sessions/{session_id}/lots/new")
    await page.fill("input[name=catalogue_no]", "X-1")
    await page.fill("input[name=title]", XSS)
    await page.fill("input[name=start_price]", "100")
    await page.fill("input[name=unit]", "10")
    await page.locator("input[name=spec_key]").nth(0).fill("<b>key</b>")
    await page.locator("input[name=spec_value]").nth(0).fill(XSS[:60])
    await page.click("form.grid button[type=submit]")
    await page.wait_for_url(re.compile(r".*/admin/lots/[0-9]+$"))
    heading = await page.text_content("h1")
    assert heading is not None and XSS in heading
    assert await page.input_value("input[name=title]") == XSS
    for path in (f"/admin/sessions/{session_id}", f"/admin/sessions/{session_id}/monitor", "/admin/audit"):
        await page.goto(server.base_url + path)
        # The audit page shows the title inside JSON (quotes escaped): look for the tags there.
        shown = XSS if path != "/admin/audit" else XSS[: XSS.index('"')]
        assert shown in (await page.text_content("main") or ""), path
        assert await page.locator("img[src=x]").count() == 0
        assert await page.evaluate("typeof window.__xss") == "undefined"
    await page.goto(f"{server.base_url}/admin/sessions/{session_id}/monitor")
    assert await page.locator("td.lot-title").text_content() == XSS
    await tab.screenshot("xss_as_text")
    tab.assert_clean()
