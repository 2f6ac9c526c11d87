"""JSON kept beyond the request that made it, in a buffer of its own size.

orjson (3.10 and later) hands back the buffer it wrote into as the `bytes`: its allocation is
rounded up (about 4 KiB for anything shorter, then powers of two) while `len()` and
`sys.getsizeof` report only the JSON. An answer written and dropped loses nothing by it; a cache
that keeps thousands of ~200-byte views keeps ~4 KiB of malloc each, which no count of objects
shows (docs/performance.md, "Fifth round (2026-12-07, evening): the pool and the unnamed rest").
Whatever a cache keeps goes through `kept_json` or `right_sized`.
"""

from typing import Any

import orjson


def right_sized(data: bytes) -> bytes:
    """A copy of `data` in an allocation of its own length (~0.1 µs for a few hundred bytes)."""
    # A join of two items always copies into an exact-size bytes; of one it would return `data`.
    return b"".join((data, b""))


def kept_json(value: Any) -> bytes:
    """`orjson.dumps(value)`, right-sized for keeping."""
    return right_sized(orjson.dumps(value))
