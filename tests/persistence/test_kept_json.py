"""persistence/kept_json.py: what a cache keeps holds its JSON's bytes, not orjson's buffer."""

import tracemalloc
from collections.abc import Callable

import orjson

from persistence.kept_json import kept_json, right_sized

LOT_VIEW = {"lot_id": 12_345, "state": 2, "price": 123_400, "leader": "竞拍者 4821", "bid_count": 17}


def allocated_bytes(make: Callable[[], bytes]) -> int:
    """The bytes allocated by `make()` and still held once it returned (what a cache would keep)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = make()  # alive until measured
        held = tracemalloc.get_traced_memory()[0] - before
        del made
        return held
    finally:
        tracemalloc.stop()


def test_kept_json_is_orjsons_output_in_an_allocation_of_its_own_size() -> None:
    assert kept_json(LOT_VIEW) == orjson.dumps(LOT_VIEW)
    length = len(orjson.dumps(LOT_VIEW))
    # A bytes object's header is 33 bytes; orjson's own buffer here is ~4 KiB (orjson 3.13).
    assert allocated_bytes(lambda: kept_json(LOT_VIEW)) <= length + 64
    big = {"lots": [LOT_VIEW] * 100}
    assert allocated_bytes(lambda: kept_json(big)) <= len(orjson.dumps(big)) + 64


def test_right_sized_copies_even_what_is_already_small() -> None:
    data = orjson.dumps(LOT_VIEW)
    copy = right_sized(data)
    assert copy == data and copy is not data and type(copy) is bytes
    assert right_sized(b"") == b""
