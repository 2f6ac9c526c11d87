"""The media store (type by magic bytes, size limit, random names) and its upload and serving paths."""

from __future__ import annotations

import datetime
import io
import pathlib

import pytest
from PIL import Image

from persistence.audit import AuditLog, storable
from persistence.media import MediaRejected, MediaStore, MediaTooLarge, sniff_image
from tests.admin.conftest import AdminClient, png_bytes

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8 " + b"\x00" * 16


def real_image(kind: str, width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(out, kind)
    return out.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
HTML = b"<html><script>alert(1)</script></html>"


def test_sniffing_by_magic_bytes() -> None:
    assert sniff_image(png_bytes()) == ("image/png", "png")
    assert sniff_image(JPEG) == ("image/jpeg", "jpg")
    assert sniff_image(GIF) == ("image/gif", "gif")
    assert sniff_image(WEBP) == ("image/webp", "webp")
    for other in (SVG, HTML, b"RIFF\x00\x00\x00\x00WAVE", b"", b"\x89PN", b"%PDF-1.7"):
        assert sniff_image(other) is None


async def test_store_saves_with_random_names(tmp_path: pathlib.Path) -> None:
    store = MediaStore(tmp_path / "media", max_bytes=1024)
    first, second = await store.save(png_bytes()), await store.save(png_bytes())
    assert first.name != second.name and first.name.endswith(".png") and len(first.name) == 36
    assert first.content_type == "image/png" and first.path == f"/media/{first.name}"
    assert (tmp_path / "media" / first.name).read_bytes() == png_bytes()
    assert not list((tmp_path / "media").glob(".*"))  # no temporary files left behind
    with pytest.raises(MediaTooLarge):
        await store.save(b"\x89PNG\r\n\x1a\n" + b"\x00" * 1024)
    with pytest.raises(MediaRejected):
        await store.save(SVG)
    with pytest.raises(MediaRejected):
        await store.save(b"")
    assert store.path_of("../secret.png") is None and store.path_of("x.png") is None
    assert store.path_of(first.name) == tmp_path / "media" / first.name
    assert MediaStore.name_from_url(f"https://a.example{first.path}") == first.name
    assert MediaStore.name_from_url("https://a.example/media/../../etc/passwd") is None


def _stored_files(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(root.iterdir()) if root.exists() else []


async def signed_in_with_lot(client: AdminClient) -> int:
    await client.sign_in()
    await client.get("/admin/")
    session_id = await client.server.create_session()
    return await client.server.create_lot(session_id)


async def test_uploads_that_are_not_images_are_refused(admin_client: AdminClient) -> None:
    lot_id = await signed_in_with_lot(admin_client)
    for data, filename, declared in (
        (SVG, "x.svg", "image/svg+xml"),
        (HTML, "photo.png", "image/png"),  # the name and declared type lie; the bytes decide
        (b"", "empty.png", "image/png"),
    ):
        answer = await admin_client.upload(
            f"/admin/lots/{lot_id}/images", data, filename=filename, content_type=declared, json_reply=True
        )
        assert answer.status == 400 and answer.json["error"]["code"] == "VALIDATION", filename
    form = await admin_client.upload(f"/admin/lots/{lot_id}/images", HTML, filename="a.png")
    assert form.status == 303
    assert b"only PNG, JPEG, WebP and GIF" in (await admin_client.get(form.headers["Location"])).body
    lot = await admin_client.server.ctx.db.lots.find_one({"_id": lot_id})
    assert lot["images"] == []
    assert _stored_files(pathlib.Path(str(admin_client.server.ctx.media_dir))) == []


async def test_oversized_uploads_are_refused(admin_client: AdminClient) -> None:
    admin_client.server.ctx.media_max_bytes = 2048
    lot_id = await signed_in_with_lot(admin_client)
    big = png_bytes() + b"\x00" * 4096
    answer = await admin_client.upload(f"/admin/lots/{lot_id}/images", big, json_reply=True)
    assert answer.status == 413 and answer.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    huge = png_bytes() + b"\x00" * (200 * 1024)  # past the multipart allowance: dropped while streaming
    answer = await admin_client.upload(f"/admin/lots/{lot_id}/images", huge, json_reply=True)
    assert answer.status == 413
    ok = await admin_client.upload(f"/admin/lots/{lot_id}/images", png_bytes(), json_reply=True)
    assert ok.status == 200


async def test_uploads_need_the_xsrf_token(admin_client: AdminClient) -> None:
    lot_id = await signed_in_with_lot(admin_client)
    answer = await admin_client.upload(f"/admin/lots/{lot_id}/images", png_bytes(), xsrf=False)
    assert answer.status == 403
    assert (await admin_client.server.ctx.db.lots.find_one({"_id": lot_id}))["images"] == []
    header = await admin_client.upload(
        f"/admin/lots/{lot_id}/images", png_bytes(), xsrf=False, json_reply=True
    )
    assert header.status == 403 and header.json["error"]["code"] == "XSRF"
    anonymous = AdminClient(admin_client.server)
    refused = await anonymous.upload(f"/admin/lots/{lot_id}/images", png_bytes(), json_reply=True)
    assert refused.status == 401 and refused.json["error"]["code"] == "UNAUTHORIZED"


async def test_media_is_served_with_its_sniffed_type_and_nosniff(admin_client: AdminClient) -> None:
    lot_id = await signed_in_with_lot(admin_client)
    gif = real_image("GIF")
    answer = await admin_client.upload(f"/admin/lots/{lot_id}/images", gif, filename="x.png", json_reply=True)
    url = answer.json["url"]
    path = url[url.index("/media/") :]
    assert path.endswith(".gif")
    served = await admin_client.server.call("GET", path)  # public: bidders load these images
    assert served.status == 200 and served.body == gif
    assert served.headers["Content-Type"] == "image/gif"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in served.headers["Content-Security-Policy"]
    for bad in ("/media/../admin/base.py", "/media/%2e%2e/x", "/media/" + "0" * 32 + ".png", "/media/x.html"):
        assert (await admin_client.server.call("GET", bad)).status == 404, bad


def test_audit_entries_drop_secrets_and_bound_sizes() -> None:
    value = {
        "password": "x",
        "nested": {"token": "t", "keep": 1, "password_hash": "h"},
        "big": "a" * 5000,
        "items": list(range(500)),
        "when": datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
        "huge_int": 2**70,
        7: (1, 2),
    }
    kept = storable(value)
    assert "password" not in kept and kept["nested"] == {"keep": 1}
    assert len(kept["big"]) == 2001 and len(kept["items"]) == 100
    assert kept["when"] == value["when"] and kept["huge_int"] == str(2**70) and kept["7"] == [1, 2]


async def test_audit_log_pages_and_filters(admin_client: AdminClient) -> None:
    log = AuditLog(admin_client.server.ctx.db)
    for index in range(7):
        await log.record(
            action="lot.update" if index % 2 else "session.create",
            target=f"lot:{index}" if index % 2 else f"session:{index}",
            admin_user_id=1,
            admin_username="admin",
            before={"n": index},
            after={"n": index + 1},
            ip="10.0.0.1",
        )
    entries, total = await log.page(limit=3)
    assert total == 7 and len(entries) == 3 and entries[0]["before"] == {"n": 6}
    assert (await log.page(action="lot"))[1] == 3
    assert (await log.page(action="lo"))[1] == 0  # a name or a dotted prefix, not any prefix
    assert (await log.page(target="lot:3"))[1] == 1
    assert (await log.page(target="session"))[1] == 4
    assert await log.actions() == ["lot.update", "session.create"]
    with pytest.raises(ValueError):
        await log.record(action="Bad Action", target="x", admin_user_id=None, admin_username="")


async def test_variants_are_served_with_immutable_caching_and_other_names_are_not(
    admin_client: AdminClient,
) -> None:
    lot_id = await signed_in_with_lot(admin_client)
    answer = await admin_client.upload(
        f"/admin/lots/{lot_id}/images", real_image("JPEG", 900, 600), filename="a.jpg", json_reply=True
    )
    assert answer.status == 200, answer.body
    url = answer.json["url"]
    original = url[url.index("/media/") :]
    stem = original.removesuffix(".jpg")
    served = {}
    for path, kind in (
        (original, "image/jpeg"),
        (f"{stem}-w320.webp", "image/webp"),
        (f"{stem}-w640.webp", "image/webp"),
    ):
        reply = await admin_client.server.call("GET", path)
        assert reply.status == 200, path
        assert reply.headers["Content-Type"] == kind
        assert reply.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        served[path] = reply
    etag = served[f"{stem}-w640.webp"].headers["Etag"]
    assert etag
    again = await admin_client.server.call("GET", f"{stem}-w640.webp", headers={"If-None-Match": etag})
    assert again.status == 304
    media = pathlib.Path(str(admin_client.server.ctx.media_dir))
    (media / "notes.txt").write_text("private")
    for bad in (
        f"{stem}-w1280.webp",  # a 900-pixel original has no 1280 variant
        f"{stem}-w999.webp",
        f"{stem}-w320.png",
        f"{stem}-w320.webp.part",
        f"{stem}.webp-w320.webp",
        "/media/notes.txt",
    ):
        assert (await admin_client.server.call("GET", bad)).status == 404, bad
    # The public lot view lists them for responsive pages.
    lot = await admin_client.server.call("GET", f"/api/v1/lots/{lot_id}")
    picture = lot.json["pictures"][0]
    assert picture["url"] == url and picture["thumb"].endswith(f"{stem}-w320.webp")
    assert picture["srcset"].endswith(f"{stem}-w640.webp 640w") and (picture["width"], picture["height"]) == (
        900,
        600,
    )
