"""The degree back office in headless chromium: the cohort page (behind schedule, actions) at desktop
width and at 375 px, user text shown as text (no dialog from the payload). Screenshots under
tests/artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

from persistence.shop import ensure_shop_indexes
from tests.admin.conftest import AdminClient
from tests.admin.test_browser import Tab, browser, tab
from tests.admin.test_degree_pages import Cohort

__all__ = ["browser", "tab"]

pytestmark = pytest.mark.browser


async def test_cohort_page_in_a_browser(tab: Tab) -> None:
    await ensure_shop_indexes(tab.server.ctx.db)
    cohort = await Cohort(AdminClient(tab.server)).build()
    dialogs: list[Any] = []
    tab.page.on("dialog", lambda dialog: dialogs.append(dialog))
    await tab.sign_in()
    await tab.page.goto(f"{tab.server.base_url}/admin/degrees")
    await tab.page.click(f"tr[data-degree='{cohort.degree_id}'] a")
    await tab.page.wait_for_selector("table.cohort")
    row = tab.page.locator(f"tr[data-enrolment='{cohort.enrolment_id(cohort.students[0])}']")
    assert await row.locator("[data-behind]").inner_text() == "1 behind"
    assert "<script>" in await tab.page.locator("h1").inner_text()  # the degree's name, as text
    await tab.screenshot("degree_cohort")
    await tab.page.set_viewport_size({"width": 375, "height": 800})
    await tab.screenshot("degree_cohort_phone")
    await tab.page.goto(f"{tab.server.base_url}/admin/degrees/records")
    assert await tab.page.locator("tr[data-record]").count() == 1
    await tab.screenshot("degree_records")
    assert dialogs == []
    tab.assert_clean()
