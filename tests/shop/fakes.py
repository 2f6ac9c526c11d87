"""In-memory implementations of the shop's ports (shop/ports.py) for handler tests: no server.

`FakeShopStore.atomically` copies the whole state before the work and puts it back if the work
raises, as a rolled-back transaction does; the unique keys the MongoDB schema enforces (names, one
policy per validity, one order per checkout, one per idempotency key, grant refs) answer Duplicate.
"""

import copy
import dataclasses
import datetime
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from engine.book.errors import NotFound, RefReused
from engine.settle.ports import PaidNotice, PaymentRequest
from persistence.accounts import InsufficientBalance
from shop.model import Checkout, Record
from shop.ports import Duplicate, Kind, NotSettled, ShopUnitOfWork
from shop.service import ShopService

T = TypeVar("T")

# The unique keys of persistence/shop/schema.py, as field tuples per collection.
_UNIQUE: dict[str, list[tuple[str, ...]]] = {
    "categories": [("name",)],
    "degree_courses": [("name",)],
    "courses": [("name",)],
    "price_policies": [("target", "target_id", "valid_days")],
    "chapters": [("course_id", "chapter")],
    "faqs": [("target", "target_id", "question")],
}


@dataclasses.dataclass
class State:
    tables: dict[str, dict[Any, Record]] = dataclasses.field(default_factory=dict)
    balances: dict[int, int] = dataclasses.field(default_factory=dict)
    ledger: list[tuple[int, int, str, str]] = dataclasses.field(
        default_factory=list
    )  # user, amount, kind, ref
    seq: dict[str, int] = dataclasses.field(default_factory=dict)

    def table(self, name: str) -> dict[Any, Record]:
        return self.tables.setdefault(name, {})

    def next(self, name: str) -> int:
        self.seq[name] = self.seq.get(name, 0) + 1
        return self.seq[name]


