"""The exports in a real browser at 1280 × 800: every kind downloaded from the exports page, and
"Export CSV" from the orders list keeping its filter (Playwright, Debian's chromium)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.admin.conftest import AppServer
from tests.admin.exports_data import Seeded, parse, seed
from tests.admin.test_browser import TIMEOUT_MS, Tab, browser

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the module-scoped fixture, shared with test_browser.py


@pytest.fixture
async def wide_tab(browser: Any, app_server: AppServer, tmp_path: pathlib.Path) -> AsyncIterator[Tab]:
    app_server.ctx.media_dir = tmp_path / "media"
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id="Asia/Shanghai", accept_downloads=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        yield Tab(page, app_server)
    finally:
        await context.close()


async def download(tab: Tab, click: Any) -> tuple[str, list[dict[str, str]]]:
    """Run `click` (which starts a download) and return the file's suggested name and its rows."""
    async with tab.page.expect_download() as info:
        await click()
    done = await info.value
    path = await done.path()
    return done.suggested_filename, parse(await asyncio.to_thread(pathlib.Path(path).read_bytes))


async def test_every_export_downloads_from_the_exports_page(wide_tab: Tab) -> None:
    tab = wide_tab
    seeded: Seeded = await seed(tab.server)
    await tab.sign_in()
    page = tab.page
    await page.goto(tab.server.base_url + "/admin/exports")
    await tab.screenshot("exports-page")
    expected = {
        "orders": ("order_id", "701", "price_yuan", "1234.50"),
        "payments": ("out_trade_no", "ord-paid1", "amount_fen", "123450"),
        "refunds": ("refund_id", "801", "amount_yuan", "500.00"),
        "ledgers": ("ref", "seed-1", "amount_yuan", "2000.00"),
        "bids": ("seq", "2", "username", "zhang_san"),
        "enrolments": ("course_name", "Python 入门", "status", "valid"),
    }
    for kind, (key, value, column, cell) in expected.items():
        form = page.locator(f"form[data-export={kind}]")
        if kind == "bids":
            await form.locator("select[name=session]").select_option(str(seeded.session_id))
        name, rows = await download(tab, lambda form=form: form.locator("button").click())
        assert name.startswith(f"gavel-{kind}-") and name.endswith(".csv"), name
        matching = [row for row in rows if row[key] == value]
        assert len(matching) == 1, (kind, rows)
        assert matching[0][column] == cell, (kind, matching[0])
    # a filter typed on the page reaches the export
    orders = page.locator("form[data-export=orders]")
    await orders.locator("select[name=status]").select_option("1")
    _, rows = await download(tab, lambda: orders.locator("button").click())
    assert [r["order_id"] for r in rows] == ["702"]
    tab.assert_clean()


async def test_export_csv_from_the_orders_list_keeps_the_filter(wide_tab: Tab) -> None:
    tab = wide_tab
    await seed(tab.server)
    await tab.sign_in()
    page = tab.page
    await page.goto(tab.server.base_url + "/admin/orders")
    await page.click("nav.tabs.sub a:has-text('awaiting delivery')")
    await page.wait_for_url("**/admin/orders?status=2")
    name, rows = await download(tab, lambda: page.click("text=Export CSV"))
    assert name.startswith("gavel-orders-")
    assert [(r["order_id"], r["status_name"]) for r in rows] == [("701", "awaiting_delivery")]
    await tab.screenshot("orders-export-link")
    tab.assert_clean()
