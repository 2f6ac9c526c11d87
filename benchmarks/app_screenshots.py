"""Screenshots of every screen of the bidder app, phone (390 × 844, Chinese) and desktop (1280 × 800,
English), into docs/app/*.jpg, and docs/app.md around them.

    .venv/bin/python benchmarks/app_screenshots.py            # ~1 min; needs /usr/bin/chromium

It starts `run.py` on a fresh data directory (development mode: embedded MongoDB and Redis, the
sandbox payment provider, the demo seed: live, upcoming and ended sessions with pictures and the
bidders alice and bob), adds a session that ends a few seconds later with alice's winning bid (so
she has an order to pay), bids a little on the live lots, and drives Debian's chromium through
Playwright, signed out and then signed in as alice.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import requests
import websocket

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.app_load import ADMIN_PASSWORD, start_server, stop

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OUT = DOCS / "app"
APP = ROOT / "gateway" / "static" / "app"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
JPEG_QUALITY = 80
NOT_FOUND = ("This page does not exist.", "页面不存在。")  # js/i18n.js "common.not_found"


class Api:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = requests.request(method, self.base + path, json=body, headers=headers, timeout=30)
        if answer.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json() if answer.content else None

    def login(self, username: str, password: str, admin: bool = False) -> str:
        path = "/api/v1/admin/login" if admin else "/api/v1/auth/login"
        return str(self.call("POST", path, {"username": username, "password": password})["token"])

    def bid(self, token: str, lot_id: int, price: int) -> dict[str, Any]:
        ws = websocket.create_connection(
            self.base.replace("http", "ws", 1) + f"/ws?token={token}", timeout=10
        )
        try:
            ws.recv()  # hello
            ref = uuid.uuid4().hex[:16]
            ws.send(json.dumps({"op": "bid", "lot_id": lot_id, "price": price, "ref": ref}))
            while True:
                frame = json.loads(ws.recv())
                if frame.get("ref") == ref:
                    return dict(frame)
        finally:
            ws.close()


def iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def wait_state(api: Api, session_id: int, states: set[int], within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while api.call("GET", f"/api/v1/sessions/{session_id}")["state"] not in states:
        if time.monotonic() > deadline:
            raise RuntimeError(f"session {session_id} did not reach {states}")
        time.sleep(0.3)


def seed(api: Api) -> dict[str, Any]:
    """Beyond the demo seed (live, upcoming and ended sessions): a short session alice won, so she
    has an order, and bids on the live lots."""
    admin = api.login("admin", ADMIN_PASSWORD, admin=True)
    alice = api.login("alice", "alice-demo-pass")
    bob = api.login("bob", "bob-demo-pass")
    sessions = api.call("GET", "/api/v1/sessions?page_size=50")["items"]
    live = next(s for s in sessions if "Spring ceramics" in s["title"])
    upcoming = next(s for s in sessions if "upcoming" in s["title"])
    wait_state(api, live["id"], {3})
    lots = api.call("GET", f"/api/v1/sessions/{live['id']}")["lots"]
    now = datetime.datetime.now(datetime.UTC)
    ended = api.call(
        "POST",
        "/api/v1/admin/sessions",
        {
            "title": "Winter bronzes 冬季铜器",
            "preview_start": iso(now),
            "preview_end": iso(now + datetime.timedelta(seconds=2)),
            "bidding_start": iso(now + datetime.timedelta(seconds=2)),
            "bidding_end": iso(now + datetime.timedelta(seconds=8)),
            "deposit": 0,
            "soft_close_seconds": 0,
            "soft_close_cap_seconds": 0,
        },
        admin,
    )
    mirror = api.call(
        "POST",
        f"/api/v1/admin/sessions/{ended['id']}/lots",
        {"catalogue_no": "201", "title": "Bronze mirror 铜镜", "start_price": 300_00, "unit": 10_00},
        admin,
    )
    api.call(
        "POST",
        f"/api/v1/admin/sessions/{ended['id']}/lots",
        {"catalogue_no": "202", "title": "Incense burner 香炉", "start_price": 400_00, "unit": 10_00},
        admin,
    )
    wait_state(api, ended["id"], {3})
    api.bid(alice, mirror["id"], 300_00)
    # Bids on the live lots without a deposit: a price, a history, alice leading one and outbid on one.
    free = [lot for lot in lots if not lot.get("deposit")]
    api.bid(alice, free[0]["id"], free[0]["next_min"])
    api.bid(bob, free[1]["id"], free[1]["next_min"])
    api.bid(alice, free[1]["id"], api.call("GET", f"/api/v1/lots/{free[1]['id']}")["next_min"])
    api.bid(bob, free[1]["id"], api.call("GET", f"/api/v1/lots/{free[1]['id']}")["next_min"])
    wait_state(api, ended["id"], {4, 5, 6})
    deposit_lot = next((lot for lot in lots if lot.get("deposit")), lots[-1])
    orders: list[dict[str, Any]] = []
    for _ in range(100):  # settlement records alice's order just after the close
        groups = api.call("GET", "/api/v1/orders", token=alice)["groups"]
        orders = [order for group in groups for order in group["items"]]
        if orders:
            break
        time.sleep(0.2)
    # The course shop (the demo seeds two courses): alice has one in her cart, at checkout.
    courses = api.call("GET", "/api/v1/courses?page_size=50")["items"]
    if courses:
        first = courses[0]
        api.call(
            "POST",
            "/api/v1/cart",
            {"course_id": first["id"], "price_policy_id": first["policies"][0]["id"]},
            alice,
        )
        api.call("POST", "/api/v1/checkout", {"course_ids": [first["id"]]}, alice)
    posts = optional_items(api, "/api/v1/posts?feed=latest")
    articles = optional_items(api, "/api/v1/articles?position=feed")
    return {
        "post": next((p["id"] for p in posts if p["images"]), posts[0]["id"] if posts else None),
        "article": articles[0]["id"] if articles else None,
        "course": courses[0]["id"] if courses else None,
        "alice": alice,
        "live": live["id"],
        "upcoming": upcoming["id"],
        "ended": ended["id"],
        "lot": free[1]["id"],
        "deposit_lot": deposit_lot["id"],
        "won_lot": mirror["id"],
        "order": orders[0] if orders else None,
    }


def optional_items(api: Any, path: str) -> list[dict[str, Any]]:
    """A list's first page, or nothing when its endpoint is not deployed."""
    try:
        return list(api.call("GET", path)["items"])
    except Exception:
        return []


