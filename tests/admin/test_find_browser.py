"""Finding things in headless chromium at 1280 × 800: the header's search box finds a user by phone
and an order by its number, opens the user's page and adds a support note; a session's times typed
in the business zone show back the same, whatever the browser's own zone (New York here).
Screenshots under tests/artifacts/."""

from __future__ import annotations

import datetime
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from persistence.mongo import from_ms, utc_now
from tests.admin.conftest import AppServer
from tests.admin.test_browser import TIMEOUT_MS, Tab, browser

__all__ = ["browser"]

pytestmark = pytest.mark.browser

UTC = datetime.UTC


@pytest.fixture
async def tab(browser: Any, app_server: AppServer, tmp_path: pathlib.Path) -> AsyncIterator[Tab]:
    app_server.ctx.media_dir = tmp_path / "media"
    # The browser is in another zone than the business (Asia/Shanghai): nothing may depend on it.
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id="America/New_York"
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        yield Tab(page, app_server)
    finally:
        await context.close()


async def test_search_a_phone_and_an_order_then_add_a_note(tab: Tab) -> None:
    page, server = tab.page, tab.server
    db = server.ctx.db
    user_id, _ = await server.register("meiling")
    await db.addresses.insert_one({"_id": 7101, "user_id": user_id, "name": "M", "phone": "13712345678"})
    await db.orders.insert_one(
        {
            "_id": 880011,
            "user_id": user_id,
            "lot_id": 1,
            "session_id": 1,
            "price": 2500_00,
            "status": 1,
            "created_at": utc_now(),
        }
    )
    await tab.sign_in()

    await page.fill("header form.search input[name=q]", "13712345678")
    await page.press("header form.search input[name=q]", "Enter")
    await page.wait_for_url(re.compile(r".*/admin/search\?q=13712345678$"))
    users = page.locator('[data-group="users"]')
    assert await users.locator("[data-count]").inner_text() == "(1)"
    assert await users.locator("tr.hit-exact a").first.inner_text() == "meiling"
    assert await page.input_value("header form.search input[name=q]") == "13712345678"  # kept
    await tab.screenshot("find_search_phone")

    await page.fill("header form.search input[name=q]", "880011")
    await page.press("header form.search input[name=q]", "Enter")
    await page.wait_for_url(re.compile(r".*q=880011$"))
    orders = page.locator('[data-group="auction_orders"]')
    assert await orders.locator("[data-count]").inner_text() == "(1)"
    assert "¥2,500.00" in await orders.inner_text()
    await orders.locator("a", has_text="meiling").click()
    await page.wait_for_url(re.compile(rf".*/admin/users/{user_id}$"))
    assert "13712345678" in await page.locator('[data-section="profile"]').inner_text()
    assert "(1)" in await page.locator('[data-section="orders"] h2').inner_text()

    await page.fill("[data-note-form] textarea[name=text]", "Asked to pay by Friday; <b>call back</b>")
    await page.click("[data-note-form] button[type=submit]")
    await page.wait_for_url(re.compile(rf".*/admin/users/{user_id}#notes$"))
    assert await page.locator("p.flash").inner_text() == "Note added."
    note = page.locator("[data-note]").first
    assert "Asked to pay by Friday; <b>call back</b>" in await note.inner_text()  # as text
    assert await page.locator("[data-note] b").count() == 0
    assert await db.audit.count_documents({"action": "user.note", "target": f"user:{user_id}"}) == 1
    await tab.screenshot("find_user_page")

    # The note in the audit log: who, the object linked to the user's page, what was added.
    await page.goto(server.base_url + "/admin/audit?action=user.note")
    row = page.locator('[data-audit-entry="user.note"]').first
    assert "text: (added) Asked to pay by Friday" in await row.inner_text()
    assert await row.locator(f'a[href="/admin/users/{user_id}"]').count() == 1
    await tab.screenshot("find_audit")
    tab.assert_clean()


async def test_session_times_typed_in_the_business_zone_show_back_the_same(tab: Tab) -> None:
    page, server = tab.page, tab.server
    year = from_ms(server.clock.now_ms()).year + 1
    await tab.sign_in()
    await page.goto(server.base_url + "/admin/sessions/new")
    assert "Asia/Shanghai (UTC+08:00)" in await page.locator("header .zone").inner_text()
    assert await page.get_attribute('meta[name="business-tz"]', "content") == "Asia/Shanghai"
    # Scripts format times in the business zone too (the browser itself is in New York).
    shown = await page.evaluate("() => window.gavelAdmin.formatTime(Date.UTC(2026, 11, 6, 12, 0, 5))")
    assert shown == "2026-12-06 20:00:05"
    typed = {
        "preview_start": f"{year}-12-06T18:00",
        "preview_end": f"{year}-12-06T19:00",
        "bidding_start": f"{year}-12-06T20:00",
        "bidding_end": f"{year}-12-06T21:30",
    }
    await page.fill("input[name=title]", "Night sale 夜场")
    for name, value in typed.items():
        await page.fill(f"input[name={name}]", value)
    await page.fill("input[name=deposit]", "0")
    await page.click("form.grid button[type=submit]")
    await page.wait_for_url(re.compile(r".*/admin/sessions/[0-9]+$"))
    session_id = int(page.url.rsplit("/", 1)[1])
    doc = await server.ctx.db.sessions.find_one({"_id": session_id})
    assert doc["bidding_start"] == datetime.datetime(year, 12, 6, 12, 0, tzinfo=UTC)  # stored in UTC
    for name, value in typed.items():
        assert await page.input_value(f"input[name={name}]") == value, name  # shown back as typed
    assert "Asia/Shanghai (UTC+08:00)" in await page.locator(".tz-note").inner_text()
    await tab.screenshot("find_session_times")
    tab.assert_clean()
