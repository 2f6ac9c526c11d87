from __future__ import annotations
from typing import Any
import pytest
from tests.gateway.app_kit import AppWorld, app_world, browser, open_app, sign_in_as  # noqa: F401
from tests.gateway.test_app_community import user, community, context_for, png, visit, XSS

pytestmark = pytest.mark.browser

@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_shots(browser: Any, app_world: AppWorld, size: str) -> None:  # noqa: F811
    ann = await user(app_world, "Ann 安")
    ben = await user(app_world, "Ben 本")
    fake = await community(app_world, [ann, ben])
    fake.add_article("量子计算入门 Quantum computing for collectors", "<h2>Intro</h2><p>Qubits <strong>entangle</strong>.</p><ul><li>one</li></ul><blockquote>quote</blockquote>", weight=5)
    fake.add_article("Banner: 春拍回顾 Spring review", "<p>big</p>", position="banner_big")
    fake.add_article("Small one", "<p>s</p>", position="banner_small")
    fake.add_article("Small two", "<p>s</p>", position="banner_small")
    fake.media["1.png"] = png(); fake.media["2.png"] = png((20, 100, 200)); fake.media["3.png"] = png((20, 180, 20))
    for n, imgs in ((10, ["/fake-media/1.png"]), (11, ["/fake-media/1.png", "/fake-media/2.png", "/fake-media/3.png", "/fake-media/2.png"]), (12, [])):
        fake.posts[n] = {"id": n, "user_id": ann[0] if n != 11 else ben[0], "text": f"青瓷碗到了 The celadon bowl arrived, post {n}\nSecond line.", "images": imgs, "topic_id": 1, "place": "杭州 Hangzhou"}
    fake.comments[500] = {"id": 500, "target": "post:11", "user_id": ann[0], "text": "Lovely glaze 釉色很美", "root": None, "depth": 1, "reply_to": None, "reply_to_user": None}
    fake.comments[501] = {"id": 501, "target": "post:11", "user_id": ben[0], "text": "Thanks!", "root": 500, "depth": 2, "reply_to": 500, "reply_to_user": ann[0]}
    fake.comments[502] = {"id": 502, "target": "post:11", "user_id": ann[0], "text": "Where from?", "root": 500, "depth": 3, "reply_to": 501, "reply_to_user": ben[0]}
    fake._profile(ann[0])["bio"] = "Collector of Song ceramics. 宋瓷收藏爱好者。"
    ctx = await context_for(browser, size)
    await fake.install(ctx)
    page = await open_app(ctx, app_world, "#/")
    await sign_in_as(page, ann[1])
    for name, path in (("feed", "/community"), ("post", "/community/post/11"), ("new", "/community/new"), ("user", f"/community/user/{ann[0]}"),
                       ("topics", "/community?tab=topics"), ("topic", "/community/topic/1"), ("articles", "/community/articles"), ("article", "/community/article/1"),
                       ("me-profile", "/me/profile"), ("collections", "/me/collections")):
        await visit(page, path)
        await page.wait_for_timeout(400)
        await page.screenshot(path=f"/tmp/shots/{name}-{size}.png", full_page=False)
    await ctx.close()
