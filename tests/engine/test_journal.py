"""Tests for engine.journal: format, group commit, rotation, pruning and crash recovery."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.journal import (
    FILE_HEADER,
    MAX_PAYLOAD,
    JournalCorrupt,
    JournalWriter,
    encode_record,
    last_seq,
    recover,
    scan_segment,
)

Records = list[tuple[int, bytes]]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.log"))


def seg_path(directory: Path, first_seq: int) -> Path:
    return directory / f"journal-{first_seq:020d}.log"


def write_batches(
    directory: Path,
    batches: list[list[bytes]],
    *,
    next_seq: int = 1,
    rotate_after: frozenset[int] = frozenset(),
    sync: bool = False,
) -> Records:
    """Write each batch as one group commit; rotate after the batch indexes given."""
    out: Records = []
    with JournalWriter(directory, next_seq, sync=sync) as w:
        for i, batch in enumerate(batches):
            for payload in batch:
                out.append((w.append(payload), payload))
            w.write_and_sync(w.take_batch())
            if i in rotate_after:
                w.rotate()
    return out


def numbered(n: int, start: int = 1) -> list[bytes]:
    return [f"cmd-{i}".encode() * (i % 4) for i in range(start, start + n)]


# --------------------------------------------------------------------------- format


def test_encode_record_layout() -> None:
    rec = encode_record(7, b"hello")
    n, seq, crc = struct.unpack_from("<IQI", rec)
    assert (n, seq) == (5, 7)
    assert crc == zlib.crc32(struct.pack("<Q", 7) + b"hello")
    assert rec[16:] == b"hello"
    assert FILE_HEADER == b"GVLJ\x01\x00\x00\x00"


def test_scan_segment_round_trip_and_stops_at_damage() -> None:
    payloads = [b"", b"a", b"bb" * 100, b"\x00" * 3]
    body = b"".join(encode_record(i + 1, p) for i, p in enumerate(payloads))
    data = FILE_HEADER + body
    records, end = scan_segment(data)
    assert records == [(i + 1, p) for i, p in enumerate(payloads)]
    assert end == len(data)

    # A damaged seq byte in record 3 is caught by the CRC (it covers the seq).
    third = len(FILE_HEADER) + len(encode_record(1, b"")) + len(encode_record(2, b"a"))
    bad = bytearray(data)
    bad[third + 4] ^= 0x01
    records, end = scan_segment(bytes(bad))
    assert [s for s, _ in records] == [1, 2]
    assert end == third

    assert scan_segment(b"GVL") == ([], 0)
    assert scan_segment(FILE_HEADER) == ([], len(FILE_HEADER))
    with pytest.raises(JournalCorrupt, match="magic"):
        scan_segment(b"ZZZZ\x01\x00\x00\x00")
    with pytest.raises(JournalCorrupt, match="version"):
        scan_segment(b"GVLJ\x02\x00\x00\x00")


def test_payload_too_large_rejected(tmp_path: Path) -> None:
    big = b"x" * (MAX_PAYLOAD + 1)
    with pytest.raises(ValueError, match="exceeds"):
        encode_record(1, big)
    with JournalWriter(tmp_path, 1, sync=False) as w:
        with pytest.raises(ValueError, match="exceeds"):
            w.append(big)
        assert w.next_seq == 1
        assert w.pending() == 0
        assert w.take_batch() == b""
        assert w.append(b"ok") == 1
    # Exactly the limit is fine.
    assert len(encode_record(1, b"x" * MAX_PAYLOAD)) == MAX_PAYLOAD + 16


def test_oversized_length_on_read_is_corruption(tmp_path: Path) -> None:
    # A forged record over the limit, complete and with a correct CRC, is still rejected.
    big = b"\x00" * (MAX_PAYLOAD + 1)
    hdr = struct.pack("<IQI", len(big), 2, zlib.crc32(big, zlib.crc32(struct.pack("<Q", 2))))
    data = FILE_HEADER + encode_record(1, b"a") + hdr + big
    assert scan_segment(data) == ([(1, b"a")], len(FILE_HEADER) + 17)

    # In the last segment it is a tail to truncate ...
    seg_path(tmp_path, 1).write_bytes(data)
    assert list(recover(tmp_path)) == [(1, b"a")]
    assert seg_path(tmp_path, 1).stat().st_size == len(FILE_HEADER) + 17
    # ... in an earlier one it is corruption.
    seg_path(tmp_path, 1).write_bytes(data)
    seg_path(tmp_path, 2).write_bytes(FILE_HEADER + encode_record(2, b"b"))
    with pytest.raises(JournalCorrupt, match="not the last"):
        list(recover(tmp_path))


# --------------------------------------------------------------------------- writer


def test_round_trip_batches_and_rotation(tmp_path: Path) -> None:
    batches = [numbered(3), numbered(1, 4), numbered(5, 5), numbered(2, 10), [b""]]
    written = write_batches(tmp_path, batches, rotate_after=frozenset({1, 2}), sync=True)
    assert [s for s, _ in written] == list(range(1, 13))
    assert [p.name for p in segments(tmp_path)] == [
        "journal-00000000000000000001.log",
        "journal-00000000000000000005.log",
        "journal-00000000000000000010.log",
    ]
    for path in segments(tmp_path):
        assert path.read_bytes()[:8] == FILE_HEADER
    assert list(recover(tmp_path)) == written
    assert last_seq(tmp_path) == 12


def test_writer_buffers_without_io(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, 5, sync=False)
    seg = seg_path(tmp_path, 5)
    assert seg.read_bytes() == FILE_HEADER
    assert (w.append(b"a"), w.append(b"bc"), w.next_seq, w.pending()) == (5, 6, 7, 2)
    assert seg.stat().st_size == 8  # nothing written yet
    batch = w.take_batch()
    assert batch == encode_record(5, b"a") + encode_record(6, b"bc")
    assert w.pending() == 0
    assert w.take_batch() == b""
    assert w.append(b"d") == 7
    assert w.pending() == 1
    w.write_and_sync(batch)
    assert seg.read_bytes() == FILE_HEADER + batch
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write_and_sync(b"x")


def test_write_and_sync_loops_on_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = []

    def short_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[:7])

    w = JournalWriter(tmp_path, 1, sync=False)
    for p in numbered(6):
        w.append(p)
    batch = w.take_batch()
    monkeypatch.setattr(os, "write", short_write)
    w.write_and_sync(batch)
    monkeypatch.undo()
    w.close()
    assert len(calls) == -(-len(batch) // 7)
    assert list(recover(tmp_path)) == list(enumerate(numbered(6), start=1))


def test_failed_write_poisons_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = JournalWriter(tmp_path, 1, sync=True)
    w.append(b"a")

    def failing_sync(fd: int) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(os, "fdatasync", failing_sync)
    with pytest.raises(OSError, match="EIO"):
        w.write_and_sync(w.take_batch())
    monkeypatch.undo()
    w.append(b"b")
    with pytest.raises(RuntimeError, match="failed earlier"):
        w.write_and_sync(w.take_batch())
    with pytest.raises(RuntimeError, match="failed earlier"):
        w.rotate()
    w.close()


def test_rotate_rules(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, 1, sync=False)
    w.rotate()  # empty segment: nothing to rotate
    assert len(segments(tmp_path)) == 1
    w.append(b"a")
    batch = w.take_batch()
    with pytest.raises(RuntimeError, match="in flight"):
        w.rotate()
    w.write_and_sync(batch)
    w.append(b"b")  # buffered, not taken: belongs in the new segment
    w.rotate()
    assert w.path == seg_path(tmp_path, 2)
    w.write_and_sync(w.take_batch())
    w.close()
    assert list(recover(tmp_path)) == [(1, b"a"), (2, b"b")]
    assert scan_segment(seg_path(tmp_path, 2).read_bytes())[0] == [(2, b"b")]


def test_writer_appends_to_recovered_segment_and_refuses_overlap(tmp_path: Path) -> None:
    written = write_batches(tmp_path, [numbered(4)])
    with pytest.raises(ValueError, match="reuse"):
        JournalWriter(tmp_path, 3, sync=False)
    with JournalWriter(tmp_path, 5, sync=False) as w:
        assert w.path == seg_path(tmp_path, 1)
        w.append(b"five")
        w.write_and_sync(w.take_batch())
    assert len(segments(tmp_path)) == 1
    assert list(recover(tmp_path)) == [*written, (5, b"five")]


def test_writer_refuses_unrecovered_torn_tail(tmp_path: Path) -> None:
    write_batches(tmp_path, [numbered(3)])
    seg = segments(tmp_path)[0]
    os.truncate(seg, seg.stat().st_size - 1)
    with pytest.raises(JournalCorrupt, match="recover"):
        JournalWriter(tmp_path, 3, sync=False)
    assert [s for s, _ in recover(tmp_path)] == [1, 2]
    JournalWriter(tmp_path, 3, sync=False).close()


def test_append_concurrent_with_write_in_worker_thread(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, 1, sync=False)
    expected: Records = []
    for round_ in range(20):
        for i in range(50):
            payload = f"{round_}:{i}".encode()
            expected.append((w.append(payload), payload))
        batch = w.take_batch()
        t = threading.Thread(target=w.write_and_sync, args=(batch,))
        t.start()
        for i in range(50, 100):  # keep appending while the batch is written
            payload = f"{round_}:{i}".encode()
            expected.append((w.append(payload), payload))
        t.join()
    w.write_and_sync(w.take_batch())
    w.close()
    assert list(recover(tmp_path)) == expected


# --------------------------------------------------------------------------- prune


def test_prune_keeps_everything_after_covered_seq(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, 1, sync=True)
    expected: Records = []
    for _ in range(3):
        for p in numbered(3, len(expected) + 1):
            expected.append((w.append(p), p))
        w.write_and_sync(w.take_batch())
        w.rotate()
    w.append(b"ten")
    w.write_and_sync(w.take_batch())
    expected.append((10, b"ten"))
    firsts = [1, 4, 7, 10]
    assert segments(tmp_path) == [seg_path(tmp_path, f) for f in firsts]

    assert w.prune(2) == []  # segment 1..3 still holds seq 3
    assert w.prune(5) == [seg_path(tmp_path, 1)]
    assert list(recover(tmp_path, after_seq=5)) == expected[5:]
    assert w.prune(6) == [seg_path(tmp_path, 4)]
    assert list(recover(tmp_path, after_seq=6)) == expected[6:]
    assert w.prune(10**6) == [seg_path(tmp_path, 7)]  # never the current segment
    assert segments(tmp_path) == [seg_path(tmp_path, 10)]
    assert list(recover(tmp_path, after_seq=9)) == [(10, b"ten")]
    w.close()


# --------------------------------------------------------------------------- recovery


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    assert list(recover(tmp_path)) == []
    assert list(recover(tmp_path / "nope")) == []
    assert last_seq(tmp_path / "nope") == 0
    (tmp_path / "unrelated.txt").write_text("hi")
    assert list(recover(tmp_path)) == []
    with JournalWriter(tmp_path / "new" / "dir", 1, sync=False) as w:
        assert w.path.read_bytes() == FILE_HEADER


def test_header_only_segment(tmp_path: Path) -> None:
    JournalWriter(tmp_path, 1).close()
    assert [p.read_bytes() for p in segments(tmp_path)] == [FILE_HEADER]
    assert list(recover(tmp_path)) == []
    assert last_seq(tmp_path) == 0
    with JournalWriter(tmp_path, 1, sync=False) as w:
        w.append(b"x")
        w.write_and_sync(w.take_batch())
    assert len(segments(tmp_path)) == 1
    assert list(recover(tmp_path)) == [(1, b"x")]


@pytest.mark.parametrize("content", [b"", b"GVL", b"\x00" * 3, b"\x00" * 8, b"\x00" * 40])
def test_last_segment_cut_in_its_header(tmp_path: Path, content: bytes) -> None:
    written = write_batches(tmp_path, [numbered(3)], rotate_after=frozenset({0}))
    last = seg_path(tmp_path, 4)
    last.write_bytes(content)
    assert last_seq(tmp_path) == 3
    assert last.read_bytes() == content  # last_seq is read-only
    assert list(recover(tmp_path)) == written
    assert last.read_bytes() == FILE_HEADER
    with JournalWriter(tmp_path, 4, sync=False) as w:
        assert w.path == last
        w.append(b"four")
        w.write_and_sync(w.take_batch())
    assert list(recover(tmp_path)) == [*written, (4, b"four")]


def test_bad_header_in_last_segment_is_corruption(tmp_path: Path) -> None:
    write_batches(tmp_path, [numbered(3)])
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[0] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="magic"):
        list(recover(tmp_path))
    assert seg.read_bytes() == data  # nothing truncated


def test_torn_tail_truncated_then_writer_continues(tmp_path: Path) -> None:
    written = write_batches(tmp_path, [numbered(4), numbered(3, 5)], rotate_after=frozenset({0}))
    last = seg_path(tmp_path, 5)
    whole = last.stat().st_size
    # Crash mid-write of a third batch: one whole record plus half of another.
    torn = encode_record(8, b"eight") + encode_record(9, b"nine-nine")[:-4]
    with open(last, "ab") as f:
        f.write(torn)
    assert last_seq(tmp_path) == 8
    assert list(recover(tmp_path)) == [*written, (8, b"eight")]
    assert last.stat().st_size == whole + len(encode_record(8, b"eight"))
    assert list(recover(tmp_path)) == [*written, (8, b"eight")]  # idempotent

    with JournalWriter(tmp_path, 9, sync=True) as w:
        assert w.path == last
        assert w.append(b"nine") == 9
        assert w.append(b"ten") == 10
        w.write_and_sync(w.take_batch())
    assert list(recover(tmp_path)) == [*written, (8, b"eight"), (9, b"nine"), (10, b"ten")]


def test_read_only_recovery_leaves_a_torn_tail_alone(tmp_path: Path) -> None:
    """A reader beside the live writer (the archiver process) must never cut the writer's file."""
    written = write_batches(tmp_path, [numbered(4)])
    seg = segments(tmp_path)[0]
    # A group being written right now: one whole record and the first half of the next.
    with open(seg, "ab") as f:
        f.write(encode_record(5, b"five") + encode_record(6, b"six-six")[:-3])
    before = seg.read_bytes()
    assert list(recover(tmp_path, 2, read_only=True)) == [*written[2:], (5, b"five")]
    assert seg.read_bytes() == before  # not truncated
    assert list(recover(tmp_path)) == [*written, (5, b"five")]  # the writer's recovery does cut
    assert len(seg.read_bytes()) < len(before)


