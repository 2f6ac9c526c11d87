"""Image processing in the media store: decoding, refusals, WebP variants, the index and the views."""

from __future__ import annotations

import io
import pathlib
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pymongo
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pymongo.asynchronous.database import AsyncDatabase

from engine.clock import FakeClock
from engine.engine import Engine
from persistence.catalog import Catalog, LotSpec, SessionSpec
from persistence.media import (
    MAX_PIXELS,
    MediaIndex,
    MediaRejected,
    MediaStore,
    StoredMedia,
    picture,
    strip_metadata,
    variant_name,
)
from persistence.media import main as media_command
from persistence.mongo import Database, connect, ensure_indexes, from_ms

START = 1_800_000_000_000
HOUR = 3_600_000
GPS_IFD = 0x8825
ORIENTATION = 0x0112


def jpeg(width: int, height: int, *, exif: Image.Exif | None = None) -> bytes:
    image = Image.new("RGB", (width, height), (180, 90, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixels never follow): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def files(root: pathlib.Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def webp_size(path: pathlib.Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "WEBP"
        return image.size


async def test_variants_have_the_variant_widths_and_are_never_upscaled(tmp_path: pathlib.Path) -> None:
    store = MediaStore(tmp_path)
    large = await store.save(jpeg(2000, 1500))
    assert (large.width, large.height, large.variants) == (2000, 1500, (320, 640, 1280))
    for label, height in ((320, 240), (640, 480), (1280, 960)):
        assert webp_size(tmp_path / variant_name(large.name, label)) == (label, height)
    assert variant_name(large.name, 320) == large.name.removesuffix(".jpg") + "-w320.webp"

    medium = await store.save(jpeg(700, 350))
    assert medium.variants == (320, 640)  # no 1280: that would be an upscale
    assert not (tmp_path / variant_name(medium.name, 1280)).exists()
    assert webp_size(tmp_path / variant_name(medium.name, 640)) == (640, 320)

    small = await store.save(jpeg(200, 100))  # smaller than every width: one variant, its own size
    assert small.variants == (320,)
    assert webp_size(tmp_path / variant_name(small.name, 320)) == (200, 100)
    assert len(files(tmp_path)) == 3 + 3 + 2 + 1  # originals and variants; no temporary files


async def test_variants_are_upright_and_carry_no_exif(tmp_path: pathlib.Path) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored landscape, displayed rotated a quarter turn: portrait
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (31.0, 14.0, 0.0), 3: "E", 4: (121.0, 28.0, 0.0)})
    data = jpeg(800, 400, exif=exif)
    with Image.open(io.BytesIO(data)) as original:  # the test image really has GPS
        assert original.getexif().get_ifd(GPS_IFD)
    stored = await MediaStore(tmp_path).save(data)
    assert (stored.width, stored.height, stored.variants) == (400, 800, (320,))
    with Image.open(tmp_path / variant_name(stored.name, 320)) as variant:
        assert variant.size == (320, 640)
        assert "exif" not in variant.info and "xmp" not in variant.info
        assert not variant.getexif().get_ifd(GPS_IFD) and ORIENTATION not in variant.getexif()
    # The original keeps its pixels (not re-encoded) and its orientation, and loses the rest.
    kept = (tmp_path / stored.name).read_bytes()
    assert stored.size == len(kept) < len(data)
    with Image.open(io.BytesIO(kept)) as original, Image.open(io.BytesIO(data)) as uploaded:
        assert not original.getexif().get_ifd(GPS_IFD) and 0x010F not in original.getexif()
        assert original.getexif().get(ORIENTATION) == 6
        assert original.tobytes() == uploaded.tobytes()
    assert b"PhoneMaker" not in kept


def png_with_metadata() -> bytes:
    image = Image.new("RGB", (64, 32), (10, 200, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (31.0, 14.0, 0.0)})
    info = PngInfo()
    info.add_text("Comment", "taken at home")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPSLatitude 31,14N</x:xmpmeta>")
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info, exif=exif.tobytes())
    return out.getvalue()


def webp_with_metadata() -> bytes:
    exif = Image.Exif()
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (31.0, 14.0, 0.0)})
    out = io.BytesIO()
    Image.new("RGB", (64, 32), (10, 20, 200)).save(out, "WEBP", exif=exif, xmp=b"<x:xmpmeta>GPS</x:xmpmeta>")
    return out.getvalue()


