"""Sessions, lots, images, specs, lot commands and their audit entries, through the admin's forms."""

from __future__ import annotations

import datetime
import html
import re
from typing import Any

from engine.book.states import LotState
from persistence.mongo import from_ms, iso_from_ms
from tests.admin.conftest import AdminClient, png_bytes

HOUR_MS = 3_600_000
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"


def session_form(client: AdminClient, **overrides: str) -> dict[str, str]:
    now = client.server.clock.now_ms()
    form = {
        "title": "Spring porcelain",
        "description": "Song and Ming",
        "preview_start": iso_from_ms(now + HOUR_MS),
        "preview_end": iso_from_ms(now + 2 * HOUR_MS),
        "bidding_start": iso_from_ms(now + 2 * HOUR_MS),
        "bidding_end": iso_from_ms(now + 3 * HOUR_MS),
        "deposit": "1,000.50",
        "soft_close_seconds": "60",
        "soft_close_cap_seconds": "600",
    }
    form.update(overrides)
    return form


def lot_form(**overrides: Any) -> list[tuple[str, str]]:
    fields = {
        "catalogue_no": "A-1",
        "title": "Celadon bowl",
        "description": "",
        "start_price": "100",
        "unit": "10.5",
        "reserve_price": "300",
        "highest_price": "800",
        "deposit": "0",
    }
    fields.update({k: v for k, v in overrides.items() if k != "specs"})
    items = list(fields.items())
    for key, value in overrides.get("specs", [("Size", "30 cm"), ("", "")]):
        items += [("spec_key", key), ("spec_value", value)]
    return items


async def signed_in(client: AdminClient) -> AdminClient:
    await client.sign_in()
    await client.get("/admin/")
    return client