def test_flipped_byte_in_final_record_detected(tmp_path: Path) -> None:
    written = write_batches(tmp_path, [numbered(5), [b"the final record payload"]])
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    final_start = len(data) - len(encode_record(6, b"the final record payload"))
    data[final_start + 16 + 10] ^= 0x20  # middle of the payload
    seg.write_bytes(bytes(data))
    assert last_seq(tmp_path) == 5
    assert list(recover(tmp_path)) == written[:5]
    assert seg.stat().st_size == final_start


def test_corruption_in_non_final_segment_raises(tmp_path: Path) -> None:
    write_batches(tmp_path, [numbered(4), numbered(4, 5)], rotate_after=frozenset({0}))
    first = seg_path(tmp_path, 1)
    data = bytearray(first.read_bytes())
    data[8 + 16 + 1] ^= 0xFF  # payload of record 1 (record 2..4 follow)
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="not the last"):
        list(recover(tmp_path))
    assert first.read_bytes() == data  # never truncated


def test_torn_tail_of_non_final_segment_raises(tmp_path: Path) -> None:
    write_batches(tmp_path, [numbered(4), numbered(4, 5)], rotate_after=frozenset({0}))
    first = seg_path(tmp_path, 1)
    os.truncate(first, first.stat().st_size - 3)
    with pytest.raises(JournalCorrupt, match="not the last"):
        list(recover(tmp_path))


