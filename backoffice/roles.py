"""Staff roles and the areas of the back office each may read or write (docs/admin.md "Roles").

Pure: the surfaces (admin pages, REST admin endpoints, `AdminActions.authorize`) ask `can`. An
account with `is_admin` and no roles is an owner (accounts made before roles existed).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class Role(enum.StrEnum):
    OWNER = "owner"
    OPERATOR = "operator"  # auctions and orders
    COURSE_MANAGER = "course_manager"  # catalogue, coupons, the degree path
    MENTOR = "mentor"  # own students' homework only
    MODERATOR = "moderator"  # the community
    SUPPORT = "support"  # reads everything a customer may ask about, writes notes


R, W = "r", "rw"
_O, _OP, _CM, _ME, _MO, _SU = (
    Role.OWNER,
    Role.OPERATOR,
    Role.COURSE_MANAGER,
    Role.MENTOR,
    Role.MODERATOR,
    Role.SUPPORT,
)

# area -> role -> "r" (read) or "rw" (read and write); a role not named has no access.
AREAS: Mapping[str, Mapping[Role, str]] = {
    "dashboard": {_O: W, _OP: R, _CM: R, _ME: R, _MO: R, _SU: R},
    "auctions": {_O: W, _OP: W, _SU: R},
    "orders": {_O: W, _OP: W, _CM: R, _SU: R},
    "users": {_O: W, _OP: W, _CM: R, _MO: R, _SU: R},
    "notes": {_O: W, _OP: W, _SU: W},
    "catalogue": {_O: W, _CM: W, _SU: R},
    "degree": {_O: W, _CM: W, _SU: R},
    "mentoring": {_O: W, _CM: W, _ME: W, _SU: R},
    "community": {_O: W, _MO: W, _SU: R},
    "audit": {_O: R, _SU: R},
    "staff": {_O: W},
    "exports": {_O: R, _OP: R, _CM: R},
    # Every staff member's own account (their second factor, signing out): not a lane, just theirs.
    "account": {_O: W, _OP: W, _CM: W, _ME: W, _MO: W, _SU: W},
}

# An admin write (`AdminActions.authorize(actor, "prefix.verb")`) -> the area it needs write access
# to: by the part before the first dot, unless the full name is listed as an exception. A name found
# in neither is the owner's alone (a new action nobody classified stays closed).
ACTION_AREAS: Mapping[str, str] = {
    "session": "auctions",
    "lot": "auctions",
    "bid": "auctions",
    "bidder": "auctions",
    "coupon": "auctions",  # auction coupons, per session
    "order": "orders",
    "shop_refund": "orders",
    "refund": "orders",
    "user": "users",  # credit, the non-payer flag
    "note": "notes",
    "shop_coupon": "catalogue",
    "shop_category": "catalogue",
    "course": "catalogue",
    "price_policy": "catalogue",
    "review": "catalogue",
    "faq": "catalogue",
    "degree_course": "degree",
    "degree": "degree",
    "homework": "mentoring",
    "community": "community",
    "article": "community",
    "article_source": "community",
    "staff": "staff",
    "auth": "account",
    "export": "exports",
}
ACTION_AREA_EXCEPTIONS: Mapping[str, str] = {
    "user.note": "notes",  # a support note on a user's page
    "user.note_add": "notes",
    "degree.grade": "mentoring",
}


def action_area(action: str) -> str | None:
    """The area an admin action writes to (ACTION_AREAS), or None: the owner's alone."""
    if action in ACTION_AREA_EXCEPTIONS:
        return ACTION_AREA_EXCEPTIONS[action]
    prefix, dot, _ = action.partition(".")
    return ACTION_AREAS.get(prefix) if dot else None


def effective_roles(is_admin: bool, roles: Iterable[str]) -> frozenset[Role]:
    """The roles an account acts with: its known roles; an admin account with no roles stored at all
    is an owner (made before roles). Unknown names grant nothing (never the owner's fallback)."""
    names = list(roles)
    if not names and is_admin:
        return frozenset({Role.OWNER})
    return frozenset(Role(name) for name in names if name in _NAMES)


def can(roles: Iterable[str], area: str | None, *, write: bool = False) -> bool:
    """Whether someone with `roles` may read (or write) `area`; an unknown or unset area is the
    owner's alone (a page nobody classified stays closed)."""
    held = frozenset(roles)
    if area is None or area not in AREAS:
        return Role.OWNER in held
    grants = AREAS[area]
    needed = W if write else R
    return any(needed in grants.get(Role(name), "") for name in held if name in _NAMES)


def mentor_only(roles: Iterable[str]) -> bool:
    """Whether `roles` reach the homework records only as a mentor: such a user sees and grades only
    the enrolments whose mentor they are (docs/admin.md "Roles", mentor scoping)."""
    held = frozenset(roles)
    return Role.MENTOR in held and not can(held - {Role.MENTOR.value}, "mentoring")


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Role names as given (a form, a stored list); unknown names are dropped."""
    return frozenset(Role(name) for name in names if name in _NAMES)


_NAMES = frozenset(role.value for role in Role)
