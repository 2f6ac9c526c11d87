"""Attachments of the mentors' follow-ups, checked by the same rules as homework hand-ins: one
sniffing function and one set of errors (shop/degree_service.py `sniff_file`), so a follow-up
and a hand-in accept exactly the same files."""

from shop.degree_service import (
    MAX_FILE_BYTES,
    FileRejected,
    FileTooLarge,
    TooManyFiles,
    clean_file_name,
    sniff_file,
)

__all__ = ["MAX_FILE_BYTES", "FileRejected", "FileTooLarge", "TooManyFiles", "check_file", "clean_file_name"]


def check_file(name: str, data: bytes) -> str:
    """The sniffed type of an upload; FILE_TOO_LARGE / FILE_REJECTED otherwise."""
    if len(data) > MAX_FILE_BYTES:
        raise FileTooLarge(f"a file must not exceed {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    media_type = sniff_file(data)
    if media_type is None:
        raise FileRejected("files must be PDF, PNG, JPEG, GIF, WebP, ZIP or UTF-8 text")
    return media_type
