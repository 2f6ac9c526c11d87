"""`ShopService`: the course shop as its callers see it (REST, the admin pages, the payment router,
the sweeper). Each call runs the decisions of shop/handlers.py or shop/catalogue.py over the ports it
was built with; a money movement runs in its own unit of work (`ShopStore.atomically`). A new
order's provider payment is made inside the order's unit of work when the provider makes it
locally (a signed URL and our record of the attempt: one commit, no orphan attempt if it aborts);
a provider that needs a network call, and every refund or close, is called only after the unit of
work committed, never holding a transaction open across the network.

Built by `persistence.shop.mongo_shop` (MongoDB + Redis) or over tests/shop/fakes.py.
"""

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from engine.book.errors import GavelError, InvalidInput, NotFound
from engine.settle.ports import PaidNotice, PaymentProvider
from shop import catalogue as cat
from shop import degree_buy, handlers, order_life
from shop.model import (
    CART_LIMIT,
    DEFAULT_CHECKOUT_TTL_SECONDS,
    DEFAULT_PENDING_TIMEOUT_SECONDS,
    OUT_TRADE_PREFIX,
    CartLine,
    Checkout,
    CheckoutAlreadyOrdered,
    CheckoutMissing,
    PlacedOrder,
    Record,
    ShopConflict,
    ShopUnavailable,
)
from shop.ports import (
    CartStore,
    CatalogueRepository,
    Duplicate,
    GaveUp,
    NotSettled,
    PaymentCloser,
    ShopReads,
    ShopStore,
    ShopUnitOfWork,
)
from shop.pricing import Quote
from shop.storefront import CourseQuery, browse_courses

log = logging.getLogger("gavel.shop")
T = TypeVar("T")


