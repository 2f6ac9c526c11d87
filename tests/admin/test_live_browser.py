"""The live monitor and its controls in a real browser at 1280 × 800 (Debian's chromium, Playwright).

Each control: click it on the monitor, the confirmation states the numbers, a reason is typed and
submitted, the monitor shows the new state, and the audit log holds one entry with the reason.
Screenshots go to tests/artifacts/ (monitor_session.png, monitor_lot.png, confirm_*.png).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backoffice.actions import Actor, AdminActions
from tests.admin.conftest import AppServer
from tests.admin.test_browser import ARTIFACTS, TIMEOUT_MS, Tab, browser
from tests.admin.test_live_pages import DEPOSIT, bid, pay_deposit

pytestmark = pytest.mark.browser
__all__ = ["browser"]
SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))


@pytest.fixture
async def tab(browser: Any, app_server: AppServer, tmp_path: Any) -> AsyncIterator[Tab]:
    app_server.ctx.media_dir = tmp_path / "media"
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="Europe/London")
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        yield Tab(page, app_server)
    finally:
        await context.close()


class Live:
    """A bidding session (lot A: reserve ¥150, deposit ¥500, bids by alice ¥100 then bob ¥120;
    lot B: no bid) and a signed-in admin on lot A's monitor."""

    def __init__(self, tab: Tab) -> None:
        self.tab = tab
        self.page = tab.page
        self.server = tab.server

    async def build(self) -> Live:
        server = self.server
        self.session_id = await server.create_session(title="Evening sale 夜场")
        self.lot_a = await server.create_lot(
            self.session_id,
            catalogue_no="A-12",
            title="Celadon bowl 青瓷碗",
            start_price=10_000,
            unit=1_000,
            reserve_price=15_000,
            deposit=DEPOSIT,
        )
        self.lot_b = await server.create_lot(
            self.session_id, catalogue_no="B-1", title="Tea set", start_price=5_000
        )
        await server.start_bidding(self.session_id)
        self.alice_id, self.alice = await server.register("alice_ui")
        self.bob_id, self.bob = await server.register("bob_ui")
        for user_id, token in ((self.alice_id, self.alice), (self.bob_id, self.bob)):
            await server.credit(user_id, 10_000_00)
            await pay_deposit(server, token, self.session_id, self.lot_a)
        assert (await bid(server, self.alice, self.lot_a, 10_000))["type"] == "accepted"
        assert (await bid(server, self.bob, self.lot_a, 12_000))["type"] == "accepted"
        await self.tab.sign_in()
        return self

    @property
    def lot_monitor(self) -> str:
        return f"{self.server.base_url}/admin/lots/{self.lot_a}/monitor"

    @property
    def session_monitor(self) -> str:
        return f"{self.server.base_url}/admin/sessions/{self.session_id}/monitor"

    async def confirm(
        self, control: str, numbers: list[str], reason: str, *, shot: str, fill: Any = None
    ) -> str:
        """Click the control, check the confirmation's numbers, submit with a reason; the flash."""
        page = self.page
        await page.locator(f'[data-control="{control}"]').first.click()
        await page.locator("#confirm").wait_for()
        stated = re.sub(r"\s+", " ", await page.text_content("#confirm") or "")
        for number in numbers:
            assert number in stated, (number, stated)
        if fill is not None:
            await fill(page)
        await page.fill("textarea[name=reason]", reason)
        await page.screenshot(path=str(ARTIFACTS / f"confirm_{shot}.png"))
        await page.click("[data-confirm-submit]")
        flash = page.locator("p.flash")
        await flash.wait_for()
        return await flash.text_content() or ""

    async def audited(self, action: str, reason: str) -> dict[str, Any]:
        entry = await self.server.ctx.db.audit.find_one({"action": action, "reason": reason})
        assert entry is not None, f"no {action} audit entry with the reason {reason!r}"
        assert entry["admin_username"] == "admin" and entry["surface"] == "ui"
        return dict(entry)

    def actor(self) -> Actor:
        return Actor(1, "admin", True, "127.0.0.1", "ui", frozenset({"owner"}))

    @property
    def actions(self) -> AdminActions:
        actions = self.server.ctx.admin_actions
        assert actions is not None
        return actions


@pytest.fixture
async def live(tab: Tab) -> Live:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return await Live(tab).build()


