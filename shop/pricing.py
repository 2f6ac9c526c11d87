"""Course-shop checkout arithmetic: coupons, the global coupon, the balance (贝里). Pure and integer.

The rules of the course-shop notes (seed 004), made exact:

1. Each course line may carry one course coupon. Its discount never exceeds the line's price:
   - flat (通用券/金额): `value` fen off;
   - threshold (满减券): `value` fen off, only when the price reaches `minimum`;
   - percent (折扣券): `off_percent` percent off, rounded half up to the fen
     (`(price * off_percent + 50) // 100`).
2. The global coupon (one at most) applies, by the same rules, to the sum of the lines after their
   course coupons.
3. The balance then pays up to what remains and up to what the user has (and asked to use).
4. What is left is paid through the payment provider.

Money is `int` fen throughout; no float ever touches an amount. A chosen coupon that gives no
discount (a threshold not reached) is not spent: `Quote.spent_coupon_ids` lists only the coupons
that actually took something off.

The seed's percent coupon stores the price paid ("7.9折, 写79"); here `off_percent` is the share
taken off (15 means 15 % off), which is what the REST API and `shop_coupons` store.
"""

import dataclasses
import enum
from collections.abc import Sequence

Fen = int

MAX_PERCENT = 100


class CouponKind(enum.StrEnum):
    FLAT = "flat"  # 通用券: a fixed amount off
    THRESHOLD = "threshold"  # 满减券: a fixed amount off once the price reaches a minimum
    PERCENT = "percent"  # 折扣券: a percentage off


