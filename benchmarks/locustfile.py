"""Locust scenarios for Gavel: bidders and watchers on the websocket, shoppers on the course shop.

    REGISTRATIONS_PER_ADDRESS=100000 make run  # in one terminal (ADMIN_PASSWORD=... to know it)
    ADMIN_PASSWORD=... .venv/bin/locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 60s \\
        --host http://127.0.0.1:8000 --csv var/locust --html var/locust.html

Users (weights Bidder 5, Watcher 3, Shopper 2, AppUser 4, Student 3, FeedReader 4, FeedWriter 1; or
pick with `locust ... Bidder AppUser Student`):

- `Bidder`: signs up, gets a balance from the admin (`/api/v1/admin/users/{id}/credit`), pays the
  load session's deposit from it, subscribes on `/ws` and bids the lowest valid price on a random lot
  every 1-3 s. Each answer is a request event of type `WS`: `bid accepted`, or `bid rejected
  <CODE>` (TOO_LOW and SELF_OUTBID are normal when bidders race), with the time from sending the
  bid to its answer; no answer within 10 s is a failure.
- `Watcher`: subscribes anonymously and reports every `price` frame as `price broadcast`, with the
  delay from the bid's server time (`ts`) to the frame's arrival (same machine: same clock).
- `Shopper` (`FastHttpUser`): signs up, gets a balance, browses courses, puts one in the cart, checks
  out and pays from the balance (`POST /api/v1/checkout/pay`), then browses its orders.
- `Student` (`FastHttpUser`): a student of the course shop (issue 21): browses the catalogue with a
  filter and a search, opens a course page, its outline and reviews, buys a course from the balance
  (cart, checkout, pay), then learns: opens a section's content (`/api/v1/sections/{id}/content`,
  a signed link) and marks it done (`PUT /api/v1/sections/{id}/progress`), and looks at its courses.
- `AppUser` (`FastHttpUser`): a bidder app on a phone (gateway/static/app/): signs up, opens the app
  as the browser does (`/`, then every module and the stylesheet with `If-None-Match`, answered 304
  once cached), lists the sessions, opens the load session and its lots with their bid history,
  looks at its account and orders, and keeps one websocket subscribed to the load session whose
  frames it reads (`WS app frame`, the delay from a price's `ts` to its arrival). Each page load is
  a request named as the app calls it (`/api/v1/lots/{id}`, ...); `benchmarks/app_load.py` runs it
  beside the bidders and prints the p95 of each.

- `FeedReader` (`FastHttpUser`, issue 23): scrolls the community feed (latest, one or two further
  pages by cursor, sometimes the people it follows), opens posts (the page, `POST .../view`, the
  comments) and the article list. `FEED_READERS=N` fixes how many (benchmarks/feed_load.py).
- `FeedWriter` (`FastHttpUser`): follows a few other writers, posts, likes and unlikes, comments.
  `FEED_WRITERS=N` fixes how many. The server must run with `COMMUNITY_RATE_LIMITS=0`, or the
  writers meet the per-user limits a person would never reach.

Every simulated user registers from the load tester's one address, so the server must allow more
registrations per address than its default 10 an hour (`REGISTRATIONS_PER_ADDRESS`, above).

Every request event carries its user class in its context (`{"scenario": "Student"}`); with
`LOCUST_SCENARIO_STATS=DIR` each locust process writes its counts and response times per scenario
to `DIR/scenarios-<pid>.json` at the end (benchmarks/load_all.py runs every scenario at once and
reports each one's p95 from them).

Everything they need is set up once through the REST API before the users start (`test_start`, and
lazily on each worker process): an admin token (`ADMIN_PASSWORD`, the password `run.py` uses for
the `admin` account: set it when starting the server), a "Locust load session" with
`LOCUST_LOTS` lots (default 20) and a deposit, and `LOCUST_COURSES` online courses (default 10)
when the shop has none (the demo seed has two). The websocket client is websocket-client, a
blocking client that gevent (which locust runs on) turns cooperative.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import random
import time
import uuid
from typing import Any, ClassVar

import gevent
import gevent.event
import gevent.lock
import requests
import websocket
from locust import FastHttpUser, User, between, events, task
from locust.runners import WorkerRunner
from locust.stats import bucket_response_time

ADMIN_USER = "admin"
LOT_COUNT = int(os.environ.get("LOCUST_LOTS", "20"))
COURSE_COUNT = int(os.environ.get("LOCUST_COURSES", "10"))
SESSION_TITLE = "Locust load session"
SESSION_DEPOSIT = 10_00
CREDIT = 1_000_000_00
BID_TIMEOUT_S = 10.0
PASSWORD = "locust-password"
APP_DIR = pathlib.Path(__file__).resolve().parent.parent / "gateway" / "static" / "app"
# What the app's page loads after `/` (js/main.js imports every screen module at start).
APP_ASSETS = [
    "/static/app/" + str(path.relative_to(APP_DIR))
    for path in [
        APP_DIR / "app.css",
        *sorted((APP_DIR / "js").glob("*.js")),
        *sorted((APP_DIR / "vendor").glob("*.js")),
    ]
]


class Setup:
    """What every user needs, made once per process (under a lock) through the REST API."""

    lock = gevent.lock.RLock()
    done = False
    host = ""
    admin_token = ""
    session_id = 0
    lots: ClassVar[list[int]] = []
    courses: ClassVar[list[tuple[int, int]]] = []  # (course_id, price_policy_id)

    @classmethod
    def ensure(cls, host: str) -> None:
        with cls.lock:
            if cls.done and cls.host == host:
                return
            cls.host = host.rstrip("/")
            password = os.environ.get("ADMIN_PASSWORD")
            if not password:
                raise RuntimeError("set ADMIN_PASSWORD to the admin password the server was started with")
            cls.admin_token = cls._admin_login(password)
            cls.session_id, cls.lots = cls._load_session()
            cls.courses = cls._courses()
            cls.done = True

    @classmethod
    def _admin_login(cls, password: str) -> str:
        """The admin token. Every locust process signs in at start (with --processes, at the same
        moment): the server counts a sign-in before checking it, so a second one while the first
        is in flight is told to wait (429 with retry_after_s), which is done here."""
        for _attempt in range(5):
            response = requests.post(
                f"{cls.host}/api/v1/admin/login",
                json={"username": ADMIN_USER, "password": password},
                timeout=30,
            )
            if response.status_code != 429:
                break
            time.sleep(float(response.json()["error"].get("retry_after_s", 1)))
        if response.status_code >= 300:
            raise RuntimeError(f"admin login: {response.status_code} {response.text[:200]}")
        return str(response.json()["token"])

    @classmethod
    def _load_session(cls) -> tuple[int, list[int]]:
        """The open load session (made by an earlier run or another worker), or a new one."""
        sessions = call("GET", f"{cls.host}/api/v1/sessions?state=3&page_size=100")["items"]
        for session in sessions:
            if session["title"] == SESSION_TITLE:
                detail = call("GET", f"{cls.host}/api/v1/sessions/{session['id']}")
                lots = [lot["id"] for lot in detail["lots"] if lot["state"] == 3]
                if lots:
                    return int(session["id"]), lots
        now = datetime.datetime.now(datetime.UTC)
        session = cls.admin(
            "POST",
            "/api/v1/admin/sessions",
            {
                "title": SESSION_TITLE,
                "preview_start": now.isoformat(timespec="milliseconds"),
                "preview_end": now.isoformat(timespec="milliseconds"),
                "bidding_start": (now + datetime.timedelta(hours=1)).isoformat(timespec="milliseconds"),
                "bidding_end": (now + datetime.timedelta(hours=6)).isoformat(timespec="milliseconds"),
                "deposit": SESSION_DEPOSIT,
            },
        )
        session_id = int(session["id"])
        lots = []
        for number in range(LOT_COUNT):
            lot = cls.admin(
                "POST",
                f"/api/v1/admin/sessions/{session_id}/lots",
                {
                    "catalogue_no": f"L{number:04d}",
                    "title": f"Load lot {number}",
                    "start_price": 100_00,
                    "unit": 1_00,
                },
            )
            lots.append(int(lot["id"]))
        starts = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)).isoformat(
            timespec="milliseconds"
        )
        cls.admin("PATCH", f"/api/v1/admin/sessions/{session_id}", {"bidding_start": starts})
        deadline = time.monotonic() + 30
        while call("GET", f"{cls.host}/api/v1/sessions/{session_id}")["state"] != 3:
            if time.monotonic() > deadline:
                raise RuntimeError("the load session did not open for bidding")
            time.sleep(0.2)
        return session_id, lots

    @classmethod
    def _courses(cls) -> list[tuple[int, int]]:
        """Online courses with a price policy; a few are created when the shop has none."""
        found = []
        for course in call("GET", f"{cls.host}/api/v1/courses?page_size=100")["items"]:
            detail = call("GET", f"{cls.host}/api/v1/courses/{course['id']}")
            if detail.get("status", "online") == "online" and detail.get("policies"):
                found.append((int(course["id"]), int(detail["policies"][0]["id"])))
        if found:
            return found
        tag = uuid.uuid4().hex[:6]
        top = cls.admin("POST", "/api/v1/admin/shop/categories", {"name": f"Load {tag}"})
        sub = cls.admin(
            "POST", "/api/v1/admin/shop/categories", {"name": f"Load {tag} sub", "parent_id": top["id"]}
        )
        for number in range(COURSE_COUNT):
            course = cls.admin(
                "POST",
                "/api/v1/admin/shop/courses",
                {
                    "name": f"Load course {tag}-{number}",
                    "sub_category_id": sub["id"],
                    "course_type": "paid",
                    "status": "online",
                    "brief": "Created by benchmarks/locustfile.py",
                },
            )
            policy = cls.admin(
                "POST",
                f"/api/v1/admin/shop/courses/{course['id']}/policies",
                {"valid_days": 30, "price": 99_00},
            )
            found.append((int(course["id"]), int(policy["id"])))
        return found

    @classmethod
    def admin(cls, method: str, path: str, body: Any = None) -> Any:
        return call(method, cls.host + path, body, cls.admin_token)

    @classmethod
    def new_account(cls, deposit: bool) -> tuple[int, str]:
        """A new user with a balance (and the load session's deposit paid): (user_id, token)."""
        name = f"lc{uuid.uuid4().hex[:14]}"
        answer = call("POST", f"{cls.host}/api/v1/auth/register", {"username": name, "password": PASSWORD})
        user_id, token = int(answer["user_id"]), str(answer["token"])
        cls.admin("POST", f"/api/v1/admin/users/{user_id}/credit", {"amount": CREDIT})
        if deposit:
            call(
                "POST",
                f"{cls.host}/api/v1/deposits",
                {"session_id": cls.session_id, "pay_with": "balance"},
                token,
            )
        return user_id, token


def call(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    """A set-up request (not measured): raises on any error answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.request(method, url, json=body, headers=headers, timeout=30)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:200]}")
    return response.json() if response.content else None


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner) and environment.host:
        Setup.ensure(environment.host)


class ScenarioContext:
    """Tags every request event with the user class that made it, so statistics can be grouped by
    scenario: locust's own statistics are per request name only, and some names are shared (the
    catalogue by shoppers and students, the latest feed by readers and writers)."""

    def context(self) -> dict[str, Any]:
        return {"scenario": type(self).__name__}


class ScenarioStats:
    """With LOCUST_SCENARIO_STATS=DIR, every request event of this process counted per (user class,
    request) and written at the end to DIR/scenarios-<pid>.json as {scenario: {"TYPE name": {count,
    failures, times: {ms: n}}}}; benchmarks/load_all.py merges the files of all processes."""

    directory = os.environ.get("LOCUST_SCENARIO_STATS", "")
    entries: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}

    @classmethod
    def record(
        cls, request_type: str, name: str, response_time: float, exception: Any, context: Any, **_: Any
    ) -> None:
        scenario = (context or {}).get("scenario")
        if not scenario:
            return
        entry = cls.entries.setdefault(scenario, {}).setdefault(
            f"{request_type} {name}", {"count": 0, "failures": 0, "times": {}}
        )
        entry["count"] += 1
        if exception is not None:
            entry["failures"] += 1
        key = bucket_response_time(response_time or 0.0)  # as locust keeps them: same percentiles
        entry["times"][key] = entry["times"].get(key, 0) + 1

    @classmethod
    def write(cls, **_: Any) -> None:
        if cls.entries:
            path = pathlib.Path(cls.directory) / f"scenarios-{os.getpid()}.json"
            path.write_text(json.dumps(cls.entries))


if ScenarioStats.directory:
    events.request.add_listener(ScenarioStats.record)
    events.test_stop.add_listener(ScenarioStats.write)
    events.quitting.add_listener(ScenarioStats.write)


class SocketUser(ScenarioContext, User):
    """A websocket user: one connection, a reader greenlet, request events for what it measures."""

    abstract = True
    token: str | None = None

    def on_start(self) -> None:
        Setup.ensure(self.host)
        url = Setup.host.replace("http", "ws", 1) + "/ws" + (f"?token={self.token}" if self.token else "")
        self.next_min: dict[int, int] = {}
        self.leading: set[int] = set()  # lots this user leads: bidding there is SELF_OUTBID
        self.pending: dict[str, tuple[float, gevent.event.AsyncResult]] = {}
        started = time.perf_counter()
        try:
            self.ws = websocket.create_connection(url, timeout=30, enable_multithread=True)
            hello = json.loads(self.ws.recv())
            self.ws.send(json.dumps({"op": "subscribe", "session_id": Setup.session_id}))
            snapshot = json.loads(self.ws.recv())
            while snapshot.get("type") != "snapshot":
                snapshot = json.loads(self.ws.recv())
        except Exception as error:
            self.fire("connect", (time.perf_counter() - started) * 1000, 0, error)
            raise
        self.fire("connect", (time.perf_counter() - started) * 1000, len(str(hello)))
        for lot in snapshot["lots"]:
            self.next_min[lot["lot_id"]] = lot["next_min"]
        self.reader = gevent.spawn(self.read_loop)

    def on_stop(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.kill(block=False)
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()

    def fire(self, name: str, milliseconds: float, length: int = 0, error: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=milliseconds,
            response_length=length,
            exception=error,
            context=self.context(),
        )

    def read_loop(self) -> None:
        while True:
            try:
                raw = self.ws.recv()
            except Exception as error:  # the server closed, or stop
                if self.ws.connected:
                    self.fire("disconnected", 0, 0, error)
                return
            if not raw:
                return
            received = time.time() * 1000
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "price":
                self.next_min[frame["lot_id"]] = frame["next_min"]
                self.on_price(frame, received, len(raw))
            elif kind == "outbid":
                self.leading.discard(frame["lot_id"])
            elif kind in ("accepted", "rejected"):
                if kind == "accepted" and frame.get("leading"):
                    self.leading.add(frame["lot_id"])
                pending = self.pending.pop(frame.get("ref", ""), None)
                if frame.get("next_min") is not None:
                    self.next_min[frame["lot_id"]] = frame["next_min"]
                if pending is not None:
                    pending[1].set((frame, time.perf_counter() - pending[0], len(raw)))

    def on_price(self, frame: dict[str, Any], received_ms: float, length: int) -> None:
        pass


class Bidder(SocketUser):
    weight = 5
    wait_time = between(1, 3)

    def on_start(self) -> None:
        Setup.ensure(self.host)
        _user_id, self.token = Setup.new_account(deposit=True)
        super().on_start()

    @task
    def bid(self) -> None:
        lot_id = random.choice([lot for lot in Setup.lots if lot not in self.leading] or Setup.lots)
        price = self.next_min.get(lot_id, 100_00)
        ref = uuid.uuid4().hex[:16]
        answer = gevent.event.AsyncResult()
        self.pending[ref] = (time.perf_counter(), answer)
        self.ws.send(json.dumps({"op": "bid", "lot_id": lot_id, "price": price, "ref": ref}))
        try:
            frame, seconds, length = answer.get(timeout=BID_TIMEOUT_S)
        except gevent.Timeout as error:
            self.pending.pop(ref, None)
            self.fire("bid", BID_TIMEOUT_S * 1000, 0, error)
            return
        if frame["type"] == "accepted":
            self.fire("bid accepted", seconds * 1000, length)
        else:
            self.fire(f"bid rejected {frame.get('code')}", seconds * 1000, length)


class Watcher(SocketUser):
    weight = 3
    wait_time = between(5, 10)

    @task
    def watch(self) -> None:
        """Frames arrive on the reader greenlet; now and then, ping to keep the socket honest."""
        self.ws.send(json.dumps({"op": "ping"}))

    def on_price(self, frame: dict[str, Any], received_ms: float, length: int) -> None:
        self.fire("price broadcast", max(0.0, received_ms - frame["ts"]), length)


def buy_from_balance(client: Any, headers: dict[str, str], course_id: int, policy_id: int) -> bool:
    """The shop's purchase as a student makes it: cart, checkout, pay from the balance. True if paid."""
    line = {"course_id": course_id, "price_policy_id": policy_id}
    client.post("/api/v1/cart", json=line, headers=headers)
    client.get("/api/v1/cart", headers=headers)
    checkout = client.post("/api/v1/checkout", json={"course_ids": [course_id]}, headers=headers)
    if checkout.status_code != 201:
        return False
    with client.post(
        "/api/v1/checkout/pay",
        json={"balance": CREDIT, "idempotency_key": uuid.uuid4().hex},
        headers=headers,
        catch_response=True,
    ) as paid:
        if paid.status_code not in (200, 201):
            paid.failure(f"{paid.status_code} {paid.text[:120]}")
            return False
        if paid.json()["order"]["status"] != "paid":
            paid.failure(f"order not paid from the balance: {paid.text[:120]}")
            return False
    return True


class Shopper(ScenarioContext, FastHttpUser):
    weight = 2
    wait_time = between(1, 3)

    def on_start(self) -> None:
        Setup.ensure(self.host)
        _user_id, token = Setup.new_account(deposit=False)
        self.headers = {"Authorization": f"Bearer {token}"}

    @task(3)
    def browse(self) -> None:
        with self.client.get(
            "/api/v1/courses?page_size=20", name="/api/v1/courses", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}")
                return
        course_id, _policy = random.choice(Setup.courses)
        self.client.get(f"/api/v1/courses/{course_id}", name="/api/v1/courses/{id}")
        self.client.get(f"/api/v1/courses/{course_id}/chapters", name="/api/v1/courses/{id}/chapters")

    @task(1)
    def buy(self) -> None:
        buy_from_balance(self.client, self.headers, *random.choice(Setup.courses))
        self.client.get("/api/v1/shop/orders", headers=self.headers)


class Student(ScenarioContext, FastHttpUser):
    """A student: browse (filters, search), a course page, buy from the balance, then learn."""

    weight = 3
    wait_time = between(1, 3)

    def on_start(self) -> None:
        Setup.ensure(self.host)
        _user_id, token = Setup.new_account(deposit=False)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.sections: list[int] = []  # sections of courses this student bought

    def get(self, path: str, name: str) -> Any:
        with self.client.get(path, name=name, headers=self.auth, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:120]}")
                return None
            return r.json()

    @task(4)
    def browse(self) -> None:
        self.get("/api/v1/courses?page_size=20&sort=order", "/api/v1/courses")
        self.get("/api/v1/courses?level=beginner&q=a&page_size=20", "/api/v1/courses?filters")
        course_id, _policy = random.choice(Setup.courses)
        self.get(f"/api/v1/courses/{course_id}", "/api/v1/courses/{id}")
        self.get(f"/api/v1/courses/{course_id}/chapters", "/api/v1/courses/{id}/chapters")
        self.get(f"/api/v1/courses/{course_id}/reviews", "/api/v1/courses/{id}/reviews")

    @task(1)
    def buy(self) -> None:
        course_id, policy_id = random.choice(Setup.courses)
        if not buy_from_balance(self.client, self.auth, course_id, policy_id):
            return
        outline = self.get(f"/api/v1/courses/{course_id}/chapters", "/api/v1/courses/{id}/chapters")
        if outline:
            self.sections += [s["id"] for chapter in outline["items"] for s in chapter["sections"]]

    @task(3)
    def learn(self) -> None:
        if not self.sections:
            return
        section_id = random.choice(self.sections)
        self.get(f"/api/v1/sections/{section_id}/content", "/api/v1/sections/{id}/content")
        with self.client.put(
            f"/api/v1/sections/{section_id}/progress",
            json={"done": True},
            headers=self.auth,
            name="/api/v1/sections/{id}/progress",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:120]}")
        self.get("/api/v1/shop/enrolments", "/api/v1/shop/enrolments")


