from collections.abc import Sequence

def write_many(fds: Sequence[int], payloads: Sequence[bytes], threads: int = 2, /) -> list[tuple[int, int]]:
    """send(fds[i], payloads[i]) for every i without the GIL, on `threads` (1 or 2) threads; (i,
    bytes sent or -errno) for each send that did not take its whole payload."""
