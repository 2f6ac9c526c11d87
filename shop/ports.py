"""The course shop's storage ports: small repositories, a unit of work, the cart store.

Handlers (shop/handlers.py, shop/catalogue.py) decide; these only load, save and make guarded
updates (a False or None answer means "not in the state you asked for"). `ShopStore.atomically`
runs a piece of work in one transaction and runs it again when the store reports a transient
conflict, so the work must have no side effect outside the store (no provider call inside).

Implementations: persistence/shop/ (MongoDB + Redis) and tests/shop/fakes.py (in memory).
"""

import datetime
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal, Protocol, TypeVar, runtime_checkable

from engine.settle.ports import PaidNotice, PaymentRequest
from shop.model import Checkout, Record
from shop.storefront import StorefrontReads

T = TypeVar("T")

Kind = Literal[
    "categories",
    "teachers",
    "degree_courses",
    "courses",
    "course_details",
    "price_policies",
    "chapters",
    "sections",
    "faqs",
    "coupons",
    "users",
]
CartKind = Literal["course", "degree"]


class Duplicate(Exception):
    """A unique key is taken (a name, one policy per validity, one order per checkout, a grant ref):
    a concurrent or earlier write did this first. `key` names the unique index."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class GaveUp(Exception):
    """`atomically` could not commit: concurrent writers kept conflicting."""


class NotSettled(Exception):
    """A paid notice is not one the unit settles at once (our record of the payment is not the
    notice's provider's, of its amount, pending or closed): raised inside the unit, which aborts
    with nothing written."""


class CatalogueRepository(Protocol):
    async def get(self, kind: Kind, record_id: int) -> Record | None: ...

    async def existing(self, kind: Kind, ids: Iterable[int]) -> set[int]:
        """Which of `ids` exist."""
        ...

    async def insert(self, kind: Kind, record: Record) -> Record:
        """Give the record a new `_id` and store it; Duplicate on a unique key."""
        ...

    async def update_course(self, course_id: int, changes: Record) -> Record | None:
        """Set `changes`; the course after, None if missing; Duplicate on its name."""
        ...

    async def put_course_detail(self, course_id: int, record: Record) -> None: ...

    async def delete_policy(self, policy_id: int) -> bool: ...

    async def courses(self, ids: Iterable[int]) -> dict[int, Record]: ...

    async def policies_by_course(self, course_ids: Iterable[int]) -> dict[int, list[Record]]:
        """Each course's policies by validity."""
        ...

    async def policies_by_degree(self, degree_course_ids: Iterable[int]) -> dict[int, list[Record]]:
        """Each degree course's policies by validity."""
        ...

    async def update_degree_course(self, degree_course_id: int, changes: Record) -> Record | None:
        """Set `changes`; the degree course after, None if missing."""
        ...

    async def policies_with_targets(
        self, course_policy_ids: Iterable[int], degree_policy_ids: Iterable[int] = ()
    ) -> dict[int, tuple[Record, Record | None]]:
        """The price policies among the ids, each with what it prices (for a course policy its
        course, for a degree policy its degree course; None when gone or not asked for under
        its kind), in one read."""
        ...


class CouponRepository(Protocol):
    async def get_many(self, coupon_ids: Iterable[int]) -> dict[int, Record]: ...

    async def unused_of(self, user_id: int) -> list[Record]:
        """The user's unused coupons (valid or not), by id."""
        ...

    async def unused_with_balance(self, user_id: int) -> tuple[list[Record], int | None]:
        """`unused_of` and the user's balance (None: no such user) in one read (the checkout's)."""
        ...

    async def by_grant_ref(self, grant_ref: str) -> Record | None: ...

    async def add(self, coupon: Record) -> Record:
        """A new user coupon (new `_id`); Duplicate on its grant ref."""
        ...

    async def take(
        self, coupon_id: int, user_id: int, status: str, order_no: str, now: datetime.datetime
    ) -> bool:
        """unused -> `status` (held or used) by `order_no`; False if not unused."""
        ...

    async def use_held(self, order_no: str, now: datetime.datetime) -> int:
        """The order's held coupons -> used."""
        ...

    async def release_held(self, order_no: str) -> int:
        """The order's held coupons -> unused (no order)."""
        ...

    async def expire_unused(self, now: datetime.datetime) -> int:
        """Unused coupons whose validity ended -> expired."""
        ...


