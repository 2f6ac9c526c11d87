"""The cached public reads over HTTP with the read cache's subscription running, as in production:
the signed-out feed's first page follows every write to a post at once (new, liked, deleted) and
its live lot card follows the engine; the auction views follow an admin edit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine.commands import PlaceBid
from gateway import rest_feed
from tests.gateway.conftest import AppServer


@pytest.fixture
async def server(app_server: AppServer) -> AsyncIterator[AppServer]:
    await rest_feed.start(app_server.ctx)
    task = app_server.ctx.read_cache.start()
    for _ in range(200):
        if app_server.ctx.read_cache.live:
            break
        await asyncio.sleep(0.01)
    assert app_server.ctx.read_cache.live
    try:
        yield app_server
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def first_page(s: AppServer) -> list[dict[str, object]]:
    answer = await s.call("GET", "/api/v1/posts?feed=latest")
    assert answer.status == 200, answer.body
    items: list[dict[str, object]] = answer.json["items"]
    return items


async def test_the_signed_out_first_page_follows_every_post_write_and_the_engine(server: AppServer) -> None:
    s = server
    _, author = await s.register()
    reader_id, reader = await s.register()
    session_id = await s.create_session()
    lot_id = await s.create_lot(session_id, title="Celadon vase")
    assert await first_page(s) == []
    linked = await s.call(
        "POST", "/api/v1/posts", {"text": "look", "link_kind": "lot", "link_id": lot_id}, token=author
    )
    assert linked.status == 201, linked.body
    post_id = linked.json["id"]
    [post] = await first_page(s)
    assert post["id"] == post_id and post["likes"] == 0 and post["liked_by_me"] is False
    assert (await s.call("PUT", f"/api/v1/posts/{post_id}/like", token=reader)).status == 200
    [post] = await first_page(s)
    assert post["likes"] == 1 and post["liked_by_me"] is False  # nobody's own like on a shared page
    # The reader's own page is theirs, never the shared one.
    mine = (await s.call("GET", "/api/v1/posts?feed=latest", token=reader)).json["items"]
    assert mine[0]["liked_by_me"] is True
    # A lot's new title shows on the next page (the auction's generation is in the page's key).
    retitled = await s.call(
        "PATCH", f"/api/v1/admin/lots/{lot_id}", {"title": "Celadon bowl"}, token=await s.admin_token()
    )
    assert retitled.status == 200, retitled.body
    [post] = await first_page(s)
    assert post["link"]["title"] == "Celadon bowl"  # type: ignore[index]
    # The lot card's price is the engine's on every answer.
    await s.start_bidding(session_id)
    await s.credit(reader_id, 1_000_000)
    book_lot = s.engine.book.lots[lot_id]
    assert (await s.engine.execute(PlaceBid(lot_id, reader_id, book_lot.next_min()))).ok
    [post] = await first_page(s)
    assert post["link"]["price"] == s.engine.book.lots[lot_id].price  # type: ignore[index]
    assert (await s.call("DELETE", f"/api/v1/posts/{post_id}", token=author)).status == 204
    assert await first_page(s) == []


async def test_an_admin_lot_edit_shows_on_the_next_public_read(server: AppServer) -> None:
    s = server
    session_id = await s.create_session()
    lot_id = await s.create_lot(session_id, title="Celadon vase")
    assert (await s.call("GET", f"/api/v1/lots/{lot_id}")).json["title"] == "Celadon vase"
    assert (await s.call("GET", f"/api/v1/sessions/{session_id}")).json["lots"][0]["title"] == "Celadon vase"
    edited = await s.call(
        "PATCH", f"/api/v1/admin/lots/{lot_id}", {"title": "Celadon bowl"}, token=await s.admin_token()
    )
    assert edited.status == 200, edited.body
    assert (await s.call("GET", f"/api/v1/lots/{lot_id}")).json["title"] == "Celadon bowl"
    assert (await s.call("GET", f"/api/v1/sessions/{session_id}")).json["lots"][0]["title"] == "Celadon bowl"
