"""What the back office's one search box looks for, as MongoDB filters (pure: no I/O).

`search_text` cleans what was typed; `plan` turns it into, per kind of result, an *exact* filter (an
id, an order or trade number, a phone, a catalogue number, a username: listed first) and a *broad*
one (the exact hits plus name prefixes and title substrings). Typed text only ever reaches MongoDB
as a plain value or inside `re.escape`, so no operator (`$where`, `$regex` of the user's own) can
be smuggled in. Which indexes serve each filter: docs/admin.md "Search and a user's page".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Final

Document = dict[str, Any]

QUERY_MAX: Final = 100
_ID_DIGITS: Final = 16  # ids are below 2**53
# The kinds of result, in the order the results page shows them, and the area each needs
# (backoffice/roles.py): a kind the admin may not read is not searched at all.
KIND_AREAS: Final = {
    "users": "users",
    "auction_orders": "orders",
    "shop_orders": "orders",
    "lots": "auctions",
    "sessions": "auctions",
    "courses": "catalogue",
}
KIND_LABELS: Final = {
    "users": "Users 用户",
    "auction_orders": "Auction orders 拍卖订单",
    "shop_orders": "Shop orders 课程订单",
    "lots": "Lots 拍品",
    "sessions": "Sessions 专场",
    "courses": "Courses 课程",
}


def search_text(raw: str) -> str:
    """What was typed: control characters dropped, spaces trimmed, at most QUERY_MAX characters."""
    text = "".join(ch for ch in raw if ch >= " " and ch != "\x7f").strip()
    return text[:QUERY_MAX].strip()


@dataclasses.dataclass(frozen=True, slots=True)
class KindQuery:
    """The filters of one kind of result: `exact` hits come first, then the rest of `broad`."""

    exact: Document | None
    broad: Document


@dataclasses.dataclass(frozen=True, slots=True)
class Lookups:
    """What the search found in other collections first: users whose shipping address has the typed
    phone, and our payment numbers (out_trade_no) of a provider trade number typed."""

    phone_user_ids: Sequence[int] = ()
    out_trade_nos: Sequence[str] = ()


def _either(parts: list[Document]) -> Document | None:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$or": parts}


def _contains(text: str) -> Document:
    return {"$regex": re.escape(text), "$options": "i"}


def is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= _ID_DIGITS


def plan(text: str, lookups: Lookups = Lookups()) -> dict[str, KindQuery]:
    """The filters of every kind that can match `text` (a kind nothing can match is left out)."""
    if not text:
        return {}
    number = int(text) if is_number(text) else None
    by_id: list[Document] = [{"_id": number}] if number is not None else []
    plans: dict[str, KindQuery] = {}

    # users: id, username (case-insensitive: `username_key` is the lower-cased name), phone exact;
    # username and display-name prefixes.
    user_exact: list[Document] = [*by_id, {"username_key": text.lower()}]
    if lookups.phone_user_ids:
        user_exact.append({"_id": {"$in": list(lookups.phone_user_ids)}})
    prefix = {"$regex": "^" + re.escape(text.lower())}
    user_broad = [
        *user_exact,
        {"username_key": prefix},
        {"display_name": {"$regex": "^" + re.escape(text), "$options": "i"}},
    ]
    plans["users"] = KindQuery(_either(user_exact), _either(user_broad) or {})

    # auction orders: the order number (its id), or a payment number (ours or the provider's).
    trade_nos = [text, *lookups.out_trade_nos]
    order_exact: list[Document] = [*by_id, {"trade_nos": {"$in": trade_nos}}]
    plans["auction_orders"] = KindQuery(_either(order_exact), _either(order_exact) or {})

    # shop orders: the order number (its id, a string), or a payment number of any attempt.
    shop_exact: list[Document] = [{"_id": text}, {"attempts.out_trade_no": {"$in": trade_nos}}]
    plans["shop_orders"] = KindQuery(_either(shop_exact), _either(shop_exact) or {})

    # lots: id or catalogue number exact; the title contains the text.
    lot_exact: list[Document] = [*by_id, {"catalogue_no": text}]
    plans["lots"] = KindQuery(_either(lot_exact), {"$or": [*lot_exact, {"title": _contains(text)}]})

    # sessions and courses: id exact; the title (a course's `name`) contains the text.
    plans["sessions"] = KindQuery(_either(by_id), {"$or": [*by_id, {"title": _contains(text)}]})
    plans["courses"] = KindQuery(_either(by_id), {"$or": [*by_id, {"name": _contains(text)}]})
    return plans


def page_of(exact_count: int, skip: int, limit: int) -> tuple[slice, int, int]:
    """Where a page of `limit` rows starting at `skip` falls when `exact_count` exact hits come
    before the rest: (the slice of the exact hits, how many of the rest to skip, how many to take)."""
    exact_part = slice(min(skip, exact_count), min(skip + limit, exact_count))
    taken = exact_part.stop - exact_part.start
    return exact_part, max(0, skip - exact_count), limit - taken