class OrderRepository(Protocol):
    async def next_seq(self) -> int:
        """The next order sequence number: unique, increasing within a process, not rolled back;
        gaps possible (MongoDB: taken in blocks per process, persistence/shop/repos.py)."""
        ...

    async def get(self, order_no: str) -> Record | None: ...

    async def for_key(self, user_id: int, idempotency_key: str) -> Record | None: ...

    async def for_trade_no(self, out_trade_no: str) -> Record | None:
        """The order whose current or earlier provider attempt is `out_trade_no`."""
        ...

    async def add(self, order: Record) -> None:
        """Duplicate("idempotency") or Duplicate("checkout") when taken."""
        ...

    async def set_pay_url(self, order_no: str, pay_url: str, out_trade_no: str | None = None) -> None:
        """With `out_trade_no`: only while that attempt is still the order's current one."""
        ...

    async def set_late_payment(self, order_no: str, late_payment: Record) -> None:
        """Record a refunded late payment: `late_payment` (the last) and, once per `refund_ref`,
        in `late_payments`."""
        ...

    async def move(self, order_no: str, expect: Record, changes: Record) -> Record | None:
        """Set `changes` (dotted names allowed) if every field of `expect` (dotted names allowed)
        has that value; the order after, None if it did not match (a concurrent move won)."""
        ...

    async def advance(self, order_no: str, expect: Record, changes: Record) -> bool:
        """`move` without the order after: whether it matched (one write, no read)."""
        ...

    async def advance_or(
        self, order_no: str, expect: Record, changes: Record, unmatched: Callable[[], Exception]
    ) -> None:
        """`advance` where matching nothing raises `unmatched()` (the unit aborts). The adapter may
        send the write with the unit's next ones and raise then, still inside the unit: only a
        unit's last write to the order, with no read of it after."""
        ...

    async def add_attempt(self, order_no: str, out_trade_no: str, now: datetime.datetime) -> Record | None:
        """A pending order's new provider attempt becomes its `out_trade_no` (no `pay_url` yet) and
        joins `attempts`; the order after, None if it is not pending."""
        ...

    async def approved_refunds(self) -> list[str]:
        """Orders whose refund was approved but not yet finished (a restart in between)."""
        ...

    async def due(self, now: datetime.datetime) -> list[str]:
        """Pending orders whose deadline has come."""
        ...

    async def pending_for_degree(self, user_id: int, degree_course_id: int) -> str | None:
        """The user's pending order with a line of that degree course, if any."""
        ...


class EnrolmentRepository(Protocol):
    """One enrolment per user and course (shop/learning.py `grant_enrolment` decides its validity)."""

    async def current(self, user_id: int, course_id: int) -> Record | None:
        """The user's enrolment in the course (of older duplicates, the one ending last)."""
        ...

    async def add(self, enrolment: Record) -> bool:
        """Insert; False if one with this `_id` exists already."""
        ...

    async def add_first(self, enrolment: Record) -> bool:
        """Insert unless the user has any enrolment in the course (whatever its `_id`); whether
        it was inserted."""
        ...

    async def extend(self, enrolment_id: str, order_no: str, changes: Record) -> bool:
        """Set `changes` and add `order_no` to `order_nos`, only if `order_no` is not there yet."""
        ...

    async def of_order(self, order_no: str) -> list[Record]:
        """The enrolments order `order_no` bought or extended (`order_no` or `order_nos`)."""
        ...

    async def change(self, enrolment_id: str, changes: Record) -> None: ...


class DegreeEnrolmentRepository(Protocol):
    """`shop_degree_enrolments`: one per student and degree, `_id` f"{user_id}:{degree_course_id}"
    (shop/degree_buy.py decides)."""

    async def get(self, enrolment_id: str) -> Record | None: ...

    async def add(self, enrolment: Record) -> bool:
        """Insert; False if one with this `_id` exists already."""
        ...

    async def replace_refunded(self, enrolment: Record) -> bool:
        """Replace the enrolment with this `_id` only if its status is "refunded"."""
        ...

    async def change(self, enrolment_id: str, expect: Record, changes: Record) -> Record | None:
        """Set `changes` if every field of `expect` has that value; the enrolment after, else None."""
        ...

    async def claim(self, enrolment_id: str, order_no: str, now: datetime.datetime) -> None:
        """A write every order for this student and degree makes in its transaction, so that two
        concurrent orders conflict (one runs again and then sees the other)."""
        ...


class BalanceLedger(Protocol):
    """Users' balances: every movement writes a ledger entry and is idempotent on `ref`."""

    async def balance(self, user_id: int) -> int | None:
        """None when there is no such user."""
        ...

    async def debit(self, user_id: int, amount: int, kind: str, ref: str) -> None:
        """Never below zero (INSUFFICIENT_BALANCE)."""
        ...

    async def debit_new(
        self, user_id: int, amount: int, kind: str, ref: str, expected_balance: int | None = None
    ) -> bool:
        """`debit` under a ref never used before (a new order's: no look-up of it first; a reuse
        is refused, RefReused). False, nothing changed, when the balance is short.
        `expected_balance`: the balance the caller last saw; while it is still the balance, the
        debit is conditional on it and the ledger's balance-after is known without a read."""
        ...

    async def credit(self, user_id: int, amount: int, kind: str, ref: str) -> None: ...


@runtime_checkable
class PaymentCloser(Protocol):
    """A provider that can close an unpaid payment (the sandbox; Alipay's trade.close)."""

    async def close_payment(self, out_trade_no: str) -> bool:
        """Close it unless paid; True if it is closed now."""
        ...


