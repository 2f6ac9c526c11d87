from collections.abc import Callable, Sequence

def write_many(fds: Sequence[int], payloads: Sequence[bytes], threads: int = 2, /) -> list[tuple[int, int]]:
    """send(fds[i], payloads[i]) for every i without the GIL, on `threads` (1 or 2) threads; (i,
    bytes sent or -errno) for each send that did not take its whole payload."""

class Outlet:
    """One socket's descriptor and whether a sweep may send() to it directly."""

    fd: int
    stream_ok: bool
    socket_ok: bool
    def __init__(self, fd: int = -1) -> None: ...
    @property
    def ready(self) -> bool: ...

class Roster:
    """A session's subscribers (outlet, owner, position per slot), swept from C."""

    def add(self, outlet: Outlet, owner: object, position: int, /) -> int: ...
    def remove(self, slot: int, /) -> None: ...
    def position(self, slot: int, /) -> int: ...
    def set_position(self, slot: int, position: int, /) -> None: ...
    def owner(self, slot: int, /) -> object: ...
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
