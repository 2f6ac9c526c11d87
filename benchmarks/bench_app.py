"""The bidder app's first screen and page weight, in Debian's chromium, against `run.py` in
development mode with its demo data (as `make run` starts it).

For each of `--rounds` cold loads (a new browser context: empty cache, phone size 390 × 844):
- `first_screen_ms`: navigation start → the first session card is visible (the sessions list is
  usable);
- `lot_ms`: a lot page opened cold → its bid panel is visible;
- the baseline, in the same run and browser: a cold load of `/healthz` (a tiny document from the
  same server), so `first_screen_ratio` = first screen ÷ baseline says what the app itself costs.
Page weight: the JS and CSS bytes (uncompressed) the browser fetched for the first screen, and
after visiting every account screen too.

    .venv/bin/python benchmarks/bench_app.py [--rounds 5]

Prints one JSON object. Targets (issue 20): page weight ≤ 150 KiB, first screen < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_e2e import gavel_env  # noqa: E402
from persistence.embedded import Services, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
PHONE = {"width": 390, "height": 844}


def start_gavel(services: Services, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = gavel_env(
        services.mongo_url,
        services.redis_url,
        f"bench_app_{os.getpid()}",
        PORT=str(port),
        DATA_DIR=str(root / "data"),
    )
    env["SEED_DEMO"] = "1"  # the pages as `make run` shows them
    log = (root / "gavel.log").open("ab")
    process = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((root / "gavel.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(base + "/api/v1/sessions", timeout=2) as answer:
                if json.loads(answer.read())["total"] > 0:  # the demo data is in
                    return process, base
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError("gavel did not start")


async def cold_load(browser: Any, url: str, ready: str) -> tuple[float, int]:
    """ms from navigation start until `ready` is visible, and the JS+CSS bytes fetched."""
    context = await browser.new_context(viewport=PHONE, locale="zh-CN")
    page = await context.new_page()
    weights: list[int] = []

    async def weigh(response: Any) -> None:
        if response.request.resource_type in ("script", "stylesheet"):
            weights.append(len(await response.body()))

    reads: list[asyncio.Future[None]] = []
    page.on("response", lambda response: reads.append(asyncio.ensure_future(weigh(response))))
    started = time.perf_counter()
    await page.goto(url)
    if ready:
        await page.locator(ready).first.wait_for(state="visible", timeout=30_000)
    elapsed = (time.perf_counter() - started) * 1000
    await page.wait_for_load_state("networkidle")
    await asyncio.gather(*reads)
    await context.close()
    return elapsed, sum(weights)


async def account_weight(browser: Any, base: str) -> int:
    """JS+CSS bytes after the first screen and every account screen (signed in as alice)."""
    context = await browser.new_context(viewport=PHONE, locale="zh-CN")
    page = await context.new_page()
    weights: dict[str, int] = {}

    async def weigh(response: Any) -> None:
        if response.request.resource_type in ("script", "stylesheet"):
            weights[response.url] = len(await response.body())

    reads: list[asyncio.Future[None]] = []
    page.on("response", lambda response: reads.append(asyncio.ensure_future(weigh(response))))
    await page.goto(base + "/")
    await page.evaluate(
        """async () => {
            const r = await fetch('/api/v1/auth/login', {method: 'POST',
              headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({username: 'alice', password: 'alice-demo-pass'})});
            localStorage.setItem('gavel-token', (await r.json()).token);
        }"""
    )
    screens = ("/", "/lot/1", "/me", "/me/orders", "/me/addresses", "/me/coupons", "/me/wallet")
    screens += ("/me/deposits",)
    for path in screens:
        await page.goto(base + "/#" + path)
        await page.reload()
        await page.wait_for_load_state("networkidle")
        await asyncio.gather(*reads)
    await context.close()
    return sum(weights.values())


async def measure(base: str, rounds: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await cold_load(browser, base + "/", ".session-card")  # warm the server's caches
            baseline, first, lot, weight = [], [], [], 0
            for _ in range(rounds):
                baseline.append((await cold_load(browser, base + "/healthz", ""))[0])
                elapsed, weight = await cold_load(browser, base + "/", ".session-card")
                first.append(elapsed)
                lot.append((await cold_load(browser, base + "/#/lot/1", ".bid-panel"))[0])
            everything = await account_weight(browser, base)
        finally:
            await browser.close()
    median_first = statistics.median(first)
    return {
        "benchmark": "bench_app",
        "rounds": rounds,
        "first_screen_ms": {"median": round(median_first), "all": [round(x) for x in first]},
        "lot_ms": {"median": round(statistics.median(lot)), "all": [round(x) for x in lot]},
        "baseline_healthz_ms": {
            "median": round(statistics.median(baseline)),
            "all": [round(x) for x in baseline],
        },
        "first_screen_ratio_to_baseline": round(median_first / statistics.median(baseline), 2),
        "first_screen_js_css_bytes": weight,
        "all_screens_js_css_bytes": everything,
        "page_weight_limit_bytes": 150 * 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-app-") as temporary:
        root = Path(temporary)
        with Services.from_env(root / "services", os.environ) as services:
            process, base = start_gavel(services, root)
            try:
                result = asyncio.run(measure(base, args.rounds))
            finally:
                process.terminate()
                process.wait(30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
