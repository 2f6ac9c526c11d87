"""Lot and session states (the seed's numbers) and the one table of legal transitions."""

from enum import IntEnum
from typing import TypeVar

from engine.book.errors import IllegalTransition


class LotState(IntEnum):
    SCHEDULED = 1  # 未开拍
    PREVIEW = 2  # 预展中
    BIDDING = 3  # 拍卖中
    SOLD = 4  # 成交
    UNSOLD = 5  # 流拍
    OVERDUE = 6  # 逾期未支付


class SessionState(IntEnum):
    SCHEDULED = 1  # 未开拍
    PREVIEW = 2  # 预展中
    BIDDING = 3  # 拍卖中
    ENDED = 4  # 已结束


LOT_TRANSITIONS: dict[LotState, frozenset[LotState]] = {
    LotState.SCHEDULED: frozenset({LotState.PREVIEW, LotState.BIDDING, LotState.UNSOLD}),
    LotState.PREVIEW: frozenset({LotState.BIDDING, LotState.UNSOLD}),
    LotState.BIDDING: frozenset({LotState.SOLD, LotState.UNSOLD}),
    LotState.SOLD: frozenset({LotState.OVERDUE}),
    LotState.UNSOLD: frozenset(),
    LotState.OVERDUE: frozenset(),
}

SESSION_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.SCHEDULED: frozenset({SessionState.PREVIEW, SessionState.ENDED}),
    SessionState.PREVIEW: frozenset({SessionState.BIDDING, SessionState.ENDED}),
    SessionState.BIDDING: frozenset({SessionState.ENDED}),
    SessionState.ENDED: frozenset(),
}

CLOSED_LOT_STATES = frozenset({LotState.SOLD, LotState.UNSOLD, LotState.OVERDUE})

_S = TypeVar("_S", LotState, SessionState)


def check_transition(table: dict[_S, frozenset[_S]], current: _S, target: _S) -> _S:
    """Return `target` if moving there from `current` is legal, else raise IllegalTransition."""
    if target not in table[current]:
        raise IllegalTransition(f"{type(current).__name__} cannot move from {current.name} to {target.name}")
    return target
