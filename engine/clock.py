"""The clock the engine is given (it never reads time itself): real in production, fake in tests."""

import time
from typing import Protocol

from engine.book.types import Millis


class Clock(Protocol):
    def now_ms(self) -> Millis: ...


class SystemClock:
    def now_ms(self) -> Millis:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: Millis = 1_700_000_000_000) -> None:
        self.now = start

    def now_ms(self) -> Millis:
        return self.now

    def advance(self, ms: Millis) -> Millis:
        self.now += ms
        return self.now

    def set(self, now: Millis) -> None:
        self.now = now