async def test_create_and_edit_a_session(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    answer = await client.post("/admin/sessions/new", session_form(client))
    assert answer.status == 303
    session_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    doc = await client.server.ctx.db.sessions.find_one({"_id": session_id})
    assert doc["deposit"] == 1000_50 and doc["soft_close_seconds"] == 60
    assert doc["bidding_end"] == from_ms(client.server.clock.now_ms() + 3 * HOUR_MS)
    assert session_id in client.server.engine.book.sessions  # the engine holds it too
    page = await client.get(answer.headers["Location"])
    assert b"Session 1 created." in page.body  # the flash, shown once
    assert b"Session 1 created." not in (await client.get(answer.headers["Location"])).body

    edited = await client.post(
        f"/admin/sessions/{session_id}", session_form(client, title="Autumn", deposit="0")
    )
    assert edited.status == 303
    doc = await client.server.ctx.db.sessions.find_one({"_id": session_id})
    assert doc["title"] == "Autumn" and doc["deposit"] == 0
    entry = await client.server.ctx.db.audit.find_one({"action": "session.update"})
    assert entry["before"]["title"] == "Spring porcelain" and entry["after"]["title"] == "Autumn"
    assert entry["admin_username"] == "admin" and entry["admin_user_id"] == 1
    assert entry["target"] == f"session:{session_id}" and entry["ip"] == "127.0.0.1"


async def test_typed_times_are_read_in_the_business_zone(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    start = datetime.datetime.fromtimestamp(client.server.clock.now_ms() // 1000 + 86_400, datetime.UTC)
    start = start.replace(second=0, microsecond=0)
    shanghai = datetime.timezone(datetime.timedelta(hours=8))  # the default BUSINESS_TZ's offset
    typed = {
        "preview_start": start,
        "preview_end": start + datetime.timedelta(hours=1),
        "bidding_start": start + datetime.timedelta(hours=1),
        "bidding_end": start + datetime.timedelta(hours=2),
    }
    form = session_form(
        client, **{k: v.astimezone(shanghai).strftime("%Y-%m-%dT%H:%M") for k, v in typed.items()}
    )
    answer = await client.post("/admin/sessions/new", form)
    assert answer.status == 303
    doc = await client.server.ctx.db.sessions.find_one({})
    assert doc["preview_start"] == start and doc["bidding_end"] == start + datetime.timedelta(hours=2)


async def test_invalid_session_forms_are_shown_again_with_the_problem(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    cases = {
        "title": ("", b"Title: required"),
        "deposit": ("12.345", b"Session deposit: give an amount in yuan"),
        "soft_close_seconds": ("-1", b"Soft-close window"),
        "bidding_end": (iso_from_ms(client.server.clock.now_ms() + HOUR_MS), b"times must satisfy"),
    }
    for field, (value, problem) in cases.items():
        answer = await client.post("/admin/sessions/new", session_form(client, **{field: value}))
        assert answer.status == 400, field
        assert problem in answer.body, (field, answer.body[-2000:])
    assert await client.server.ctx.db.sessions.count_documents({}) == 0
    # Tornado turns control characters in form arguments into spaces before the handler sees them.
    answer = await client.post("/admin/sessions/new", session_form(client, title="Bad\x07title"))
    assert answer.status == 303
    assert (await client.server.ctx.db.sessions.find_one({}))["title"] == "Bad title"


async def test_create_and_edit_a_lot_with_specs(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    session_id = await client.server.create_session()
    answer = await client.post(f"/admin/sessions/{session_id}/lots/new", lot_form())
    assert answer.status == 303, answer.body
    lot_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    doc = await client.server.ctx.db.lots.find_one({"_id": lot_id})
    assert (doc["start_price"], doc["unit"], doc["reserve_price"]) == (100_00, 10_50, 300_00)
    assert doc["specs"] == [{"key": "Size", "value": "30 cm"}]
    assert client.server.engine.book.lots[lot_id].reserve == 300_00

    specs = [("Size", "40 cm"), ("Era 年代", "Ming")]
    answer = await client.post(f"/admin/lots/{lot_id}", lot_form(title="Big bowl", unit="20", specs=specs))
    assert answer.status == 303
    doc = await client.server.ctx.db.lots.find_one({"_id": lot_id})
    assert doc["title"] == "Big bowl" and doc["unit"] == 20_00
    assert doc["specs"] == [{"key": "Size", "value": "40 cm"}, {"key": "Era 年代", "value": "Ming"}]
    duplicate = await client.post(f"/admin/sessions/{session_id}/lots/new", lot_form())
    assert duplicate.status == 409 and b"already used" in duplicate.body
    half_spec = await client.post(f"/admin/lots/{lot_id}", lot_form(specs=[("Size", "")]))
    assert half_spec.status == 400 and b"needs both a name and a value" in half_spec.body
    entry = await client.server.ctx.db.audit.find_one({"action": "lot.update"})
    assert entry["before"]["unit"] == 10_50 and entry["after"]["unit"] == 20_00


async def test_user_input_is_escaped_on_every_page(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    server = client.server
    session_id = await server.create_session(title=XSS, description=XSS)
    lot_id = await server.create_lot(session_id, title=XSS, specs=[{"key": XSS[:32], "value": XSS}])
    _, _token = await server.register("eve")
    for path in (
        "/admin/",
        "/admin/sessions",
        f"/admin/sessions/{session_id}",
        f"/admin/sessions/{session_id}/monitor",
        f"/admin/lots/{lot_id}",
        "/admin/users?q=" + "%3Cscript%3E",
        "/admin/audit?target=%3Cscript%3E",
    ):
        page = await client.get(path)
        assert page.status == 200, path
        assert b"<script>alert" not in page.body and b"<img src=x" not in page.body, path
    lot_page = (await client.get(f"/admin/lots/{lot_id}")).body.decode()
    assert html.escape(XSS) in lot_page or "&lt;script&gt;alert(1)&lt;/script&gt;" in lot_page
    form_error = await client.post(
        f"/admin/sessions/{session_id}/lots/new", lot_form(title=XSS, start_price="x")
    )
    assert form_error.status == 400 and b"<script>alert" not in form_error.body


async def test_lot_commands_open_close_cancel(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    server = client.server
    session_id = await server.create_session()
    first = await server.create_lot(session_id)
    second = await server.create_lot(session_id)
    answer = await client.post(f"/admin/lots/{first}/open", {"reason": "early start"})
    assert answer.status == 303
    assert server.engine.book.lots[first].state is LotState.BIDDING
    refused = await client.post(f"/admin/lots/{second}/cancel", {"reason": ""})
    assert refused.status == 303
    assert b"Reason: required" in (await client.get(refused.headers["Location"])).body
    answer = await client.post(f"/admin/lots/{second}/cancel", {"reason": "withdrawn by the consignor"})
    assert server.engine.book.lots[second].state is LotState.UNSOLD
    illegal = await client.post(f"/admin/lots/{second}/open", {})
    page = await client.get(illegal.headers["Location"])
    assert b"flash error" in page.body
    entry = await server.ctx.db.audit.find_one({"action": "lot.cancel"})
    assert entry["after"]["reason"] == "withdrawn by the consignor" and entry["after"]["state"] == 5
    assert entry["before"]["state"] == 1


async def test_images_upload_reorder_and_remove(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    server = client.server
    session_id = await server.create_session()
    lot_id = await server.create_lot(session_id)
    for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255)):
        answer = await client.upload(f"/admin/lots/{lot_id}/images", png_bytes(rgb=colour))
        assert answer.status == 303, answer.body
    images = (await server.ctx.db.lots.find_one({"_id": lot_id}))["images"]
    assert len(images) == 3 and all(
        re.fullmatch(r"http://127\.0\.0\.1:\d+/media/[0-9a-f]{32}\.png", u) for u in images
    )
    await client.get(f"/admin/lots/{lot_id}")
    assert (await client.post(f"/admin/lots/{lot_id}/images/2/cover", {"url": images[2]})).status == 303
    assert (await client.post(f"/admin/lots/{lot_id}/images/0/down", {"url": images[2]})).status == 303
    now = (await server.ctx.db.lots.find_one({"_id": lot_id}))["images"]
    assert now == [images[0], images[2], images[1]]
    stale = await client.post(f"/admin/lots/{lot_id}/images/0/remove", {"url": images[2]})
    assert b"changed meanwhile" in (await client.get(stale.headers["Location"])).body
    await client.post(f"/admin/lots/{lot_id}/images/0/remove", {"url": images[0]})
    assert (await server.ctx.db.lots.find_one({"_id": lot_id}))["images"] == [images[2], images[1]]
    json_upload = await client.upload(f"/admin/lots/{lot_id}/images", png_bytes(), json_reply=True)
    assert json_upload.status == 200 and json_upload.json["ok"] and len(json_upload.json["images"]) == 3
    # The lot was made through the REST API, which audits too ("lot.create"); the images' entries follow.
    actions = [e["action"] async for e in server.ctx.db.audit.find({"target": f"lot:{lot_id}"}).sort("at", 1)]
    assert actions == ["lot.create"] + ["lot.image_add"] * 3 + [
        "lot.image_cover",
        "lot.image_down",
        "lot.image_remove",
        "lot.image_add",
    ]


async def test_session_cover_upload(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    session_id = await client.server.create_session()
    answer = await client.upload(f"/admin/sessions/{session_id}/cover", png_bytes())
    assert answer.status == 303
    cover = (await client.server.ctx.db.sessions.find_one({"_id": session_id}))["cover"]
    assert "/media/" in cover
    public = await client.server.call("GET", f"/api/v1/sessions/{session_id}")
    assert public.json["cover"] == cover  # bidders see it through the public API
    await client.get(f"/admin/sessions/{session_id}")
    await client.post(f"/admin/sessions/{session_id}/cover/remove")
    assert (await client.server.ctx.db.sessions.find_one({"_id": session_id}))["cover"] == ""


async def test_started_sessions_cannot_be_edited(admin_client: AdminClient) -> None:
    client = await signed_in(admin_client)
    server = client.server
    session_id = await server.create_session()
    lot_id = await server.create_lot(session_id)
    await server.start_bidding(session_id)
    answer = await client.post(f"/admin/sessions/{session_id}", session_form(client))
    assert answer.status == 409 and b"can no longer be changed" in answer.body
    upload = await client.upload(f"/admin/lots/{lot_id}/images", png_bytes(), json_reply=True)
    assert upload.status == 409 and upload.json["error"]["code"] == "ALREADY_STARTED"
    page = await client.get(f"/admin/sessions/{session_id}")
    assert b"New lot" not in page.body
