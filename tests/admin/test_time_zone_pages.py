"""One business time zone (BUSINESS_TZ): times typed in it, shown in it, stored in UTC."""

from __future__ import annotations

import datetime
import re

from persistence.mongo import from_ms
from tests.admin.conftest import AdminClient

UTC = datetime.UTC


def session_form(year: int, **times: str) -> dict[str, str]:
    form = {
        "title": "Winter porcelain",
        "description": "",
        "preview_start": f"{year}-12-06T18:00",
        "preview_end": f"{year}-12-06T19:00",
        "bidding_start": f"{year}-12-06T20:00",
        "bidding_end": f"{year}-12-06T22:30",
        "deposit": "0",
        "soft_close_seconds": "60",
        "soft_close_cap_seconds": "600",
    }
    form.update(times)
    return form


async def create(client: AdminClient, form: dict[str, str]) -> int:
    await client.get("/admin/sessions/new")
    answer = await client.post("/admin/sessions/new", form)
    assert answer.status == 303, answer.body[-1500:]
    return int(answer.headers["Location"].rsplit("/", 1)[1])


def next_year(client: AdminClient) -> int:
    return from_ms(client.server.clock.now_ms()).year + 1


async def test_a_time_typed_in_shanghai_is_stored_in_utc_and_shown_back_as_typed(
    admin_client: AdminClient,
) -> None:
    client = admin_client
    await client.sign_in()
    year = next_year(client)
    session_id = await create(client, session_form(year))
    doc = await client.server.ctx.db.sessions.find_one({"_id": session_id})
    assert doc["bidding_start"] == datetime.datetime(year, 12, 6, 12, 0, tzinfo=UTC)  # 20:00 at UTC+8
    assert doc["bidding_end"] == datetime.datetime(year, 12, 6, 14, 30, tzinfo=UTC)
    page = (await client.get(f"/admin/sessions/{session_id}")).body.decode()
    # The edit form shows the typed wall-clock time, and the header names the zone once.
    assert f'name="bidding_start" value="{year}-12-06T20:00"' in page
    assert '<meta name="business-tz" content="Asia/Shanghai">' in page
    assert "Asia/Shanghai (UTC+08:00)" in page
    assert "data-utc" not in page and "_utc" not in page
    # The sessions list shows the same moment in the business zone.
    listing = (await client.get("/admin/sessions")).body.decode()
    assert f"{year}-12-06 20:00" in listing and f"{year}-12-06 12:00" not in listing


async def test_with_business_tz_utc_times_are_shown_as_typed(admin_client: AdminClient) -> None:
    client = admin_client
    client.server.ctx.business_tz = "UTC"
    try:
        await client.sign_in()
        year = next_year(client)
        session_id = await create(client, session_form(year))
        doc = await client.server.ctx.db.sessions.find_one({"_id": session_id})
        assert doc["bidding_start"] == datetime.datetime(year, 12, 6, 20, 0, tzinfo=UTC)
        page = (await client.get(f"/admin/sessions/{session_id}")).body.decode()
        assert f'name="bidding_start" value="{year}-12-06T20:00"' in page
        assert '<meta name="business-tz" content="UTC">' in page and "UTC (UTC+00:00)" in page
    finally:
        client.server.ctx.business_tz = "Asia/Shanghai"


async def test_a_time_with_an_explicit_offset_is_taken_as_given(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    year = next_year(client)
    session_id = await create(client, session_form(year, bidding_end=f"{year}-12-06T15:00:00Z"))
    doc = await client.server.ctx.db.sessions.find_one({"_id": session_id})
    assert doc["bidding_end"] == datetime.datetime(year, 12, 6, 15, 0, tzinfo=UTC)


async def test_a_time_that_is_not_one_is_a_message_not_a_500(admin_client: AdminClient) -> None:
    client = admin_client
    await client.sign_in()
    await client.get("/admin/sessions/new")
    for bad in ("tomorrow", "2026-13-01T10:00", "0001-01-01T00:00", ""):
        answer = await client.post("/admin/sessions/new", session_form(next_year(client), bidding_start=bad))
        assert answer.status == 400, bad
        assert b"Bidding start: give a date and time" in answer.body, bad
    assert await client.server.ctx.db.sessions.count_documents({}) == 0


async def test_every_shown_time_is_in_the_business_zone(admin_client: AdminClient) -> None:
    """The audit page's entry time: a write made now shows the business zone's wall clock."""
    client = admin_client
    await client.sign_in()
    year = next_year(client)
    await create(client, session_form(year))
    entry = await client.server.ctx.db.audit.find_one({"action": "session.create"})
    shanghai = datetime.timezone(datetime.timedelta(hours=8))
    local = entry["at"].replace(tzinfo=UTC).astimezone(shanghai).strftime("%Y-%m-%d %H:%M:%S")
    page = (await client.get("/admin/audit?action=session.create")).body.decode()
    assert local in page
    assert not re.search(r"\d{2}:\d{2}:\d{2} UTC<", page)  # no time carries its own "UTC" any more
