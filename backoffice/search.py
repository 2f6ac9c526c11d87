"""What the back office's one search box looks for, as MongoDB filters (pure: no I/O).

`search_text` cleans what was typed; `plan` turns it into, per kind of result, *exact* filters (an
id, an order or trade number, a phone, a catalogue number, a username: listed first) and *broad*
ones (name prefixes, title substrings); `ordered_hits` orders what they found. Typed text only ever
reaches MongoDB as a plain value, a range bound, or inside `re.escape`, so no operator (`$where`, a
`$regex` of the user's own) can be smuggled in. Which indexes serve each filter: docs/admin.md
"Search and a user's page".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
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
    """The filters of one kind of result, each run on its own (an index serves each but the
    substring ones; a `$or` of them would not be served by the indexes on every MongoDB the app
    runs on). Hits of `exact` come first, then those of `broad`."""

    exact: tuple[Document, ...]
    broad: tuple[Document, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Lookups:
    """What the search found in other collections first: users whose shipping address has the typed
    phone, and our payment numbers (out_trade_no) of a provider trade number typed."""

    phone_user_ids: Sequence[int] = ()
    out_trade_nos: Sequence[str] = ()


def prefix_range(text: str) -> Document:
    """Strings starting with `text`, as an index range (an anchored regex is not served by every
    MongoDB's index; a range is). U+FFFF sorts after every character a name may hold."""
    return {"$gte": text, "$lt": text + "\uffff"}


def _contains(text: str) -> Document:
    return {"$regex": re.escape(text), "$options": "i"}


def case_variants(text: str) -> list[str]:
    """The spellings a case-insensitive prefix is looked up as: as typed, lower, upper, Capitalised,
    Title Case (each an index range; names are written in one of these)."""
    return list(dict.fromkeys([text, text.lower(), text.upper(), text.capitalize(), text.title()]))


def is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= _ID_DIGITS


def plan(text: str, lookups: Lookups = Lookups()) -> dict[str, KindQuery]:
    """The filters of every kind for `text` ({} for nothing typed)."""
    if not text:
        return {}
    number = int(text) if is_number(text) else None
    by_id: list[Document] = [{"_id": number}] if number is not None else []
    trade_nos = [text, *lookups.out_trade_nos]
    plans: dict[str, KindQuery] = {}

    # users: id, username (case-insensitive: `username_key` is the lower-cased name), phone exact;
    # username and display-name prefixes.
    user_exact: list[Document] = [*by_id, {"username_key": text.lower()}]
    if lookups.phone_user_ids:
        user_exact.append({"_id": {"$in": list(lookups.phone_user_ids)}})
    names = [{"display_name": prefix_range(variant)} for variant in case_variants(text)]
    plans["users"] = KindQuery(tuple(user_exact), ({"username_key": prefix_range(text.lower())}, *names))
    # auction orders: the order number (its id), or a payment number (ours or the provider's).
    plans["auction_orders"] = KindQuery((*by_id, {"trade_nos": {"$in": trade_nos}}), ())
    # shop orders: the order number (its id, a string), or a payment number of any attempt.
    plans["shop_orders"] = KindQuery(({"_id": text}, {"attempts.out_trade_no": {"$in": trade_nos}}), ())
    # lots: id or catalogue number exact; the title contains the text (a scan: see docs/admin.md).
    plans["lots"] = KindQuery((*by_id, {"catalogue_no": text}), ({"title": _contains(text)},))
    # sessions and courses: id exact; the title (a course's `name`) contains the text.
    plans["sessions"] = KindQuery(tuple(by_id), ({"title": _contains(text)},))
    plans["courses"] = KindQuery(tuple(by_id), ({"name": _contains(text)},))
    return plans


def ordered_hits(exact: Iterable[Any], broad: Iterable[Any]) -> list[Any]:
    """The ids of one kind's hits in the order they are listed: the exact hits (newest, i.e. the
    highest id, first), then the other broad hits (newest first)."""
    first = sorted(set(exact), reverse=True)
    seen = set(first)
    return first + sorted((hit for hit in set(broad) if hit not in seen), reverse=True)