def test_seq_gap_between_segments_raises(tmp_path: Path) -> None:
    written = write_batches(tmp_path, [numbered(3)])
    later = write_batches(tmp_path, [numbered(2, 10)], next_seq=10)  # 4..9 never written
    assert len(segments(tmp_path)) == 2
    with pytest.raises(JournalCorrupt, match="seq gap"):
        list(recover(tmp_path))
    with pytest.raises(JournalCorrupt, match="seq gap"):
        list(recover(tmp_path, after_seq=5))
    # A snapshot at seq 9 makes the gap irrelevant.
    assert list(recover(tmp_path, after_seq=9)) == later
    assert written


def test_missing_middle_segment_raises(tmp_path: Path) -> None:
    batches = [numbered(2), numbered(2, 3), numbered(2, 5)]
    write_batches(tmp_path, batches, rotate_after=frozenset({0, 1}))
    seg_path(tmp_path, 3).unlink()
    with pytest.raises(JournalCorrupt, match="seq gap"):
        list(recover(tmp_path))


def test_records_missing_after_after_seq_raises(tmp_path: Path) -> None:
    written = write_batches(tmp_path, [numbered(3), numbered(3, 4)], rotate_after=frozenset({0}))
    seg_path(tmp_path, 1).unlink()  # e.g. pruned too eagerly
    with pytest.raises(JournalCorrupt, match="missing"):
        list(recover(tmp_path))
    with pytest.raises(JournalCorrupt, match="missing"):
        list(recover(tmp_path, after_seq=2))
    assert list(recover(tmp_path, after_seq=3)) == written[3:]


