"""The community in the bidder app (issue 23), in chromium at 390 × 844 (Chinese) and 1280 × 800
(English): two users in two browser contexts follow each other, one posts with two images, the other
sees it under "following", comments, the first replies, the second answers the reply (which names
whom it answers), and likes and comments move in the other context without a reload; an article is
liked, collected and commented, and shows in my collections; posts, comments and bios made of
hostile text render as text and run nothing.

Against the real gateway when it serves the community (feed and articles), else against
tests/gateway/community_fake.py, an in-memory fake of api.md's REST and frames routed into the
browser (sign-in, lots and the socket are the real gateway's either way): tests/gateway/community_world.py.
"""

from __future__ import annotations

import re
import struct
import unicodedata
import zlib
from typing import Any

import pytest

from tests.community.xss_corpus import XSS_CORPUS
from tests.gateway.app_kit import (
    DESKTOP,
    SMALL_PHONE,
    AppWorld,
    app_world,  # noqa: F401  (a fixture)
    browser,  # noqa: F401  (a fixture: the admin tests' chromium)
    new_context,
    no_horizontal_overflow,
    open_app,
    phone_context,
    sign_in_as,
    small_targets,
    unlabelled_inputs,
)
from tests.gateway.community_world import FakeCommunity, RealCommunity, community_for

pytestmark = pytest.mark.browser

# Hostile text: the articles helper's corpus (every payload calls `window.__xss(n)` or `alert`); a trap
# counts the calls, and dialogs are counted too.
CORPUS = [text for _, text in XSS_CORPUS]
# What a post or comment can hold (255 characters, no control characters but line breaks).
XSS = [text for text in CORPUS if len(text) <= 255 and not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text)]
TRAP = "window.__xssCalls = []; window.__xss = (n) => { window.__xssCalls.push(n); };"


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid 2 × 2 PNG (the app checks the bytes, not the name)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(colour) * 2
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * 2))
        + chunk(b"IEND", b"")
    )


async def user(world: AppWorld, name: str) -> tuple[int, str, str]:
    """A registered user with a display name: (user_id, token, name)."""
    user_id, token = await world.funded_bidder(balance=0)
    answer = await world.server.call("PATCH", "/api/v1/me", {"display_name": name}, token=token)
    assert answer.status == 200, answer.body
    return user_id, token, name


async def community(
    world: AppWorld, users: list[tuple[int, str, str]], needs: tuple[str, ...] = ("feed",)
) -> FakeCommunity | RealCommunity:
    return await community_for(world, users, needs)


async def visit(page: Any, path: str) -> None:
    await page.evaluate("path => { location.hash = path; }", path)
    await page.wait_for_function("() => !document.querySelector('main [role=status].state')")


async def context_for(chromium: Any, size: str) -> Any:
    if size == "phone":
        return await phone_context(chromium, locale="zh-CN")
    return await new_context(chromium, DESKTOP, locale="en")


