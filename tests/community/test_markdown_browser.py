"""The XSS corpus rendered by render_markdown, in headless Chromium, on a page WITHOUT a Content
Security Policy (so nothing but the sanitiser stands between a payload and the browser): no trap is
called, no dialog opens, and the browser's own URL parser finds only http(s)/mailto links and
images. Mouse events are sent to every element, for the payloads that wait for one."""

from __future__ import annotations

import html
from typing import Any

import pytest

from community.markdown import render_markdown
from tests.admin.test_browser import browser
from tests.community.xss_corpus import XSS_CORPUS

__all__ = ["browser"]

pytestmark = pytest.mark.browser

ORIGIN = "https://articles.test"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>corpus</title>
<script>window.__xssCalls = []; window.__xss = function (n) { window.__xssCalls.push(n); };
window.alert = window.confirm = window.prompt = function (m) { window.__xssCalls.push("dialog:" + m); };
</script></head><body>{sections}</body></html>"""


async def test_no_payload_runs_in_a_browser(browser: Any) -> None:
    sections = "".join(
        f'<section data-name="{html.escape(name)}">{render_markdown(payload)}</section>'
        for name, payload in XSS_CORPUS
    )
    document = PAGE.replace("{sections}", sections)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = await context.new_page()
        dialogs: list[str] = []
        errors: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        page.on("pageerror", lambda error: errors.append(str(error)))

        async def serve(route: Any) -> None:
            if route.request.url.rstrip("/") == ORIGIN:
                await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=document)
            else:
                await route.abort()  # no image or link target is ever fetched for real

        await page.route("**/*", serve)
        await page.goto(ORIGIN + "/")
        # Hover and focus every element (onmouseover, onfocus... would fire now), then let timers run.
        count = await page.evaluate(
            """() => {
                const all = [...document.querySelectorAll('body *')];
                for (const el of all) {
                  const types = ['mouseover', 'mouseenter', 'focus', 'click', 'toggle', 'load', 'error'];
                  for (const type of types) {
                    if (type === 'click' && el.tagName === 'A') continue;  // would navigate away
                    el.dispatchEvent(new Event(type));
                  }
                }
                return all.length;
            }"""
        )
        assert count > len(XSS_CORPUS)
        await page.wait_for_timeout(300)
        assert await page.evaluate("window.__xssCalls") == []
        assert dialogs == [] and errors == []
        protocols = await page.evaluate(
            """() => [...document.querySelectorAll('a[href], img[src]')].map(
                 el => new URL(el.getAttribute('href') ?? el.getAttribute('src'), document.baseURI)
                   .protocol)"""
        )
        assert protocols and set(protocols) <= {"http:", "https:", "mailto:"}
        handlers = await page.evaluate(
            """() => [...document.querySelectorAll('body *')].flatMap(
                 el => [...el.attributes].map(a => a.name)
                   .filter(n => n.startsWith('on') || ['style', 'srcdoc', 'formaction'].includes(n)))"""
        )
        assert handlers == []
        tags = await page.evaluate(
            "() => [...new Set([...document.querySelectorAll('body *')].map(e => e.localName))]"
        )
        assert not {
            "script",
            "iframe",
            "svg",
            "object",
            "embed",
            "style",
            "form",
            "base",
            "meta",
            "link",
        } & set(tags)
    finally:
        await context.close()