class PricingError(ValueError):
    """Inputs that cannot be priced (negative prices, malformed coupon terms)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CouponTerms:
    """What a coupon takes off; `value` and `minimum` in fen, `off_percent` in whole percent."""

    coupon_id: int
    kind: CouponKind
    value: Fen = 0
    minimum: Fen = 0
    off_percent: int = 0

    def __post_init__(self) -> None:
        if self.kind is CouponKind.PERCENT:
            if not 1 <= self.off_percent <= MAX_PERCENT:
                raise PricingError(f"a percent coupon takes 1-{MAX_PERCENT} percent off")
        elif self.value < 1:
            raise PricingError("a flat or threshold coupon takes at least 1 fen off")
        if self.minimum < 0:
            raise PricingError("a coupon minimum cannot be negative")


@dataclasses.dataclass(frozen=True, slots=True)
class LineInput:
    course_id: int
    price: Fen  # the chosen price policy's price
    coupon: CouponTerms | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PricedLine:
    course_id: int
    original_price: Fen
    coupon_id: int | None  # the course coupon, when it took something off
    coupon_discount: Fen
    global_discount_share: Fen  # this line's share of the global coupon (shares sum to it exactly)

    @property
    def price_after_coupon(self) -> Fen:
        return self.original_price - self.coupon_discount

    @property
    def paid_price(self) -> Fen:
        """What the line costs after both coupons (the balance is a way of paying, not a discount)."""
        return self.original_price - self.coupon_discount - self.global_discount_share


@dataclasses.dataclass(frozen=True, slots=True)
class Quote:
    lines: tuple[PricedLine, ...]
    original_total: Fen
    course_discount: Fen  # sum of the course coupons' discounts
    subtotal: Fen  # after course coupons: what the global coupon applies to
    global_coupon_id: int | None  # the global coupon, when it took something off
    global_discount: Fen
    payable: Fen  # after both coupons
    balance_used: Fen
    to_pay: Fen  # what the payment provider must collect

    @property
    def spent_coupon_ids(self) -> tuple[int, ...]:
        """Coupons this order consumes: only those that took something off."""
        ids = [line.coupon_id for line in self.lines if line.coupon_id is not None]
        if self.global_coupon_id is not None:
            ids.append(self.global_coupon_id)
        return tuple(ids)


def percent_off(amount: Fen, off_percent: int) -> Fen:
    """`off_percent` percent of `amount`, rounded half up to the fen, with integers only."""
    if amount < 0 or not 0 <= off_percent <= MAX_PERCENT:
        raise PricingError("percent_off needs a non-negative amount and 0-100 percent")
    return (amount * off_percent + 50) // 100


def coupon_applies(terms: CouponTerms, base: Fen) -> bool:
    """Whether the coupon may be used on `base` fen (only a threshold coupon can fail to apply)."""
    return terms.kind is not CouponKind.THRESHOLD or base >= terms.minimum


def coupon_discount(terms: CouponTerms, base: Fen) -> Fen:
    """The discount `terms` gives on `base` fen; never more than `base`, never negative."""
    if base < 0:
        raise PricingError("a price cannot be negative")
    if not coupon_applies(terms, base):
        return 0
    if terms.kind is CouponKind.PERCENT:
        discount = percent_off(base, terms.off_percent)
    else:
        discount = terms.value
    return min(discount, base)


def allocate(total: Fen, weights: Sequence[Fen]) -> list[Fen]:
    """Split `total` over `weights` in proportion, exactly (largest remainder; ties to the earlier).

    Used to give each order line its share of the global coupon, so that the lines' paid prices
    add up to what the order costs.
    """
    weight_sum = sum(weights)
    if total < 0 or any(w < 0 for w in weights):
        raise PricingError("allocate needs non-negative amounts")
    if weight_sum == 0:
        if total != 0:
            raise PricingError("cannot allocate a positive amount over zero weights")
        return [0 for _ in weights]
    if total > weight_sum:
        raise PricingError("cannot allocate more than the weights add up to")
    shares = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def price_checkout(
    lines: Sequence[LineInput],
    global_coupon: CouponTerms | None,
    *,
    balance_requested: Fen,
    balance_available: Fen,
) -> Quote:
    """Price one checkout: course coupons, then the global coupon, then the balance."""
    if balance_requested < 0 or balance_available < 0:
        raise PricingError("balance amounts cannot be negative")
    if len({line.course_id for line in lines}) != len(lines):
        raise PricingError("a course appears twice in one checkout")
    discounts: list[Fen] = []
    coupon_ids: list[int | None] = []
    for line in lines:
        if line.price < 0:
            raise PricingError("a price cannot be negative")
        discount = coupon_discount(line.coupon, line.price) if line.coupon is not None else 0
        discounts.append(discount)
        coupon_ids.append(line.coupon.coupon_id if line.coupon is not None and discount > 0 else None)
    original_total = sum(line.price for line in lines)
    course_discount = sum(discounts)
    subtotal = original_total - course_discount
    global_discount = coupon_discount(global_coupon, subtotal) if global_coupon is not None else 0
    shares = allocate(global_discount, [line.price - d for line, d in zip(lines, discounts, strict=True)])
    payable = subtotal - global_discount
    global_coupon_id = global_coupon.coupon_id if global_coupon is not None and global_discount > 0 else None
    balance_used = min(balance_requested, balance_available, payable)
    priced = tuple(
        PricedLine(line.course_id, line.price, coupon_id, discount, share)
        for line, coupon_id, discount, share in zip(lines, coupon_ids, discounts, shares, strict=True)
    )
    return Quote(
        lines=priced,
        original_total=original_total,
        course_discount=course_discount,
        subtotal=subtotal,
        global_coupon_id=global_coupon_id,
        global_discount=global_discount,
        payable=payable,
        balance_used=balance_used,
        to_pay=payable - balance_used,
    )


def yuan_text(fen: Fen) -> str:
    """Fen as a yuan string with exactly two decimals, integer arithmetic only: 12345 -> "123.45"."""
    if fen < 0:
        return "-" + yuan_text(-fen)
    return f"{fen // 100}.{fen % 100:02d}"


def parse_yuan(text: str) -> Fen:
    """A yuan amount as payment providers send it ("123.45", "0.5", "12") -> fen, exactly.

    Refuses anything else (signs, exponents, spaces, more than two decimals) with PricingError.
    """
    whole, dot, fraction = text.partition(".")
    if (
        not whole
        or len(whole) > 13
        or not whole.isascii()
        or not whole.isdigit()
        or (dot and not 1 <= len(fraction) <= 2)
        or (fraction and not (fraction.isascii() and fraction.isdigit()))
    ):
        raise PricingError(f"not a yuan amount: {text[:40]!r}")
    return int(whole) * 100 + int(fraction.ljust(2, "0") or "0")
