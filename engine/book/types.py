"""Type aliases shared by the pure core: money is integer fen, time is epoch milliseconds."""

from typing import TypeAlias

Fen: TypeAlias = int
"""Money in minor units (1 yuan = 100 fen). Never a float."""

Millis: TypeAlias = int
"""A point in time as epoch milliseconds, always supplied by the caller's clock."""

UserId: TypeAlias = int
LotId: TypeAlias = int
SessionId: TypeAlias = int

NO_USER: UserId = 0
"""User ids start at 1; 0 means "nobody" (no leader, no winner)."""
