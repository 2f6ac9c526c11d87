from collections.abc import Sequence

from gateway.roster import OutletLike, RosterLike

def write_many(fds: Sequence[int], payloads: Sequence[bytes], threads: int = 2, /) -> list[tuple[int, int]]:
    """send(fds[i], payloads[i]) for every i without the GIL, on `threads` (1 or 2) threads; (i,
    bytes sent or -errno) for each send that did not take its whole payload."""

# The two types' interfaces are gateway/roster.py's protocols (the pure-Python twins match them too).
def Outlet(fd: int = -1) -> OutletLike:
    """One socket's descriptor and whether a sweep may send() to it directly."""

def Roster() -> RosterLike:
    """A session's subscribers (outlet, owner, position per slot), swept from C."""
