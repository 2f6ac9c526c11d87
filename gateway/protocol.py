"""Strict decoding of client websocket frames into typed requests (see docs/protocol.md)."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import orjson

MAX_ID = 2**53 - 1  # ids and prices must survive JavaScript's number type
MAX_PRICE = 10**13  # fen: a hundred billion yuan is beyond any lot
MAX_REF_LENGTH = 64
OPS = ("ping", "subscribe", "unsubscribe", "bid", "max_bid", "watch", "unwatch")
# The community's live counts (issue 23): `watch` a post's or an article's topic, e.g. "post:12".
TOPIC = re.compile(r"(post|article):([1-9][0-9]{0,15})")


class BadFrame(Exception):
    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.ref = code, message, ref


class ClientFrame(NamedTuple):
    op: str
    session_id: int = 0
    lot_id: int = 0
    amount: int = 0
    ref: str = ""
    topic: str = ""


def _positive_int(frame: dict[str, Any], key: str, limit: int, ref: str | None) -> int:
    value = frame.get(key)
    if value is None:
        raise BadFrame("BAD_REQUEST", f"missing field {key!r}", ref)
    # bool is an int subclass and floats are never money: both are refused.
    if type(value) is not int:
        raise BadFrame("BAD_REQUEST", f"{key!r} must be an integer", ref)
    if value <= 0 or value > limit:
        raise BadFrame("BAD_REQUEST", f"{key!r} must be between 1 and {limit}", ref)
    return value


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadFrame("BAD_JSON", "frames must be JSON text") from None
    if not isinstance(frame, dict):
        raise BadFrame("BAD_REQUEST", "a frame must be one JSON object")
    op = frame.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise BadFrame("UNKNOWN_OP", f"op must be one of {', '.join(OPS)}")
    if op == "ping":
        return ClientFrame(op)
    if op in ("subscribe", "unsubscribe"):
        return ClientFrame(op, session_id=_positive_int(frame, "session_id", MAX_ID, None))
    if op in ("watch", "unwatch"):
        topic = frame.get("topic")
        if not isinstance(topic, str) or (found := TOPIC.fullmatch(topic)) is None or int(found[2]) > MAX_ID:
            raise BadFrame("BAD_REQUEST", "'topic' must be 'post:<id>' or 'article:<id>'")
        return ClientFrame(op, topic=topic)
    raw_ref = frame.get("ref")
    if not isinstance(raw_ref, str) or not 1 <= len(raw_ref) <= MAX_REF_LENGTH:
        raise BadFrame("BAD_REQUEST", f"'ref' must be a string of 1 to {MAX_REF_LENGTH} characters")
    ref = raw_ref
    lot_id = _positive_int(frame, "lot_id", MAX_ID, ref)
    amount = _positive_int(frame, "max" if op == "max_bid" else "price", MAX_PRICE, ref)
    return ClientFrame(op, lot_id=lot_id, amount=amount, ref=ref)
