"""The local media store: uploaded images (lot covers, detail images, session covers) on disk.

Files live flat under one root directory (`DATA_DIR/media` in production) with random names, so a
name reveals nothing and cannot be guessed or chosen by the uploader. The type is decided by the
file's first bytes (magic numbers), never by the declared content type or the file name: only PNG,
JPEG, WebP and GIF are kept, and the stored extension is the sniffed one, so the server serves each
file with the right `Content-Type` (plus `X-Content-Type-Options: nosniff`).

Every upload must also decode (Pillow) and stay under `MAX_PIXELS`. Next to the original the store
writes WebP variants for responsive pages, `<name>-w320.webp`, `-w640`, `-w1280` (only widths up to
the original's, never upscaled, and always at least one), upright (EXIF orientation applied) and
without EXIF. `MediaIndex` keeps each original's size and variant widths in the `media` collection,
so public views can list `srcset`s without touching the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import hashlib
import io
import logging
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageOps

from engine.book.errors import GavelError
from persistence.mongo import Database, Document

log = logging.getLogger("gavel.media")

DEFAULT_MAX_BYTES = 5 * 1024 * 1024  # 5 MiB
URL_PREFIX = "/media/"
VARIANT_WIDTHS: Final = (320, 640, 1280)
# A 5 MiB file can still claim a huge canvas (a decompression bomb): 40 MP is a 7,300 x 5,500 photo.
MAX_PIXELS: Final = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow itself refuses twice this while reading the header
WEBP_QUALITY: Final = 80
MEDIA_TYPES: Final = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
# An original: 32 hex characters and one of our extensions.
ORIGINAL_PATTERN = re.compile(r"[0-9a-f]{32}\.(?:png|jpg|webp|gif)")
# What the server serves: an original or one of its variants. Anything else is 404.
NAME_PATTERN = re.compile(r"[0-9a-f]{32}(?:\.(?:png|jpg|webp|gif)|-w(?:320|640|1280)\.webp)")


class MediaRejected(GavelError):
    """The upload is not an image we keep (type, does not decode, too many pixels) or is empty."""

    code = "VALIDATION"


class MediaTooLarge(GavelError):
    code = "PAYLOAD_TOO_LARGE"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredMedia:
    name: str  # e.g. "3f2a...e1.png"
    content_type: str
    size: int
    sha256: str
    width: int = 0  # as displayed (after EXIF orientation)
    height: int = 0
    variants: tuple[int, ...] = ()  # the variant labels written, e.g. (320, 640)

    @property
    def path(self) -> str:
        """The URL path the file is served at, e.g. "/media/3f2a...e1.png"."""
        return URL_PREFIX + self.name


@dataclasses.dataclass(frozen=True, slots=True)
class Rendition:
    """A decoded original: its displayed size and the encoded WebP variants by label width."""

    width: int
    height: int
    variants: dict[int, bytes]


def sniff_image(data: bytes) -> tuple[str, str] | None:
    """(content type, extension) from the first bytes, or None if not PNG, JPEG, WebP or GIF."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif", "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def variant_name(name: str, label: int) -> str:
    """The name of an original's variant: "3f2a...e1.jpg", 640 -> "3f2a...e1-w640.webp"."""
    return f"{name.partition('.')[0]}-w{label}.webp"


def variant_labels(width: int) -> tuple[int, ...]:
    """The variant widths an original of `width` pixels gets: none wider than it, at least one."""
    return tuple(w for w in VARIANT_WIDTHS if w <= width) or (VARIANT_WIDTHS[0],)


