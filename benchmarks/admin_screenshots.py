"""Screenshots of the back office at 1280 × 800 into docs/admin/*.png, and the "Screenshots" section
of docs/admin.md between its markers.

    .venv/bin/python benchmarks/admin_screenshots.py          # ~1 min; needs /usr/bin/chromium

It starts `run.py` on a fresh data directory with the demo seed (as benchmarks/app_screenshots.py
does, whose `seed` adds an ended session alice won and bids on the live lots), signs in as the
admin in Debian's chromium through Playwright, and saves one PNG per entry of `PAGES`. A page the
branch does not have yet (a 404) is skipped with a note; add a page by adding a line to `PAGES`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks.app_load import ADMIN_PASSWORD
from benchmarks.app_screenshots import CHROMIUM, CHROMIUM_ARGS, Api, demo_server, seed

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "admin"
DOC = ROOT / "docs" / "admin.md"
VIEWPORT = {"width": 1280, "height": 800}
BEGIN = "<!-- screenshots: begin (benchmarks/admin_screenshots.py writes this part) -->"
END = "<!-- screenshots: end -->"

# (file name, URL with {placeholders} from `world`, caption). The order is the document's.
PAGES: list[tuple[str, str, str]] = [
    ("dashboard", "/admin/", "The overview: takings, orders by status, failed payments, live sessions"),
    ("sessions", "/admin/sessions", "Sessions"),
    ("session-monitor", "/admin/sessions/{live}/monitor", "The live monitor of a session"),
    ("lot-monitor", "/admin/lots/{lot}/monitor", "The live monitor of one lot"),
    ("confirm-withdraw", "/admin/lots/{lot}/withdraw", "A control's confirmation, in numbers"),
    ("orders", "/admin/orders", "Auction orders, with Export CSV"),
    ("exports", "/admin/exports", "Exports: a form per kind, with its filters"),
    ("search", "/admin/search?q=alice", "Search results"),
    ("user", "/admin/users/{alice_id}", "A user's page"),
    ("audit", "/admin/audit", "The audit log"),
    ("staff", "/admin/staff", "Staff and their roles"),
]


def world_of(api: Api) -> dict[str, Any]:
    world = seed(api)
    login = api.call("POST", "/api/v1/auth/login", {"username": "alice", "password": "alice-demo-pass"})
    world["alice_id"] = login["user_id"]
    pay_the_order(api, world)
    return world


def pay_the_order(api: Api, world: dict[str, Any]) -> None:
    """alice pays the order she won from her balance (credited by the admin first), so the overview
    shows takings; a note instead when the API answers otherwise."""
    order = world.get("order")
    if not order:
        return
    admin = api.login("admin", ADMIN_PASSWORD, admin=True)
    alice = str(world["alice"])
    try:
        api.call(
            "POST",
            f"/api/v1/admin/users/{world['alice_id']}/credit",
            {"amount": 5_000_00, "idempotency_key": "shots-credit"},
            admin,
        )
        address = api.call(
            "POST",
            "/api/v1/addresses",
            {
                "name": "Alice",
                "phone": "13800000000",
                "province": "上海",
                "city": "上海",
                "district": "黄浦区",
                "detail": "南京东路 1 号",
            },
            alice,
        )
        api.call(
            "POST",
            f"/api/v1/orders/{order['id']}/pay",
            {"address_id": address["id"], "pay_with": "balance", "idempotency_key": "shots-pay"},
            alice,
        )
    except (RuntimeError, KeyError) as error:
        print(f"alice's order stays unpaid: {error}", file=sys.stderr)


async def shoot(base: str, world: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    from playwright.async_api import async_playwright

    made: list[tuple[str, str]] = []
    skipped: list[str] = []
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport=VIEWPORT, timezone_id="Asia/Shanghai")
        page = await context.new_page()
        await page.goto(base + "/admin/login")
        await page.fill("input[name=username]", "admin")
        await page.fill("input[name=password]", ADMIN_PASSWORD)
        await page.click("form.stack button[type=submit]")
        await page.wait_for_load_state()
        for name, url, caption in PAGES:
            path = url.format(**world)
            answer = await page.goto(base + path)
            status = answer.status if answer is not None else 0
            if status != 200:
                note = f"{name}: {path} answered {status}; skipped (not on this branch yet?)"
                print(note, file=sys.stderr)
                skipped.append(note)
                (OUT / f"{name}.png").unlink(missing_ok=True)
                continue
            await page.wait_for_load_state("networkidle")
            await page.wait_for_timeout(400)  # charts and live figures settle
            await page.screenshot(path=str(OUT / f"{name}.png"))
            made.append((name, caption))
        await browser.close()
    return made, skipped


def write_doc(made: list[tuple[str, str]]) -> None:
    lines = [BEGIN, ""]
    for name, caption in made:
        lines += [f"### {caption}", "", f"![{caption}](admin/{name}.png)", ""]
    lines.append(END)
    block = "\n".join(lines)
    text = DOC.read_text()
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.replace("## Screenshots\n", "## Screenshots\n\n" + block + "\n", 1)
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    import asyncio

    with demo_server("gavel-admin-shots-") as base:
        world = world_of(Api(base))
        made, skipped = asyncio.run(shoot(base, world))
        write_doc(made)
        total = sum((OUT / f"{name}.png").stat().st_size for name, _ in made)
        print(json.dumps({"screens": len(made), "skipped": len(skipped), "png_bytes": total}))


if __name__ == "__main__":
    main()