class PaymentAttempts(Protocol):
    async def open(self, request: PaymentRequest) -> str | None:
        """Make the provider's payment of a new order inside the order's unit of work, when the
        provider makes it locally (the sandbox, Alipay's page pay: our record of the attempt and a
        signed URL, no network call): written with the order, gone with it if the unit of work
        aborts. Returns the pay URL; None when it cannot be made here (a provider that needs a
        network call, or no transaction): `ensure_pay_url` makes it after the commit."""
        ...

    async def mark_handled(self, out_trade_no: str) -> None:
        """Our record of the payment says its handler (the shop's) is done; in a unit of work,
        with the handler's own writes (the provider then does not write it again)."""
        ...

    async def settle(self, notice: PaidNotice) -> bool:
        """Our record of the payment `pending|closed -> paid` and handled, in the unit of work,
        if it is the notice's provider's payment of exactly its amount; whether it was."""
        ...

    async def settle_or_abort(self, notice: PaidNotice) -> None:
        """`settle`, raising NotSettled (the unit aborts) when it was not. The adapter may send the
        write with the unit's next ones and raise then, still inside the unit."""
        ...


class ShopUnitOfWork(Protocol):
    catalogue: CatalogueRepository
    coupons: CouponRepository
    orders: OrderRepository
    enrolments: EnrolmentRepository
    ledger: BalanceLedger
    degree_enrolments: DegreeEnrolmentRepository
    payments: PaymentAttempts


class ShopStore(Protocol):
    def direct(self) -> ShopUnitOfWork:
        """The repositories outside a transaction: each write stands alone."""
        ...

    async def atomically(self, work: Callable[[ShopUnitOfWork], Awaitable[T]]) -> T:
        """Run `work` in one transaction (again on transient conflicts); GaveUp when it cannot."""
        ...

    def trade_no(self, prefix: str) -> str:
        """A new, unguessable provider trade number `{prefix}-…`."""
        ...


# A cart's entries: (course_id -> policy_id, degree_course_id -> policy_id).
CartContents = tuple[dict[int, int], dict[int, int]]


class CartStore(Protocol):
    """Carts and checkouts (Redis in production). Outages raise ShopUnavailable.

    A cart holds courses and degree courses (`kind`); the two id spaces are apart, the limit is one."""

    async def add(
        self,
        user_id: int,
        course_id: int,
        policy_id: int,
        added_ms: int,
        limit: int,
        kind: CartKind = "course",
    ) -> CartContents | None:
        """Put (or replace) a cart entry and give the cart after it, in one step (one round trip);
        None if the cart is full and the item not in it (nothing changed)."""
        ...

    async def change_policy(
        self, user_id: int, course_id: int, policy_id: int, kind: CartKind = "course"
    ) -> bool:
        """False if the item is not in the cart."""
        ...

    async def remove(self, user_id: int, course_id: int, kind: CartKind = "course") -> bool: ...

    async def entries(self, user_id: int) -> dict[int, int]:
        """course_id -> chosen policy_id (courses only)."""
        ...

    async def degree_entries(self, user_id: int) -> dict[int, int]:
        """degree_course_id -> chosen policy_id."""
        ...

    async def contents(self, user_id: int) -> CartContents:
        """`(entries, degree_entries)` in one read."""
        ...

    async def save_checkout(self, checkout: Checkout) -> None:
        """Replace the user's checkout (and its choices) in one step, for `checkout.ttl_seconds`."""
        ...

    async def load_checkout(self, user_id: int) -> Checkout | None: ...

    async def choose(self, user_id: int, course_id: int | None, coupon_id: int | None) -> bool:
        """Record a choice (None clears it) only while the checkout exists."""
        ...

    async def forget(
        self, user_id: int, checkout_id: str, course_ids: Iterable[int], degree_ids: Iterable[int] = ()
    ) -> None:
        """Drop the checkout if it is still `checkout_id`, and those courses and degrees from the cart."""
        ...


class ShopReads(StorefrontReads, Protocol):
    """What the shop shows (catalogue pages, a user's orders, coupons and enrolments): reads only."""

    async def categories(self) -> list[Record]: ...

    async def list_courses(self, category_id: int | None, skip: int, limit: int) -> tuple[list[Record], int]:
        """Listed courses by display order, each with `policies`; NotFound for an unknown category."""
        ...

    async def course_page(self, course_id: int) -> Record: ...

    async def degree_course_page(self, degree_course_id: int) -> Record: ...

    async def chapters(self, course_id: int) -> list[Record]: ...

    async def find_order(self, user_id: int, order_no: str) -> Record: ...

    async def orders(
        self, user_id: int, skip: int, limit: int, statuses: tuple[str, ...] = ()
    ) -> tuple[list[Record], int]:
        """The user's orders, newest first; only those in `statuses` when given."""
        ...

    async def enrolments(self, user_id: int) -> list[Record]: ...

    async def user_coupons(self, user_id: int, status: str | None = None) -> list[Record]: ...
