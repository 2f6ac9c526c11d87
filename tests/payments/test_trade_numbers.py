"""Trade numbers and payment ids are unguessable: a prefix and 128 random bits."""

import base64
import re

import pytest

from payments.trade_numbers import PREFIXES, RANDOM_BITS, is_random_trade_no, new_trade_no


@pytest.mark.parametrize("prefix", PREFIXES)
def test_trade_numbers_carry_128_random_bits(prefix: str) -> None:
    numbers = {new_trade_no(prefix) for _ in range(2000)}
    assert len(numbers) == 2000  # no repeats (a collision of 128 random bits would be news)
    for number in numbers:
        assert re.fullmatch(rf"{prefix}-[a-z2-7]{{26}}", number) and is_random_trade_no(number)
        raw = base64.b32decode(number.split("-", 1)[1].upper() + "======")
        assert len(raw) * 8 == RANDOM_BITS
    # Every bit position varies across the sample: not a counter, not a timestamp.
    values = [int.from_bytes(base64.b32decode(n.split("-", 1)[1].upper() + "======")) for n in numbers]
    ones = [sum(v >> bit & 1 for v in values) for bit in range(RANDOM_BITS)]
    assert all(0 < count < len(values) for count in ones)


def test_unknown_prefixes_are_refused() -> None:
    with pytest.raises(ValueError):
        new_trade_no("pay")
    assert not is_random_trade_no("shop-2025010100000042")  # the old sequential shape