@pytest.mark.parametrize("make", [png_with_metadata, webp_with_metadata], ids=["png", "webp"])
async def test_png_and_webp_originals_lose_their_exif_xmp_and_text(tmp_path: pathlib.Path, make: Any) -> None:
    data = make()
    with Image.open(io.BytesIO(data)) as uploaded:  # the test image really carries them
        uploaded.load()  # a PNG's eXIf chunk may follow its pixels
        assert uploaded.getexif().get_ifd(GPS_IFD)
        uploaded_pixels = uploaded.convert("RGB").tobytes()
    stored = await MediaStore(tmp_path).save(data)
    kept = (tmp_path / stored.name).read_bytes()
    assert b"xmpmeta" not in kept and b"taken at home" not in kept and b"PhoneMaker" not in kept
    with Image.open(io.BytesIO(kept)) as original:
        original.load()
        assert not original.getexif().get_ifd(GPS_IFD) and "exif" not in original.info
        assert original.convert("RGB").tobytes() == uploaded_pixels


def test_a_damaged_structure_is_refused_when_stripping() -> None:
    with pytest.raises(MediaRejected):
        strip_metadata(b"\xff\xd8\xff\xe1\x7f\xffExif")  # a segment longer than the file
    with pytest.raises(MediaRejected):
        strip_metadata(b"\xff\xd8\x00\x00")  # no marker where a segment should start


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, before ours
async def test_bombs_damaged_files_and_non_images_are_refused_and_nothing_is_written(
    tmp_path: pathlib.Path,
) -> None:
    store = MediaStore(tmp_path)
    refused = [
        png_claiming(8_000, 6_000),  # 48 MP: over our limit
        png_claiming(20_000, 20_000),  # 400 MP: Pillow's own bomb check
        b"\xff\xd8\xff\xe0" + b"\x00" * 64,  # JPEG magic bytes, then nothing decodable
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",  # a GIF header without an image
        jpeg(300, 200)[:200],  # cut short
        b"<html><script>alert(1)</script></html>",
    ]
    for data in refused:
        with pytest.raises(MediaRejected):
            await store.save(data)
    assert MAX_PIXELS < 8_000 * 6_000
    assert files(tmp_path) == []