def _get(record: Record, dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _set(record: Record, dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for part in path:
        record = record.setdefault(part, {})
    record[last] = value


class FakeCatalogue:
    def __init__(self, store: "FakeShopStore") -> None:
        self.store = store

    @property
    def s(self) -> State:
        return self.store.state

    async def get(self, kind: Kind, record_id: int) -> Record | None:
        if kind == "users":
            return {"_id": record_id} if record_id in self.s.balances else None
        found = self.s.table(kind).get(record_id)
        return copy.deepcopy(found)

    async def existing(self, kind: Kind, ids: Iterable[int]) -> set[int]:
        present = self.s.balances if kind == "users" else self.s.table(kind)
        return {i for i in ids if i in present}

    async def insert(self, kind: Kind, record: Record) -> Record:
        table = self.s.table(kind)
        for fields in _UNIQUE.get(kind, []):
            key = tuple(record.get(f) for f in fields)
            if any(tuple(r.get(f) for f in fields) == key for r in table.values()):
                raise Duplicate("_".join(fields))
        record["_id"] = self.s.next(kind)
        table[record["_id"]] = copy.deepcopy(record)
        return record

    async def policies_with_targets(
        self, course_policy_ids: Iterable[int], degree_policy_ids: Iterable[int] = ()
    ) -> dict[int, tuple[Record, Record | None]]:
        course_ids, degree_ids = set(course_policy_ids), set(degree_policy_ids)
        found: dict[int, tuple[Record, Record | None]] = {}
        for policy_id in course_ids | degree_ids:
            policy = self.s.table("price_policies").get(policy_id)
            if policy is None:
                continue
            kind = "courses" if policy["target"] == "course" else "degree_courses"
            asked = course_ids if kind == "courses" else degree_ids
            target = self.s.table(kind).get(policy["target_id"]) if asked else None
            found[policy_id] = (copy.deepcopy(policy), copy.deepcopy(target))
        return found

    async def update_course(self, course_id: int, changes: Record) -> Record | None:
        table = self.s.table("courses")
        if course_id not in table:
            return None
        if "name" in changes and any(
            r["name"] == changes["name"] and i != course_id for i, r in table.items()
        ):
            raise Duplicate("name")
        table[course_id].update(copy.deepcopy(changes))
        return copy.deepcopy(table[course_id])

    async def put_course_detail(self, course_id: int, record: Record) -> None:
        self.s.table("course_details")[course_id] = copy.deepcopy(record)

    async def delete_policy(self, policy_id: int) -> bool:
        return self.s.table("price_policies").pop(policy_id, None) is not None

    async def courses(self, ids: Iterable[int]) -> dict[int, Record]:
        table = self.s.table("courses")
        return {i: copy.deepcopy(table[i]) for i in ids if i in table}

    async def policies_by_course(self, course_ids: Iterable[int]) -> dict[int, list[Record]]:
        return self._policies("course", course_ids)

    async def policies_by_degree(self, degree_course_ids: Iterable[int]) -> dict[int, list[Record]]:
        return self._policies("degree", degree_course_ids)

    def _policies(self, target: str, ids: Iterable[int]) -> dict[int, list[Record]]:
        wanted = set(ids)
        found: dict[int, list[Record]] = {}
        for policy in sorted(
            self.s.table("price_policies").values(), key=lambda p: (p["target_id"], p["valid_days"])
        ):
            if policy["target"] == target and policy["target_id"] in wanted:
                found.setdefault(policy["target_id"], []).append(copy.deepcopy(policy))
        return found

    async def update_degree_course(self, degree_course_id: int, changes: Record) -> Record | None:
        table = self.s.table("degree_courses")
        if degree_course_id not in table:
            return None
        table[degree_course_id].update(copy.deepcopy(changes))
        return copy.deepcopy(table[degree_course_id])


class FakeCoupons:
    def __init__(self, store: "FakeShopStore") -> None:
        self.store = store

    @property
    def table(self) -> dict[Any, Record]:
        return self.store.state.table("user_coupons")

    async def get_many(self, coupon_ids: Iterable[int]) -> dict[int, Record]:
        return {i: copy.deepcopy(self.table[i]) for i in coupon_ids if i in self.table}

    async def unused_of(self, user_id: int) -> list[Record]:
        return [
            copy.deepcopy(c)
            for _, c in sorted(self.table.items())
            if c["user_id"] == user_id and c["status"] == "unused"
        ]

    async def unused_with_balance(self, user_id: int) -> tuple[list[Record], int | None]:
        return await self.unused_of(user_id), self.store.state.balances.get(user_id)

    async def by_grant_ref(self, grant_ref: str) -> Record | None:
        return next((copy.deepcopy(c) for c in self.table.values() if c.get("grant_ref") == grant_ref), None)

    async def add(self, coupon: Record) -> Record:
        ref = coupon.get("grant_ref")
        if ref is not None and any(c.get("grant_ref") == ref for c in self.table.values()):
            raise Duplicate("grant_ref")
        coupon["_id"] = self.store.state.next("user_coupons")
        self.table[coupon["_id"]] = copy.deepcopy(coupon)
        return coupon

    async def take(
        self, coupon_id: int, user_id: int, status: str, order_no: str, now: datetime.datetime
    ) -> bool:
        coupon = self.table.get(coupon_id)
        if coupon is None or coupon["user_id"] != user_id or coupon["status"] != "unused":
            return False
        coupon.update(status=status, order_no=order_no, used_at=now)
        return True

    async def use_held(self, order_no: str, now: datetime.datetime) -> int:
        held = [c for c in self.table.values() if c["order_no"] == order_no and c["status"] == "held"]
        for coupon in held:
            coupon.update(status="used", used_at=now)
        return len(held)

    async def release_held(self, order_no: str) -> int:
        held = [c for c in self.table.values() if c["order_no"] == order_no and c["status"] == "held"]
        for coupon in held:
            coupon.update(status="unused", order_no=None, used_at=None)
        return len(held)

    async def expire_unused(self, now: datetime.datetime) -> int:
        ended = [
            c
            for c in self.table.values()
            if c["status"] == "unused" and c.get("valid_to") is not None and c["valid_to"] <= now
        ]
        for coupon in ended:
            coupon["status"] = "expired"
        return len(ended)


class FakeOrders:
    def __init__(self, store: "FakeShopStore") -> None:
        self.store = store

    @property
    def table(self) -> dict[Any, Record]:
        return self.store.state.table("orders")

    async def next_seq(self) -> int:
        # Outside the state: like the MongoDB counter, never rolled back.
        return next(self.store.order_seq)

    async def get(self, order_no: str) -> Record | None:
        return copy.deepcopy(self.table.get(order_no))

    async def for_key(self, user_id: int, idempotency_key: str) -> Record | None:
        return next(
            (
                copy.deepcopy(o)
                for o in self.table.values()
                if o["user_id"] == user_id and o["idempotency_key"] == idempotency_key
            ),
            None,
        )

    async def for_trade_no(self, out_trade_no: str) -> Record | None:
        return next(
            (
                copy.deepcopy(o)
                for o in self.table.values()
                if o.get("out_trade_no") == out_trade_no
                or any(a["out_trade_no"] == out_trade_no for a in o.get("attempts") or ())
            ),
            None,
        )

    async def add(self, order: Record) -> None:
        for other in self.table.values():
            if other["checkout_id"] == order["checkout_id"]:
                raise Duplicate("checkout_unique")
            if (other["user_id"], other["idempotency_key"]) == (order["user_id"], order["idempotency_key"]):
                raise Duplicate("idempotency")
        self.table[order["_id"]] = copy.deepcopy(order)

    async def move(self, order_no: str, expect: Record, changes: Record) -> Record | None:
        order = self.table.get(order_no)
        if order is None or any(_get(order, name) != value for name, value in expect.items()):
            return None
        for name, value in changes.items():
            _set(order, name, copy.deepcopy(value))
        return copy.deepcopy(order)

    async def advance(self, order_no: str, expect: Record, changes: Record) -> bool:
        return await self.move(order_no, expect, changes) is not None

    async def advance_or(
        self, order_no: str, expect: Record, changes: Record, unmatched: Callable[[], Exception]
    ) -> None:
        if not await self.advance(order_no, expect, changes):
            raise unmatched()

    async def add_attempt(self, order_no: str, out_trade_no: str, now: datetime.datetime) -> Record | None:
        order = self.table.get(order_no)
        if order is None or order["status"] != "pending":
            return None
        order.update(out_trade_no=out_trade_no, pay_url=None)
        order.setdefault("attempts", []).append({"out_trade_no": out_trade_no, "created_at": now})
        return copy.deepcopy(order)

    async def approved_refunds(self) -> list[str]:
        return [
            o["_id"]
            for o in self.table.values()
            if o["status"] == "refund_requested" and (o.get("refund") or {}).get("status") == "approved"
        ]

    async def set_pay_url(self, order_no: str, pay_url: str, out_trade_no: str | None = None) -> None:
        order = self.table[order_no]
        if out_trade_no is None or order["out_trade_no"] == out_trade_no:
            order["pay_url"] = pay_url

    async def set_late_payment(self, order_no: str, late_payment: Record) -> None:
        order = self.table[order_no]
        pushed = order.setdefault("late_payments", [])
        if all(p["refund_ref"] != late_payment["refund_ref"] for p in pushed):
            order["late_payment"] = dict(late_payment)
            pushed.append(dict(late_payment))

    async def due(self, now: datetime.datetime) -> list[str]:
        return [
            o["_id"] for o in self.table.values() if o["status"] == "pending" and o["pay_deadline"] <= now
        ]

    async def pending_for_degree(self, user_id: int, degree_course_id: int) -> str | None:
        return next(
            (
                o["_id"]
                for o in self.table.values()
                if o["user_id"] == user_id
                and o["status"] == "pending"
                and any(line.get("degree_course_id") == degree_course_id for line in o["lines"])
            ),
            None,
        )


class FakeEnrolments:
    def __init__(self, store: "FakeShopStore") -> None:
        self.store = store

    @property
    def table(self) -> dict[Any, Record]:
        return self.store.state.table("enrolments")

    async def current(self, user_id: int, course_id: int) -> Record | None:
        mine = [e for e in self.table.values() if (e["user_id"], e["course_id"]) == (user_id, course_id)]
        mine.sort(key=lambda e: e["valid_to"], reverse=True)
        return copy.deepcopy(mine[0]) if mine else None

    async def add(self, enrolment: Record) -> bool:
        if enrolment["_id"] in self.table:
            return False
        self.table[enrolment["_id"]] = copy.deepcopy(enrolment)
        return True

    async def add_first(self, enrolment: Record) -> bool:
        if await self.current(enrolment["user_id"], enrolment["course_id"]) is not None:
            return False
        return await self.add(enrolment)

    async def extend(self, enrolment_id: str, order_no: str, changes: Record) -> bool:
        enrolment = self.table.get(enrolment_id)
        if enrolment is None or order_no in enrolment.get("order_nos", []):
            return False
        enrolment.update(copy.deepcopy(changes))
        enrolment["order_nos"] = [*enrolment.get("order_nos", []), order_no]
        return True

    async def of_order(self, order_no: str) -> list[Record]:
        return [
            copy.deepcopy(e)
            for e in self.store.state.table("enrolments").values()
            if e.get("order_no") == order_no or order_no in (e.get("order_nos") or ())
        ]

    async def change(self, enrolment_id: str, changes: Record) -> None:
        self.store.state.table("enrolments")[enrolment_id].update(copy.deepcopy(changes))


class FakeDegreeEnrolments:
    def __init__(self, store: "FakeShopStore") -> None:
        self.store = store

    @property
    def table(self) -> dict[Any, Record]:
        return self.store.state.table("degree_enrolments")

    async def get(self, enrolment_id: str) -> Record | None:
        return copy.deepcopy(self.table.get(enrolment_id))

    async def add(self, enrolment: Record) -> bool:
        if enrolment["_id"] in self.table:
            return False
        self.table[enrolment["_id"]] = copy.deepcopy(enrolment)
        return True

    async def replace_refunded(self, enrolment: Record) -> bool:
        current = self.table.get(enrolment["_id"])
        if current is None or current.get("status") != "refunded":
            return False
        self.table[enrolment["_id"]] = copy.deepcopy(enrolment)
        return True

    async def change(self, enrolment_id: str, expect: Record, changes: Record) -> Record | None:
        current = self.table.get(enrolment_id)
        if current is None or any(_get(current, k) != v for k, v in expect.items()):
            return None
        for name, value in changes.items():
            _set(current, name, copy.deepcopy(value))
        return copy.deepcopy(current)

    async def claim(self, enrolment_id: str, order_no: str, now: datetime.datetime) -> None:
        # The fake's transactions run one at a time: nothing to conflict with; kept for tests.
        self.store.state.table("degree_claims")[enrolment_id] = {"order_no": order_no, "at": now}


class FakeLedger:
    def __init__(self, store: "FakeShopStore") -> None:
        self.store = store

    async def balance(self, user_id: int) -> int | None:
        return self.store.state.balances.get(user_id)

    async def _apply(self, user_id: int, amount: int, kind: str, ref: str) -> None:
        s = self.store.state
        for entry in s.ledger:
            if entry[3] == ref:
                if entry != (user_id, amount, kind, ref):
                    raise RefReused(f"ref {ref} reused")
                return  # idempotent on ref
        if s.balances[user_id] + amount < 0:
            raise InsufficientBalance("not enough balance")
        s.balances[user_id] += amount
        s.ledger.append((user_id, amount, kind, ref))

    async def debit(self, user_id: int, amount: int, kind: str, ref: str) -> None:
        await self._apply(user_id, -amount, kind, ref)

    async def debit_new(
        self, user_id: int, amount: int, kind: str, ref: str, expected_balance: int | None = None
    ) -> bool:
        s = self.store.state
        if any(entry[3] == ref for entry in s.ledger):
            raise RefReused(f"ref {ref} reused")
        if user_id not in s.balances:
            raise NotFound(f"no user {user_id}")
        if s.balances[user_id] < amount:
            return False
        await self._apply(user_id, -amount, kind, ref)
        return True

    async def credit(self, user_id: int, amount: int, kind: str, ref: str) -> None:
        await self._apply(user_id, amount, kind, ref)


class FakeNetworkPayments:
    """`PaymentAttempts` of a provider that needs the network: never in the unit of work, so the
    service makes the payment after the commit (the in-transaction path is tested on MongoDB,
    tests/persistence/test_shop_payments_in_tx.py)."""

    def __init__(self, store: "FakeShopStore") -> None:
        self.store = store

    async def open(self, request: PaymentRequest) -> str | None:
        return None

    async def mark_handled(self, out_trade_no: str) -> None:
        self.store.state.table("handled_payments")[out_trade_no] = {"_id": out_trade_no}

    async def settle(self, notice: PaidNotice) -> bool:
        """Payment records are the provider's (tests/payments); here every notice is unpaid."""
        settled = self.store.state.table("handled_payments")
        if notice.out_trade_no in settled:
            return False
        settled[notice.out_trade_no] = {"_id": notice.out_trade_no, "amount": notice.amount}
        return True

    async def settle_or_abort(self, notice: PaidNotice) -> None:
        if not await self.settle(notice):
            raise NotSettled(notice.out_trade_no)


class FakeUnitOfWork:
    def __init__(self, store: "FakeShopStore") -> None:
        self.catalogue = FakeCatalogue(store)
        self.coupons = FakeCoupons(store)
        self.orders = FakeOrders(store)
        self.enrolments = FakeEnrolments(store)
        self.ledger = FakeLedger(store)
        self.degree_enrolments = FakeDegreeEnrolments(store)
        self.payments = FakeNetworkPayments(store)


class FakeShopStore:
    def __init__(self) -> None:
        self.state = State()
        self.order_seq = itertools.count(1)
        self.trade_seq = itertools.count(1)
        self.commits = 0

    def direct(self) -> ShopUnitOfWork:
        return FakeUnitOfWork(self)

    async def atomically(self, work: Callable[[ShopUnitOfWork], Awaitable[T]]) -> T:
        saved = copy.deepcopy(self.state)
        try:
            result = await work(FakeUnitOfWork(self))
        except BaseException:
            self.state = saved  # rolled back: nothing the work wrote stays
            raise
        self.commits += 1
        return result

    def trade_no(self, prefix: str) -> str:
        return f"{prefix}-{next(self.trade_seq):026d}"


class FakeCarts:
    """Courses under their id, degree courses under ("d", id): one cart, one limit."""

    def __init__(self) -> None:
        self.carts: dict[int, dict[Any, int]] = {}
        self.checkouts: dict[int, Checkout] = {}

    @staticmethod
    def _key(item_id: int, kind: str) -> Any:
        return ("d", item_id) if kind == "degree" else item_id

    async def add(
        self, user_id: int, course_id: int, policy_id: int, added_ms: int, limit: int, kind: str = "course"
    ) -> tuple[dict[int, int], dict[int, int]] | None:
        cart = self.carts.setdefault(user_id, {})
        key = self._key(course_id, kind)
        if key not in cart and len(cart) >= limit:
            return None
        cart[key] = policy_id
        return await self.contents(user_id)

    async def change_policy(self, user_id: int, course_id: int, policy_id: int, kind: str = "course") -> bool:
        cart = self.carts.get(user_id, {})
        key = self._key(course_id, kind)
        if key not in cart:
            return False
        cart[key] = policy_id
        return True

    async def remove(self, user_id: int, course_id: int, kind: str = "course") -> bool:
        return self.carts.get(user_id, {}).pop(self._key(course_id, kind), None) is not None

    async def entries(self, user_id: int) -> dict[int, int]:
        return {k: v for k, v in self.carts.get(user_id, {}).items() if isinstance(k, int)}

    async def degree_entries(self, user_id: int) -> dict[int, int]:
        return {k[1]: v for k, v in self.carts.get(user_id, {}).items() if isinstance(k, tuple)}

    async def contents(self, user_id: int) -> tuple[dict[int, int], dict[int, int]]:
        return await self.entries(user_id), await self.degree_entries(user_id)

    async def save_checkout(self, checkout: Checkout) -> None:
        self.checkouts[checkout.user_id] = checkout

    async def load_checkout(self, user_id: int) -> Checkout | None:
        return self.checkouts.get(user_id)

    async def choose(self, user_id: int, course_id: int | None, coupon_id: int | None) -> bool:
        checkout = self.checkouts.get(user_id)
        if checkout is None:
            return False
        chosen = dict(checkout.chosen)
        chosen_global = checkout.chosen_global
        if course_id is None:
            chosen_global = coupon_id
        elif coupon_id is None:
            chosen.pop(course_id, None)
        else:
            chosen[course_id] = coupon_id
        self.checkouts[user_id] = dataclasses.replace(checkout, chosen=chosen, chosen_global=chosen_global)
        return True

    async def forget(
        self, user_id: int, checkout_id: str, course_ids: Iterable[int], degree_ids: Iterable[int] = ()
    ) -> None:
        checkout = self.checkouts.get(user_id)
        if checkout is not None and checkout.checkout_id == checkout_id:
            del self.checkouts[user_id]
        for course_id in course_ids:
            self.carts.get(user_id, {}).pop(course_id, None)
        for degree_course_id in degree_ids:
            self.carts.get(user_id, {}).pop(("d", degree_course_id), None)


class FakeReads:
    """Only what the handler tests read back; the display reads are tested on MongoDB."""

    def __init__(self, store: FakeShopStore) -> None:
        self.store = store

    async def categories(self) -> list[Record]:
        return list(self.store.state.table("categories").values())

    async def list_courses(self, category_id: int | None, skip: int, limit: int) -> tuple[list[Record], int]:
        courses = list(self.store.state.table("courses").values())
        return courses[skip : skip + limit], len(courses)

    async def course_page(self, course_id: int) -> Record:
        return dict(self.store.state.table("courses")[course_id])

    async def degree_course_page(self, degree_course_id: int) -> Record:
        return dict(self.store.state.table("degree_courses")[degree_course_id])

    async def chapters(self, course_id: int) -> list[Record]:
        return [c for c in self.store.state.table("chapters").values() if c["course_id"] == course_id]

    async def find_order(self, user_id: int, order_no: str) -> Record:
        return dict(self.store.state.table("orders")[order_no])

    async def orders(
        self, user_id: int, skip: int, limit: int, statuses: tuple[str, ...] = ()
    ) -> tuple[list[Record], int]:
        mine = [
            o
            for o in self.store.state.table("orders").values()
            if o["user_id"] == user_id and (not statuses or o["status"] in statuses)
        ]
        return mine[skip : skip + limit], len(mine)

    async def enrolments(self, user_id: int) -> list[Record]:
        return [e for e in self.store.state.table("enrolments").values() if e["user_id"] == user_id]

    async def user_coupons(self, user_id: int, status: str | None = None) -> list[Record]:
        return [
            c
            for c in self.store.state.table("user_coupons").values()
            if c["user_id"] == user_id and (status is None or c["status"] == status)
        ]


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.payments: list[PaymentRequest] = []
        self.refunds: dict[str, tuple[str, int]] = {}  # refund_ref -> (out_trade_no, amount)
        self.closed: set[str] = set()
        self.fail_refunds = False

    async def create_payment(self, request: PaymentRequest) -> str:
        self.payments.append(request)
        return f"https://pay.example/{request.out_trade_no}"

    async def refund(self, out_trade_no: str, amount: int, refund_ref: str) -> None:
        if self.fail_refunds:
            raise RuntimeError("the provider is down")
        self.refunds.setdefault(refund_ref, (out_trade_no, amount))  # idempotent per ref

    async def close_payment(self, out_trade_no: str) -> bool:
        self.closed.add(out_trade_no)
        return True


class Clock:
    def __init__(self) -> None:
        self.at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += datetime.timedelta(**delta)


@dataclasses.dataclass
class World:
    shop: ShopService
    store: FakeShopStore
    carts: FakeCarts
    provider: FakeProvider
    clock: Clock


def fake_world(*, pending_timeout_seconds: int = 1800) -> World:
    store, carts, provider, clock = FakeShopStore(), FakeCarts(), FakeProvider(), Clock()
    shop = ShopService(
        store,
        carts,
        FakeReads(store),
        provider,
        checkout_ttl_seconds=600,
        pending_timeout_seconds=pending_timeout_seconds,
        now=clock,
    )
    return World(shop, store, carts, provider, clock)
