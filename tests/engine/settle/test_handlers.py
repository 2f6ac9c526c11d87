"""Settlement's handlers on the in-memory unit of work (tests/engine/settle/fakes.py): no server.

Every test checks money: conservation (`MoneyTotals.conserved`), balances never negative, one
ledger entry (with the balance after it) per movement, and that a retried step moves money once.
"""

from __future__ import annotations

import pytest

from engine.book.errors import GavelError, IllegalTransition, NotFound
from engine.book.states import LotState
from engine.clock import FakeClock
from engine.commands import Command, Outcome
from engine.settle import handlers
from engine.settle.model import Conflict, CouponAlreadyClaimed, CouponNotClaimable, CouponSoldOut
from engine.settle.ports import PaymentRequest
from engine.settle.rules import DEFAULT_PAYMENT_WINDOW_MS, OrderStatus, PaymentCase, UserCouponStatus
from engine.settle.service import SettlementService
from engine.settle.uow import StaleRead, UnitOfWork, atomically
from engine.settle.worker import OrderNotPayable, OrderPayments, PayRequest, SettlementWorker
from payments.trade_numbers import is_random_trade_no, new_trade_no
from tests.engine.settle.fakes import FakeSettlementStore, Scene

DAY = DEFAULT_PAYMENT_WINDOW_MS
T0 = 1_700_000_000_000


class Provider:
    name = "fake"

    def __init__(self) -> None:
        self.payments: list[PaymentRequest] = []
        self.refunds: dict[str, tuple[str, int]] = {}

    async def create_payment(self, request: PaymentRequest) -> str:
        self.payments.append(request)
        return f"https://pay.example/{request.out_trade_no}"

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        self.refunds.setdefault(refund_ref, (out_trade_no, amount))


class Engine:
    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def __call__(self, command: Command) -> Outcome:
        self.commands.append(command)
        return Outcome(True, None, "", 1, None)


class World:
    def __init__(self) -> None:
        self.store = FakeSettlementStore()
        self.scene = Scene(self.store)
        self.service = SettlementService(self.store.uow)
        self.clock = FakeClock(T0)
        self.provider = Provider()
        self.engine = Engine()
        self.worker = SettlementWorker(self.service, self.engine, self.clock, provider=self.provider)
        self.payments = OrderPayments(self.service, self.worker, self.provider)

    def balance(self, user_id: int) -> int:
        return self.store.state.balances[user_id]

    def check_money(self) -> None:
        st = self.store.state
        assert self.store.totals().conserved, self.store.totals()
        assert all(balance >= 0 for balance in st.balances.values())
        for user_id, balance in st.balances.items():
            # The balance is the sum of the user's ledger entries, and the latest entry says so.
            entries = [e for e in st.ledger.values() if e.user_id == user_id]
            assert sum(e.amount for e in entries) == balance
            if entries:
                assert entries[-1].balance_after == balance

    async def won(
        self, price: int, *, credit: int = 0, lot_deposit: int = 0, session_deposit: int = 0
    ) -> tuple[int, int, int]:
        """A buyer wins a lot at `price`; returns (buyer, order id, session id)."""
        buyer = self.scene.user(credit)
        session_id = self.scene.session(ended=False)
        lot_id = self.scene.lot(session_id)
        if lot_deposit:
            self.scene.deposit(buyer, session_id, lot_deposit, lot_id)
        if session_deposit:
            self.scene.deposit(buyer, session_id, session_deposit)
        self.scene.close(lot_id, buyer, price, T0)
        await self.worker.drain_outbox()
        [order] = [o for o in self.store.state.orders.values() if o.lot_id == lot_id]
        return buyer, order.id, session_id

    def request(
        self,
        order_id: int,
        buyer: int,
        *,
        pay_with: str = "balance",
        coupon: int | None = None,
        key: str = "k1",
    ) -> PayRequest:
        address = self.scene.address(buyer)
        return PayRequest(
            order_id, buyer, coupon, address, "provider" if pay_with == "provider" else "balance", key
        )


