"""run.py as a user runs it, with PAYMENT_PROVIDER=alipay configured from key files generated here.

The sandbox's routes are absent; a shop order's pay URL is Alipay's, signed with the app key from
the file; SHOP_PENDING_TIMEOUT (a few seconds here) releases the unpaid order; a bad key file stops
start-up with one line.
"""

import asyncio
import json
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from payments.signing import load_public_key, rsa2_verify, signing_string
from payments.trade_numbers import is_random_trade_no
from tests.test_run import ROOT, ServiceProcess, call, login

GATEWAY = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"


def write_keys(directory: Path) -> tuple[Path, Path, bytes]:
    """App private key (PKCS#8 PEM) and an 'Alipay' public key; returns the app's public key too."""
    directory.mkdir(parents=True, exist_ok=True)
    app = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alipay = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    private_file, public_file = directory / "app_private.pem", directory / "alipay_public.pem"
    private_file.write_bytes(
        app.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public_file.write_bytes(alipay.public_key().public_bytes(serialization.Encoding.PEM, public))
    return private_file, public_file, app.public_key().public_bytes(serialization.Encoding.PEM, public)


def alipay_env(private_file: Path, public_file: Path) -> dict[str, str]:
    return {
        "PAYMENT_PROVIDER": "alipay",
        "ALIPAY_APP_ID": "2021000000000001",
        "ALIPAY_PRIVATE_KEY_FILE": str(private_file),
        "ALIPAY_PUBLIC_KEY_FILE": str(public_file),
        "ALIPAY_GATEWAY_URL": GATEWAY,
        "PUBLIC_URL": "https://gavel.example",
    }


@pytest.fixture
def alipay_service(tmp_path: Path, mongo_url: str, redis_url: str) -> Iterator[tuple[ServiceProcess, bytes]]:
    private_file, public_file, app_public = write_keys(tmp_path / "keys")
    service = ServiceProcess(tmp_path / "data", mongo_url, redis_url, f"gavel_pay_{uuid.uuid4().hex[:8]}")
    service.env |= alipay_env(private_file, public_file) | {"SHOP_PENDING_TIMEOUT": "2s"}
    yield service, app_public
    if service.process is not None and service.process.poll() is None:
        service.kill()


async def test_alipay_from_key_files_no_sandbox_routes_and_pending_timeout(
    alipay_service: tuple[ServiceProcess, bytes],
) -> None:
    service, app_public = alipay_service
    await asyncio.to_thread(service.start)
    base = service.base
    token = await login(base, "alice", "alice-demo-pass")  # demo data: development mode

    # No sandbox: neither its page, nor its script, nor its API exists.
    for path in (
        "/sandbox/pay/shop-" + "a" * 26,
        "/sandbox/sandbox-pay.js",
        "/api/v1/sandbox/payments/shop-x",
    ):
        code, _ = await call("GET", base + path, token=token)
        assert code == 404, path

    # A pending shop order is paid through Alipay: the URL is signed with the app key from the file.
    code, courses = await call("GET", base + "/api/v1/courses")
    assert code == 200, courses
    course_id = courses["items"][0]["id"]
    code, course = await call("GET", f"{base}/api/v1/courses/{course_id}")
    policy_id = course["policies"][0]["id"]
    body = {"course_id": course_id, "price_policy_id": policy_id}
    assert (await call("POST", base + "/api/v1/cart", body, token))[0] == 201
    assert (await call("POST", base + "/api/v1/checkout", {"course_ids": [course_id]}, token))[0] == 201
    code, placed = await call(
        "POST", base + "/api/v1/checkout/pay", {"balance": 0, "idempotency_key": "k"}, token
    )
    assert code == 201, placed
    gateway, _, query = placed["pay_url"].partition("?")
    assert gateway == GATEWAY
    params = dict(urllib.parse.parse_qsl(query, strict_parsing=True))
    assert params["app_id"] == "2021000000000001" and params["sign_type"] == "RSA2"
    assert params["notify_url"] == "https://gavel.example/api/v1/payments/notify"
    signature = params.pop("sign")
    assert rsa2_verify(signing_string(params, exclude=("sign",)), signature, load_public_key(app_public))
    out_trade_no = json.loads(params["biz_content"])["out_trade_no"].replace("_", "-")
    assert is_random_trade_no(out_trade_no)
    code, status = await call("GET", f"{base}/api/v1/payments/{out_trade_no}", token=token)
    assert code == 200 and status["provider"] == "alipay" and status["status"] == "pending"

    # SHOP_PENDING_TIMEOUT=2s: the unpaid order is released (polled; no timing asserted).
    order_no = placed["order"]["order_no"]
    for _ in range(300):
        code, order = await call("GET", f"{base}/api/v1/shop/orders/{order_no}", token=token)
        if order["status"] != "pending":
            break
        await asyncio.sleep(0.1)
    assert order["status"] == "cancelled_by_timeout"


def test_a_bad_key_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    private_file, public_file, _ = write_keys(tmp_path)
    private_file.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    result = subprocess.run(
        [sys.executable, "run.py"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DATA_DIR": str(tmp_path / "data"),
            **alipay_env(private_file, public_file),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gavel: ALIPAY_PRIVATE_KEY_FILE: {private_file} is not")
    assert "Traceback" not in result.stderr + result.stdout