def screens(world: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(file stem, hash route, caption, signed in)."""
    found = [
        (
            "sessions",
            "#/",
            "Sessions: live, upcoming and ended, with schedule, countdown and deposit rule",
            False,
        ),
        (
            "session",
            f"#/s/{world['live']}",
            "A live session's lot grid with prices, bids and time left",
            False,
        ),
        ("upcoming", f"#/s/{world['upcoming']}", "An upcoming session: countdown to the start", False),
        ("ended", f"#/s/{world['ended']}", "An ended session", False),
        (
            "lot",
            f"#/lot/{world['lot']}",
            "A lot signed out: price, increment, reserve status, history",
            False,
        ),
        ("signin", "#/signin?mode=register", "Register (username, password, optional display name)", False),
        ("courses", "#/courses", "Courses: categories, search, filters and sort", False),
        ("course", f"#/course/{world['course']}", "A course: outline, teachers, FAQs, plans, reviews", False),
    ]
    # The community (issue 23), from the demo's posts and articles (absent: not deployed, skipped).
    if world.get("post"):
        found.append(("community", "#/community", "Community 动态: article banners, feed tabs, posts", False))
        found.append(
            ("post", f"#/community/post/{world['post']}", "A post: pictures, live counts, comments", False)
        )
    if world.get("article"):
        found.append(("article", f"#/community/article/{world['article']}", "An article 深科技", False))
    found += [
        (
            "lot-bidding",
            f"#/lot/{world['lot']}",
            "The bid panel: next prices, your maximum, proxy bidding",
            True,
        ),
        (
            "lot-deposit",
            f"#/lot/{world['deposit_lot']}",
            "A lot that needs a deposit: offered in place",
            True,
        ),
        ("won", f"#/lot/{world['won_lot']}", "After the close: won, with the order and its deadline", True),
        ("account", "#/me", "My account", True),
        ("orders", "#/me/orders", "Orders grouped by status", True),
        ("addresses", "#/me/addresses", "Addresses", True),
        ("coupons", "#/me/coupons", "Coupons: claimable and mine", True),
        ("wallet", "#/me/wallet", "Balance and its ledger", True),
        ("deposits", "#/me/deposits", "Deposits and their state", True),
    ]
    found += [
        ("cart", "#/cart", "Course cart: plans, totals", True),
        ("checkout", "#/checkout", "Checkout: coupons per course and for the order, balance, totals", True),
        ("shop-orders", "#/shop/orders", "Course orders by status", True),
        ("shop-coupons", "#/shop/coupons", "Course coupons: to claim and mine", True),
        ("my-courses", "#/me/courses", "My courses: validity and progress", True),
        ("learn", f"#/learn/{world['course']}", "Learning: sections, content links, done ticks", True),
        ("community-new", "#/community/new", "Posting: text, topic, place, up to nine pictures", True),
    ]
    order = world.get("order")
    if order:
        found.append(("order", f"#/me/orders/{order['id']}", "An order", True))
        if order.get("no"):
            found.append(
                ("payment", f"#/payment/{order['no']}", "Paying an order: coupon, deposit, balance", True)
            )
    return found


def shoot(base: str, world: dict[str, Any]) -> list[tuple[str, str]]:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jpg"):
        old.unlink()
    made: list[tuple[str, str]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for device, viewport, locale, mobile in (
            ("phone", PHONE, "zh-CN", True),
            ("desktop", DESKTOP, "en", False),
        ):
            context = browser.new_context(
                viewport=viewport,
                locale=locale,
                timezone_id="Asia/Shanghai",
                is_mobile=mobile,
                has_touch=mobile,
                device_scale_factor=1,
            )
            page = context.new_page()
            page.goto(base + "/#/")
            signed_in = False
            for stem, route, caption, needs_sign_in in screens(world):
                if needs_sign_in and not signed_in:
                    page.evaluate("token => localStorage.setItem('gavel-token', token)", world["alice"])
                    page.reload()
                    signed_in = True
                page.evaluate("path => { location.hash = path.slice(1); }", route)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(600)  # the socket's snapshot and the countdowns' first tick
                if any(text in page.inner_text("main") for text in NOT_FOUND):
                    print(f"skipped {route}: no such screen yet", file=sys.stderr)
                    continue
                page.screenshot(path=str(OUT / f"{stem}-{device}.jpg"), type="jpeg", quality=JPEG_QUALITY)
                if device == "phone":
                    made.append((stem, caption))
            context.close()
        browser.close()
    return made


def page_weights() -> dict[str, int]:
    """{page: bytes}: the first screen (stylesheet, core and auction modules, vendored modules, one
    language's strings, the larger) and the first screen plus each lazy group (its modules,
    strings and styles), as tests/gateway/test_app_assets.py measures and limits them to 150 KiB."""
    from tests.gateway.test_app_assets import page_files

    return {page: sum(path.stat().st_size for path in files) for page, files in page_files().items()}


def write_doc(made: list[tuple[str, str]]) -> None:
    weights = page_weights()
    weight, first = max(weights.values()), weights["first screen"]
    shots = "\n\n".join(
        f"### {caption}\n\n"
        f'<img src="app/{stem}-phone.jpg" alt="{caption} (phone, Chinese)" width="260"> '
        f'<img src="app/{stem}-desktop.jpg" alt="{caption} (desktop, English)" width="520">'
        for stem, caption in made
    )
    (DOCS / "app.md").write_text(
        f"""# The bidder app

Gavel's bidders use the app served at `/` (`gateway/static/app/`): sessions, lots, live bidding with
deposits, results, orders and payment, addresses, coupons, balance and deposits, and the course
shop (catalogue, course pages, cart, checkout, course orders and coupons, learning), in Chinese and
English, on a phone first. It uses only the public REST API (docs/openapi*.yaml) and the websocket
(docs/protocol.md), so it can do nothing a third-party client could not.

The screenshots below are made by `benchmarks/app_screenshots.py` (run.py with the demo seed, plus a
short session the demo bidder alice won); phone at 390 × 844 in Chinese, desktop
at 1280 × 800 in English. Re-run it after changing a screen:

```sh
.venv/bin/python benchmarks/app_screenshots.py   # rewrites docs/app/*.jpg and this file
```

## Language

Chinese (zh-CN) when the browser prefers Chinese, English otherwise; the button in the app bar
switches (中文 / English) and the choice is remembered in `localStorage` (`gavel-lang`). The
strings are in `js/lang/en.js` and `js/lang/zh-CN.js`, and only the chosen one loads; the course
shop's come with its screens (`js/lang/shop.en.js`, `js/lang/shop.zh-CN.js`: i18n.js
`groupStrings`) (tests/gateway/test_app_assets.py checks that every `t("key")` has both).
Times are shown in the viewer's time zone; countdowns use the server's clock (learned from the
socket's `server_time`), in hours and minutes, then seconds in the last minute.

## How it works

- **Modules, no build step.** Plain ES modules (`js/*.js`) on Preact 10 and htm, vendored in
  `vendor/` with their versions, sha256 hashes and licences (`vendor/VENDOR.md`); an import map in
  `index.html` names them, and the page's Content-Security-Policy allows that one inline script by
  its hash and nothing else inline. Hash routes (`#/lot/12`) need no server fallback. The modules
  are served by Tornado's static handler with ETags (a reload revalidates and gets 304s); `/` is
  never cached.
- **Screen groups.** The auction screens (where people arrive) come with the page; the account's
  (`js/account*.js`), the course shop's four groups, the degree path's four and the community's six
  load on their first visit (main.js `lazyGroups`, never preloaded: gateway/app_page.py
  `LAZY_MODULES`): catalogue and course page
  (`shop.js`, `shop-course.js`), cart and checkout (`shop-buy.js`), course orders and coupons
  (`shop-orders.js`), learning and my courses (`shop-learn.js`). The shop's groups bring their
  strings and stylesheet (`shop.css`) with them (`js/shop-common.js`), so the first screen does not
  carry them. An endpoint of the shop that answers 404/405 (not deployed) hides its feature
  (reviews, claimable coupons, cancel, pay again, refund, content, progress).
- **Course shop.** `#/courses` (category and sub-category chips, search by name, level / type /
  price filters in a sheet on phones and a side panel on wide screens, sort; the URL holds the
  state), `#/course/{{id}}`, `#/cart`, `#/checkout` (coupons per course and one for the order, the
  balance to use typed in yuan and parsed exactly; the totals are the server's; pay goes to the
  provider with `sessionStorage["gavel-payment-<out_trade_no>"] = {{back: "/shop/orders/<no>"}}` and
  comes back through `#/payment/{{no}}`), `#/shop/orders` (by status), `#/shop/orders/{{no}}`,
  `#/shop/coupons`, `#/me/courses`, `#/learn/{{course_id}}`. Reviews are rendered as text.
- **Degree path (issue 22).** Four more groups, each with `js/degree-common.js` (its strings
  `js/lang/degree.*.js` and `degree.css`): the degree page `#/degree/{{id}}` (`degree.js`: brief,
  prerequisite, suggested period, teachers, total scholarship and the tiers in yuan, modules, FAQs,
  reviews with a form for enrolled students on the whole degree or one module; buy adds
  `degree_course_id` to the cart and goes to the shop's checkout, which shows degree lines without
  course coupons; once bought, "Go to my degree"); my degrees `#/me/degrees` and one degree
  `#/me/degree/{{id}}` (`degree-me.js`: the registration form until registered, then status, mentor,
  validity in UTC days, scholarship earned / left / graduation award, the modules with their
  homework, record state, grade, reward state and overdue marks, "open" on the next module with the
  server's refusal shown); a homework `#/me/degree/{{id}}/homework/{{hid}}` (`degree-homework.js`:
  requirement and scoring points as text, hand-in of text and up to 5 files checked here as the
  server sniffs them (shop/degree_files.py: type from the bytes, 10 MB each), sent as multipart with
  a progress bar, the history of submissions and gradings; files download with the bearer token);
  the mentor's workspace `#/mentor` (`degree-mentor.js`, linked from the account when `/api/v1/me`
  says `is_mentor`: the queue oldest first with late marks, grading the latest submission on the
  seed's scale with 409 `ALREADY_GRADED` shown, my students, a student's follow-ups). live.js keeps
  the latest `homework_graded` / `homework_submitted` / `degree_graduated` frame in its store: the
  degree screen on view reloads and a toast says what happened.