class AppUser(ScenarioContext, FastHttpUser):
    """A phone running the bidder app: page loads over REST as the app makes them, plus its socket."""

    weight = 4
    wait_time = between(2, 5)

    def on_start(self) -> None:
        Setup.ensure(self.host)
        _user_id, token = Setup.new_account(deposit=False)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.etags: dict[str, str] = {}
        self.open_app()
        self.socket = SocketReader(self.environment, Setup.host, token)

    def on_stop(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()

    def get(self, path: str, name: str, headers: dict[str, str] | None = None) -> Any:
        with self.client.get(path, name=name, headers=headers or self.auth, catch_response=True) as r:
            if r.status_code not in (200, 304):
                r.failure(f"{r.status_code}")
                return None
            return r

    @task(1)
    def open_app(self) -> None:
        """`/` (never cached), then the modules revalidated by ETag, then the first screen's data."""
        self.get("/", "/", headers={})
        for asset in APP_ASSETS:
            etag = self.etags.get(asset)
            answer = self.get(
                asset, "/static/app/* (conditional)", headers={"If-None-Match": etag} if etag else {}
            )
            etag = answer.headers.get("ETag") or answer.headers.get("Etag") if answer is not None else None
            if etag:
                self.etags[asset] = etag
        self.get("/api/v1/me", "/api/v1/me")
        self.get("/api/v1/sessions?page_size=20", "/api/v1/sessions")

    @task(2)
    def session(self) -> None:
        self.get(f"/api/v1/sessions/{Setup.session_id}", "/api/v1/sessions/{id}")

    @task(4)
    def lot(self) -> None:
        lot_id = random.choice(Setup.lots)
        self.get(f"/api/v1/lots/{lot_id}", "/api/v1/lots/{id}")
        self.get(f"/api/v1/lots/{lot_id}/bids", "/api/v1/lots/{id}/bids")

    @task(1)
    def account(self) -> None:
        self.get("/api/v1/me", "/api/v1/me")
        self.get("/api/v1/orders", "/api/v1/orders")


class SocketReader:
    """The app's one websocket: signed in, subscribed to the load session, every frame read."""

    def __init__(self, environment: Any, host: str, token: str) -> None:
        self.environment = environment
        started = time.perf_counter()
        try:
            self.ws = websocket.create_connection(
                host.replace("http", "ws", 1) + f"/ws?token={token}", timeout=30, enable_multithread=True
            )
            self.ws.recv()  # hello
            self.ws.send(json.dumps({"op": "subscribe", "session_id": Setup.session_id}))
            while json.loads(self.ws.recv()).get("type") != "snapshot":
                pass
        except Exception as error:
            self.fire("app connect", (time.perf_counter() - started) * 1000, error)
            raise
        self.fire("app connect", (time.perf_counter() - started) * 1000)
        self.reader = gevent.spawn(self.read_loop)

    def fire(self, name: str, milliseconds: float, error: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=milliseconds,
            response_length=0,
            exception=error,
            context={"scenario": "AppUser"},
        )

    def read_loop(self) -> None:
        while True:
            try:
                raw = self.ws.recv()
            except Exception:  # closed by on_stop or by the server
                return
            if not raw:
                return
            frame = json.loads(raw)
            if frame.get("type") == "price" and "ts" in frame:
                self.fire("app frame", max(0.0, time.time() * 1000 - frame["ts"]))

    def close(self) -> None:
        self.reader.kill(block=False)
        self.ws.close()


def fixed(name: str) -> int:
    """A user class's fixed count from the environment (benchmarks/feed_load.py sets them), else 0:
    then locust spreads users by weight."""
    return int(os.environ.get(name, "0"))


class FeedReader(ScenarioContext, FastHttpUser):
    """Someone scrolling the community feed (issue 23), the most-read page of such an app: the latest
    feed, one or two further pages by cursor, sometimes the people they follow or a topic; opens a
    post (its page, the view, the comments) and now and then an article list."""

    weight = 4
    fixed_count = fixed("FEED_READERS")
    wait_time = between(1, 3)

    def on_start(self) -> None:
        Setup.ensure(self.host)
        _user_id, token = Setup.new_account(deposit=False)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.seen: list[int] = []

    def get(self, path: str, name: str) -> Any:
        with self.client.get(path, name=name, headers=self.auth, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {r.text[:120]}")
                return None
            return r.json()

    def scroll(self, query: str, name: str) -> None:
        page = self.get(f"/api/v1/posts?{query}&limit=20", name)
        for _ in range(random.choice((0, 1, 2))):
            if not page or not page.get("next_cursor"):
                break
            page = self.get(f"/api/v1/posts?{query}&limit=20&cursor={page['next_cursor']}", name + " (next)")
        if page:
            self.seen = [int(item["id"]) for item in page["items"]][:20] or self.seen

    @task(6)
    def latest(self) -> None:
        self.scroll("feed=latest", "/api/v1/posts?feed=latest")

    @task(2)
    def following(self) -> None:
        self.scroll("feed=following", "/api/v1/posts?feed=following")

    @task(4)
    def open_post(self) -> None:
        if not self.seen:
            self.latest()
            return
        post_id = random.choice(self.seen)
        self.get(f"/api/v1/posts/{post_id}", "/api/v1/posts/{id}")
        with self.client.post(
            f"/api/v1/posts/{post_id}/view",
            headers=self.auth,
            name="/api/v1/posts/{id}/view",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}")
        self.get(f"/api/v1/posts/{post_id}/comments", "/api/v1/posts/{id}/comments")

    @task(1)
    def articles(self) -> None:
        self.get("/api/v1/articles?position=feed", "/api/v1/articles")


class FeedWriter(ScenarioContext, FastHttpUser):
    """Someone who posts, likes and comments while the readers read (and follows a few writers, so
    the readers' "following" feed has something)."""

    weight = 1
    fixed_count = fixed("FEED_WRITERS")
    wait_time = between(2, 6)
    writers: ClassVar[list[int]] = []

    def on_start(self) -> None:
        Setup.ensure(self.host)
        self.user_id, token = Setup.new_account(deposit=False)
        self.auth = {"Authorization": f"Bearer {token}"}
        self.liked: set[int] = set()
        for other in random.sample(self.writers, min(5, len(self.writers))):
            self.send("PUT", f"/api/v1/profiles/{other}/follow", "/api/v1/profiles/{id}/follow")
        self.writers.append(self.user_id)
        self.post()

    def send(self, method: str, path: str, name: str, body: Any = None) -> Any:
        with self.client.request(
            method, path, name=name, headers=self.auth, json=body, catch_response=True
        ) as r:
            if r.status_code not in (200, 201, 204):
                r.failure(f"{r.status_code} {r.text[:120]}")
                return None
            return r.json() if r.content else None

    def recent(self) -> list[int]:
        page = self.send("GET", "/api/v1/posts?feed=latest&limit=20", "/api/v1/posts?feed=latest")
        return [int(item["id"]) for item in page["items"]] if page else []

    @task(1)
    def post(self) -> None:
        text = f"Load post {uuid.uuid4().hex[:8]}: 今天的拍品不错"
        self.send("POST", "/api/v1/posts", "/api/v1/posts (create)", {"text": text})

    @task(6)
    def like(self) -> None:
        posts = self.recent()
        if not posts:
            return
        post_id = random.choice(posts)
        method = "DELETE" if post_id in self.liked else "PUT"
        name = f"/api/v1/posts/{{id}}/like ({method})"
        if self.send(method, f"/api/v1/posts/{post_id}/like", name) is not None:
            self.liked.symmetric_difference_update({post_id})

    @task(2)
    def comment(self) -> None:
        posts = self.recent()
        if posts:
            self.send(
                "POST",
                f"/api/v1/posts/{random.choice(posts)}/comments",
                "/api/v1/posts/{id}/comments (create)",
                {"text": "好东西 👍"},
            )
