"""The payment-day rules with exact figures, and their conservation laws as properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.book.errors import IllegalTransition
from engine.settle import rules
from engine.settle.rules import (
    CouponState,
    ForfeitSplit,
    MoneyTotals,
    OrderStatus,
    PaymentCase,
    PaymentSplit,
    check_order_transition,
    coupon_state,
    forfeit,
    order_deadline,
    refund_at_close,
    session_deposit_needed,
    session_deposit_release,
    split_payment,
)

LOT = {"deposit_is_session_wide": False, "session_deposit_needed": False}


# -- the four cases of "deal price − coupon − deposit, then balance" --------------------------------
@pytest.mark.parametrize(
    ("price", "coupon", "deposit", "expected"),
    [
        # P − C ≤ 0: the coupon covers it; the per-lot deposit goes back whole.
        (500, 800, 1_000, PaymentSplit(PaymentCase.COUPON_COVERS, 500, 0, 1_000, 0, 0)),
        (800, 800, 1_000, PaymentSplit(PaymentCase.COUPON_COVERS, 800, 0, 1_000, 0, 0)),
        (500, 800, 0, PaymentSplit(PaymentCase.COUPON_COVERS, 500, 0, 0, 0, 0)),
        # P − C − D = 0: the deposit pays the rest exactly.
        (3_000, 1_000, 2_000, PaymentSplit(PaymentCase.DEPOSIT_COVERS_EXACTLY, 1_000, 2_000, 0, 0, 0)),
        (2_000, 0, 2_000, PaymentSplit(PaymentCase.DEPOSIT_COVERS_EXACTLY, 0, 2_000, 0, 0, 0)),
        # P − C − D < 0: P − C deducted, the rest refunded.
        (3_000, 500, 5_000, PaymentSplit(PaymentCase.DEPOSIT_EXCEEDS, 500, 2_500, 2_500, 0, 0)),
        # P − C − D > 0: the whole deposit, then the balance or the provider.
        (10_000, 1_000, 2_000, PaymentSplit(PaymentCase.BALANCE_DUE, 1_000, 2_000, 0, 0, 7_000)),
        (10_000, 0, 0, PaymentSplit(PaymentCase.BALANCE_DUE, 0, 0, 0, 0, 10_000)),
    ],
)
def test_split_payment_per_lot_deposit(price: int, coupon: int, deposit: int, expected: PaymentSplit) -> None:
    assert split_payment(price, coupon, deposit, **LOT) == expected


def test_session_deposit_keeps_the_rest_while_still_needed() -> None:
    # Session deposit 5 000 shared by two wins (1 000 and 3 000) in an ended session.
    first = split_payment(1_000, 0, 5_000, deposit_is_session_wide=True, session_deposit_needed=True)
    assert first == PaymentSplit(PaymentCase.DEPOSIT_EXCEEDS, 0, 1_000, 0, 4_000, 0)
    second = split_payment(3_000, 0, 4_000, deposit_is_session_wide=True, session_deposit_needed=False)
    assert second == PaymentSplit(PaymentCase.DEPOSIT_EXCEEDS, 0, 3_000, 1_000, 0, 0)


def test_session_deposit_covered_by_coupon_is_kept_or_released() -> None:
    kept = split_payment(500, 600, 5_000, deposit_is_session_wide=True, session_deposit_needed=True)
    assert (
        kept.coupon_used,
        kept.deposit_deducted,
        kept.deposit_refunded,
        kept.deposit_kept,
        kept.to_pay,
    ) == (
        500,
        0,
        0,
        5_000,
        0,
    )
    released = split_payment(500, 600, 5_000, deposit_is_session_wide=True, session_deposit_needed=False)
    assert (released.deposit_refunded, released.deposit_kept) == (5_000, 0)


def test_session_deposit_needed_flag_is_ignored_for_per_lot_deposits() -> None:
    split = split_payment(3_000, 0, 5_000, deposit_is_session_wide=False, session_deposit_needed=True)
    assert (split.deposit_refunded, split.deposit_kept) == (2_000, 0)


def test_paid_amount_is_the_price_less_the_coupon() -> None:
    assert split_payment(10_000, 1_000, 2_000, **LOT).paid_amount == 9_000
    assert split_payment(500, 800, 1_000, **LOT).paid_amount == 0


@pytest.mark.parametrize(("price", "coupon", "deposit"), [(-1, 0, 0), (1, -1, 0), (1, 0, -1)])
def test_negative_amounts_are_refused(price: int, coupon: int, deposit: int) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        split_payment(price, coupon, deposit, **LOT)


def test_non_integer_amounts_are_refused() -> None:
    with pytest.raises(ValueError):
        split_payment(1.5, 0, 0, **LOT)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        forfeit(True, 0, **LOT)  # bool is an int to Python, but not money


# -- forfeits ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("price", "deposit", "session_wide", "needed", "expected"),
    [
        (10_000, 2_000, False, False, ForfeitSplit(2_000, 0, 0)),  # per-lot: all of it
        (500, 2_000, False, True, ForfeitSplit(500, 1_500, 0)),  # never more than the price
        (3_000, 5_000, True, False, ForfeitSplit(3_000, 2_000, 0)),  # session: rest refunded
        (3_000, 5_000, True, True, ForfeitSplit(3_000, 0, 2_000)),  # session: rest held
        (8_000, 5_000, True, True, ForfeitSplit(5_000, 0, 0)),  # session: all that remains
        (8_000, 0, True, False, ForfeitSplit(0, 0, 0)),  # nothing held, nothing taken
    ],
)
def test_forfeit(price: int, deposit: int, session_wide: bool, needed: bool, expected: ForfeitSplit) -> None:
    assert (
        forfeit(price, deposit, deposit_is_session_wide=session_wide, session_deposit_needed=needed)
        == expected
    )


# -- refunds -----------------------------------------------------------------------------------------
def test_refund_at_close_spares_only_the_winner() -> None:
    assert refund_at_close(deposit_owner=7, winner=8)
    assert not refund_at_close(deposit_owner=8, winner=8)
    assert refund_at_close(deposit_owner=8, winner=None)  # unsold


def test_session_deposit_release() -> None:
    assert session_deposit_release(5_000, session_ended=False, unpaid_orders=0) == 0  # may still win
    assert session_deposit_release(5_000, session_ended=True, unpaid_orders=1) == 0  # held for the order
    assert session_deposit_release(5_000, session_ended=True, unpaid_orders=0) == 5_000  # won nothing
    assert session_deposit_release(1_000, session_ended=True, unpaid_orders=0) == 1_000  # what remains
    assert session_deposit_needed(session_ended=True, other_unpaid_orders=0) is False
    with pytest.raises(ValueError):
        session_deposit_needed(session_ended=True, other_unpaid_orders=-1)


# -- states and time ---------------------------------------------------------------------------------
def test_order_transitions() -> None:
    assert (
        check_order_transition(OrderStatus.UNPAID, OrderStatus.AWAITING_DELIVERY)
        is OrderStatus.AWAITING_DELIVERY
    )
    assert check_order_transition(OrderStatus.UNPAID, OrderStatus.OVERDUE) is OrderStatus.OVERDUE
    assert (
        check_order_transition(OrderStatus.AWAITING_DELIVERY, OrderStatus.COMPLETED) is OrderStatus.COMPLETED
    )
    for current, target in [
        (OrderStatus.OVERDUE, OrderStatus.AWAITING_DELIVERY),
        (OrderStatus.COMPLETED, OrderStatus.UNPAID),
        (OrderStatus.UNPAID, OrderStatus.COMPLETED),
        (OrderStatus.AWAITING_DELIVERY, OrderStatus.OVERDUE),
    ]:
        with pytest.raises(IllegalTransition):
            check_order_transition(current, target)
    assert [s.key for s in OrderStatus] == ["unpaid", "awaiting_delivery", "completed", "overdue"]
    assert OrderStatus.OVERDUE.text == "逾期未支付"


def test_deadline_and_due() -> None:
    assert order_deadline(1_000) == 1_000 + 86_400_000
    assert order_deadline(1_000, 60_000) == 61_000
    assert not rules.is_due(61_000, 60_999)
    assert rules.is_due(61_000, 61_000)
    with pytest.raises(ValueError):
        order_deadline(1_000, 0)


def test_coupon_state_follows_the_clock() -> None:
    assert coupon_state(99, 100, 200) is CouponState.NOT_STARTED
    assert coupon_state(100, 100, 200) is CouponState.CLAIMING
    assert coupon_state(199, 100, 200) is CouponState.CLAIMING
    assert coupon_state(200, 100, 200) is CouponState.ENDED


def test_money_totals_conserved() -> None:
    assert MoneyTotals(100, 50, 30, 15, 5, 200).conserved
    assert not MoneyTotals(100, 50, 30, 15, 5, 199).conserved


# -- properties ---------------------------------------------------------------------------------------
money = st.integers(min_value=0, max_value=10**13)


@given(money, money, money, st.booleans(), st.booleans())
def test_split_conserves_price_and_deposit(
    price: int, coupon: int, deposit: int, session_wide: bool, needed: bool
) -> None:
    split = split_payment(
        price, coupon, deposit, deposit_is_session_wide=session_wide, session_deposit_needed=needed
    )
    assert split.coupon_used + split.deposit_deducted + split.to_pay == price
    assert split.deposit_deducted + split.deposit_refunded + split.deposit_kept == deposit
    assert (
        min(
            split.coupon_used,
            split.deposit_deducted,
            split.deposit_refunded,
            split.deposit_kept,
            split.to_pay,
        )
        >= 0
    )
    assert split.coupon_used <= coupon
    # The deposit is used before any cash, and cash is asked only when the deposit is spent.
    assert split.to_pay == 0 or split.deposit_deducted == deposit
    # Only a whole-session deposit still needed is kept; nothing is both kept and refunded.
    assert split.deposit_kept == 0 or (session_wide and needed and split.deposit_refunded == 0)
    expected_case = (
        PaymentCase.COUPON_COVERS
        if price - coupon <= 0
        else PaymentCase.DEPOSIT_COVERS_EXACTLY
        if price - coupon - deposit == 0
        else PaymentCase.DEPOSIT_EXCEEDS
        if price - coupon - deposit < 0
        else PaymentCase.BALANCE_DUE
    )
    assert split.case is expected_case


@given(money, money, st.booleans(), st.booleans())
def test_forfeit_conserves_the_deposit(price: int, deposit: int, session_wide: bool, needed: bool) -> None:
    split = forfeit(price, deposit, deposit_is_session_wide=session_wide, session_deposit_needed=needed)
    assert split.deducted + split.refunded + split.kept == deposit
    assert 0 <= split.deducted <= price
    assert min(split.refunded, split.kept) >= 0
    assert split.kept == 0 or (session_wide and needed)
