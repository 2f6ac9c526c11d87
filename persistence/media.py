"""The local media store: uploaded images (lot covers, detail images, session covers) on disk.

Files live flat under one root directory (`DATA_DIR/media` in production) with random names, so a
name reveals nothing and cannot be guessed or chosen by the uploader. The type is decided by the
file's first bytes (magic numbers), never by the declared content type or the file name: only PNG,
JPEG, WebP and GIF are kept, and the stored extension is the sniffed one, so the server serves each
file with the right `Content-Type` (plus `X-Content-Type-Options: nosniff`).
"""

import asyncio
import dataclasses
import hashlib
import os
import re
import secrets
from pathlib import Path

from engine.book.errors import GavelError

DEFAULT_MAX_BYTES = 5 * 1024 * 1024  # 5 MiB
URL_PREFIX = "/media/"
# What a stored name looks like: 32 hex characters and one of our extensions. Anything else is 404.
NAME_PATTERN = re.compile(r"[0-9a-f]{32}\.(?:png|jpg|webp|gif)")


class MediaRejected(GavelError):
    """The upload is not an image we keep (type) or is empty."""

    code = "VALIDATION"


class MediaTooLarge(GavelError):
    code = "PAYLOAD_TOO_LARGE"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredMedia:
    name: str  # e.g. "3f2a...e1.png"
    content_type: str
    size: int
    sha256: str

    @property
    def path(self) -> str:
        """The URL path the file is served at, e.g. "/media/3f2a...e1.png"."""
        return URL_PREFIX + self.name


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


class MediaStore:
    """Saves validated images under `root` and finds them again by name."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

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
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, name, data)
        return StoredMedia(name, content_type, len(data), digest)

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
