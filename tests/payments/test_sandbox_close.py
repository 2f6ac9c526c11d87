"""Closing the sandbox provider at stop: a delivery task's failure is logged, not swallowed."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

import pytest
import tornado.httpclient

from engine.settle.ports import PaymentRouter
from payments.sandbox import SandboxProvider, load_or_create_sandbox_keys


async def test_aclose_logs_a_delivery_that_fails_while_stopping(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    private_pem, public_pem = load_or_create_sandbox_keys(tmp_path)
    db: Any = {}  # no delivery reaches the database in this test
    provider = SandboxProvider(
        "http://127.0.0.1:1",
        "gavel-sandbox",
        private_pem,
        public_pem,
        PaymentRouter(),
        tornado.httpclient.AsyncHTTPClient(force_instance=True),
        db=db,
    )
    started = asyncio.Event()

    async def delivery_that_breaks_on_cancel() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("notify record half-written") from None

    task = asyncio.create_task(delivery_that_breaks_on_cancel())
    provider._tasks.add(task)
    await started.wait()
    with caplog.at_level(logging.ERROR, logger="gavel"):
        await provider.aclose()
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and "notify record half-written" in str(errors[0].exc_info[1])
