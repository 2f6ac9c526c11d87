"""The articles' back office in headless chromium at 1280 × 800: an admin adds a source, previews a
body made of the whole XSS corpus (nothing runs), creates an article scheduled 2 s ahead with a head
image, and watches it go online by itself (the scheduler, on a clock that follows real time).
Screenshots under tests/artifacts/."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.clock import SystemClock
from gateway import rest_articles
from tests.admin.conftest import AppServer, png_bytes
from tests.admin.test_browser import Tab, browser, tab
from tests.community.xss_corpus import XSS_CORPUS

__all__ = ["browser", "tab"]

pytestmark = pytest.mark.browser

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))  # the tab's timezone_id
TRAP = """
window.__xssCalls = [];
window.__xss = function (n) { window.__xssCalls.push(n); };
"""


@contextlib.asynccontextmanager
async def real_time(server: AppServer) -> AsyncIterator[None]:
    """The app's fake clock follows the wall clock, and the article scheduler runs (0.2 s rounds)."""

    async def follow() -> None:
        while True:
            server.clock.set(SystemClock().now_ms())
            await asyncio.sleep(0.02)

    server.clock.set(SystemClock().now_ms())
    tasks = [asyncio.create_task(follow()), *await rest_articles.start(server.ctx, interval_seconds=0.2)]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def outside_problems(tab: Tab) -> list[str]:
    """The page's errors but the refusals of images from outside (the corpus links one; the admin's
    CSP refuses it, as it should)."""
    return [p for p in tab.problems if "Content Security Policy" not in p and "Failed to load" not in p]


async def test_an_article_goes_online_at_its_time(tab: Tab, tmp_path: Any) -> None:
    page, server = tab.page, tab.server
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.context.add_init_script(TRAP)
    dialogs: list[Any] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    async with real_time(server):
        await tab.sign_in()
        await page.goto(server.base_url + "/admin/articles")
        await page.fill("#sources input[name=name]", "Tech Daily 科技日报")
        await page.click("#sources button[type=submit]")
        await page.wait_for_selector("#sources [data-source]")

        await page.click("a[href='/admin/articles/new']")
        await page.fill("input[name=title]", "<b>Kilns</b> of the Song")
        await page.select_option("select[name=position]", "banner_big")
        await page.fill("input[name=weight]", "500")
        body = "## Hostile body\n\n" + "\n\n".join(payload for _, payload in XSS_CORPUS)
        await page.fill("textarea[name=body_md]", body)
        await page.click("button[name=preview]")
        await page.wait_for_selector("[data-preview] h2")
        assert (
            await page.locator("[data-preview] script, [data-preview] svg, [data-preview] iframe").count()
            == 0
        )
        handlers = await page.evaluate(
            """() => [...document.querySelectorAll('[data-preview] *')].flatMap(
                 el => [...el.attributes].map(a => a.name).filter(n => n.startsWith('on')))"""
        )
        assert handlers == []
        await tab.screenshot("article_preview")

        # Publish at now + 2 s, typed in the business time zone (Asia/Shanghai, the default).
        at = datetime.datetime.now(SHANGHAI) + datetime.timedelta(seconds=2)
        await page.fill("input[name=pub_at]", at.strftime("%Y-%m-%dT%H:%M:%S"))
        await page.check("input[name=publish]")
        await page.click("form[data-times] button[type=submit]:not([name])")
        await page.wait_for_selector("h1")
        assert await page.locator("h1").inner_text() == "<b>Kilns</b> of the Song"  # as text
        article_id = int(page.url.rsplit("/", 1)[1])
        assert await page.locator("[data-status]").first.get_attribute("data-status") == "scheduled"
        assert (await server.call("GET", f"/api/v1/articles/{article_id}")).status == 404

        image = tmp_path / "head.png"
        image.write_bytes(png_bytes(64, 40))
        await page.set_input_files("input[name=image]", str(image))
        await page.click("form[action$='/head-image'] button[type=submit]")
        await page.wait_for_selector("img.head-img")

        # It goes online by itself: reload until the status shows it (the scheduler's round).
        for _ in range(60):
            await page.reload()
            if await page.locator("[data-status]").first.get_attribute("data-status") == "online":
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the article never went online")
        public = await server.call("GET", f"/api/v1/articles/{article_id}")
        assert public.status == 200 and public.json["head_img"]["url"].endswith(".png")
        await tab.screenshot("article_online")
        await page.goto(server.base_url + "/admin/articles")
        row = page.locator(f"tr[data-article='{article_id}']")
        assert await row.locator("[data-status]").get_attribute("data-status") == "online"
        await tab.screenshot("articles_list")

    assert dialogs == []
    assert await page.evaluate("window.__xssCalls") == []
    assert outside_problems(tab) == []
