"""The community's shared rules: user text, targets, cursors, threads."""

from __future__ import annotations

import pytest

from community.errors import BadCursor, TextRejected
from community.rules import (
    POST_TEXT_MAX,
    Target,
    clean_text,
    decode_cursor,
    encode_cursor,
    page_size,
    parse_target,
    thread_position,
)


def test_text_is_normalised_and_invisible_formatting_removed() -> None:
    # "e" + combining acute becomes one character; an RTL override and zero-width spaces go.
    assert clean_text("  cafe\u0301 \u202eexe.txt\u200b ", max_length=20, what="text") == "café exe.txt"
    assert clean_text("line 1\r\nline 2", max_length=20, what="text") == "line 1\nline 2"
    # The zero-width joiner stays: emoji sequences need it.
    assert clean_text("👩\u200d💻", max_length=5, what="text") == "👩\u200d💻"


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "\u200b\u202e", "a\x00b", "bell\x07", None, 12, ["a"], "x" * (POST_TEXT_MAX + 1)],
)
def test_bad_text_is_refused(raw: object) -> None:
    with pytest.raises(TextRejected):
        clean_text(raw, max_length=POST_TEXT_MAX, what="text")


def test_length_counts_characters_not_bytes_and_one_line_fields_refuse_newlines() -> None:
    assert clean_text("拍" * POST_TEXT_MAX, max_length=POST_TEXT_MAX, what="text") == "拍" * POST_TEXT_MAX
    with pytest.raises(TextRejected):
        clean_text("a\nb", max_length=10, what="place", multiline=False)
    assert clean_text("", max_length=10, what="place", required=False) == ""


def test_targets_parse_only_allowed_kinds_and_sane_ids() -> None:
    assert parse_target("post:12", frozenset({"post"})) == Target("post", 12)
    assert str(Target("article", 3)) == "article:3"
    for raw in [
        "post:0",
        "post:-1",
        "post:012",
        "post:1x",
        "lot:1",
        "comment:5",
        "post:" + "9" * 17,
        5,
        "post: 1",
    ]:
        with pytest.raises(TextRejected):
            parse_target(raw, frozenset({"post"}))


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    cursor = encode_cursor((900, 1_800_000_000_000, 42))
    assert decode_cursor(cursor, 3) == (900, 1_800_000_000_000, 42)
    assert decode_cursor(None, 1) is None and decode_cursor("", 1) is None
    for raw in ["!!", "bm90IGpzb24", encode_cursor((1, 2)), encode_cursor((1,)) + "x" * 300, "W3RydWVd"]:
        with pytest.raises(BadCursor):
            decode_cursor(raw, 3 if raw != "W3RydWVd" else 1)  # W3RydWVd is [true]: not an integer


def test_page_size_is_clamped() -> None:
    assert (page_size(None), page_size(0), page_size(7), page_size(10_000)) == (20, 1, 7, 50)


def test_thread_position_hangs_every_reply_off_the_root() -> None:
    root = thread_position(None, None, 0, 0)
    assert (root.root_id, root.depth, root.reply_to, root.reply_to_user) == (None, 1, None, None)
    reply = thread_position(10, None, 1, 7)  # answering root comment 10 by user 7
    assert (reply.root_id, reply.depth, reply.reply_to, reply.reply_to_user) == (10, 2, 10, 7)
    deeper = thread_position(11, 10, 2, 8)  # answering that reply
    assert (deeper.root_id, deeper.depth, deeper.reply_to, deeper.reply_to_user) == (10, 3, 11, 8)