async def checked(page: Any) -> None:
    """No sideways scroll, 44 px targets, labelled inputs, no script errors."""
    assert await no_horizontal_overflow(page) == []
    assert await small_targets(page) == []
    assert await unlabelled_inputs(page) == []
    assert page.problems == []


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_follow_post_reply_like_live(browser: Any, app_world: AppWorld, size: str) -> None:  # noqa: F811
    ann = await user(app_world, f"Ann {size}")
    ben = await user(app_world, f"Ben {size}")
    c = await community(app_world, [ann, ben])
    topic = await c.topic()
    ann_ctx, ben_ctx = await context_for(browser, size), await context_for(browser, size)
    try:
        for context in (ann_ctx, ben_ctx):
            await c.install(context)
        a = await open_app(ann_ctx, app_world, "#/")
        await sign_in_as(a, ann[1])
        b = await open_app(ben_ctx, app_world, "#/")
        await sign_in_as(b, ben[1])

        # The 4th tab leads to the feed; follow each other from the profiles.
        await a.locator(".tabbar a[href='#/community']").click()
        await a.locator("main .cm-tabs").wait_for()
        await checked(a)
        for page, other in ((a, ben), (b, ann)):
            await visit(page, f"/community/user/{other[0]}")
            await page.locator("main .cm-follow").click()
            await page.wait_for_function(
                "() => document.querySelector('main .cm-follow').getAttribute('aria-pressed') === 'true'"
            )
            assert "1" in await page.locator("main .cm-counts").inner_text()
        await checked(b)

        # Ann posts with a topic, a place and two images (previews shown before sending).
        await visit(a, "/community/new")
        await a.fill("#cm-text", "青瓷碗到了 The celadon bowl arrived")
        assert (
            await a.locator("#cm-text-count").inner_text()
            == f"{len('青瓷碗到了 The celadon bowl arrived')} / 255"
        )
        await a.select_option("#cm-topic", str(topic))
        await a.fill("#cm-place", "杭州 Hangzhou")
        await a.set_input_files("#cm-images", files=[
            {"name": "one.png", "mimeType": "image/png", "buffer": png()},
            {"name": "two.png", "mimeType": "image/png", "buffer": png((30, 30, 200))},
        ])  # fmt: skip
        await a.locator(".cm-previews li").nth(1).wait_for()
        # A file that is not an image is refused here, before any upload.
        await a.set_input_files(
            "#cm-images", files=[{"name": "x.png", "mimeType": "image/png", "buffer": b"MZ not an image"}]
        )
        await a.locator("main .form-error").wait_for()
        assert await a.locator(".cm-previews li").count() == 2
        await checked(a)
        await a.locator("main form button.button.primary.block").click()
        await a.wait_for_function("() => /#\\/community\\/post\\/\\d+$/.test(location.hash)")
        post_id = int((await a.evaluate("() => location.hash")).rsplit("/", 1)[1])
        await a.locator("main .cm-images img").nth(1).wait_for()
        assert await a.locator("main .cm-images img").count() == 2
        await a.evaluate("() => { window.__noReload = true; }")

        # Ben sees it under "following" and opens it: one view, counted once.
        await visit(b, "/community?tab=following")
        card = b.locator("main .cm-post", has_text="The celadon bowl arrived")
        await card.wait_for()
        assert await card.locator(".cm-images img").count() == 2
        await checked(b)
        await card.locator("a.cm-open").click()
        await b.locator("#cm-comment").wait_for()
        await b.evaluate("() => { window.__noReload = true; }")
        await checked(b)

        # Ben likes: Ann's count moves without a reload.
        await b.locator("main .cm-post .cm-like").click()
        await a.wait_for_function(
            "() => document.querySelector('main .cm-post .cm-like').innerText.includes('1')"
        )
        # Ben comments: it appears on Ann's page live.
        await b.fill("#cm-comment", "Lovely glaze 釉色很美")
        await b.locator(".cm-composer button.button.primary").click()
        await a.locator(".cm-comment", has_text="Lovely glaze").wait_for()
        # Ann replies to it; Ben sees the reply appear under his comment.
        await (
            a.locator(".cm-comment", has_text="Lovely glaze")
            .locator("button", has_text="回复" if size == "phone" else "Reply")
            .click()
        )
        await a.fill("#cm-comment", "Thank you!")
        await a.locator(".cm-composer button.button.primary").click()
        reply = b.locator(".cm-comment.reply", has_text="Thank you!")
        await reply.wait_for()
        # Ben answers the reply: his answer names Ann, on both pages.
        await reply.locator("button", has_text="回复" if size == "phone" else "Reply").click()
        await b.fill("#cm-comment", "You're welcome")
        await b.locator(".cm-composer button.button.primary").click()
        answered = a.locator(".cm-comment.reply", has_text="You're welcome")
        await answered.wait_for()
        assert ann[2] in await answered.locator(".cm-reply-to").inner_text()
        # Ann likes Ben's comment: Ben's comment count moves live.
        await a.locator(".cm-comment", has_text="Lovely glaze").locator(".cm-like").first.click()
        await b.wait_for_function(
            "() => [...document.querySelectorAll('.cm-comment')]"
            ".find((c) => c.innerText.includes('Lovely glaze'))"
            ".querySelector('.cm-like').innerText.includes('1')"
        )
        counts = await a.locator("main .cm-post .cm-actions").inner_text()
        assert "3" in counts  # three comments, live
        assert await a.evaluate("() => window.__noReload === true") and await b.evaluate(
            "() => window.__noReload === true"
        )
        assert await c.counts(post_id) == {"likes": 1, "comments": 3, "views": 2}  # Ann's view and Ben's
        await checked(a)
        await checked(b)

        # Ben reports the post (a sheet of reasons); a second report is refused with its reason.
        said = ("已举报", "举报过") if size == "phone" else ("Reported", "already")
        for answer in said if await c.can_report() else ():
            await b.locator("main .cm-post .cm-act", has_text="举报" if size == "phone" else "Report").click()
            await b.locator(".sheet input[value=abuse]").check()
            await b.locator(".sheet button.button.primary").click()
            await b.locator(".toast", has_text=answer).wait_for()
        assert await c.reports() == (["abuse"] if await c.can_report() else [])
        await b.keyboard.press("Escape")

        # Ann deletes her post (after confirming): back to the feed, the post gone.
        a.once("dialog", lambda dialog: dialog.accept())
        await a.locator("main .cm-post .cm-act", has_text="删除" if size == "phone" else "Delete").click()
        await a.wait_for_function("() => location.hash === '#/community'")
        assert await c.counts(post_id) is None
    finally:
        await ann_ctx.close()
        await ben_ctx.close()


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_article_collect_comment(browser: Any, app_world: AppWorld, size: str) -> None:  # noqa: F811
    reader = await user(app_world, f"Reader {size}")
    c = await community(app_world, [reader], needs=("articles",))
    md, html = "## Intro\n\nQubits **entangle**.", "<h2>Intro</h2><p>Qubits <strong>entangle</strong>.</p>"
    article = await c.article(f"量子计算入门 Quantum computing {size}", md, html, weight=5)
    await c.article(f"Banner story {size}", "big", "<p>big</p>", position="banner_big", weight=1000)
    context = await context_for(browser, size)
    try:
        await c.install(context)
        page = await open_app(context, app_world, "#/")
        await sign_in_as(page, reader[1], "/community")
        await page.locator(".cm-banner", has_text="Banner story").wait_for()
        await visit(page, "/community/articles")
        await page.locator(".cm-art-card", has_text="Quantum computing").click()
        await page.locator("main .cm-md h2").wait_for()  # the server's HTML, rendered as HTML
        assert "entangle" in await page.locator("main .cm-md strong").inner_text()
        await page.locator("main .cm-article .cm-like").click()
        await page.locator("main .cm-article button[aria-pressed=true]").first.wait_for()
        await page.locator(
            "main .cm-article .cm-act", has_text="收藏" if size == "phone" else "Collect"
        ).click()
        await page.wait_for_function(
            "() => document.querySelectorAll('main .cm-article button[aria-pressed=true]').length === 2"
        )
        long = "深" * 1000  # articles take 1024 characters; posts 255
        await page.fill("#cm-comment", long)
        assert "1000 / 1024" in await page.locator("#cm-comment-count").inner_text()
        await page.locator(".cm-composer button.button.primary").click()
        await page.locator(".cm-comment", has_text="深深深").wait_for()
        await checked(page)
        assert await c.collected(reader, article)
        # A course is collected from its page (the button starts unpressed: PUT is idempotent).
        course, _ = await app_world.shop.course(await app_world.shop.category(), 99_00, name=f"Glazes {size}")
        await visit(page, f"/course/{course}")
        collect = page.locator("main button[aria-pressed]", has_text="收藏" if size == "phone" else "Collect")
        await collect.click()
        await page.locator("main button[aria-pressed=true]").wait_for()
        await visit(page, "/me/collections")
        await page.locator(".cm-collection", has_text="Quantum computing").wait_for()
        await checked(page)
        await visit(page, "/me/collections?kind=course")
        await page.locator(f".cm-collection a[href='#/course/{course}']").wait_for()
        assert await page.locator(".cm-collection").count() == 1
    finally:
        await context.close()


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_hostile_text_renders_as_text(browser: Any, app_world: AppWorld, size: str) -> None:  # noqa: F811
    author = await user(app_world, "<img src=x onerror=alert(9)>")
    c = await community(app_world, [author], needs=("feed", "articles"))
    topic = await c.topic()
    # An article of the whole corpus: its body is the server's sanitised HTML (the fake has none).
    hostile = await c.article(f"Hostile {size}", "\n\n".join(CORPUS), "<p>sanitised</p>") if c.real else None
    posts = [await c.post(author, text, topic=topic, place=text.splitlines()[0][:64]) for text in XSS]
    first = posts[0]
    for text in XSS:
        await c.comment(author, first, text)
    await c.bio(author, XSS[0][:120])
    context = await context_for(browser, size)
    try:
        await c.install(context)
        await context.add_init_script(TRAP)
        page = await open_app(context, app_world, "#/")
        dialogs: list[str] = []

        async def on_dialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)
        await sign_in_as(page, author[1], "/community")
        await scroll_all(page, "main .cm-post", len(XSS))  # the feed, every page of it
        # As typed, not as markup (invisible characters aside: the server may drop them).
        shown = visible(await page.locator("main").inner_text())
        one_line = [visible(text) for text in XSS if "\n" not in text and text == text.strip()]
        assert [text for text in one_line if text not in shown] == []
        await visit(page, f"/community/post/{first}")
        await scroll_all(page, ".cm-comment", len(XSS))
        await visit(page, f"/community/user/{author[0]}")
        await page.locator("main .cm-profile").wait_for()
        assert XSS[0][:120] in await page.locator("main .cm-profile").inner_text()
        if hostile is not None:
            await visit(page, f"/community/article/{hostile}")
            await page.locator("main .cm-md").wait_for()
        assert await page.evaluate("() => [typeof window.__xss, window.__xssCalls]") == ["function", []]
        assert (
            await page.locator("main img[src=x], main script, main iframe, main svg, main object").count()
            == 0
        )
        assert dialogs == []
        # The page's CSP keeps images to our own host: an article's outside picture is refused (said).
        outside = 'violates the following Content Security Policy directive: "img-src'
        assert [problem for problem in page.problems if outside not in problem] == []
    finally:
        await context.close()


