"""The bidder app when the auction house acts on a live lot (issue 24): a paused lot shows
"已暂停 / Paused" with bidding disabled, and a voided bid brings a toast and the new price.

Chromium at 390 × 844 (a phone), on the app's real websocket. The frames are the ones
docs/protocol.md documents (`lot_paused`, `bid_voided`), sent to the lot's watchers through the hub.
"""

from __future__ import annotations

import pathlib
from typing import Any

import orjson
import pytest

from backoffice.actions import Actor
from tests.gateway.app_kit import AppWorld, app_world, browser, open_app, phone_context, sign_in_as

pytestmark = pytest.mark.browser
__all__ = ["app_world", "browser"]
ARTIFACTS = pathlib.Path(__file__).resolve().parents[1] / "artifacts"


def broadcast(world: AppWorld, session_id: int, frame: dict[str, Any]) -> int:
    """Send `frame` to every socket subscribed to the session; how many got it."""
    sockets = list(world.server.ctx.hub.by_session.get(session_id, ()))
    for socket in sockets:
        socket.send(orjson.dumps(frame))
    return len(sockets)


async def test_paused_lot_stops_bidding_and_a_void_shows_a_toast(browser: Any, app_world: AppWorld) -> None:
    world = app_world
    lot_id, session_id = world.plain_lot, world.live_session
    user_id, token = await world.funded_bidder()
    context = await phone_context(browser, locale="zh-CN")
    page = await open_app(context, world)
    await sign_in_as(page, token, f"#/lot/{lot_id}")
    panel = page.locator(".bid-panel")
    await panel.locator(".quick-bids button").first.wait_for()
    await world.server.wait_for(lambda: len(world.server.ctx.hub.by_session.get(session_id, ())) > 0)

    lot = world.server.engine.book.lots[lot_id]
    assert broadcast(world, session_id, {"type": "lot_paused", "lot_id": lot_id, "session_id": session_id,
                                         "paused": True, "ends_at": lot.ends_at}) >= 1  # fmt: skip
    await panel.locator(".lot-paused").wait_for()
    assert (await panel.locator(".lot-paused").text_content()) == "已暂停"
    assert await panel.locator(".quick-bids button").count() == 0  # no way to bid while paused
    assert await page.locator(".price-block .lot-paused").count() == 1  # instead of the countdown
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "app_lot_paused.png"))

    broadcast(world, session_id, {"type": "lot_paused", "lot_id": lot_id, "session_id": session_id,
                                  "paused": False, "ends_at": lot.ends_at + 60_000})  # fmt: skip
    await panel.locator(".quick-bids button").first.wait_for()

    broadcast(world, session_id, {"type": "bid_voided", "lot_id": lot_id, "session_id": session_id,
                                  "price": 0, "leader": "", "bid_count": 0, "next_min": 100_00})  # fmt: skip
    toast = page.locator(".toast.warn")
    await toast.wait_for()
    assert "撤销" in (await toast.text_content() or "")
    await page.locator(".price-block .price:has-text('¥100.00')").wait_for()
    # The voided bidder's own notice, on any screen (here the auctions list).
    await page.evaluate("() => { location.hash = '#/'; }")
    notice = {"type": "your_bid_voided", "lot_id": lot_id, "session_id": session_id}
    notice |= {"price": 0, "leading": False}
    for socket in list(world.server.ctx.hub.by_user.get(user_id, ())):
        socket.send(orjson.dumps(notice))
    await page.locator(".toast.warn:has-text('您的一口出价已被拍卖行撤销')").wait_for()
    assert page.problems == []
    await context.close()


async def test_an_operators_pause_and_void_reach_the_app(browser: Any, app_world: AppWorld) -> None:
    """End to end: the operator's controls (AdminActions, as the monitor's buttons call them) reach
    the app over the real websocket."""
    world = app_world
    lot_id = world.plain_lot
    actions = world.server.ctx.admin_actions
    assert actions is not None
    operator = Actor(1, "admin", True, "127.0.0.1", "ui", frozenset({"owner"}))
    _user_id, token = await world.funded_bidder()
    context = await phone_context(browser, locale="en")
    page = await open_app(context, world)
    await sign_in_as(page, token, f"#/lot/{lot_id}")
    panel = page.locator(".bid-panel")
    await panel.locator(".quick-bids button").first.wait_for()
    lot = world.server.engine.book.lots[lot_id]
    assert (await world.bid(token, lot_id, lot.next_min()))["type"] == "accepted"  # this bidder leads

    await actions.lot_pause(operator, lot_id, "checking a lot description")
    await panel.locator(".lot-paused:has-text('Paused')").wait_for()
    assert await panel.locator(".quick-bids button").count() == 0
    await actions.lot_resume(operator, lot_id, "checked")
    await panel.locator(".quick-bids button").first.wait_for()

    newest = len(world.server.engine.book.lots[lot_id].inputs()) - 1
    await actions.bid_void(operator, lot_id, newest, "test account")
    await page.locator(".toast.warn:has-text('Your bid was voided')").wait_for()
    await page.locator(".toast.warn:has-text('A bid was voided')").wait_for()
    assert page.problems == []
    await context.close()
