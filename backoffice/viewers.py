"""Who watches a session now, counted once across every gateway process (pure: no I/O).

A viewer is a person, not a socket: a signed-in user is `u:<user id>` however many sockets (tabs,
devices, gateways, reconnects) they hold; an anonymous socket is its own viewer, `s:<gateway>:<socket>`
(nothing tells two anonymous sockets apart as one person, and a reconnect closes the old socket).

Each gateway shares its viewers of each session every REFRESH_S, each stamped to expire EXPIRES_S
later (persistence/viewers.py keeps them); the count is how many distinct viewers have not expired.
So a viewer who left, or every viewer of a gateway that was killed, stops counting within
EXPIRES_S (three refreshes: one late refresh does not drop anyone); a new one counts from the
gateway's next refresh. Never per frame: a refresh costs one Redis pipeline per gateway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

REFRESH_S = 5.0
EXPIRES_S = 3 * REFRESH_S


@dataclasses.dataclass(frozen=True, slots=True)
class ViewerCount:
    viewers: int  # distinct viewers (signed-in users once each, anonymous sockets each)
    users: int  # of which signed-in users

    def as_json(self, sockets: int) -> dict[str, int]:
        """What the back office shows: `sockets` are this process's, for comparison."""
        return {"viewers": self.viewers, "users": self.users, "sockets": sockets}


def viewer_of(user_id: int, gateway: str, socket_number: int) -> str:
    return f"u:{user_id}" if user_id else f"s:{gateway}:{socket_number:x}"


def is_user(viewer: str) -> bool:
    return viewer.startswith("u:")


def session_viewers(by_session: Mapping[int, Iterable[tuple[int, int]]], gateway: str) -> dict[int, set[str]]:
    """Each session's distinct viewers from its sockets' `(user_id, socket_number)`."""
    return {
        session_id: {viewer_of(user, gateway, number) for user, number in sockets}
        for session_id, sockets in by_session.items()
    }


def count(viewers: Iterable[str]) -> ViewerCount:
    distinct = set(viewers)
    return ViewerCount(len(distinct), sum(1 for viewer in distinct if is_user(viewer)))


def expires_at(now_ms: int) -> int:
    return now_ms + int(EXPIRES_S * 1000)