# -- closing lots ----------------------------------------------------------------------------------
async def test_a_sold_lot_becomes_one_unpaid_order_and_losers_get_their_deposits_back() -> None:
    w = World()
    session_id = w.scene.session(ended=False)
    lot_id = w.scene.lot(session_id)
    winner, loser = w.scene.user(5_000), w.scene.user(5_000)
    w.scene.deposit(winner, session_id, 1_000, lot_id)
    loser_deposit = w.scene.deposit(loser, session_id, 1_000, lot_id)
    w.scene.close(lot_id, winner, 30_000, T0)

    assert await w.worker.drain_outbox() == 1
    assert await w.worker.drain_outbox() == 0  # done: a second round finds nothing

    [order] = w.store.state.orders.values()
    assert (order.user_id, order.price, order.status, order.deadline_ms) == (
        winner,
        30_000,
        OrderStatus.UNPAID,
        T0 + DAY,
    )
    assert w.store.state.lots[lot_id]["deal_price"] == 30_000
    assert w.store.state.bids[0]["status"] == 2  # won
    assert w.store.state.sessions[session_id]["sold_count"] == 1
    assert w.balance(loser) == 5_000  # refunded to the balance
    assert w.store.state.ledger[f"deposit-refund:{loser_deposit}"].balance_after == 5_000
    assert w.balance(winner) == 4_000  # the winner's deposit is held against the order
    w.check_money()


async def test_recording_a_close_twice_changes_nothing() -> None:
    w = World()
    session_id = w.scene.session()
    lot_id = w.scene.lot(session_id)
    buyer = w.scene.user()
    w.scene.close(lot_id, buyer, 100, T0)
    item = w.store.state.outbox[lot_id]
    await w.service.record_close(item, T0 + DAY)
    await w.service.record_close(item, T0 + DAY)
    assert len(w.store.state.orders) == 1
    assert w.store.state.sessions[session_id]["sold_count"] == 1


async def test_an_unsold_lot_makes_no_order() -> None:
    w = World()
    session_id = w.scene.session()
    lot_id = w.scene.lot(session_id)
    w.scene.close(lot_id, None, 0, T0)
    await w.worker.drain_outbox()
    assert w.store.state.orders == {}
    assert w.store.state.lots[lot_id]["state"] is LotState.UNSOLD


# -- paying ----------------------------------------------------------------------------------------
async def test_paying_from_coupon_deposit_and_balance_splits_every_fen_once() -> None:
    w = World()
    buyer, order_id, session_id = await w.won(30_000, credit=50_000, lot_deposit=10_000)
    coupon = w.scene.coupon(buyer, session_id, 2_000)
    request = w.request(order_id, buyer, coupon=coupon)

    result = await w.payments.pay(request)
    again = await w.payments.pay(request)  # the client retries with the same key

    assert result.split.case is PaymentCase.BALANCE_DUE
    assert (result.split.coupon_used, result.split.deposit_deducted, result.split.to_pay) == (
        2_000,
        10_000,
        18_000,
    )
    assert again.replayed and again.split == result.split
    assert w.balance(buyer) == 50_000 - 10_000 - 18_000  # debited once
    entry = w.store.state.ledger[f"order-pay:{order_id}"]
    assert (entry.amount, entry.balance_after) == (-18_000, w.balance(buyer))
    order = w.store.state.orders[order_id]
    assert order.status is OrderStatus.AWAITING_DELIVERY
    assert order.payment is not None and order.payment.cash_amount == 18_000
    assert w.store.state.user_coupons[coupon].status is UserCouponStatus.USED
    assert [d.amount for d in w.store.state.deductions.values()] == [10_000]
    w.check_money()


async def test_a_deposit_larger_than_the_price_pays_it_and_refunds_the_rest() -> None:
    w = World()
    buyer, order_id, _ = await w.won(3_000, credit=10_000, lot_deposit=10_000)
    result = await w.payments.pay(w.request(order_id, buyer))
    assert result.split.case is PaymentCase.DEPOSIT_EXCEEDS
    assert w.balance(buyer) == 7_000  # the rest came back; nothing debited
    assert f"order-pay:{order_id}" not in w.store.state.ledger
    w.check_money()


async def test_too_small_a_balance_pays_nothing_and_keeps_deposit_and_coupon() -> None:
    w = World()
    buyer, order_id, session_id = await w.won(30_000, credit=10_000, lot_deposit=5_000)
    coupon = w.scene.coupon(buyer, session_id, 1_000)
    with pytest.raises(GavelError) as raised:
        await w.payments.pay(w.request(order_id, buyer, coupon=coupon))
    assert raised.value.code == "INSUFFICIENT_BALANCE"
    st = w.store.state
    assert st.orders[order_id].status is OrderStatus.UNPAID
    assert st.deductions == {} and st.refunds == {}
    assert st.user_coupons[coupon].status is UserCouponStatus.UNUSED
    assert next(iter(st.deposits.values())).remaining == 5_000
    assert w.balance(buyer) == 5_000
    w.check_money()


