"""The demo data `make run` seeds: live, upcoming and ended sessions whose lots have pictures."""

from __future__ import annotations

import pathlib

import pytest

from composition import demo
from composition.demo import seed_demo
from engine.book.states import SessionState
from persistence.media import MediaStore, variant_name
from tests.gateway.conftest import AppServer, app_server

__all__ = ["app_server"]  # the fixture, shared with tests/gateway


async def test_the_demo_has_live_upcoming_and_ended_sessions_with_pictures(
    app_server: AppServer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = app_server.ctx
    ctx.media_dir = tmp_path / "media"

    async def no_courses(ctx: object) -> None:  # the shop needs the payments wiring; tests/test_run.py
        return None  # starts the whole service, courses included

    monkeypatch.setattr(demo, "seed_demo_courses", no_courses)
    monkeypatch.setattr(demo, "seed_demo_articles", no_courses)  # tests/composition/test_demo_articles.py
    live_id = await seed_demo(ctx)
    assert live_id is not None
    assert await seed_demo(ctx) is None  # first start only
    # Seeding writes the originals only: until the start's backfill has made the variants, pictures
    # name no variant (no srcset pointing at a file that is not there yet).
    first = (await app_server.call("GET", "/api/v1/sessions")).json["items"][0]["cover_picture"]
    assert first["srcset"] == "" and first["thumb"] == first["url"]
    assert await MediaStore(ctx.media_dir).backfill(ctx.catalog.media) >= 3

    listed = await app_server.call("GET", "/api/v1/sessions")
    sessions = {item["id"]: item for item in listed.json["items"]}
    assert len(sessions) == 3
    for session in sessions.values():
        cover = session["cover_picture"]
        assert (
            cover["url"] == session["cover"] and cover["srcset"].count("w,") == 1
        )  # 320, 640 (1200 wide: no 1280)
        assert (cover["width"], cover["height"]) == (1200, 900)
    live, upcoming, ended = (app_server.engine.book.sessions[i] for i in sorted(sessions))
    assert live.session_id == live_id and upcoming.deposit > 0

    lots = []
    for session_id in sessions:
        lots += (await app_server.call("GET", f"/api/v1/sessions/{session_id}")).json["lots"]
    assert len([lot for lot in lots if lot["session_id"] == live_id]) >= 6
    for lot in lots:
        assert 2 <= len(lot["pictures"]) <= 3 and all(p["srcset"] and p["thumb"] for p in lot["pictures"])
        view = (await app_server.call("GET", f"/api/v1/lots/{lot['id']}")).json
        assert view["description"] and 2 <= len(view["specs"]) <= 4
    assert {lot["deposit"] > 0 for lot in lots} == {True, False}
    docs = [doc async for doc in ctx.db.lots.find({}, {"reserve_price": 1})]
    assert {doc["reserve_price"] > 0 for doc in docs} == {True, False}
    # The media files are the store's: the originals and their variants (the community's demo
    # pictures are in the same directory).
    pictures = [p["url"] for lot in lots for p in lot["pictures"]] + [s["cover"] for s in sessions.values()]
    assert all((tmp_path / "media" / variant_name(url.rsplit("/", 1)[1], 640)).exists() for url in pictures)

    await app_server.start_bidding(live_id)
    await app_server.advance_to(ended.bidding_end + 1)
    await app_server.wait_for(lambda: ended.state is SessionState.ENDED)
    assert live.state is SessionState.BIDDING and upcoming.state in (
        SessionState.SCHEDULED,
        SessionState.PREVIEW,
    )