- **Community 动态 (issue 23).** A 4th tab, `#/community`. Six groups, each with
  `js/community-common.js` (its strings `js/lang/community.*.js`, `community.css`, the post card,
  like button, live counts, cursor pages): the feed and topics (`community.js`: article banners, big
  and small, on top; tabs latest / following / topics in the URL; infinite scroll on `next_cursor`
  with an IntersectionObserver and a "load more" button as its fallback; `#/community/topic/{{id}}`
  with follow), a post (`community-post.js`, `#/community/post/{{id}}`: `POST …/view` first, so the
  server counts one per user, then the post), the composer (`community-new.js`, `#/community/new`:
  text with a live counter to 255, topic, place, up to 9 images checked here as the server checks
  them — PNG / JPEG / WebP / GIF by their first bytes, 5 MiB each — previewed as `data:` URLs, the
  page's CSP allows no `blob:`, sent as multipart with an XHR progress bar; refusals shown by their
  codes), profiles (`community-user.js`: `#/community/user/{{id}}` with avatar, bio, counts, follow,
  their posts, followers and following; `#/me/profile` with avatar upload and bio to 120), articles
  (`community-articles.js`: `#/community/articles` by weight with source chips,
  `#/community/article/{{id}}` with like, collect and comments to 1024) and my collections
  (`community-collections.js`, `#/me/collections`, articles / courses tabs; an unavailable item stays
  listed). Comments (`community-comments.js`, posts and articles): roots oldest first with their first
  replies and "more replies", a reply to a reply names whom it answers, likes, report (a sheet of
  reasons), delete my own. The course page has a collect button (`PUT` is idempotent, so it starts
  unpressed without asking). **Text is text:** posts, comments, bios, names and places are rendered
  as Preact text (escaped); the only HTML inserted is an article's `body_html`, which the server
  renders from Markdown and sanitises. **Live:** a like is shown at once and rolled back if the
  server refuses; the post and article pages `watch` their topic (`post:{{id}}`, `article:{{id}}`), so
  `counts`, new `comment`s and `comment_counts` arrive without a reload; a post linking a lot
  subscribes to its session and shows the live price. live.js keeps watched topics like sessions
  (re-sent after every reconnect) and `onFrame(type, fn)` hands a screen the frames of one type.