def _utc_now() -> datetime.datetime:
    now = datetime.datetime.now(datetime.UTC)
    # Stored dates keep milliseconds: what we hand back equals what a later read returns.
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class ShopService:
    """Every shop operation; `now` is injectable so tests can move time."""

    def __init__(
        self,
        store: ShopStore,
        carts: CartStore,
        reads: ShopReads,
        provider: PaymentProvider,
        *,
        checkout_ttl_seconds: int = DEFAULT_CHECKOUT_TTL_SECONDS,
        pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT_SECONDS,
        now: Callable[[], datetime.datetime] = _utc_now,
        catalogue_changed: Callable[[], Awaitable[None]] | None = None,
        cart_catalogue: CatalogueRepository | None = None,
    ) -> None:
        self.store = store
        self.carts = carts
        self.reads = reads
        self.provider = provider
        self.checkout_ttl_seconds = checkout_ttl_seconds
        self.pending_timeout_seconds = pending_timeout_seconds
        self.now = now
        # Called after every catalogue write (even a refused one): the reads' cache forgets it.
        self.catalogue_changed = catalogue_changed
        # What the cart reads courses and policies through (a cached one in production).
        self.cart_catalogue = cart_catalogue

    @property
    def _direct(self) -> ShopUnitOfWork:
        return self.store.direct()

    @property
    def _cart_catalogue(self) -> CatalogueRepository:
        return self.cart_catalogue or self._direct.catalogue

    async def _catalogue_write(self, write: Awaitable[T]) -> T:
        try:
            return await write
        finally:
            if self.catalogue_changed is not None:
                await self.catalogue_changed()

    # == catalogue: admin writes ======================================================================
    async def create_category(self, name: str, parent_id: int | None) -> Record:
        return await self._catalogue_write(cat.create_category(self._direct.catalogue, name, parent_id))

    async def create_teacher(self, fields: Record) -> Record:
        return await self._catalogue_write(cat.create_teacher(self._direct.catalogue, fields))

    async def create_degree_course(self, fields: Record) -> Record:
        return await self._catalogue_write(cat.create_degree_course(self._direct.catalogue, fields))

    async def set_degree_status(self, degree_course_id: int, status: str) -> Record:
        """Put a degree course on sale ("online") or take it off ("offline"; bought ones go on)."""
        if status not in degree_buy.DEGREE_STATUSES:
            raise InvalidInput(f"status must be one of: {', '.join(degree_buy.DEGREE_STATUSES)}")
        degree = await self._catalogue_write(
            self._direct.catalogue.update_degree_course(degree_course_id, {"status": status})
        )
        if degree is None:
            raise NotFound(f"no degree course {degree_course_id}")
        return degree

    async def create_course(self, fields: Record) -> Record:
        return await self._catalogue_write(cat.create_course(self._direct.catalogue, fields, self.now()))

    async def update_course(self, course_id: int, changes: Record) -> Record:
        return await self._catalogue_write(cat.update_course(self._direct.catalogue, course_id, changes))

    async def put_course_detail(self, course_id: int, fields: Record) -> Record:
        return await self._catalogue_write(cat.put_course_detail(self._direct.catalogue, course_id, fields))

    async def add_policy(self, target: str, target_id: int, valid_days: int, price: int) -> Record:
        return await self._catalogue_write(
            cat.add_policy(self._direct.catalogue, target, target_id, valid_days, price)
        )

    async def remove_policy(self, policy_id: int) -> None:
        await self._catalogue_write(cat.remove_policy(self._direct.catalogue, policy_id))

    async def add_chapter(self, course_id: int, fields: Record) -> Record:
        return await self._catalogue_write(cat.add_chapter(self._direct.catalogue, course_id, fields))

    async def add_section(self, chapter_id: int, fields: Record) -> Record:
        return await self._catalogue_write(cat.add_section(self._direct.catalogue, chapter_id, fields))

    async def add_faq(self, target: str, target_id: int, question: str, answer: str) -> Record:
        return await self._catalogue_write(
            cat.add_faq(self._direct.catalogue, target, target_id, question, answer)
        )

    # == reads ========================================================================================
    async def categories(self) -> list[Record]:
        return await self.reads.categories()

    async def list_courses(self, category_id: int | None, skip: int, limit: int) -> tuple[list[Record], int]:
        return await self.reads.list_courses(category_id, skip, limit)

    async def browse_courses(self, query: CourseQuery, skip: int, limit: int) -> tuple[list[Record], int]:
        """The storefront's catalogue: search, filters and sort (shop/storefront.py)."""
        return await browse_courses(self.reads, query, skip, limit)

    async def course_page(self, course_id: int) -> Record:
        return await self.reads.course_page(course_id)

    async def degree_course_page(self, degree_course_id: int) -> Record:
        return await self.reads.degree_course_page(degree_course_id)

    async def degree_enrolment(self, user_id: int, degree_course_id: int) -> Record | None:
        """The user's enrolment in a degree (`shop_degree_enrolments`), refunded ones included."""
        return await self._direct.degree_enrolments.get(degree_buy.enrolment_id(user_id, degree_course_id))

    async def chapters(self, course_id: int) -> list[Record]:
        return await self.reads.chapters(course_id)

    async def find_order(self, user_id: int, order_no: str) -> Record:
        return await self.reads.find_order(user_id, order_no)

    async def orders(
        self, user_id: int, skip: int, limit: int, status: str | None = None
    ) -> tuple[list[Record], int]:
        statuses = order_life.stored_statuses(status) if status is not None else ()
        return await self.reads.orders(user_id, skip, limit, statuses)

    async def enrolments(self, user_id: int) -> list[Record]:
        return await self.reads.enrolments(user_id)

    async def user_coupons(self, user_id: int, status: str | None = None) -> list[Record]:
        return await self.reads.user_coupons(user_id, status)

    # == coupons ======================================================================================
    async def create_coupon(self, fields: Record) -> Record:
        return await handlers.create_coupon(self._direct, fields, self.now())

    async def grant_coupon(
        self, coupon_id: int, user_id: int, *, idempotency_key: str | None = None
    ) -> Record:
        return await handlers.grant_coupon(self._direct, coupon_id, user_id, idempotency_key, self.now())

    # == cart and checkout ============================================================================
    async def cart(self, user_id: int) -> list[CartLine]:
        return await handlers.cart_lines(self._cart_catalogue, self.carts, user_id)

    async def cart_add(self, user_id: int, course_id: int, policy_id: int) -> list[CartLine]:
        """One Redis round trip: the add answers with the cart after it (persistence/shop/carts.py)."""
        contents = await handlers.add_to_cart(
            self._cart_catalogue,
            self.carts,
            user_id,
            course_id,
            policy_id,
            now=self.now(),
            limit=CART_LIMIT,
        )
        return await handlers.cart_lines(self._cart_catalogue, self.carts, user_id, contents)

    async def cart_change_policy(self, user_id: int, course_id: int, policy_id: int) -> list[CartLine]:
        await handlers.change_cart_policy(self._cart_catalogue, self.carts, user_id, course_id, policy_id)
        return await self.cart(user_id)

    async def cart_remove(self, user_id: int, course_id: int) -> list[CartLine]:
        await handlers.remove_from_cart(self.carts, user_id, course_id)
        return await self.cart(user_id)

    async def cart_add_degree(self, user_id: int, degree_course_id: int, policy_id: int) -> list[CartLine]:
        contents = await handlers.add_degree_to_cart(
            self._direct, self.carts, user_id, degree_course_id, policy_id, now=self.now(), limit=CART_LIMIT
        )
        return await handlers.cart_lines(self._cart_catalogue, self.carts, user_id, contents)

    async def cart_change_degree_policy(
        self, user_id: int, degree_course_id: int, policy_id: int
    ) -> list[CartLine]:
        await handlers.change_degree_policy(
            self._cart_catalogue, self.carts, user_id, degree_course_id, policy_id
        )
        return await self.cart(user_id)

    async def cart_remove_degree(self, user_id: int, degree_course_id: int) -> list[CartLine]:
        await handlers.remove_degree_from_cart(self.carts, user_id, degree_course_id)
        return await self.cart(user_id)

    async def create_checkout(
        self, user_id: int, course_ids: Sequence[int], degree_ids: Sequence[int] = ()
    ) -> Checkout:
        return await handlers.create_checkout(
            self._direct,
            self.carts,
            user_id,
            course_ids,
            now=self.now(),
            ttl_seconds=self.checkout_ttl_seconds,
            degree_ids=degree_ids,
            catalogue=self._cart_catalogue,
        )

    async def checkout(self, user_id: int) -> Checkout:
        return await handlers.current_checkout(self.carts, user_id)

    async def choose_coupon(self, user_id: int, course_id: int | None, coupon_id: int | None) -> Checkout:
        await handlers.choose_coupon(self.carts, user_id, course_id, coupon_id)
        return await self.checkout(user_id)

    def quote(self, checkout: Checkout, balance_requested: int, balance_available: int) -> Quote:
        return handlers.quote(checkout, balance_requested, balance_available)

    # == orders =======================================================================================
    async def pay(self, user_id: int, balance: int, idempotency_key: str) -> PlacedOrder:
        """`POST /api/v1/checkout/pay`: the user's current checkout becomes an order."""
        checkout = await self.carts.load_checkout(user_id)
        try:
            if checkout is None:
                raise CheckoutMissing("there is no checkout (or it expired); POST /api/v1/checkout first")
            return await self.place_order(checkout, balance, idempotency_key)
        except GavelError:
            # Looked up only now, off the common path: a retry of a key that already made an order
            # (the checkout is forgotten by then, or a newer one cannot be ordered) answers that order.
            orders = self._direct.orders
            existing = await handlers.order_for_key(orders, user_id, idempotency_key, balance)
            if existing is None:
                raise
            return PlacedOrder(await handlers.ensure_pay_url(orders, self.provider, existing), created=False)

    async def place_order(self, checkout: Checkout, balance: int, idempotency_key: str) -> PlacedOrder:
        """The checkout becomes an order in one unit of work (handlers.place_order, with the
        provider's payment when it is made locally); then the checkout is forgotten and, for a
        pending order whose payment needs the provider's network, that payment is made."""
        direct = self._direct
        # Through the cart's catalogue (cached in production): a catalogue write empties that
        # cache once it is durable, here at once and in the other processes within a Redis round
        # trip, so a price changed before this point is seen and refused.
        await handlers.check_prices(self._cart_catalogue, checkout)
        now = self.now()
        terms = handlers.OrderTerms(
            order_no=f"{now:%Y%m%d}{await direct.orders.next_seq():08d}",
            balance=balance,
            idempotency_key=idempotency_key,
            now=now,
            pending_timeout_seconds=self.pending_timeout_seconds,
            out_trade_no=self.store.trade_no(OUT_TRADE_PREFIX),
        )

        async def work(uow: ShopUnitOfWork) -> Record:
            return await handlers.place_order(uow, checkout, terms)

        try:
            order = await self.store.atomically(work)
        except Duplicate:
            # A concurrent request with the same key, or a second order from the same checkout.
            existing = await handlers.order_for_key(direct.orders, checkout.user_id, idempotency_key, balance)
            if existing is not None:
                return PlacedOrder(
                    await handlers.ensure_pay_url(direct.orders, self.provider, existing), created=False
                )
            raise CheckoutAlreadyOrdered("this checkout has already become an order") from None
        except GaveUp:
            raise ShopConflict("another payment changed your coupons or balance; try again") from None
        await self._forget_checkout(checkout)
        return PlacedOrder(await handlers.ensure_pay_url(direct.orders, self.provider, order), created=True)

    async def _forget_checkout(self, checkout: Checkout) -> None:
        """Best effort: the order stands whatever the cart store does, and a retry with the same
        key finds it."""
        try:
            await self.carts.forget(
                checkout.user_id,
                checkout.checkout_id,
                [line.course_id for line in checkout.lines if line.course_id is not None],
                [line.degree_course_id for line in checkout.lines if line.degree_course_id is not None],
            )
        except ShopUnavailable as exc:
            log.warning("order placed but the cart of user %s was not cleared: %s", checkout.user_id, exc)

    # == payment outcome and timeout ==================================================================
    async def on_paid(self, out_trade_no: str, amount: int) -> None:
        """`PaymentRouter` handler for `shop-…` (registered with `marks_handled`): a verified
        notification says attempt `out_trade_no` was paid. Idempotent; a payment for a cancelled
        order, or for an order another attempt already paid, is refunded through the provider (once
        per attempt). Our payment record is marked handled in the order's own transaction, or, for
        a refund, once the refund is done (a failed refund leaves it unhandled: retried)."""
        direct = self._direct
        now = self.now()

        async def work(uow: ShopUnitOfWork) -> tuple[str, str]:
            outcome, order_no = await handlers.mark_paid(uow, out_trade_no, amount, now)
            if outcome != "refund":
                await uow.payments.mark_handled(out_trade_no)
            return outcome, order_no

        try:
            outcome, order_no = await self.store.atomically(work)
        except GaveUp:
            raise ShopConflict("the order changed concurrently; the notification will be retried") from None
        if outcome == "refund":
            await handlers.refund_late_payment(
                direct.orders, self.provider, order_no, out_trade_no, amount, self.now()
            )
            await direct.payments.mark_handled(out_trade_no)

    async def settle_paid(self, notice: PaidNotice) -> bool:
        """`PaymentRouter` settling handler for `shop-…`: the common case of a paid notification
        (a pending order of that attempt and amount) in one unit of work with our payment record's
        pending -> paid and handled (handlers.settle_paid). False when it does not apply; `on_paid`
        then runs after the provider's own checks."""
        now = self.now()

        async def work(uow: ShopUnitOfWork) -> bool:
            return await handlers.settle_paid(uow, notice, now)

        try:
            return await self.store.atomically(work)
        except (GaveUp, NotSettled):
            return False

    async def expire_pending_orders(self, now: datetime.datetime) -> int:
        """Cancel orders unpaid past their deadline (each in its own unit of work, giving back held
        coupons and balance once); returns how many were cancelled now. Also marks unused coupons
        past their validity as expired."""
        direct = self._direct
        cancelled = 0
        for order_no in await direct.orders.due(now):
            if await self._cancel_pending(order_no, now, reason="timeout"):
                cancelled += 1
        await direct.coupons.expire_unused(now)
        return cancelled

    async def _cancel_pending(self, order_no: str, now: datetime.datetime, *, reason: str) -> bool:
        async def work(uow: ShopUnitOfWork) -> bool:
            return await handlers.cancel_pending(uow, order_no, now, reason)

        try:
            return await self.store.atomically(work)
        except GaveUp:
            log.info("cancelling order %s conflicted; the next sweep retries", order_no)
            return False

    # == the order's life: cancel, pay again, refunds (shop/order_life.py) ============================
    async def cancel_order(self, user_id: int, order_no: str) -> Record:
        """The owner cancels a pending order: coupons and held balance back (once, whoever else
        cancels at the same moment), then the provider's open attempts closed where it can."""
        direct = self._direct
        order = await handlers.order_of(direct.orders, user_id, order_no)
        if order_life.status_of(order) == order_life.CANCELLED_BY_USER:
            return order  # a repeated request: nothing more to give back
        order_life.next_status(order_life.status_of(order), "cancel_by_user")
        now = self.now()

        async def work(uow: ShopUnitOfWork) -> Record | None:
            return await order_life.cancel(uow, order_no, now, "user")

        try:
            cancelled = await self.store.atomically(work)
        except GaveUp:
            raise ShopConflict("the order changed concurrently; try again") from None
        if cancelled is None:
            order = await handlers.order_of(direct.orders, user_id, order_no)
            if order_life.status_of(order) != order_life.CANCELLED_BY_USER:
                order_life.next_status(order_life.status_of(order), "cancel_by_user")  # raises
            return order
        await self._close_attempts(order_life.trade_numbers(cancelled))
        return cancelled

    async def retry_payment(self, user_id: int, order_no: str) -> Record:
        """A new provider attempt for the same pending order and amount (after a failed or
        abandoned one, which is closed where the provider can). Whichever attempt's verified
        notification comes first pays the order; a later one is refunded (`on_paid`)."""
        direct = self._direct
        order = await handlers.order_of(direct.orders, user_id, order_no)
        now = self.now()
        order_life.check_retry(order, now)
        previous = order_life.trade_numbers(order)
        updated = await direct.orders.add_attempt(order_no, self.store.trade_no(OUT_TRADE_PREFIX), now)
        if updated is None:
            raise order_life.OrderNotPayable("the order is no longer pending")
        await self._close_attempts(previous)
        return await handlers.ensure_pay_url(direct.orders, self.provider, updated)

    async def _close_attempts(self, trade_numbers: Sequence[str]) -> None:
        """Best effort: a provider that cannot close (or fails to) leaves the attempt open, and a
        payment of it that still arrives is refunded by `on_paid`."""
        if not isinstance(self.provider, PaymentCloser):
            return
        for out_trade_no in trade_numbers:
            try:
                await self.provider.close_payment(out_trade_no)
            except Exception as exc:
                log.warning("could not close payment %s: %s", out_trade_no, exc)

    async def request_refund(self, user_id: int, order_no: str, reason: str) -> Record:
        now = self.now()

        async def work(uow: ShopUnitOfWork) -> Record:
            return await order_life.request_refund(uow, user_id, order_no, reason, now)

        try:
            return await self.store.atomically(work)
        except GaveUp:
            raise ShopConflict("the order changed concurrently; try again") from None

    async def order_record(self, order_no: str) -> Record:
        order = await self._direct.orders.get(order_no)
        if order is None:
            raise NotFound(f"no order {order_no}")
        return order

    async def approve_refund(self, order_no: str, reason: str = "") -> tuple[Record, bool]:
        """An admin approves a requested refund (order_life's three steps); idempotent: a retry
        after any failure finishes it, and an order already refunded comes back unchanged.
        Returns the order and whether this call approved it."""
        order = await self.order_record(order_no)
        if order_life.status_of(order) == order_life.REFUNDED:
            return order, False
        if order_life.status_of(order) != order_life.REFUND_REQUESTED:
            order_life.next_status(order_life.status_of(order), "approve_refund")  # raises
        now = self.now()
        approved_now = False
        if order["refund"]["status"] == "requested":

            async def approve(uow: ShopUnitOfWork) -> Record | None:
                return await order_life.approve_refund(uow, order_no, reason, now)

            try:
                approved_now = await self.store.atomically(approve) is not None
            except GaveUp:
                raise ShopConflict("the order changed concurrently; try again") from None
            if not approved_now:
                order = await self.order_record(order_no)
                if order_life.status_of(order) == order_life.REFUNDED:
                    return order, False
                if (order.get("refund") or {}).get("status") != "approved":
                    raise order_life.RefundNotRequested("the refund was decided meanwhile")
        return await self._finish_refund(order_no), approved_now

    async def _finish_refund(self, order_no: str) -> Record:
        """Steps (2) and (3): the provider part, then refunded. Safe to repeat."""
        order = await self.order_record(order_no)
        refund = order.get("refund") or {}
        if order_life.status_of(order) != order_life.REFUND_REQUESTED or refund.get("status") != "approved":
            return order
        amount = int(refund.get("amount_provider", 0))
        if amount > 0:
            await self.provider.refund(str(refund["trade_no"]), amount, order_life.refund_ref(order_no))
        now = self.now()

        async def finish(uow: ShopUnitOfWork) -> Record | None:
            return await order_life.finish_refund(uow, order_no, now)

        try:
            await self.store.atomically(finish)
        except GaveUp:
            raise ShopConflict("the order changed concurrently; try again") from None
        return await self.order_record(order_no)

    async def reject_refund(self, order_no: str, reason: str = "") -> tuple[Record, bool]:
        """An admin rejects a requested refund: back to paid. A repeated reject changes nothing."""
        order = await self.order_record(order_no)
        now = self.now()

        async def reject(uow: ShopUnitOfWork) -> Record | None:
            return await order_life.reject_refund(uow, order_no, reason, now)

        if order_life.status_of(order) == order_life.REFUND_REQUESTED:
            try:
                rejected = await self.store.atomically(reject)
            except GaveUp:
                raise ShopConflict("the order changed concurrently; try again") from None
            if rejected is not None:
                return rejected, True
            order = await self.order_record(order_no)
        if (
            order_life.status_of(order) == order_life.PAID
            and (order.get("refund") or {}).get("status") == "rejected"
        ):
            return order, False
        raise order_life.RefundNotRequested(f"order {order_no} has no refund request to reject")

    async def finish_approved_refunds(self) -> int:
        """Finish refunds approved before a crash or a provider failure (run by the sweeper)."""
        finished = 0
        for order_no in await self._direct.orders.approved_refunds():
            try:
                order = await self._finish_refund(order_no)
            except Exception as exc:
                log.warning("finishing the refund of order %s failed (retried later): %s", order_no, exc)
                continue
            finished += order_life.status_of(order) == order_life.REFUNDED
        return finished


async def run_sweeper(shop: ShopService, *, interval_seconds: float = 30.0) -> None:
    """The background loop the service starts: cancel expired pending orders every `interval_seconds`.

    Runs until cancelled; an error (e.g. MongoDB briefly down) is logged and the loop goes on.
    """
    while True:
        try:
            cancelled = await shop.expire_pending_orders(shop.now())
            if cancelled:
                log.info("cancelled %d unpaid shop order(s)", cancelled)
            finished = await shop.finish_approved_refunds()
            if finished:
                log.info("finished %d approved shop refund(s)", finished)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shop sweeper pass failed")
        await asyncio.sleep(interval_seconds)