async def test_a_concurrent_change_reruns_the_payment_which_still_pays_once() -> None:
    w = World()
    buyer, order_id, _ = await w.won(30_000, credit=50_000, lot_deposit=10_000)
    w.store.fail_deposit_writes = 2  # the deposit "changed" twice under the first attempts
    await w.payments.pay(w.request(order_id, buyer))
    assert w.balance(buyer) == 50_000 - 10_000 - 20_000
    assert len(w.store.state.deductions) == 1
    w.check_money()


async def test_a_deposit_that_keeps_changing_is_a_conflict() -> None:
    w = World()
    buyer, order_id, _ = await w.won(30_000, credit=50_000, lot_deposit=10_000)
    w.store.fail_deposit_writes = 1_000
    with pytest.raises(Conflict):
        await w.payments.pay(w.request(order_id, buyer))
    assert w.store.state.orders[order_id].status is OrderStatus.UNPAID
    w.check_money()


async def test_a_paid_order_cannot_be_paid_with_a_new_key() -> None:
    w = World()
    buyer, order_id, _ = await w.won(1_000, credit=5_000)
    await w.payments.pay(w.request(order_id, buyer, key="a"))
    with pytest.raises(OrderNotPayable):
        await w.payments.pay(w.request(order_id, buyer, key="b"))
    assert w.balance(buyer) == 4_000


async def test_someone_elses_order_is_not_found() -> None:
    w = World()
    _buyer, order_id, _ = await w.won(1_000, credit=5_000)
    other = w.scene.user(5_000)
    with pytest.raises(NotFound):
        await w.payments.pay(w.request(order_id, other))


# -- the provider ----------------------------------------------------------------------------------
async def test_one_provider_notification_pays_the_order_and_a_repeat_changes_nothing() -> None:
    w = World()
    buyer, order_id, _ = await w.won(30_000, session_deposit=0, credit=0)
    opened = await w.payments.pay(w.request(order_id, buyer, pay_with="provider"))
    assert opened.status is OrderStatus.UNPAID and opened.charge is not None
    assert opened.charge.pay_url == f"https://pay.example/{opened.charge.out_trade_no}"
    trade_no = opened.charge.out_trade_no

    await w.payments.on_provider_paid(trade_no, 30_000)
    await w.payments.on_provider_paid(trade_no, 30_000)

    order = w.store.state.orders[order_id]
    assert order.status is OrderStatus.AWAITING_DELIVERY
    assert order.payment is not None and order.payment.cash_source == "provider"
    assert [p.outcome for p in w.store.state.provider_payments.values()] == ["applied"]
    assert w.provider.refunds == {}
    w.check_money()


async def test_a_stale_attempts_notification_is_refunded_not_applied_twice() -> None:
    w = World()
    buyer, order_id, _ = await w.won(30_000)
    first = await w.payments.pay(w.request(order_id, buyer, pay_with="provider", key="a"))
    second = await w.payments.pay(w.request(order_id, buyer, pay_with="provider", key="b"))
    assert first.charge is not None and second.charge is not None
    await w.payments.on_provider_paid(second.charge.out_trade_no, 30_000)
    await w.payments.on_provider_paid(first.charge.out_trade_no, 30_000)

    outcomes = {p.out_trade_no: p.outcome for p in w.store.state.provider_payments.values()}
    assert outcomes == {second.charge.out_trade_no: "applied", first.charge.out_trade_no: "refunded"}
    assert list(w.provider.refunds.values()) == [(first.charge.out_trade_no, 30_000)]
    w.check_money()


async def test_a_wrong_amount_is_refunded() -> None:
    w = World()
    buyer, order_id, _ = await w.won(30_000)
    opened = await w.payments.pay(w.request(order_id, buyer, pay_with="provider"))
    assert opened.charge is not None
    receipt = await w.service.receive_provider_payment(opened.charge.out_trade_no, 29_999, T0)
    assert receipt.outcome == "refund_pending" and "29999" in receipt.reason
    assert w.store.state.orders[order_id].status is OrderStatus.UNPAID
    w.check_money()


async def test_a_notification_for_no_order_is_kept_for_refunding() -> None:
    w = World()
    receipt = await w.service.receive_provider_payment("ord-999-1", 500, T0)
    assert (receipt.outcome, receipt.reason) == ("refund_pending", "no such order")
    w.check_money()


