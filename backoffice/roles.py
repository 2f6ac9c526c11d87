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
}


def effective_roles(is_admin: bool, roles: Iterable[str]) -> frozenset[Role]:
    """The roles an account acts with: its known roles; an admin account without any is an owner."""
    known = frozenset(Role(name) for name in roles if name in _NAMES)
    if not known and is_admin:
        return frozenset({Role.OWNER})
    return known


def can(roles: Iterable[str], area: str | None, *, write: bool = False) -> bool:
    """Whether someone with `roles` may read (or write) `area`; an unknown or unset area is the
    owner's alone (a page nobody classified stays closed)."""
    held = frozenset(roles)
    if area is None or area not in AREAS:
        return Role.OWNER in held
    grants = AREAS[area]
    needed = W if write else R
    return any(needed in grants.get(Role(name), "") for name in held if name in _NAMES)


_NAMES = frozenset(role.value for role in Role)
