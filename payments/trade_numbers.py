"""Trade numbers (`out_trade_no`) and payment ids: `{prefix}-{26 base32 characters}`.

The part after the prefix is 128 bits from `secrets`, so a number can be neither guessed nor
enumerated (a sequential `shop-2025…42` let anyone name another user's payment). The prefix still
routes a verified notification to its handler (`engine.settle.ports.PaymentRouter`).
Lower-case base32 without padding: letters and digits only, so Alipay (letters, digits, `_`)
carries it unchanged apart from our `-` -> `_` mapping.
"""

import base64
import re
import secrets
from typing import Final

PREFIXES: Final = ("dep", "ord", "shop")
RANDOM_BITS: Final = 128
RANDOM_CHARS: Final = 26  # ceil(128 / 5)
# What the HTTP routes accept: our current numbers and (read-only) the older sequential ones.
TRADE_NO_PATTERN: Final = r"((?:shop|dep|ord)-[A-Za-z0-9-]{1,58})"
_NEW = re.compile(r"(?:shop|dep|ord)-[a-z2-7]{26}")


def random_part() -> str:
    """128 random bits as 26 lower-case base32 characters."""
    return base64.b32encode(secrets.token_bytes(RANDOM_BITS // 8)).decode().rstrip("=").lower()


def new_trade_no(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown payment prefix {prefix!r}")
    return f"{prefix}-{random_part()}"


def is_random_trade_no(value: str) -> bool:
    return _NEW.fullmatch(value) is not None
