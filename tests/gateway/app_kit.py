"""The bidder app's browser test kit: a served app with demo-like data, browser contexts and checks.

    from tests.gateway.app_kit import AppWorld, no_horizontal_overflow, open_app, phone_context

    async def test_x(browser: Any, app_world: AppWorld) -> None:
        context = await phone_context(browser, locale="zh-CN")
        page = await open_app(context, app_world, f"#/lot/{app_world.plain_lot}")
        assert await no_horizontal_overflow(page) == []

`app_world` is the whole gateway (real MongoDB and Redis, the engine on a fake clock) with the
sandbox payment provider, so the shop, orders and deposits pay through the sandbox's pages, and:

- a live session (no session deposit) whose lots close `LIVE_WINDOW_MS` after the fake clock's
  start: `plain_lot` (fixed increment, a reserve, one bid on it), `deposit_lot` (a per-lot
  deposit, banded increments, no bids) and `quiet_lot` (no bids, no reserve);
- a live session with a whole-session deposit (`deposit_session`, one lot `session_deposit_lot`);
- an upcoming session (`upcoming_session`, in preview, bidding in a day);
- an ended session (`ended_session`: `sold_lot` sold to `seller_bidder`, `unsold_lot` without bids).

The engine's clock is a `FakeClock` that moves only when told: `close_lot` closes one lot now
(admin REST), `end_live` moves the clock to the live session's end (every live lot closes, with
its results), `advance_to` anything else. The app in the browser learns the server's time from
the socket (js/time.js), so countdowns follow the fake clock, not the machine's.

The fixtures `app_world` and `browser` (Debian's chromium through Playwright: the admin tests'
fixture, one per module) are available to every test under tests/gateway (its conftest.py).
Helpers: `phone_context` (390 × 844, touch, zh-CN or en), `desktop_context` (1280 × 800),
`open_app`, `sign_up` (through the UI), `sign_in_as` (a token in localStorage, as the app keeps it),
`no_horizontal_overflow`, `small_targets`, `unlabelled_inputs`, `page_problems`.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from persistence.mongo import iso_from_ms
from tests.admin.test_browser import TIMEOUT_MS, browser
from tests.gateway.conftest import AppServer
from tests.gateway.test_shop_api import ShopServer, running_shop
from tests.gateway.test_ws import Bidder

__all__ = [
    "DESKTOP",
    "PHONE",
    "SIZES",
    "SMALL_PHONE",
    "AppWorld",
    "app_world",
    "browser",
    "desktop_context",
    "new_context",
    "no_horizontal_overflow",
    "open_app",
    "page_problems",
    "phone_context",
    "sign_in_as",
    "sign_up",
    "small_targets",
    "unlabelled_inputs",
]

SMALL_PHONE = (360, 740)
PHONE = (390, 844)
DESKTOP = (1280, 800)
SIZES = {"small-phone": SMALL_PHONE, "phone": PHONE, "desktop": DESKTOP}
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
LIVE_WINDOW_MS = 30 * MINUTE_MS  # the live sessions end this long after the fake clock's start
BALANCE = 100_000_00  # what `funded_bidder` credits: ¥100,000.00
PASSWORD = "correct-horse-battery"
_names = itertools.count(1)


@dataclasses.dataclass
class AppWorld:
    shop: ShopServer  # the served app with the sandbox provider; `shop.api` calls it
    live_session: int
    plain_lot: int
    deposit_lot: int
    quiet_lot: int
    deposit_session: int
    session_deposit_lot: int
    upcoming_session: int
    upcoming_lot: int
    ended_session: int
    sold_lot: int
    unsold_lot: int
    seller_bidder: tuple[int, str]  # (user_id, token) of the bidder who won `sold_lot`
    live_end_ms: int  # the live sessions' bidding end on the fake clock

    @property
    def server(self) -> AppServer:
        return self.shop.api

    @property
    def base_url(self) -> str:
        return self.shop.api.base_url

    async def funded_bidder(self, username: str | None = None, balance: int = BALANCE) -> tuple[int, str]:
        """A registered bidder with `balance` fen on the account: (user_id, token)."""
        user_id, token = await self.server.register(username or f"kit{next(_names)}", PASSWORD)
        if balance:
            await self.server.credit(user_id, balance)
        return user_id, token

    async def pay_deposit(self, token: str, session_id: int, lot_id: int | None = None) -> None:
        """The deposit paid from the balance (the UI's way is the sandbox; this is for set-up)."""
        answer = await self.server.call(
            "POST",
            "/api/v1/deposits",
            {"session_id": session_id, "lot_id": lot_id, "pay_with": "balance"},
            token=token,
        )
        assert answer.status == 201 and answer.json["status"] == "paid", answer.body

    async def bid(self, token: str, lot_id: int, price: int) -> dict[str, Any]:
        """One bid over the websocket (set-up, not the UI): the `accepted` or `rejected` frame."""
        bidder = await Bidder.connect(self.server, token)
        try:
            return await bidder.bid(lot_id, price, f"kit-{next(_names)}")
        finally:
            bidder.close()

    async def close_lot(self, lot_id: int) -> None:
        """Close one lot now, as the admin's Close button does (results and orders follow)."""
        answer = await self.server.call(
            "POST", f"/api/v1/admin/lots/{lot_id}/close", token=await self.server.admin_token()
        )
        assert answer.status in (200, 202, 204), answer.body

    async def end_live(self) -> None:
        """Move the fake clock to the live sessions' end: every live lot closes (soft close aside)."""
        await self.advance_to(self.live_end_ms)

    async def advance_to(self, ms: int) -> None:
        await self.server.advance_to(ms)


async def _session(server: AppServer, title: str, start: int, end: int, **fields: Any) -> int:
    """A session with its preview from the fake clock's now and bidding from `start` to `end`."""
    now = server.clock.now_ms()
    return await server.create_session(
        title=title,
        preview_start=iso_from_ms(now),
        preview_end=iso_from_ms(start),
        bidding_start=iso_from_ms(start),
        bidding_end=iso_from_ms(end),
        **fields,
    )


async def seed_world(shop: ShopServer) -> AppWorld:
    """The sessions and lots described in the module's docstring, on the fake clock."""
    server = shop.api
    now = server.clock.now_ms()
    start = now + 1_000  # the live and ended sessions open a second after now
    live_end = now + LIVE_WINDOW_MS
    description = "Porcelain and stoneware from a private collection; condition reports on request."
    live = await _session(server, "Spring ceramics 春季瓷器专场", start, live_end, description=description)
    plain = await server.create_lot(
        live,
        title="Celadon bowl, Song style 青瓷碗",
        description="A Longquan-type celadon bowl with a crackled glaze. 龙泉窑风格青瓷碗，开片釉。",
        specs=[{"key": "Height", "value": "7.5 cm"}, {"key": "Diameter", "value": "16 cm"}],
        start_price=100_00,
        unit=10_00,
        reserve_price=300_00,
        highest_price=800_00,
    )
    deposit_lot = await server.create_lot(
        live,
        title="Large storage jar (deposit) 大罐",
        description="A large glazed storage jar. A per-lot deposit applies.",
        start_price=1_000_00,
        unit=None,
        increment_bands=[[5_000_00, 50_00], [None, 100_00]],
        reserve_price=2_000_00,
        highest_price=0,
        deposit=200_00,
    )
    quiet = await server.create_lot(live, title="Tea set for four 茶具四件套", start_price=80_00, unit=5_00)
    deposit_session = await _session(
        server, "Scholar's objects (session deposit) 文房雅玩", start, live_end, deposit=500_00
    )
    session_deposit_lot = await server.create_lot(
        deposit_session, title="Bamboo brush pot 竹笔筒", start_price=200_00, unit=20_00
    )
    upcoming = await _session(server, "Autumn paintings 秋季书画", now + DAY_MS, now + DAY_MS + 2 * HOUR_MS)
    upcoming_lot = await server.create_lot(
        upcoming, title="Landscape scroll 山水立轴", start_price=5_000_00, unit=100_00
    )
    ended_end = start + 10 * MINUTE_MS
    ended = await _session(server, "Winter bronzes 冬季铜器", start, ended_end)
    sold = await server.create_lot(ended, title="Bronze mirror 铜镜", start_price=300_00, unit=10_00)
    unsold = await server.create_lot(ended, title="Incense burner 香炉", start_price=400_00, unit=10_00)

    await server.advance_to(start)
    for session_id in (live, deposit_session, ended):
        await server.start_bidding(session_id)
    kit = AppWorld(
        shop, live, plain, deposit_lot, quiet, deposit_session, session_deposit_lot, upcoming,
        upcoming_lot, ended, sold, unsold, (0, ""), live_end,
    )  # fmt: skip
    seller = await kit.funded_bidder()
    accepted = await kit.bid(seller[1], sold, 300_00)
    assert accepted["type"] == "accepted", accepted
    other = await kit.funded_bidder()
    accepted = await kit.bid(other[1], plain, 100_00)
    assert accepted["type"] == "accepted", accepted
    await server.advance_to(ended_end)  # the ended session closes; the live ones go on
    kit.seller_bidder = seller
    return kit


@pytest.fixture
async def app_world(app_server: AppServer) -> AsyncIterator[AppWorld]:
    async with running_shop(app_server) as shop:
        yield await seed_world(shop)


# -- browser contexts and pages ---------------------------------------------------------------------
async def new_context(
    browser: Any, size: tuple[int, int], *, locale: str = "en", mobile: bool = False
) -> Any:
    width, height = size
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        locale=locale,
        timezone_id="Asia/Shanghai",
        is_mobile=mobile,
        has_touch=mobile,
        device_scale_factor=2 if mobile else 1,
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


async def phone_context(browser: Any, *, locale: str = "zh-CN", size: tuple[int, int] = PHONE) -> Any:
    """A phone: 390 × 844 (or `size`), touch, the browser preferring `locale` (zh-CN or en)."""
    return await new_context(browser, size, locale=locale, mobile=True)


async def desktop_context(browser: Any, *, locale: str = "en") -> Any:
    return await new_context(browser, DESKTOP, locale=locale)


def page_problems(page: Any) -> list[str]:
    """Uncaught errors, console errors and failed loads (any 5xx, a 4xx outside the API) of `page`
    from now on (a list that fills as they come)."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            # Failed loads are reported below with their URL.
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")
            # A 4xx from the API is an answer the screen handles (signed out, no result yet); a
            # missing module, stylesheet or picture is a bug, and so is any 5xx. The browser asks
            # for /favicon.ico on its own.
            if response.status >= 500
            or (
                response.status >= 400
                and "/api/" not in response.url
                and not response.url.endswith("/favicon.ico")
            )
            else None
        ),
    )
    return problems


async def open_app(context: Any, world_or_url: AppWorld | str, hash_path: str = "#/") -> Any:
    """A new page on the app at `hash_path`, once the shell has rendered; `page.problems` collects
    its errors."""
    base = world_or_url.base_url if isinstance(world_or_url, AppWorld) else world_or_url
    page = await context.new_page()
    page.problems = page_problems(page)
    await page.goto(base + "/" + hash_path)
    await page.locator("main#main").wait_for()
    return page


async def sign_in_as(page: Any, token: str, hash_path: str | None = None) -> None:
    """Signed in as the app keeps it (the token in localStorage), the page reloaded, then on to
    `hash_path` (after the reload: set before it, a signed-out app could route there first and be
    sent to the sign-in page)."""
    await page.evaluate("token => localStorage.setItem('gavel-token', token)", token)
    await page.reload()
    await page.locator("main#main").wait_for()
    if hash_path is not None:
        await page.evaluate("path => { location.hash = path; }", hash_path)


async def sign_up(
    page: Any, username: str, display_name: str = "", password: str = PASSWORD, *, then: str = "/"
) -> None:
    """Register through the app's form (any language), then wait to land on `then`."""
    await page.evaluate("next => { location.hash = '/signin?mode=register&next=' + next; }", then)
    form = page.locator("main form")
    await form.locator("#username").wait_for()
    await form.locator("#username").fill(username)
    await form.locator("#password").fill(password)
    if display_name:
        await form.locator("#display_name").fill(display_name)
    await form.locator("button[type=submit]").click()
    await page.wait_for_function(
        "() => !location.hash.startsWith('#/signin') && localStorage.getItem('gavel-token')"
    )
    await page.locator("main#main").wait_for()


# -- layout checks (run in the page) ----------------------------------------------------------------
_OVERFLOW_JS = """
() => {
  const width = window.innerWidth;
  const found = [];
  if (document.documentElement.scrollWidth > width) {
    found.push(`document ${document.documentElement.scrollWidth}px wide in a ${width}px viewport`);
  }
  // Inside a container that scrolls sideways on purpose (a gallery strip), being wide is the point.
  const scrollsSideways = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const x = getComputedStyle(p).overflowX;
      if (x === "auto" || x === "scroll" || x === "hidden" || x === "clip") return p !== document.body;
    }
    return false;
  };
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.position === "fixed" && box.width <= width) continue;
    if ((box.right > width + 0.5 || box.left < -0.5) && !scrollsSideways(el)) {
      const classes = typeof el.className === "string" ? el.className.trim().split(/\\s+/).join(".") : "";
      const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (classes ? "." + classes : "");
      found.push(`${name} spans ${Math.round(box.left)}..${Math.round(box.right)} of ${width}px`);
    }
  }
  return found.slice(0, 20);
}
"""

_TARGETS_JS = """
(minimum) => {
  const found = [];
  const main = document.querySelector("main") || document.body;
  const controls = main.querySelectorAll(
    "a[href], button, [role=button], [role=tab], input[type=checkbox], input[type=radio], select, summary");
  for (const el of controls) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (getComputedStyle(el).visibility === "hidden") continue;
    // A link inside running text is exempt (WCAG 2.5.8's inline exception).
    const inText = /^(P|LI|SPAN|SMALL|DD|TD|LABEL|STRONG|EM)$/;
    if (el.tagName === "A" && getComputedStyle(el).display === "inline" &&
        el.parentElement && inText.test(el.parentElement.tagName)) continue;
    // A checkbox or radio inside its label: the label is the target.
    if ((el.type === "checkbox" || el.type === "radio") && el.closest("label")) {
      const label = el.closest("label").getBoundingClientRect();
      if (label.height >= minimum - 0.5 && label.width >= minimum - 0.5) continue;
    }
    if (box.width < minimum - 0.5 || box.height < minimum - 0.5) {
      const text = (el.innerText || el.value || el.getAttribute("aria-label") || "").trim().slice(0, 30);
      const size = `${Math.round(box.width)}x${Math.round(box.height)}`;
      found.push(`${el.tagName.toLowerCase()} "${text}" is ${size}`);
    }
  }
  return found;
}
"""

_LABELS_JS = """
() => {
  const found = [];
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const byId = (id) => id && document.getElementById(id);
    const named = el.labels && [...el.labels].some((l) => l.textContent.trim()) ||
      (el.getAttribute("aria-label") || "").trim() ||
      (el.getAttribute("aria-labelledby") || "").split(/\\s+/).some(byId) ||
      (el.getAttribute("title") || "").trim();
    if (!named) found.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}[name=${el.name || ""}]`);
  }
  return found;
}
"""


async def no_horizontal_overflow(page: Any) -> list[str]:
    """What sticks out sideways: [] when the document is no wider than the viewport and no element
    reaches past its edges (outside containers that scroll sideways on purpose)."""
    found: list[str] = await page.evaluate(_OVERFLOW_JS)
    return found


async def small_targets(page: Any, minimum: int = 44) -> list[str]:
    """Buttons, links and toggles in the main content smaller than `minimum` × `minimum` CSS px
    (links in running text are exempt)."""
    found: list[str] = await page.evaluate(_TARGETS_JS, minimum)
    return found


async def unlabelled_inputs(page: Any) -> list[str]:
    """Inputs, selects and text areas with no accessible name (label, aria-label(ledby), title)."""
    found: list[str] = await page.evaluate(_LABELS_JS)
    return found


def hash_of(url: str) -> str:
    match = re.search(r"#.*$", url)
    return match.group(0) if match else "#/"