def render(data: bytes) -> Rendition:
    """Decode, orient and encode the variants; CPU-bound (run it in a thread). Raises MediaRejected."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise MediaRejected(f"images are limited to {MAX_PIXELS // 1_000_000} megapixels")
            orientation = image.getexif().get(0x0112, 1)
            width, height = image.size
            if orientation in (5, 6, 7, 8):  # rotated a quarter turn: displayed the other way round
                width, height = height, width
            icc_profile = image.info.get("icc_profile")
            # JPEG can decode at 1/2, 1/4, 1/8 scale: enough pixels for the widest variant, faster.
            image.draft("RGB", (VARIANT_WIDTHS[-1], VARIANT_WIDTHS[-1]))
            image.load()  # the first frame of an animation: the variants are stills
            upright = ImageOps.exif_transpose(image)
            if upright.mode not in ("RGB", "RGBA"):  # WebP holds these two; palette, CMYK, 16-bit...
                transparent = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
                upright = upright.convert("RGBA" if transparent else "RGB")
    except MediaRejected:
        raise
    except Exception as error:  # untrusted bytes: any decoder failure is a refusal, not a 500
        raise MediaRejected("the image could not be read (damaged, or too many pixels)") from error
    variants: dict[int, bytes] = {}
    source = upright
    for label in sorted(variant_labels(width), reverse=True):  # each from the next larger: cheaper
        target = min(label, width)
        size = (min(target, source.width), max(1, round(height * target / width)))
        if size != source.size:
            source = source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        out = io.BytesIO()
        # No EXIF or XMP (GPS, camera serial...) in what we derive; the colour profile stays.
        source.save(out, "WEBP", quality=WEBP_QUALITY, method=4, exif=b"", xmp=b"", icc_profile=icc_profile)
        variants[label] = out.getvalue()
    return Rendition(width, height, variants)


# == the original's metadata =============================================================================
# What an uploaded original keeps: its pixels, its colour profile and (JPEG) its orientation. Its EXIF
# (GPS position, camera serial, time), XMP and IPTC go: the original is served to anyone, as the
# variants are. The bytes of the image itself are not re-encoded.
_JPEG_DROPPED_APPS: Final = (0xE1, 0xED)  # APP1: EXIF and XMP; APP13: Photoshop IPTC
_PNG_DROPPED_CHUNKS: Final = (b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME")
_WEBP_DROPPED_CHUNKS: Final = (b"EXIF", b"XMP ")
_ORIENTATION: Final = 0x0112


def strip_metadata(data: bytes) -> bytes:
    """`data` without its EXIF, XMP and text metadata (PNG, JPEG, WebP; GIF carries none we keep
    apart from its frames). A JPEG keeps a minimal EXIF with only its orientation, so it is still
    shown upright. Raises MediaRejected for a structure it cannot walk."""
    try:
        if data.startswith(b"\xff\xd8"):
            return _strip_jpeg(data)
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _strip_png(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _strip_webp(data)
    except (IndexError, ValueError) as error:
        raise MediaRejected("the image could not be read (damaged)") from error
    return data


def _orientation_exif(data: bytes) -> bytes:
    """An APP1 segment holding only the orientation of the JPEG `data` (none when it is upright)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            orientation = int(image.getexif().get(_ORIENTATION, 1))
    except Exception:
        return b""
    if orientation == 1 or not 1 <= orientation <= 8:
        return b""
    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    payload = exif.tobytes()
    if not payload.startswith(b"Exif\x00\x00"):
        payload = b"Exif\x00\x00" + payload
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _strip_jpeg(data: bytes) -> bytes:
    kept = [data[:2]]
    at = 2
    while at < len(data):
        if data[at] != 0xFF:
            raise ValueError("a JPEG segment must start with 0xFF")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA or marker == 0xD9:  # start of scan (then entropy-coded data) or end
            kept.append(data[at:])
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            kept.append(data[at : at + 2])
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if length < 2 or at + 2 + length > len(data):
            raise ValueError("a JPEG segment runs past the end")
        if marker not in _JPEG_DROPPED_APPS:
            kept.append(data[at : at + 2 + length])
        at += 2 + length
    # The orientation goes right after SOI (and a JFIF APP0 when there is one).
    orientation = _orientation_exif(data)
    if orientation and len(kept) > 1 and kept[1][:2] == b"\xff\xe0":
        return b"".join([kept[0], kept[1], orientation, *kept[2:]])
    return b"".join([kept[0], orientation, *kept[1:]])


def _strip_png(data: bytes) -> bytes:
    kept = [data[:8]]
    at = 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        end = at + 12 + length
        if end > len(data):
            raise ValueError("a PNG chunk runs past the end")
        if data[at + 4 : at + 8] not in _PNG_DROPPED_CHUNKS:
            kept.append(data[at:end])
        at = end
    return b"".join(kept)


def _strip_webp(data: bytes) -> bytes:
    chunks = []
    at = 12
    while at + 8 <= len(data):
        fourcc = data[at : at + 4]
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        end = at + 8 + size + (size & 1)
        if at + 8 + size > len(data):
            raise ValueError("a WebP chunk runs past the end")
        if fourcc not in _WEBP_DROPPED_CHUNKS:
            chunk = bytearray(data[at : min(end, len(data))])
            if fourcc == b"VP8X":  # the extended header's flags say EXIF (0x08) and XMP (0x04) exist
                chunk[8] &= ~0x0C & 0xFF
            chunks.append(bytes(chunk))
        at = end
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


