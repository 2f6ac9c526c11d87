"""Checkout arithmetic of the course shop: exact figures for every coupon kind and the stacking
order, plus properties (discount never above the price, totals never negative, half-up rounding)."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shop.pricing import (
    CouponKind,
    CouponTerms,
    LineInput,
    PricingError,
    allocate,
    coupon_applies,
    coupon_discount,
    parse_yuan,
    percent_off,
    price_checkout,
    yuan_text,
)


def flat(value: int, coupon_id: int = 1) -> CouponTerms:
    return CouponTerms(coupon_id, CouponKind.FLAT, value=value)


def threshold(minimum: int, value: int, coupon_id: int = 2) -> CouponTerms:
    return CouponTerms(coupon_id, CouponKind.THRESHOLD, value=value, minimum=minimum)


def percent(off: int, coupon_id: int = 3) -> CouponTerms:
    return CouponTerms(coupon_id, CouponKind.PERCENT, off_percent=off)


# -- each coupon kind ---------------------------------------------------------------------------------
def test_flat_coupon_takes_its_value_but_never_more_than_the_price() -> None:
    assert coupon_discount(flat(2000), 9990) == 2000
    assert coupon_discount(flat(5000), 4990) == 4990  # capped: the course becomes free, not negative
    assert coupon_discount(flat(1), 0) == 0


def test_threshold_coupon_applies_only_from_its_minimum() -> None:
    coupon = threshold(minimum=9900, value=2000)
    assert coupon_discount(coupon, 9899) == 0
    assert not coupon_applies(coupon, 9899)
    assert coupon_discount(coupon, 9900) == 2000  # "reaches" the minimum: equal counts
    assert coupon_discount(coupon, 9990) == 2000
    assert coupon_discount(threshold(minimum=100, value=500), 300) == 300  # capped at the price


def test_percent_coupon_rounds_half_up_to_the_fen() -> None:
    assert coupon_discount(percent(15), 19900) == 2985  # exactly 2985.00
    assert percent_off(5, 10) == 1  # 0.5 fen -> 1
    assert percent_off(4, 10) == 0  # 0.4 fen -> 0
    assert percent_off(15, 10) == 2  # 1.5 -> 2
    assert percent_off(25, 10) == 3  # 2.5 -> 3 (half up, not to even)
    assert percent_off(24905, 10) == 2491  # 2490.5 -> 2491
    assert coupon_discount(percent(100), 1234) == 1234


def test_coupon_terms_are_validated() -> None:
    with pytest.raises(PricingError):
        CouponTerms(1, CouponKind.PERCENT, off_percent=0)
    with pytest.raises(PricingError):
        CouponTerms(1, CouponKind.PERCENT, off_percent=101)
    with pytest.raises(PricingError):
        CouponTerms(1, CouponKind.FLAT, value=0)
    with pytest.raises(PricingError):
        CouponTerms(1, CouponKind.THRESHOLD, value=100, minimum=-1)
    with pytest.raises(PricingError):
        coupon_discount(flat(100), -1)


# -- stacking: course coupons, then the global coupon, then the balance -----------------------------
def test_worked_example_of_docs_shop_md() -> None:
    """The example in docs/shop.md, figure by figure."""
    lines = [
        LineInput(1, 19900, percent(15, coupon_id=11)),  # 15 % off: 2985
        LineInput(2, 9990, threshold(9900, 2000, coupon_id=12)),  # 满99减20: 2000
        LineInput(3, 4990, flat(5000, coupon_id=13)),  # 50 yuan off a 49.90 course: 4990
    ]
    quote = price_checkout(
        lines, percent(10, coupon_id=20), balance_requested=10_000, balance_available=5_000
    )
    assert quote.original_total == 34880
    assert [line.coupon_discount for line in quote.lines] == [2985, 2000, 4990]
    assert quote.course_discount == 9975
    assert quote.subtotal == 24905
    assert quote.global_discount == 2491  # 10 % of 24905 = 2490.5 -> 2491
    assert quote.payable == 22414
    assert quote.balance_used == 5000  # asked 10000, has 5000
    assert quote.to_pay == 17414
    # The global discount is shared out in proportion (largest remainder), exactly.
    assert [line.global_discount_share for line in quote.lines] == [1692, 799, 0]
    assert [line.paid_price for line in quote.lines] == [15223, 7191, 0]
    assert quote.spent_coupon_ids == (11, 12, 13, 20)


def test_global_coupon_sees_the_sum_after_course_coupons() -> None:
    # Original total 11000 reaches the global 满100减10, but after the course coupon only 9000 remain.
    lines = [LineInput(1, 6000, flat(2000, coupon_id=5)), LineInput(2, 5000)]
    quote = price_checkout(
        lines, threshold(10_000, 1000, coupon_id=6), balance_requested=0, balance_available=0
    )
    assert quote.subtotal == 9000
    assert quote.global_discount == 0
    assert quote.global_coupon_id is None  # not spent: it took nothing off
    assert quote.spent_coupon_ids == (5,)
    assert quote.to_pay == 9000
    # Without the course coupon the global one applies.
    quote = price_checkout(
        [LineInput(1, 6000), LineInput(2, 5000)],
        threshold(10_000, 1000, coupon_id=6),
        balance_requested=0,
        balance_available=0,
    )
    assert (quote.global_discount, quote.to_pay, quote.spent_coupon_ids) == (1000, 10_000, (6,))


def test_global_flat_coupon_is_capped_at_the_subtotal() -> None:
    quote = price_checkout([LineInput(1, 300)], flat(1000), balance_requested=500, balance_available=500)
    assert (quote.global_discount, quote.payable, quote.balance_used, quote.to_pay) == (300, 0, 0, 0)


def test_balance_pays_up_to_what_remains_and_what_the_user_has() -> None:
    lines = [LineInput(1, 10_000)]
    assert price_checkout(lines, None, balance_requested=3000, balance_available=8000).balance_used == 3000
    assert price_checkout(lines, None, balance_requested=20_000, balance_available=8000).balance_used == 8000
    whole = price_checkout(lines, None, balance_requested=20_000, balance_available=50_000)
    assert (whole.balance_used, whole.to_pay) == (10_000, 0)


def test_unapplied_course_coupon_is_not_spent() -> None:
    quote = price_checkout(
        [LineInput(1, 5000, threshold(9900, 2000, coupon_id=9))],
        None,
        balance_requested=0,
        balance_available=0,
    )
    assert quote.lines[0].coupon_id is None and quote.spent_coupon_ids == ()


def test_duplicate_courses_and_negative_amounts_are_refused() -> None:
    with pytest.raises(PricingError):
        price_checkout([LineInput(1, 100), LineInput(1, 200)], None, balance_requested=0, balance_available=0)
    with pytest.raises(PricingError):
        price_checkout([LineInput(1, -1)], None, balance_requested=0, balance_available=0)
    with pytest.raises(PricingError):
        price_checkout([LineInput(1, 1)], None, balance_requested=-1, balance_available=0)


def test_allocate_is_exact_and_deterministic() -> None:
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]  # ties go to the earlier line
    assert allocate(10, [5, 3, 3]) == [4, 3, 3]  # 4.55, 2.73, 2.73: the two .73s get the rest
    assert allocate(0, [0, 0]) == [0, 0]
    assert allocate(7, [7, 0]) == [7, 0]
    with pytest.raises(PricingError):
        allocate(5, [1, 1])


# -- yuan strings (provider amounts) ------------------------------------------------------------------
def test_yuan_text_and_parse_yuan() -> None:
    assert yuan_text(12345) == "123.45"
    assert yuan_text(5) == "0.05"
    assert yuan_text(100) == "1.00"
    assert parse_yuan("123.45") == 12345
    assert parse_yuan("0.5") == 50
    assert parse_yuan("12") == 1200
    for bad in ("", ".5", "1.", "1.001", "-1.00", "+1", "1e3", " 1.00", "1,00", "１.00", "NaN", "0x10"):
        with pytest.raises(PricingError):
            parse_yuan(bad)


# -- properties ---------------------------------------------------------------------------------------
prices = st.integers(min_value=0, max_value=10**10)
coupons = st.one_of(
    st.builds(flat, st.integers(1, 10**10)),
    st.builds(threshold, st.integers(0, 10**10), st.integers(1, 10**10)),
    st.builds(percent, st.integers(1, 100)),
)


@given(coupons, prices)
def test_discount_is_never_negative_nor_above_the_price(terms: CouponTerms, price: int) -> None:
    assert 0 <= coupon_discount(terms, price) <= price


@given(prices, st.integers(0, 100))
def test_percent_off_is_exact_half_up(amount: int, off: int) -> None:
    exact = (Decimal(amount) * off / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert percent_off(amount, off) == int(exact)


@given(
    st.lists(st.tuples(prices, st.none() | coupons), min_size=1, max_size=8),
    st.none() | coupons,
    st.integers(0, 10**11),
    st.integers(0, 10**11),
)
def test_checkout_totals_are_consistent_and_never_negative(
    raw_lines: list[tuple[int, CouponTerms | None]],
    global_coupon: CouponTerms | None,
    requested: int,
    available: int,
) -> None:
    lines = [LineInput(i, price, coupon) for i, (price, coupon) in enumerate(raw_lines)]
    quote = price_checkout(lines, global_coupon, balance_requested=requested, balance_available=available)
    assert quote.original_total == sum(price for price, _ in raw_lines)
    assert all(0 <= line.coupon_discount <= line.original_price for line in quote.lines)
    assert all(line.paid_price >= 0 for line in quote.lines)
    assert sum(line.global_discount_share for line in quote.lines) == quote.global_discount
    assert sum(line.paid_price for line in quote.lines) == quote.payable
    assert 0 <= quote.global_discount <= quote.subtotal
    assert 0 <= quote.balance_used <= min(requested, available, quote.payable)
    assert quote.to_pay == quote.payable - quote.balance_used >= 0
    assert quote.to_pay == 0 or quote.balance_used == min(requested, available)


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=10))
def test_allocate_sums_exactly_and_never_exceeds_a_weight(total: int, weights: list[int]) -> None:
    total = min(total, sum(weights))
    shares = allocate(total, weights)
    assert sum(shares) == total
    assert all(0 <= share <= weight for share, weight in zip(shares, weights, strict=True))


@given(st.integers(0, 10**15 - 1))
def test_yuan_round_trip(fen: int) -> None:
    assert parse_yuan(yuan_text(fen)) == fen