- **Live state.** One websocket per app (`js/live.js`): it subscribes to the sessions on screen,
  keeps the subscriptions across reconnects (back-off from 0.5 s to 10 s, a ping every 10 s, the
  link declared dead after 25 s without a frame), and reconciles from the snapshot sent on every
  (re)subscribe (leading, your maximum, deposit state, `no_bids`). A bid is retried with the same
  `ref` until it is answered, so a flaky network never places two bids; an offline banner shows while
  disconnected. A personal `result` frame says won (with the order and its payment deadline) or
  lost (with the deposit refund), and the lot page reads the same over REST on return.
- **Money.** Integer fen everywhere; yuan only on screen (`¥1,234.50`). Typed amounts are parsed as
  decimal strings (`js/money.js`: full-width digits, `¥`, separators accepted; more than two
  decimals, zero or out of range refused with a reason), never through floating point.
- **Weight.** JS and CSS per page, uncompressed: the first screen **{first:,} bytes
  ({first / 1024:.1f} KiB)**; the heaviest page (the first screen plus a group loaded on demand:
  the account's, the course shop's, the degree's or the community's) **{weight:,} bytes
  ({weight / 1024:.1f} KiB)**
  (limit 150 KiB for every page, checked by tests/gateway/test_app_assets.py).
- **Quality checks.** tests/gateway/test_app_screens.py visits every screen at 360 × 740,
  390 × 844 and 1280 × 800, signed out and in, in both languages: no horizontal overflow, touch
  targets of 44 px, a label on every input. test_app_assets.py checks the colour tokens' contrast
  (≥ 4.5:1) and money.js's parsing.

## Screens

{shots}
""",
        encoding="utf-8",
    )


@contextlib.contextmanager
def demo_server(prefix: str) -> Iterator[str]:
    """A `run.py` with the demo seed on a fresh data directory; its base URL. Stopped and removed
    afterwards (benchmarks/admin_screenshots.py uses it too)."""
    work = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    server = None
    try:
        (work / "data").mkdir()
        server, base = start_server(work / "data", dict(os.environ, SEED_DEMO="1"))
        yield base
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    with demo_server("gavel-shots-") as base:
        world = seed(Api(base))
        made = shoot(base, world)
        write_doc(made)
        total = sum(path.stat().st_size for path in OUT.glob("*.jpg"))
        print(json.dumps({"screens": len(made), "images_bytes": total, "page_weight_bytes": page_weights()}))


if __name__ == "__main__":
    main()
