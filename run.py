"""Gavel's entry point: parse the settings, refuse what production must not run with, start the
embedded servers, then run `composition.service.Service` until SIGINT or SIGTERM.

python run.py --help
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import uvloop

from composition.settings import Settings, SettingsError, parse_settings, production_problems
from persistence.embedded import Services
from persistence.logs import setup_logging

# Only what starts the embedded servers is imported up front: the rest of the service (about a
# second of imports) is imported in `main` while they boot, so `make run` answers sooner.
if TYPE_CHECKING:
    from composition.service import Service

log = logging.getLogger("gavel")


async def serve(config: Settings, services: Services, service_type: type[Service]) -> int:
    service = service_type(config, services)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.stopping.set)
    await service.start()
    print(service.banner(), flush=True)
    await service.stopping.wait()
    log.info("shutting down")
    await service.stop()
    return service.exit_code


def main(argv: list[str] | None = None, service_type: type[Service] | None = None) -> int:
    """`service_type`: composition.service.Service, or a subclass (the benchmarks' variants)."""
    try:
        config = parse_settings(argv)
    except SettingsError as error:
        print(f"gavel: {error}", file=sys.stderr)
        return 2
    if config.production:
        problems = production_problems(config)
        if problems:
            for problem in problems:
                print(f"gavel: GAVEL_ENV=production refuses {problem}", file=sys.stderr)
            return 2
    # An unreadable or wrong Alipay key file stops start-up with one line, before anything starts.
    key_trouble = alipay_key_problem(config)
    if key_trouble is not None:
        print(f"gavel: {key_trouble}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if config.mongodb_url:
        env["MONGODB_URL"] = config.mongodb_url
    if config.redis_url:
        env["REDIS_URL"] = config.redis_url
    # Embedded servers start from the main thread (their life is tied to it) before the loop runs;
    # the service's modules are imported while they boot.
    pending = Services.spawn_from_env(config.data_dir, env)
    try:
        from composition.service import Service
        from gateway.edge import raise_open_file_limit

        raise_open_file_limit()
        services = pending.ready()
    except BaseException:
        pending.stop()
        raise
    with services:
        return uvloop.run(serve(config, services, service_type or Service))


def alipay_key_problem(config: Settings) -> str | None:
    """The Alipay key files' problem, if any. Only PAYMENT_PROVIDER=alipay reads key files, so only
    then are the payments modules imported here (development start-up imports them later)."""
    if config.payment_provider != "alipay":
        return None
    from composition.bootstrap import payments_config
    from payments.config import key_problem

    return key_problem(payments_config(config))


if __name__ == "__main__":
    sys.exit(main())