class MediaStore:
    """Saves validated images (and their variants) under `root` and finds them again by name."""

    def __init__(
        self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, index: MediaIndex | None = None
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.index = index

    def check(self, data: bytes) -> tuple[str, str]:
        """The sniffed (content type, extension); raises MediaRejected / MediaTooLarge."""
        if len(data) > self.max_bytes:
            raise MediaTooLarge(f"images are limited to {self.max_bytes // (1024 * 1024)} MiB")
        if not data:
            raise MediaRejected("the file is empty")
        sniffed = sniff_image(data)
        if sniffed is None:
            raise MediaRejected("only PNG, JPEG, WebP and GIF images are accepted")
        return sniffed

    async def save(self, data: bytes) -> StoredMedia:
        content_type, extension = self.check(data)
        name = f"{secrets.token_hex(16)}.{extension}"
        rendition, data = await asyncio.to_thread(self._render_and_write, name, data)
        digest = hashlib.sha256(data).hexdigest()
        stored = StoredMedia(
            name,
            content_type,
            len(data),
            digest,
            rendition.width,
            rendition.height,
            tuple(sorted(rendition.variants)),
        )
        if self.index is not None:
            await self.index.record(stored)
        return stored

    async def save_original(self, data: bytes) -> StoredMedia:
        """Store the original only, for images the service draws itself (the demo's): its variants
        are made by `backfill` later, and until then its pages show the original (the index names
        no variant, so no srcset points at a file that is not there yet)."""
        content_type, extension = self.check(data)
        name = f"{secrets.token_hex(16)}.{extension}"
        original = strip_metadata(data)
        with Image.open(io.BytesIO(original)) as image:  # reads the header only
            width, height = image.size
        await asyncio.to_thread(self._write, name, original)
        stored = StoredMedia(
            name, content_type, len(original), hashlib.sha256(original).hexdigest(), width, height, ()
        )
        if self.index is not None:
            await self.index.record(stored)
        return stored

    def _render_and_write(self, name: str, data: bytes) -> tuple[Rendition, bytes]:
        """The rendition, and the original as stored (without its location and other metadata)."""
        rendition = render(data)
        original = strip_metadata(data)
        # Variants first: once the original's URL exists, so does everything its srcset names.
        for label, encoded in rendition.variants.items():
            self._write(variant_name(name, label), encoded)
        self._write(name, original)
        return rendition, original

    def _write(self, name: str, data: bytes) -> None:
        """Write to a temporary file and rename, so a reader never sees half a file."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / name
        temporary = self.root / f".{name}.part"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            temporary.replace(final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    async def delete(self, url_or_name: str) -> bool:
        """Remove an original, its variants and its index entry (a deleted post's images); whether
        the original was there. Names we would never have produced are left alone."""
        name = self.name_from_url(url_or_name) if URL_PREFIX in url_or_name else url_or_name
        if name is None or not ORIGINAL_PATTERN.fullmatch(name):
            return False
        original = self.root / name
        existed = original.exists()
        for path in [original, *(self.root / variant_name(name, w) for w in VARIANT_WIDTHS)]:
            await asyncio.to_thread(path.unlink, True)
        if self.index is not None:
            await self.index.forget(name)
        return existed

    def path_of(self, name: str) -> Path | None:
        """The file of a stored name; None for names we would never have produced."""
        if not NAME_PATTERN.fullmatch(name):
            return None
        return self.root / name

    @staticmethod
    def name_from_url(url: str) -> str | None:
        """The stored name in one of our media URLs (absolute or a path), else None."""
        marker = url.find(URL_PREFIX)
        if marker < 0:
            return None
        name = url[marker + len(URL_PREFIX) :]
        return name if NAME_PATTERN.fullmatch(name) else None

    async def backfill(self, index: MediaIndex | None = None) -> int:
        """Make missing variants (and index entries) for originals already on disk; returns how many
        originals needed work. Files that no longer decode are logged and left alone."""
        index = index if index is not None else self.index
        if not self.root.is_dir():
            return 0
        names = sorted(p.name for p in self.root.iterdir() if ORIGINAL_PATTERN.fullmatch(p.name))
        known = await index.known(names) if index is not None else {}
        done = 0
        for name in names:
            entry = known.get(name)
            labels = tuple(entry.get("variants", ())) if entry else ()
            if labels and all((self.root / variant_name(name, label)).is_file() for label in labels):
                continue
            stored = await asyncio.to_thread(self._backfill_one, name)
            if stored is None:
                continue
            if index is not None:
                await index.record(stored)
            done += 1
        return done

    def _backfill_one(self, name: str) -> StoredMedia | None:
        data = (self.root / name).read_bytes()
        sniffed = sniff_image(data)
        try:
            rendition = render(data)
        except MediaRejected as error:
            log.warning("media %s: no variants (%s)", name, error.message)
            return None
        for label, encoded in rendition.variants.items():
            self._write(variant_name(name, label), encoded)
        content_type = sniffed[0] if sniffed else "application/octet-stream"
        return StoredMedia(
            name,
            content_type,
            len(data),
            hashlib.sha256(data).hexdigest(),
            rendition.width,
            rendition.height,
            tuple(sorted(rendition.variants)),
        )


# -- what public views show --------------------------------------------------------------------------
def original_name(url: str) -> str | None:
    """The original's stored name in one of our media URLs, else None (variants and others)."""
    name = MediaStore.name_from_url(url)
    return name if name is not None and ORIGINAL_PATTERN.fullmatch(name) else None


def picture(url: str, entry: Mapping[str, Any] | None) -> Document:
    """`{"url", "srcset", "thumb", "width", "height"}` for an image URL; without an index entry (not
    ours, or uploaded before variants existed) `{"url": url, "srcset": "", "thumb": url}`."""
    name = original_name(url)
    labels = sorted(int(w) for w in entry.get("variants", ())) if entry else []
    if name is None or entry is None or not labels:
        return {"url": url, "srcset": "", "thumb": url}
    width, height = int(entry["width"]), int(entry["height"])
    base = url[: len(url) - len(name)]
    urls = [(base + variant_name(name, label), min(label, width)) for label in labels]
    return {
        "url": url,
        "srcset": ", ".join(f"{u} {w}w" for u, w in urls),
        "thumb": urls[0][0],
        "width": width,
        "height": height,
    }


class MediaIndex:
    """Each original's displayed size and variant widths: the `media` collection, keyed by name.

    Entries never change once written (names are random and never reused), so lookups are cached
    in the process; only names without an entry are asked of MongoDB again.
    """

    CACHE_LIMIT: Final = 50_000

    def __init__(self, db: Database) -> None:
        self.collection = db.media
        self._cache: dict[str, Document] = {}

    async def record(self, stored: StoredMedia) -> None:
        entry: Document = {
            "width": stored.width,
            "height": stored.height,
            "variants": list(stored.variants),
            "content_type": stored.content_type,
            "size": stored.size,
            "sha256": stored.sha256,
            "created_at": datetime.datetime.now(datetime.UTC),
        }
        await self.collection.replace_one({"_id": stored.name}, entry, upsert=True)
        self._remember(stored.name, entry)

    async def known(self, names: Iterable[str]) -> dict[str, Document]:
        """The entries of `names` that have one."""
        wanted = set(names)
        missing = [name for name in wanted if name not in self._cache]
        if missing:
            projection = {"width": 1, "height": 1, "variants": 1}
            async for doc in self.collection.find({"_id": {"$in": missing}}, projection):
                self._remember(str(doc.pop("_id")), doc)
        return {name: self._cache[name] for name in wanted if name in self._cache}

    async def pictures(self, urls: Sequence[str]) -> dict[str, Document]:
        """`picture(url)` for each URL (one query at most, for names not yet cached)."""
        names = {url: original_name(url) for url in urls}
        known = await self.known(name for name in names.values() if name is not None)
        return {url: picture(url, known.get(name) if name else None) for url, name in names.items()}

    async def forget(self, name: str) -> None:
        self._cache.pop(name, None)
        await self.collection.delete_one({"_id": name})

    def _remember(self, name: str, entry: Document) -> None:
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[name] = {k: entry[k] for k in ("width", "height", "variants") if k in entry}


# -- python -m persistence.media backfill --------------------------------------------------------------
async def _backfill_main(media_dir: Path, mongodb_url: str, database: str) -> int:
    from persistence.mongo import connect

    client = connect(mongodb_url)
    try:
        count = await MediaStore(media_dir).backfill(MediaIndex(client[database]))
    finally:
        await client.close()
    print(f"media: made variants for {count} image(s) in {media_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m persistence.media",
        description="Make the missing WebP variants (and index entries) of images already uploaded. "
        "The service also does this at start-up, in the background.",
    )
    parser.add_argument("command", choices=["backfill"])
    parser.add_argument("--media-dir", type=Path, default=Path("var/media"), help="default var/media")
    parser.add_argument("--mongodb-url", default=os.environ.get("MONGODB_URL", ""), help="[MONGODB_URL]")
    parser.add_argument("--database", default=os.environ.get("MONGODB_DB", "gavel"), help="[MONGODB_DB]")
    args = parser.parse_args(argv)
    if not args.mongodb_url:
        parser.error("--mongodb-url (or MONGODB_URL) is required")
    return asyncio.run(_backfill_main(args.media_dir, args.mongodb_url, args.database))


if __name__ == "__main__":
    sys.exit(main())
