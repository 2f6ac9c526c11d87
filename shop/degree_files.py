"""The degree path's attachments (homework hand-ins, follow-ups): the type is sniffed from the
bytes, never taken from the name or the client's header."""

from typing import Final

from engine.book.errors import GavelError

MAX_FILE_BYTES: Final = 10 * 1024 * 1024
MAX_FILES: Final = 5
MAX_NAME: Final = 200


class FileRejected(GavelError):
    code = "FILE_REJECTED"


class FileTooLarge(GavelError):
    code = "FILE_TOO_LARGE"


class TooManyFiles(GavelError):
    code = "TOO_MANY_FILES"


_MAGIC: Final = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
)


def sniff(data: bytes) -> str | None:
    """The media type of `data` if it is one we accept (pdf, png, jpeg, gif, webp, zip, UTF-8
    plain text without control characters), else None."""
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "text/plain"
    return None


def check_file(name: str, data: bytes) -> str:
    """The sniffed type of an upload; FILE_TOO_LARGE / FILE_REJECTED otherwise."""
    if len(data) > MAX_FILE_BYTES:
        raise FileTooLarge(f"a file must not exceed {MAX_FILE_BYTES} bytes")
    if not name or len(name) > MAX_NAME:
        raise FileRejected(f"a file needs a name of 1-{MAX_NAME} characters")
    media_type = sniff(data)
    if media_type is None:
        raise FileRejected("only pdf, png, jpeg, gif, webp, zip and UTF-8 text files are accepted")
    return media_type
