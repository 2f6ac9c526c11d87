"""Append-only, crash-safe command journal of the single-writer engine.

Layout: a directory of segment files ``journal-{first_seq:020d}.log``.  Each segment starts
with an 8-byte header (``b"GVLJ"`` + u32 LE format version) followed by records::

    <IQI  payload length (u32), seq (u64), crc32(seq bytes + payload) (u32)
    payload bytes

Sequence numbers are strictly consecutive across the whole journal.  Records are buffered
by :meth:`JournalWriter.append` and written + fdatasynced once per group
(:meth:`JournalWriter.take_batch` then :meth:`JournalWriter.write_and_sync`).

Plain blocking file I/O, stdlib only; the engine runs the blocking calls in an executor.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Final

__all__ = [
    "FILE_HEADER",
    "FILE_HEADER_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_PAYLOAD",
    "RECORD_HEADER_SIZE",
    "JournalCorrupt",
    "JournalWriter",
    "encode_record",
    "last_seq",
    "recover",
    "scan_segment",
]

MAGIC = b"GVLJ"
FORMAT_VERSION = 1
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_SEQ = 2**64 - 1

_FILE_HDR = struct.Struct("<4sI")
FILE_HEADER = _FILE_HDR.pack(MAGIC, FORMAT_VERSION)
FILE_HEADER_SIZE = _FILE_HDR.size  # 8
_REC = struct.Struct("<IQI")
RECORD_HEADER_SIZE = _REC.size  # 16
_SEQ = struct.Struct("<Q")

_PREFIX = "journal-"
_SUFFIX = ".log"
_DIGITS = 20

# Bound once: these run per record on the hot paths.  Readers CRC the seq re-packed from
# the unpacked header (the very same 8 bytes, cheaper than slicing them out).
# Final and precisely typed: compiled (mypyc) they are C statics, and the header unpacks as a
# tuple of three ints rather than through the iterator protocol.
_rec_pack: Final = _REC.pack
_rec_unpack_from: Final[Callable[[bytes, int], tuple[int, int, int]]] = _REC.unpack_from
_seq_pack: Final[Callable[[int], bytes]] = _SEQ.pack
_crc32: Final = zlib.crc32


class JournalCorrupt(Exception):
    """Journal damage that is not a torn tail (bad record mid-journal, seq gap, bad header)."""


def encode_record(seq: int, payload: bytes) -> bytes:
    """Encode one record (header + payload)."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError(f"journal payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"journal seq {seq} out of u64 range")
    return _rec_pack(n, seq, _crc32(payload, _crc32(_seq_pack(seq)))) + payload


