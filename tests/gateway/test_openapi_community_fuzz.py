"""schemathesis against docs/openapi-community.yaml on the running service: no 5xx on any community
endpoint, whatever the input (admin token, so the admin routes are fuzzed too)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_run import ServiceProcess, call, service  # noqa: F401  (fixture used by name)

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi-community.yaml"


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_in_the_community_api(
    service: ServiceProcess,  # noqa: F811
) -> None:
    await asyncio.to_thread(service.start)
    code, answer = await call(
        "POST",
        service.base + "/api/v1/admin/login",
        {"username": "admin", "password": "admin-password-for-tests"},
    )
    assert code == 200, answer
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        str(SPEC),
        "--url",
        service.base,
        "--header",
        f"Authorization: Bearer {answer['token']}",
        "--max-examples",
        "10",
        "--checks",
        "not_a_server_error",
        "--seed",
        "2026",
    ]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=300)
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("Test cases:")[-1], summary