async def test_an_animated_gif_is_kept_and_its_variant_is_the_first_frame(tmp_path: pathlib.Path) -> None:
    frames = [Image.new("RGB", (400, 300), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    stored = await MediaStore(tmp_path).save(out.getvalue())
    assert stored.name.endswith(".gif") and stored.variants == (320,)
    with Image.open(tmp_path / variant_name(stored.name, 320)) as variant:
        assert getattr(variant, "n_frames", 1) == 1
        red, _green, blue = variant.convert("RGB").getpixel((160, 120))  # type: ignore[misc]
        assert red > 200 and blue < 60


def test_picture_lists_the_variants_or_falls_back_to_the_url() -> None:
    name = "ab" * 16 + ".jpg"
    url = f"https://gavel.example/media/{name}"
    entry = {"width": 1000, "height": 750, "variants": [640, 320]}
    assert picture(url, entry) == {
        "url": url,
        "srcset": f"https://gavel.example/media/{'ab' * 16}-w320.webp 320w, "
        f"https://gavel.example/media/{'ab' * 16}-w640.webp 640w",
        "thumb": f"https://gavel.example/media/{'ab' * 16}-w320.webp",
        "width": 1000,
        "height": 750,
    }
    small = picture(f"/media/{name}", {"width": 200, "height": 150, "variants": [320]})
    assert small["srcset"] == f"/media/{'ab' * 16}-w320.webp 200w"  # the variant's real width
    for plain in (f"/media/{name}", "https://elsewhere.example/a.jpg", f"/media/{'ab' * 16}-w320.webp"):
        assert picture(plain, None if plain.endswith(".jpg") else entry) == {
            "url": plain,
            "srcset": "",
            "thumb": plain,
        }


# -- with MongoDB and the engine -------------------------------------------------------------------------
@pytest.fixture
async def db(mongo_url: str, mongo_db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[Database]:
    client = connect(mongo_url)
    database = client[mongo_db.name]
    await ensure_indexes(database)
    try:
        yield database
    finally:
        await client.close()


@pytest.fixture
async def engine(tmp_path: pathlib.Path) -> AsyncIterator[Engine]:
    running = Engine(FakeClock(START), tmp_path / "journal", None, sync=False)
    await running.start()
    try:
        yield running
    finally:
        await running.stop(snapshot=False)


async def test_public_views_carry_pictures_and_cover_picture(
    db: Database, engine: Engine, tmp_path: pathlib.Path
) -> None:
    catalog = Catalog(db, engine, lambda session_id, user_id: "")
    store = MediaStore(tmp_path / "media", index=catalog.media)
    cover, first, second = [await store.save(jpeg(w, 600)) for w in (1600, 800, 300)]
    base = "https://gavel.example"
    legacy = base + "/media/" + "cd" * 16 + ".png"  # uploaded before variants: no index entry
    session = await catalog.create_session(
        SessionSpec(
            title="Porcelain",
            preview_start=from_ms(START + HOUR),
            preview_end=from_ms(START + 2 * HOUR),
            bidding_start=from_ms(START + 2 * HOUR),
            bidding_end=from_ms(START + 3 * HOUR),
            deposit=0,
            soft_close_seconds=30,
            soft_close_cap_seconds=300,
            cover=base + cover.path,
        )
    )
    images = (base + first.path, base + second.path, legacy)
    lot = await catalog.create_lot(int(session["_id"]), LotSpec("001", "Bowl", 100_00, 10_00, images=images))
    stem = base + "/media/" + first.name.removesuffix(".jpg")

    lot_view = await catalog.lot_view(int(lot["_id"]), viewer=None)
    assert lot_view["images"] == list(images)  # unchanged beside the new field
    assert lot_view["pictures"][0] == {
        "url": base + first.path,
        "srcset": f"{stem}-w320.webp 320w, {stem}-w640.webp 640w",
        "thumb": f"{stem}-w320.webp",
        "width": 800,
        "height": 600,
    }
    assert lot_view["pictures"][1]["width"] == 300 and lot_view["pictures"][1]["srcset"].endswith(" 300w")
    assert lot_view["pictures"][2] == {"url": legacy, "srcset": "", "thumb": legacy}

    session_view = await catalog.session_view(int(session["_id"]))
    assert session_view["cover_picture"]["srcset"].count("w,") == 2  # 320, 640 and 1280
    assert (session_view["cover_picture"]["width"], session_view["cover_picture"]["height"]) == (1600, 600)
    assert session_view["lots"][0]["pictures"] == lot_view["pictures"]
    listed, _ = await catalog.list_sessions(None, 0, 10)
    assert listed[0]["cover_picture"] == session_view["cover_picture"]

    # A fresh process (no cache) reads the same from the `media` collection.
    again = Catalog(db, engine, lambda session_id, user_id: "")
    assert (await again.lot_view(int(lot["_id"]), viewer=None))["pictures"] == lot_view["pictures"]
    await catalog.update_session(int(session["_id"]), {"cover": ""})
    assert (await catalog.session_view(int(session["_id"])))["cover_picture"] is None


async def test_backfill_makes_missing_variants_and_index_entries(
    db: Database, tmp_path: pathlib.Path
) -> None:
    root = tmp_path / "media"
    index = MediaIndex(db)
    store = MediaStore(root, index=index)
    kept = await store.save(jpeg(900, 600))
    older = await store.save(jpeg(500, 500))
    for label in older.variants:  # as if uploaded before variants existed
        (root / variant_name(older.name, label)).unlink()
    await db.media.delete_one({"_id": older.name})
    (root / ("ef" * 16 + ".png")).write_bytes(b"\x89PNG\r\n\x1a\n not really")  # damaged: left alone

    fresh = MediaIndex(db)  # another process: nothing cached
    assert await MediaStore(root).backfill(fresh) == 1
    assert webp_size(root / variant_name(older.name, 320)) == (320, 320)
    assert (await fresh.known([older.name, kept.name])) == {
        older.name: {"width": 500, "height": 500, "variants": [320]},
        kept.name: {"width": 900, "height": 600, "variants": [320, 640]},
    }
    assert await MediaStore(root).backfill(MediaIndex(db)) == 0  # nothing left to do
    assert isinstance(kept, StoredMedia)


def test_the_backfill_command(
    mongo_url: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "12" * 16 + ".jpg"
    (tmp_path / name).write_bytes(jpeg(700, 500))
    database = f"gavel_backfill_{uuid.uuid4().hex[:8]}"
    sync: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    try:
        argv = ["backfill", "--media-dir", str(tmp_path), "--mongodb-url", mongo_url, "--database", database]
        assert media_command(argv) == 0
        assert "made variants for 1 image(s)" in capsys.readouterr().out
        assert webp_size(tmp_path / variant_name(name, 640)) == (640, 457)
        entry = sync[database].media.find_one({"_id": name})
        assert entry is not None and entry["variants"] == [320, 640] and entry["width"] == 700
    finally:
        sync.drop_database(database)
        sync.close()


async def test_delete_removes_the_original_its_variants_and_its_index_entry(
    tmp_path: pathlib.Path, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    index = MediaIndex(mongo_db)
    store = MediaStore(tmp_path, index=index)
    kept = await store.save(jpeg(700, 400))
    gone = await store.save(jpeg(700, 400))
    assert await store.delete("https://gavel.example" + gone.path) is True
    assert files(tmp_path) == sorted([kept.name, *(variant_name(kept.name, w) for w in kept.variants)])
    assert await mongo_db.media.count_documents({"_id": gone.name}) == 0
    assert await index.known([gone.name]) == {}
    assert await store.delete(gone.path) is False  # already gone
    # Names we never produce are never touched (no path tricks).
    assert await store.delete("/media/../../etc/passwd") is False
    assert await store.delete(kept.name + "/..") is False
