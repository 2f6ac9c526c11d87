"""The settings table: defaults, environment, flags, durations, one-line errors, production refusals."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from composition.settings import (
    SPECS,
    Settings,
    SettingsError,
    parse_duration_ms,
    parse_settings,
    production_problems,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_dataclass() -> None:
    parsed = parse_settings([], env={})
    assert parsed == Settings()
    assert parsed.order_deadline_ms == 24 * 3_600_000
    assert parsed.shop_pending_timeout_ms == 30 * 60_000
    assert parsed.base_url == "http://127.0.0.1:8000"


def test_every_spec_is_a_field_with_a_distinct_variable() -> None:
    fields = {field for field in Settings.__dataclass_fields__}
    assert {spec.field for spec in SPECS} == fields
    assert len({spec.env for spec in SPECS}) == len(SPECS)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("45s", 45_000),
        ("15m", 900_000),
        ("24h", 86_400_000),
        ("2d", 172_800_000),
        ("1h30m", 5_400_000),
        ("500ms", 500),
        (" 10S ", 10_000),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "45", "3x", "-5s", "0s", "1.5h", "h", "5s5", "s5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_environment_and_flags() -> None:
    env = {
        "ORDER_DEADLINE": "45s",
        "SHOP_PENDING_TIMEOUT": "15m",
        "PORT": "9001",
        "TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16",
    }
    parsed = parse_settings(["--port", "9002"], env=env)
    assert parsed.order_deadline_ms == 45_000
    assert parsed.shop_pending_timeout_ms == 900_000
    assert parsed.port == 9002  # the flag wins
    assert parsed.trusted_proxies == (
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("192.168.0.0/16"),
    )


def test_the_older_order_deadline_hours_still_reads() -> None:
    assert parse_settings([], env={"ORDER_DEADLINE_HOURS": "2"}).order_deadline_ms == 2 * 3_600_000
    both = {"ORDER_DEADLINE_HOURS": "2", "ORDER_DEADLINE": "30m"}
    assert parse_settings([], env=both).order_deadline_ms == 30 * 60_000


@pytest.mark.parametrize(
    ("env", "starts"),
    [
        ({"ORDER_DEADLINE": "tomorrow"}, "ORDER_DEADLINE: 'tomorrow' is not a duration"),
        ({"SHOP_PENDING_TIMEOUT": "30"}, "SHOP_PENDING_TIMEOUT: '30' is not a duration"),
        ({"PORT": "http"}, "PORT: 'http' is not a port"),
        ({"TRUSTED_PROXIES": "10.0.0.300"}, "TRUSTED_PROXIES: '10.0.0.300' is not an IP address"),
        ({"PAYMENT_PROVIDER": "paypal"}, "PAYMENT_PROVIDER: 'paypal' is not one of sandbox, alipay"),
        ({"GAVEL_ENV": "prod"}, "GAVEL_ENV: 'prod' is not one of"),
        ({"TLS_CERT": "/nonexistent.pem"}, "TLS_CERT and TLS_KEY: set both"),
        ({"PAYMENT_PROVIDER": "alipay"}, "ALIPAY_APP_ID: required"),
        ({"MONGODB_URL": ""}, None),
    ],
)
def test_one_line_errors(env: dict[str, str], starts: str | None) -> None:
    if starts is None:
        parse_settings([], env=env)
        return
    with pytest.raises(SettingsError) as raised:
        parse_settings([], env=env)
    message = str(raised.value)
    assert message.startswith(starts), message
    assert "\n" not in message


def test_a_secret_is_never_echoed() -> None:
    # No secret setting has a parser that can fail today; the rule is checked on the table itself.
    assert {spec.env for spec in SPECS if spec.secret} >= {"ADMIN_PASSWORD", "COOKIE_SECRET", "METRICS_TOKEN"}


def test_production_refuses_the_development_defaults() -> None:
    problems = production_problems(parse_settings([], env={"GAVEL_ENV": "production"}))
    names = [problem.split(":")[0] for problem in problems]
    assert names == [
        "PAYMENT_PROVIDER",
        "SEED_DEMO",
        "ADMIN_PASSWORD",
        "COOKIE_SECRET",
        "TLS_CERT/TLS_KEY or TRUSTED_PROXIES",
    ]


def test_production_accepts_a_complete_configuration(tmp_path: Path) -> None:
    for name in ("app.pem", "alipay.pem"):
        (tmp_path / name).write_text("-----BEGIN PUBLIC KEY-----\n")
    env = {
        "GAVEL_ENV": "production",
        "PAYMENT_PROVIDER": "alipay",
        "ALIPAY_APP_ID": "2021000000000000",
        "ALIPAY_PRIVATE_KEY_FILE": str(tmp_path / "app.pem"),
        "ALIPAY_PUBLIC_KEY_FILE": str(tmp_path / "alipay.pem"),
        "PUBLIC_URL": "https://gavel.example",
        "SEED_DEMO": "0",
        "ADMIN_PASSWORD": "a-long-and-unknown-passphrase",
        "COOKIE_SECRET": "x" * 40,
        "TRUSTED_PROXIES": "10.0.0.0/8",
    }
    assert production_problems(parse_settings([], env=env)) == []
    weak = production_problems(parse_settings([], env={**env, "ADMIN_PASSWORD": "changeme"}))
    assert [p.split(":")[0] for p in weak] == ["ADMIN_PASSWORD"]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_py_stops_on_a_bad_value_with_one_line_and_no_traceback() -> None:
    result = _run({"ORDER_DEADLINE": "3x"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gavel: ORDER_DEADLINE: '3x' is not a duration (write e.g. 45s, 15m, 24h, 1h30m)"
    ]
    assert "Traceback" not in result.stderr + result.stdout


def test_run_py_refuses_production_with_sandbox_and_names_each_setting() -> None:
    result = _run({"GAVEL_ENV": "production"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        "gavel: GAVEL_ENV=production refuses PAYMENT_PROVIDER: "
        "the sandbox marks payments paid without money; use alipay"
    )
    assert any("SEED_DEMO" in line for line in lines) and "Traceback" not in result.stderr