async def test_each_provider_attempt_gets_a_random_trade_number_that_finds_its_order() -> None:
    w = World()
    buyer, order_id, _ = await w.won(30_000)
    first = await w.payments.pay(w.request(order_id, buyer, pay_with="provider", key="a"))
    second = await w.payments.pay(w.request(order_id, buyer, pay_with="provider", key="b"))
    assert first.charge is not None and second.charge is not None
    first_no, second_no = first.charge.out_trade_no, second.charge.out_trade_no
    # 128 random bits, not `ord-{order}-{attempt}`: nobody can name another buyer's payment.
    assert is_random_trade_no(first_no) and is_random_trade_no(second_no) and first_no != second_no
    assert first_no.startswith("ord-") and second_no.startswith("ord-")
    # The payment request says whose it is (only they may see or pay it in the sandbox).
    assert [(p.out_trade_no, p.user_id) for p in w.provider.payments] == [
        (first_no, buyer),
        (second_no, buyer),
    ]

    async def owner(trade_no: str) -> int | None:
        return await atomically(w.store.uow, lambda uow: handlers.order_of_trade_no(uow, trade_no))

    # Every attempt's number is kept on the order, so each one's notification finds it; an older
    # installation's sequential number still parses; a number nobody made finds nothing.
    assert await owner(first_no) == order_id and await owner(second_no) == order_id
    assert await owner(f"ord-{order_id}-7") == order_id
    assert await owner(new_trade_no("ord")) is None

    # The earlier attempt's late notification is refused against its own order (stale), not as
    # "no such order"; the live one pays.
    stale = await w.service.receive_provider_payment(first_no, 30_000, T0)
    assert (stale.order_id, stale.outcome, stale.reason) == (
        order_id,
        "refund_pending",
        "a stale payment attempt",
    )
    paid = await w.service.receive_provider_payment(second_no, 30_000, T0)
    assert (paid.order_id, paid.outcome) == (order_id, "applied")
    assert w.store.state.orders[order_id].status is OrderStatus.AWAITING_DELIVERY


async def test_a_random_number_nobody_made_is_kept_for_refunding() -> None:
    w = World()
    stray = new_trade_no("ord")
    receipt = await w.service.receive_provider_payment(stray, 500, T0)
    assert (receipt.order_id, receipt.outcome, receipt.reason) == (None, "refund_pending", "no such order")
    w.check_money()


async def test_a_provider_deposits_refund_goes_back_under_the_deposits_own_trade_number() -> None:
    w = World()
    session_id = w.scene.session()
    buyer, older = w.scene.user(), w.scene.user()
    dep_no = new_trade_no("dep")
    deposit = w.scene.deposit(buyer, session_id, 700, via="provider", out_trade_no=dep_no)
    # A deposit from an older installation has no stored number: its number was `dep-{id}`.
    old_deposit = w.scene.deposit(older, session_id, 300, via="provider")
    refund = await w.service.open_refund(deposit, "test", T0)
    old_refund = await w.service.open_refund(old_deposit, "test", T0)
    assert refund is not None and refund.out_trade_no == dep_no
    assert w.store.state.refunds[refund.refund_id].out_trade_no == dep_no
    assert old_refund is not None and old_refund.out_trade_no is None

    assert await w.worker.execute_refund(refund) and await w.worker.execute_refund(old_refund)
    assert w.provider.refunds == {
        f"refund-{dep_no}": (dep_no, 700),
        f"refund-dep-{old_deposit}": (f"dep-{old_deposit}", 300),
    }
    w.check_money()


# -- overdue ---------------------------------------------------------------------------------------
async def test_an_overdue_order_forfeits_at_most_the_price_and_refunds_the_rest() -> None:
    w = World()
    buyer, order_id, _ = await w.won(3_000, credit=10_000, lot_deposit=10_000)
    assert await w.worker.sweep_overdue(T0 + DAY - 1) == 0  # not yet due
    assert await w.worker.sweep_overdue(T0 + DAY) == 1
    assert await w.worker.sweep_overdue(T0 + DAY) == 0  # once

    st = w.store.state
    order = st.orders[order_id]
    assert (order.status, order.forfeit) == (OrderStatus.OVERDUE, 3_000)
    assert [d.amount for d in st.deductions.values()] == [3_000]
    assert w.balance(buyer) == 7_000  # 10,000 of deposit less the 3,000 forfeit came back
    assert st.non_payers == {buyer: order_id}
    assert st.lots[order.lot_id]["state"] is LotState.OVERDUE
    assert len(w.engine.commands) == 2  # MarkOverdue and BlockBidder
    w.check_money()