async def test_session_monitor_shows_who_leads_live(live: Live) -> None:
    page, server = live.page, live.server
    await page.goto(live.session_monitor)
    await page.wait_for_selector("#conn[data-state=live]")
    row = page.locator(f"tr[data-lot-id='{live.lot_a}']")
    assert await row.locator("[data-field=leader_user]").text_content() == f"bob_ui #{live.bob_id}"
    assert "2 · ¥1,000.00" in (await row.locator("[data-field=deposits]").text_content() or "")
    assert "not met" in (await row.locator("[data-field=reserve]").text_content() or "")
    await page.evaluate("window.__sameDocument = true")
    assert (await bid(server, live.alice, live.lot_a, 16_000))["type"] == "accepted"
    await row.locator(f"[data-field=leader_user]:text-is('alice_ui #{live.alice_id}')").wait_for()
    await row.locator("[data-field=reserve_met]:text-is('met')").wait_for()
    assert await page.evaluate("window.__sameDocument") is True
    watchers = await page.text_content("[data-total=watchers]") or ""
    assert watchers.startswith("1 viewers")  # this page's own socket
    await page.screenshot(path=str(ARTIFACTS / "monitor_session.png"), full_page=True)
    live.tab.assert_clean()


async def test_lot_monitor_adds_bids_live_with_real_users(live: Live) -> None:
    page, server = live.page, live.server
    await page.goto(live.lot_monitor)
    await page.wait_for_selector("#conn[data-state=live]")
    assert await page.locator("#history tbody tr").count() == 2
    assert await page.locator("#chart canvas").count() == 1
    assert (await bid(server, live.alice, live.lot_a, 13_000))["type"] == "accepted"
    await page.locator("#history tbody tr").nth(2).wait_for()
    newest = await page.text_content("#history tbody tr:first-child") or ""
    assert f"alice_ui #{live.alice_id}" in newest and "¥130.00" in newest
    assert server.ctx.pseudonym(live.session_id, live.alice_id) in newest
    # Times are the business zone's (Asia/Shanghai), whatever the browser's zone (London here).
    at = datetime.datetime.fromtimestamp(server.clock.now_ms() / 1000, SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert at in newest
    await page.locator("#chart-note:has-text('3 price point(s)')").wait_for()
    await page.screenshot(path=str(ARTIFACTS / "monitor_lot.png"), full_page=True)
    live.tab.assert_clean()


async def test_a_confirmation_can_be_cancelled(live: Live) -> None:
    page = live.page
    await page.goto(live.lot_monitor)
    await page.locator('[data-control="withdraw"]').click()
    stated = await page.text_content("#confirm") or ""
    assert "2 deposits (¥1,000.00) refunded to 2 bidders" in stated and "The lot closes unsold" in stated
    await page.click("#confirm a.button.secondary")
    await page.wait_for_url(live.lot_monitor)
    assert int(live.server.engine.book.lots[live.lot_a].state) == 3  # nothing happened
    assert await live.server.ctx.db.audit.count_documents({"action": "lot.withdraw"}) == 0


async def test_pause_a_lot(live: Live) -> None:
    page = live.page
    await page.goto(live.lot_monitor)
    flash = await live.confirm(
        "pause", ["Pause lot A-12", "2 bidders, 2 deposits ¥1,000.00 held"], "bidder dispute", shot="pause"
    )
    assert "paused" in flash
    assert await page.locator("#lot-paused").is_visible()
    assert await page.locator('[data-control="resume"]').count() == 1
    assert await page.locator('[data-control="pause"]').count() == 0
    await live.audited("lot.pause", "bidder dispute")


async def test_resume_a_lot(live: Live) -> None:
    await live.actions.lot_pause(live.actor(), live.lot_a, "set-up")
    page = live.page
    await page.goto(live.lot_monitor)
    flash = await live.confirm(
        "resume", ["Resume lot A-12", "bidding reopens for 2 bidders"], "settled", shot="resume"
    )
    assert "resumed" in flash
    assert await page.locator("#lot-paused").is_hidden()
    assert await page.locator('[data-control="pause"]').count() == 1
    await live.audited("lot.resume", "settled")


async def test_extend_a_lot(live: Live) -> None:
    page, lot = live.page, live.server.engine.book.lots[live.lot_a]
    new_end = lot.ends_at - lot.ends_at % 60_000 + 30 * 60_000
    typed = datetime.datetime.fromtimestamp(new_end / 1000, SHANGHAI)

    async def fill(page: Any) -> None:
        await page.fill("input[name=ends_at]", typed.strftime("%Y-%m-%dT%H:%M"))

    await page.goto(live.lot_monitor)
    flash = await live.confirm(
        "extend", ["Extend lot A-12", "Asia/Shanghai"], "late start", shot="extend", fill=fill
    )
    assert typed.strftime("%Y-%m-%d %H:%M") in flash
    assert live.server.engine.book.lots[live.lot_a].ends_at == new_end
    assert typed.strftime("%Y-%m-%d %H:%M") in (await page.text_content("[data-field=ends_at]") or "")
    await live.audited("lot.extend", "late start")


async def test_withdraw_a_lot(live: Live) -> None:
    page = live.page
    await page.goto(live.lot_monitor)
    flash = await live.confirm(
        "withdraw",
        ["Withdraw lot A-12", "2 deposits (¥1,000.00) refunded to 2 bidders", "The lot closes unsold"],
        "consignor withdrew",
        shot="withdraw",
    )
    assert "withdrawn" in flash
    assert "unsold" in (await page.text_content("#lot-state") or "")
    # A closed lot offers nothing (a bidder may still be blocked, on every lot).
    assert await page.locator("#lot-controls [data-control], [data-control=void]").count() == 0
    await live.audited("lot.withdraw", "consignor withdrew")


async def test_void_a_bid(live: Live) -> None:
    page = live.page
    await page.goto(live.lot_monitor)
    # The newest line is bob's ¥120 bid: voiding it gives the lot back to alice at ¥100.
    flash = await live.confirm(
        "void",
        ["Void bid #2 (bob_ui, ¥120.00)", "Price falls from ¥120.00 to ¥100.00, leader becomes alice_ui"],
        "typo: meant 102",
        shot="void",
    )
    assert "voided" in flash
    lot = live.server.engine.book.lots[live.lot_a]
    assert (lot.price, lot.leader) == (10_000, live.alice_id)
    voided = page.locator("#history tr.voided")
    assert await voided.count() == 1
    assert "typo: meant 102" in (await voided.text_content() or "")
    assert await voided.evaluate("tr => getComputedStyle(tr.cells[2]).textDecorationLine") == "line-through"
    await live.audited("bid.void", "typo: meant 102")


async def test_block_a_bidder(live: Live) -> None:
    page = live.page
    await page.goto(live.lot_monitor)
    flash = await live.confirm(
        "block",
        ["Block bidder bob_ui", "They cannot bid in any session until unblocked"],
        "fraud",
        shot="block",
    )
    assert "blocked" in flash
    row = page.locator(f"tr[data-user-id='{live.bob_id}']")
    assert "blocked" in (await row.text_content() or "")
    assert await row.locator('[data-control="unblock"]').count() == 1
    assert (await bid(live.server, live.bob, live.lot_a, 20_000))["type"] == "rejected"
    await live.audited("bidder.block", "fraud")


async def test_unblock_a_bidder(live: Live) -> None:
    await live.actions.bidder_block(live.actor(), live.bob_id, "set-up")
    page = live.page
    await page.goto(live.lot_monitor)
    flash = await live.confirm("unblock", ["Unblock bidder bob_ui"], "cleared by support", shot="unblock")
    assert "may bid again" in flash
    row = page.locator(f"tr[data-user-id='{live.bob_id}']")
    assert await row.locator('[data-control="block"]').count() == 1
    await live.audited("bidder.unblock", "cleared by support")


async def test_pause_and_resume_the_session(live: Live) -> None:
    page = live.page
    await page.goto(live.session_monitor)
    flash = await live.confirm(
        "session-pause",
        ["Pause session Evening sale 夜场", "2 lots bidding stop; 2 bidders, 2 deposits ¥1,000.00 held"],
        "stream down",
        shot="session_pause",
    )
    assert "paused" in flash
    assert await page.locator("[data-field=paused]:visible").count() == 2
    await live.audited("session.pause", "stream down")
    flash = await live.confirm(
        "session-resume",
        ["Resume session Evening sale 夜场", "2 paused lots reopen"],
        "stream back",
        shot="session_resume",
    )
    assert "resumed" in flash
    assert await page.locator("[data-field=paused]:visible").count() == 0
    await live.audited("session.resume", "stream back")