def test_wrong_seq_inside_segment_raises(tmp_path: Path) -> None:
    seg_path(tmp_path, 1).write_bytes(FILE_HEADER + encode_record(1, b"a") + encode_record(3, b"c"))
    with pytest.raises(JournalCorrupt, match="expected 2"):
        list(recover(tmp_path))
    seg_path(tmp_path, 1).write_bytes(FILE_HEADER + encode_record(2, b"b"))
    with pytest.raises(JournalCorrupt, match="expected 1"):
        list(recover(tmp_path))


def test_after_seq_skips(tmp_path: Path) -> None:
    written = write_batches(
        tmp_path,
        [numbered(3), numbered(3, 4), numbered(4, 7)],
        rotate_after=frozenset({0, 1}),
    )
    for after in range(12):
        assert list(recover(tmp_path, after_seq=after)) == written[after:]
    # Segments wholly at or below after_seq are not even read.
    seg_path(tmp_path, 1).write_bytes(b"garbage that is not a segment")
    assert list(recover(tmp_path, after_seq=3)) == written[3:]
    with pytest.raises(JournalCorrupt):
        list(recover(tmp_path, after_seq=2))


# --------------------------------------------------------------------------- crash cuts


def _check_cut(directory: Path, payloads: list[bytes], cut: int, mode: str) -> None:
    """Damage the last segment at ``cut``; recovery must yield exactly the whole prefix."""
    last = segments(directory)[-1]
    last_first = int(last.name[len("journal-") : -len(".log")])
    blob = last.read_bytes()
    ends = []
    off = len(FILE_HEADER)
    for p in payloads[last_first - 1 :]:
        off += 16 + len(p)
        ends.append(off)
    assert off == len(blob)

    if mode == "truncate":
        damaged = blob[:cut]
    elif mode == "zerofill":  # size grew but the data never reached the disk
        damaged = blob[:cut] + b"\x00" * (len(blob) - cut)
        # Bytes that were zero already are not damage (a record ending in zero bytes stays
        # whole): the records are cut at the first byte the zeros changed.
        cut = next((i for i in range(cut, len(blob)) if blob[i] != 0), len(blob))
    else:  # "flip": one bad byte at cut, the records behind it intact
        flipped = bytearray(blob)
        flipped[cut] ^= 0xA5
        damaged = bytes(flipped)
    last.write_bytes(damaged)

    whole = sum(1 for e in ends if e <= cut)
    n = last_first - 1 + whole
    expected = [(i + 1, p) for i, p in enumerate(payloads[:n])]

    assert last_seq(directory) == n
    assert last.read_bytes() == damaged
    assert list(recover(directory)) == expected
    assert last.stat().st_size == (ends[whole - 1] if whole else len(FILE_HEADER))

    with JournalWriter(directory, n + 1, sync=False) as w:
        assert w.path == last
        assert w.append(b"after-1") == n + 1
        assert w.append(b"after-2") == n + 2
        w.write_and_sync(w.take_batch())
    tail = [(n + 1, b"after-1"), (n + 2, b"after-2")]
    assert list(recover(directory)) == expected + tail
    assert list(recover(directory, after_seq=n)) == tail


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    payloads=st.lists(st.binary(max_size=40), min_size=1, max_size=30),
    data=st.data(),
)
def test_recover_after_cut_at_any_offset(payloads: list[bytes], data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        w = JournalWriter(directory, 1, sync=False)
        i = 0
        while i < len(payloads):
            k = data.draw(st.integers(1, len(payloads) - i), label="batch size")
            for p in payloads[i : i + k]:
                w.append(p)
            w.write_and_sync(w.take_batch())
            i += k
            if data.draw(st.booleans(), label="rotate"):
                w.rotate()
        w.close()
        size = segments(directory)[-1].stat().st_size
        mode = data.draw(st.sampled_from(["truncate", "zerofill", "flip"]), label="mode")
        if mode == "truncate":
            cut = data.draw(st.integers(0, size), label="cut")
        elif mode == "zerofill":
            cut = data.draw(st.integers(len(FILE_HEADER), size) | st.just(0), label="cut")
        else:
            if size == len(FILE_HEADER):
                return
            cut = data.draw(st.integers(len(FILE_HEADER), size - 1), label="cut")
        _check_cut(directory, payloads, cut, mode)


def test_zeros_written_over_zero_bytes_damage_nothing(tmp_path: Path) -> None:
    """Found by the property test above: a record whose payload ends in a zero byte, "zero-filled"
    from that byte on, is still whole, and recovery keeps it."""
    payloads = [b"\x00"] * 5
    write_batches(tmp_path, [payloads[:2], payloads[2:]])
    size = segments(tmp_path)[-1].stat().st_size
    _check_cut(tmp_path, payloads, size - 1, "zerofill")  # asserts all 5 are recovered


def test_every_cut_offset_of_a_small_journal(tmp_path: Path) -> None:
    payloads = [b"one", b"", b"three33", b"4", b"fivefivefive", b"", b"seven"]
    base = tmp_path / "base"
    write_batches(base, [payloads[:2], payloads[2:4], payloads[4:]], rotate_after=frozenset({0}))
    size = segments(base)[-1].stat().st_size
    for mode in ("truncate", "flip"):
        for cut in range(len(FILE_HEADER) if mode == "flip" else 0, size + (mode != "flip")):
            work = tmp_path / f"{mode}-{cut}"
            shutil.copytree(base, work)
            _check_cut(work, payloads, cut, mode)
            shutil.rmtree(work)