async def test_a_session_deposit_stays_held_while_the_session_runs() -> None:
    w = World()
    buyer, _order_id, session_id = await w.won(3_000, credit=10_000, session_deposit=10_000)
    await w.worker.sweep_overdue(T0 + DAY)
    deposit = next(iter(w.store.state.deposits.values()))
    assert deposit.remaining == 7_000  # kept: the session has not ended
    assert w.balance(buyer) == 0

    w.store.state.sessions[session_id]["ended"] = True
    assert await w.worker.settle_ended_sessions() == 1
    assert w.balance(buyer) == 7_000
    w.check_money()


# -- sessions and coupons --------------------------------------------------------------------------
async def test_an_ended_session_releases_deposits_and_expires_unused_coupons() -> None:
    w = World()
    buyer, order_id, session_id = await w.won(3_000, credit=20_000, session_deposit=10_000)
    coupon = w.scene.coupon(buyer, session_id, 100)
    spare = w.scene.coupon(buyer, session_id, 50)
    await w.payments.pay(w.request(order_id, buyer, coupon=coupon))
    w.store.state.sessions[session_id]["ended"] = True
    await w.worker.settle_ended_sessions()

    assert w.balance(buyer) == 20_000 - 2_900  # the deposit paid 2,900; the rest came back
    assert w.store.state.user_coupons[spare].status is UserCouponStatus.EXPIRED
    assert w.store.state.sessions[session_id]["deposits_settled"] is True
    w.check_money()


async def test_a_coupon_is_claimed_once_per_user_and_never_beyond_its_quantity() -> None:
    w = World()
    session_id = w.scene.session(ended=False)
    offer = await w.service.add_coupon_offer(session_id, "Spring", 500, 2, T0 - 1, T0 + DAY)
    a, b, c = w.scene.user(), w.scene.user(), w.scene.user()
    await w.service.claim_user_coupon(offer.id, a, T0)
    with pytest.raises(CouponAlreadyClaimed):
        await w.service.claim_user_coupon(offer.id, a, T0)
    await w.service.claim_user_coupon(offer.id, b, T0)
    with pytest.raises(CouponSoldOut):
        await w.service.claim_user_coupon(offer.id, c, T0)
    with pytest.raises(CouponNotClaimable):
        await w.service.claim_user_coupon(offer.id, c, T0 + DAY)
    assert w.store.state.offers[offer.id].left == 0
    assert len(w.store.state.user_coupons) == 2


# -- delivery --------------------------------------------------------------------------------------
async def test_ship_then_complete_each_idempotent_and_in_order() -> None:
    w = World()
    buyer, order_id, _ = await w.won(1_000, credit=1_000)
    with pytest.raises(IllegalTransition):
        await w.service.ship_order(order_id, "SF1", T0)  # unpaid
    await w.payments.pay(w.request(order_id, buyer))
    with pytest.raises(IllegalTransition):
        await w.service.complete_order(order_id, T0)  # not shipped yet
    await w.service.ship_order(order_id, "SF1", T0)
    await w.service.ship_order(order_id, "SF1", T0)
    await w.service.complete_order(order_id, T0)
    await w.service.complete_order(order_id, T0)
    assert w.store.state.orders[order_id].status is OrderStatus.COMPLETED
    with pytest.raises(NotFound):
        await w.service.ship_order(12345, None, T0)


# -- the unit of work ------------------------------------------------------------------------------
async def test_a_unit_of_work_left_without_commit_writes_nothing() -> None:
    store = FakeSettlementStore()
    user = Scene(store).user(100)

    async def credit_then_fail(uow: UnitOfWork) -> None:
        await uow.ledger.credit(user, 50, "admin_credit", "x")
        raise StaleRead()

    with pytest.raises(Conflict):
        await atomically(store.uow, credit_then_fail, stale_retries=3)
    assert store.state.balances[user] == 100 and "x" not in store.state.ledger


async def test_handlers_run_directly_on_a_unit_of_work() -> None:
    store = FakeSettlementStore()
    scene = Scene(store)
    session_id = scene.session()
    buyer = scene.user()
    deposit = scene.deposit(buyer, session_id, 700, via="provider")
    refund = await atomically(store.uow, lambda uow: handlers.open_refund(uow, deposit, "test", T0))
    assert refund is not None and (refund.amount, refund.via, refund.pending) == (700, "provider", True)
    again = await atomically(store.uow, lambda uow: handlers.open_refund(uow, deposit, "test", T0))
    assert again == refund