def _check_file_header(data: bytes, where: str) -> None:
    magic, version = _FILE_HDR.unpack_from(data, 0)
    if magic != MAGIC:
        raise JournalCorrupt(f"{where}: bad segment magic {magic!r} (expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise JournalCorrupt(f"{where}: unsupported journal format version {version}")


def scan_segment(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Parse a segment file's bytes; return its whole records and where the valid prefix ends.

    The scan stops at the first torn or damaged record (short header, length over
    MAX_PAYLOAD, payload past the end, CRC mismatch).  Data shorter than the file header
    gives ``([], 0)``; a full-size but wrong file header raises JournalCorrupt.
    Sequence continuity is not checked here (see :func:`recover`).
    """
    size = len(data)
    if size < FILE_HEADER_SIZE:
        return [], 0
    _check_file_header(data, "segment")
    records: list[tuple[int, bytes]] = []
    add = records.append
    off = FILE_HEADER_SIZE
    limit = size - RECORD_HEADER_SIZE
    while off <= limit:
        n, seq, crc = _rec_unpack_from(data, off)
        start = off + RECORD_HEADER_SIZE
        end = start + n
        if end > size or n > MAX_PAYLOAD:
            break
        payload = data[start:end]
        if _crc32(payload, _crc32(_seq_pack(seq))) != crc:
            break
        add((seq, payload))
        off = end
    return records, off


# --------------------------------------------------------------------------- files


def _segment_name(first_seq: int) -> str:
    return f"{_PREFIX}{first_seq:0{_DIGITS}d}{_SUFFIX}"


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    """Segment files of ``directory`` as (first_seq, path), oldest first; [] if it is missing."""
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    segs: list[tuple[int, Path]] = []
    for path in entries:
        name = path.name
        digits = name[len(_PREFIX) : -len(_SUFFIX)]
        if (
            name.startswith(_PREFIX)
            and name.endswith(_SUFFIX)
            and len(digits) == _DIGITS
            and digits.isdigit()
            and digits.isascii()
        ):
            segs.append((int(digits), path))
    segs.sort()
    return segs


def _header_torn(data: bytes, is_last: bool) -> bool:
    """True for a segment cut short in its file header (crash right after creation).

    That is a file shorter than the header or, for the last segment only, a file of
    nothing but zero bytes (a filesystem that grew the file before writing its data).
    """
    if len(data) < FILE_HEADER_SIZE:
        return True
    return is_last and data[:4] != MAGIC and data.count(0) == len(data)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    total = len(view)
    done = 0
    while done < total:
        n = os.write(fd, view[done:])
        if n <= 0:
            raise OSError(f"os.write wrote {n} bytes to the journal")
        done += n


def _open_segment(path: Path, *, create: bool, sync: bool) -> int:
    """Open ``path`` for appending after (re)writing its file header; returns the fd.

    ``create``: the file must not exist yet; otherwise the existing file is reset to a bare
    header.  With ``sync`` the file and its directory are fsynced before returning.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    flags |= (os.O_CREAT | os.O_EXCL) if create else os.O_TRUNC
    fd = os.open(path, flags, 0o644)
    try:
        _write_all(fd, FILE_HEADER)
        if sync:
            os.fsync(fd)
            _fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _segment_end_seq(first_seq: int, records: list[tuple[int, bytes]], path: Path) -> int:
    """Check that ``records`` run consecutively from ``first_seq``; return the last seq."""
    for i, (seq, _) in enumerate(records):
        if seq != first_seq + i:
            raise JournalCorrupt(
                f"{path}: record #{i} has seq {seq}, expected {first_seq + i} "
                "(segments must hold consecutive seqs starting at the seq in their name)"
            )
    return first_seq + len(records) - 1


# --------------------------------------------------------------------------- writer


class JournalWriter:
    """Single writer of the journal: buffer records, then write + fdatasync them in groups.

    ``append``/``take_batch``/``pending``/``next_seq`` never touch the file and may run on the
    event loop thread while ``write_and_sync`` (the blocking part) runs in a worker thread.
    At most one ``write_and_sync`` at a time, in the order the batches were taken.
    """

    def __init__(self, directory: Path, next_seq: int, *, sync: bool = True) -> None:
        """Open the segment that ``next_seq`` goes into (see module docs).

        Appends to the newest segment when its records end exactly at ``next_seq - 1`` (the
        normal case after :func:`recover`); otherwise starts ``journal-{next_seq}.log``.
        Raises JournalCorrupt if the newest segment still has a torn tail (call recover()
        first) and ValueError if ``next_seq`` would reuse sequence numbers already on disk.
        """
        if not 1 <= next_seq <= MAX_SEQ:
            raise ValueError(f"next_seq must be in 1..2**64-1, got {next_seq}")
        self._dir = Path(directory)
        self._sync = sync
        self._buf = bytearray()
        self._next_seq = next_seq
        self._batch_first = next_seq  # seq of the first record not yet taken
        self._taken_bytes = 0  # only changed by take_batch (loop thread)
        self._written_bytes = 0  # only changed by write_and_sync (worker thread)
        self._failed: BaseException | None = None
        self._fd = -1
        self._dir.mkdir(parents=True, exist_ok=True)

        segs = _list_segments(self._dir)
        if segs:
            first, path = segs[-1]
            data = path.read_bytes()
            if _header_torn(data, True):
                end_seq = first - 1
                if first == next_seq:
                    self._fd = _open_segment(path, create=False, sync=sync)
            else:
                records, end = scan_segment(data)
                if end != len(data):
                    raise JournalCorrupt(
                        f"{path}: torn or damaged tail at byte {end} of {len(data)}; "
                        "run recover() before opening a writer"
                    )
                end_seq = _segment_end_seq(first, records, path)
                if end_seq + 1 == next_seq:
                    self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            if self._fd < 0:
                if next_seq <= end_seq:
                    raise ValueError(
                        f"next_seq {next_seq} would reuse seqs already journaled in {path} "
                        f"(which ends at seq {end_seq})"
                    )
                path = self._dir / _segment_name(next_seq)
                self._fd = _open_segment(path, create=True, sync=sync)
        else:
            path = self._dir / _segment_name(next_seq)
            self._fd = _open_segment(path, create=True, sync=sync)
        self._path = path
        self._segment_first = int(path.name[len(_PREFIX) : -len(_SUFFIX)])

    # -- loop thread ---------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """Seq the next append() will get."""
        return self._next_seq

    @property
    def path(self) -> Path:
        """The current segment file."""
        return self._path

    def append(self, payload: bytes) -> int:
        """Buffer one record and return its seq (no I/O)."""
        seq = self._next_seq
        n = len(payload)
        if n > MAX_PAYLOAD:
            raise ValueError(f"journal payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        buf = self._buf
        buf += _rec_pack(n, seq, _crc32(payload, _crc32(_seq_pack(seq))))
        buf += payload
        self._next_seq = seq + 1
        return seq

    def pending(self) -> int:
        """Number of records appended but not yet taken."""
        return self._next_seq - self._batch_first

    def take_batch(self) -> bytes:
        """Return the buffered records' bytes and clear the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        self._batch_first = self._next_seq
        self._taken_bytes += len(data)
        return data

    # -- blocking (worker thread) ----------------------------------------------------

    def write_and_sync(self, data: bytes) -> None:
        """Write ``data`` fully to the current segment, then fdatasync it (unless sync=False).

        Any failure poisons the writer: the file may now end in a partial record, so every
        later write_and_sync/rotate raises RuntimeError; restart and recover() instead.
        """
        self._check_usable()
        if not data:
            return
        try:
            _write_all(self._fd, data)
            if self._sync:
                os.fdatasync(self._fd)
        except BaseException as exc:
            self._failed = exc
            raise
        self._written_bytes += len(data)

    def rotate(self) -> None:
        """Close the current segment and start one named for the first seq not yet taken.

        With nothing pending that is ``next_seq``.  No-op when the current segment holds no
        records.  Raises RuntimeError if a taken batch has not been written yet.
        """
        self._check_usable()
        if self._taken_bytes > self._written_bytes:
            raise RuntimeError("rotate() called while a journal batch is in flight")
        first = self._batch_first
        if first == self._segment_first:
            return
        path = self._dir / _segment_name(first)
        fd = _open_segment(path, create=True, sync=self._sync)
        old = self._fd
        self._fd, self._path, self._segment_first = fd, path, first
        os.close(old)

    def prune(self, covered_seq: int) -> list[Path]:
        """Delete the oldest segments whose records all have seq <= covered_seq.

        A segment's last seq is taken as the next segment's first seq - 1.  The current
        segment is never deleted.  Returns the deleted paths, oldest first.
        """
        segs = _list_segments(self._dir)
        deleted: list[Path] = []
        for (first, path), (next_first, _) in pairwise(segs):
            if first >= self._segment_first or next_first - 1 > covered_seq:
                break
            path.unlink()
            deleted.append(path)
        if deleted and self._sync:
            _fsync_dir(self._dir)
        return deleted

    def close(self) -> None:
        """Close the segment fd (buffered, untaken records are dropped)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._failed is not None:
            msg = "journal writer failed earlier; recover and reopen"
            raise RuntimeError(msg) from self._failed
        if self._fd < 0:
            raise ValueError("journal writer is closed")


# --------------------------------------------------------------------------- readers


def recover(directory: Path, after_seq: int = 0, *, read_only: bool = False) -> Iterator[tuple[int, bytes]]:
    """Yield (seq, payload) for every record with seq > after_seq, in order.

    ``read_only``: for a reader beside the live writer (the archiver process): a torn tail is
    left as it is (it may be a group being written right now) and the files are never touched.

    Segments entirely at or below ``after_seq`` are skipped unread.  A torn/damaged tail of
    the last segment is truncated in place and fsynced (a last segment cut inside its
    file header gets a fresh header).  Damage followed by more data in an earlier segment,
    a seq gap, or records missing right after ``after_seq`` raise JournalCorrupt.
    Work (and truncation) happens lazily: consume the iterator to the end before writing.
    """
    directory = Path(directory)
    segs = _list_segments(directory)
    if not segs:
        return
    want = after_seq + 1
    start = 0
    for i in range(1, len(segs)):
        if segs[i][0] <= want:
            start = i
    last_index = len(segs) - 1
    # Seq the next record must have; for the first segment read, records must begin no
    # later than after_seq + 1 (checked on the first record, see below).
    expect = -1
    for i in range(start, len(segs)):
        first, path = segs[i]
        is_last = i == last_index
        if expect >= 0 and first != expect:
            raise JournalCorrupt(
                f"seq gap: {path.name} starts at seq {first} but the previous segment "
                f"ends at seq {expect - 1}"
            )
        expect = first
        data = path.read_bytes()
        size = len(data)
        if _header_torn(data, is_last):
            if is_last and not read_only:
                os.close(_open_segment(path, create=False, sync=True))
            continue
        _check_file_header(data, str(path))
        off = FILE_HEADER_SIZE
        limit = size - RECORD_HEADER_SIZE
        # Inlined scan_segment loop (plus seq checks and yielding) for speed.
        while off <= limit:
            n, seq, crc = _rec_unpack_from(data, off)
            pstart = off + RECORD_HEADER_SIZE
            end = pstart + n
            if end > size or n > MAX_PAYLOAD:
                break
            payload = data[pstart:end]
            if _crc32(payload, _crc32(_seq_pack(seq))) != crc:
                break
            if seq != expect:
                raise JournalCorrupt(
                    f"{path}: record at byte {off} has seq {seq}, expected {expect} "
                    "(segments must hold consecutive seqs starting at the seq in their name)"
                )
            if seq >= want:
                if seq != want:
                    # Only possible for the very first record read: seqs are consecutive.
                    raise JournalCorrupt(
                        f"records {want}..{seq - 1} are missing: the journal resumes at "
                        f"seq {seq} ({path.name}) but recovery starts after seq {after_seq}"
                    )
                want = seq + 1
                yield seq, payload
            expect = seq + 1
            off = end
        if off != size:
            if not is_last:
                raise JournalCorrupt(
                    f"{path}: damaged record at byte {off} followed by {size - off} more "
                    "bytes in a segment that is not the last one"
                )
            if not read_only:
                _truncate(path, off)


def last_seq(directory: Path) -> int:
    """Highest whole record's seq in the journal, 0 if none (read-only)."""
    segs = _list_segments(Path(directory))
    for i in range(len(segs) - 1, -1, -1):
        data = segs[i][1].read_bytes()
        if _header_torn(data, i == len(segs) - 1):
            continue
        records, _ = scan_segment(data)
        if records:
            return records[-1][0]
    return 0