def visible(text: str) -> str:
    """`text` without its invisible (format) characters, NFC."""
    return unicodedata.normalize("NFC", "".join(ch for ch in text if unicodedata.category(ch) != "Cf"))


async def scroll_all(page: Any, selector: str, count: int) -> None:
    """Scroll to the end of a paged list until `count` items show (infinite scroll / load more)."""
    items = page.locator(selector)
    await items.first.wait_for()
    for _ in range(count):
        if await items.count() >= count:
            break
        # Counted before scrolling: the next page may arrive before a count taken after the scroll.
        seen = await items.count()
        await page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")  # the list's end in view
        await page.wait_for_function(
            "([selector, seen]) => document.querySelectorAll(selector).length > seen", arg=[selector, seen]
        )
    assert await items.count() == count


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_lot_card_price_and_my_profile(browser: Any, app_world: AppWorld, size: str) -> None:  # noqa: F811
    me = await user(app_world, f"Collector {size}")
    c = await community(app_world, [me])
    link = (
        "lot",
        app_world.plain_lot,
        "Celadon bowl",
        100_00,
        app_world.live_session,
    )  # title etc.: the fake's
    await c.post(me, "Bidding on this", link=link)
    context = await context_for(browser, size)
    try:
        await c.install(context)
        page = await open_app(context, app_world, "#/")
        await sign_in_as(page, me[1], "/community")
        card = page.locator("main .cm-post .cm-link")
        await card.wait_for()
        assert await card.get_attribute("href") == f"#/lot/{app_world.plain_lot}"
        await page.wait_for_function(
            "() => document.querySelector('main .cm-link').innerText.includes('¥100.00')"
        )
        # A bid elsewhere: the card's price follows the session's live price, no reload.
        bidder = await app_world.funded_bidder()
        assert (await app_world.bid(bidder[1], app_world.plain_lot, 110_00))["type"] == "accepted"
        await page.wait_for_function(
            "() => document.querySelector('main .cm-link').innerText.includes('¥110.00')"
        )
        await checked(page)

        # My profile: an avatar (checked here, then uploaded) and a bio, shown on my public page.
        await visit(page, "/me/profile")
        await page.locator("#cm-bio").wait_for()
        await page.set_input_files(
            "#cm-avatar", files=[{"name": "me.png", "mimeType": "image/png", "buffer": png()}]
        )
        await page.locator("main img.cm-avatar").wait_for()
        await page.fill("#cm-bio", "宋瓷 <b>collector</b>")
        await page.locator("main form button.button.primary.block").click()
        await page.locator(".toast.good").last.wait_for()
        await checked(page)
        await visit(page, f"/community/user/{me[0]}")
        await page.locator("main .cm-profile img.cm-avatar").wait_for()
        assert "宋瓷 <b>collector</b>" in await page.locator("main .cm-profile").inner_text()
    finally:
        await context.close()


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
async def test_every_screen_fits_a_small_phone(browser: Any, app_world: AppWorld, locale: str) -> None:  # noqa: F811
    """Every community screen at 360 × 740, signed out and in: no sideways scroll, 44 px targets,
    labelled inputs, no script errors; the feed's second page comes by scrolling."""
    writer = await user(app_world, f"Writer {locale}")
    c = await community(app_world, [writer], needs=("feed", "articles"))
    topic = await c.topic()
    posts = [
        await c.post(writer, f"Post {n} 第{n}条 " + "瓷" * 40, topic=topic, place="景德镇") for n in range(25)
    ]
    await c.comment(writer, posts[-1], "A comment 一条评论")
    md = "## Intro\n\nText with a [link](https://example.com)."
    article = await c.article(f"Article {locale}", md, "<h2>Intro</h2><p>Text</p>")
    context = await phone_context(browser, locale=locale, size=SMALL_PHONE)
    try:
        await c.install(context)
        page = await open_app(context, app_world, "#/community")
        signed_out = [
            "/community", "/community?tab=topics", f"/community/topic/{topic}",
            f"/community/post/{posts[-1]}", f"/community/user/{writer[0]}",
            f"/community/user/{writer[0]}?tab=followers", "/community/articles",
            f"/community/article/{article}",
        ]  # fmt: skip
        for path in signed_out:
            await visit(page, path)
            await page.locator("main .cm-page").first.wait_for()
            await checked(page)
        # Infinite scroll: 20 posts, then the rest as the end of the list comes into view.
        await visit(page, "/community")
        await page.locator("main .cm-post").nth(19).wait_for()
        await page.locator("main .cm-post").last.scroll_into_view_if_needed()
        await page.locator("main .cm-post").nth(24).wait_for()
        assert await page.locator("main .cm-post").count() == 25

        await sign_in_as(page, writer[1])
        for path in [
            *signed_out,
            "/community/new",
            "/me/profile",
            "/me/collections",
            "/community?tab=following",
        ]:
            await visit(page, path)
            await page.locator("main .cm-page").first.wait_for()
            await checked(page)
    finally:
        await context.close()
