"""A session's subscribers as the hub's broadcast sweeps them (gateway/ws.py `Hub`).

Where gateway/_fanout.c is built (build_fanout.py, run by `make`), `Roster` and `Outlet` are its C
types: a sweep runs over three arrays (each subscriber's outlet, owner and position) and sends to
every ready outlet from C, on two threads without the GIL. Without the module these pure-Python
twins take their place: the same interface, but `sweep` sends nothing and hands every due slot
back as "slow", so the hub writes each through its socket's transport.

An `Outlet` is one socket's descriptor and the two facts that allow a direct send to it, each kept
by the code that changes it: `stream_ok` by gateway/wire.py's `TransportStream` (attached, nothing
buffered in the transport, not closing, not lost) and `socket_ok` by gateway/ws.py's `BidderSocket`
(plain frames, not lagging).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class OutletLike(Protocol):
    fd: int
    stream_ok: bool
    socket_ok: bool

    @property
    def ready(self) -> bool: ...


class RosterLike(Protocol):
    def add(self, outlet: OutletLike, owner: Any, position: int, /) -> int: ...

    def remove(self, slot: int, /) -> None: ...

    def position(self, slot: int, /) -> int: ...

    def set_position(self, slot: int, position: int, /) -> None: ...

    def owner(self, slot: int, /) -> Any: ...

    def __len__(self) -> int: ...

    @property
    def size(self) -> int: ...

    def sweep(
        self,
        start: int,
        end: int,
        since: Callable[[int], bytes],
        deadline_ns: int,
        threads: int,
        batch: int,
        slow_cap: int,
        /,
    ) -> tuple[int, list[int], list[tuple[int, int, int]], int, int]: ...


class PyOutlet:
    """gateway._fanout.Outlet without the C module (never used for a send)."""

    __slots__ = ("fd", "socket_ok", "stream_ok")

    def __init__(self, fd: int = -1) -> None:
        self.fd = fd
        self.stream_ok = False
        self.socket_ok = False

    @property
    def ready(self) -> bool:
        return self.fd >= 0 and self.stream_ok and self.socket_ok


class PyRoster:
    """gateway._fanout.Roster without the C module: `sweep` hands every due slot back as slow."""

    __slots__ = ("_free", "_outlets", "_owners", "_positions")

    def __init__(self) -> None:
        self._outlets: list[OutletLike | None] = []
        self._owners: list[Any] = []
        self._positions: list[int] = []
        self._free: list[int] = []

    def add(self, outlet: OutletLike, owner: Any, position: int, /) -> int:
        if self._free:
            slot = self._free.pop()
            self._outlets[slot], self._owners[slot], self._positions[slot] = outlet, owner, position
            return slot
        self._outlets.append(outlet)
        self._owners.append(owner)
        self._positions.append(position)
        return len(self._outlets) - 1

    def _check(self, slot: int) -> None:
        if not 0 <= slot < len(self._outlets) or self._outlets[slot] is None:
            raise KeyError(f"no subscriber in slot {slot}")

    def remove(self, slot: int, /) -> None:
        self._check(slot)
        self._outlets[slot] = None
        self._owners[slot] = None
        self._free.append(slot)

    def position(self, slot: int, /) -> int:
        self._check(slot)
        return self._positions[slot]

    def set_position(self, slot: int, position: int, /) -> None:
        self._check(slot)
        self._positions[slot] = position

    def owner(self, slot: int, /) -> Any:
        self._check(slot)
        return self._owners[slot]

    def __len__(self) -> int:
        return len(self._outlets) - len(self._free)

    @property
    def size(self) -> int:
        return len(self._outlets)

    def sweep(
        self,
        start: int,
        end: int,
        since: Callable[[int], bytes],
        deadline_ns: int,
        threads: int,
        batch: int,
        slow_cap: int,
        /,
    ) -> tuple[int, list[int], list[tuple[int, int, int]], int, int]:
        slow: list[int] = []
        index = max(start, 0)
        outlets, positions = self._outlets, self._positions
        while index < len(outlets) and len(slow) < slow_cap:
            if outlets[index] is not None and positions[index] < end:
                slow.append(index)
            index += 1
        return index, slow, [], 0, 0


def _types() -> tuple[Callable[[], RosterLike], Callable[[int], OutletLike], bool]:
    try:
        import gateway._fanout as _fanout
    except ImportError:
        return PyRoster, PyOutlet, False
    return _fanout.Roster, _fanout.Outlet, True


# The hub's rosters and the streams' outlets, and whether sweeps send from C.
Roster, Outlet, SWEEPS_FROM_C = _types()
