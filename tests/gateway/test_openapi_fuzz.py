"""schemathesis against docs/openapi.yaml on the running service: no 5xx, and every response
matches the documented status codes, content types and schemas."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_run import ServiceProcess, call, service  # noqa: F401  (fixture used by name)

ROOT = Path(__file__).resolve().parents[2]
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(service: ServiceProcess) -> None:  # noqa: F811
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
        str(ROOT / "docs" / "openapi.yaml"),
        "--url",
        service.base,
        "--header",
        f"Authorization: Bearer {answer['token']}",
        "--max-examples",
        "10",
        "--exclude-path",
        "/api/v1/auth/logout",  # it would revoke the token the rest of the run uses
        "--checks",
        CHECKS,
        "--seed",
        "2026",
    ]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=300)
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "failed" not in summary.split("Test cases:")[-1], summary
