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

import uvloop

from composition.bootstrap import payments_config
from composition.service import Service
from composition.settings import Settings, SettingsError, parse_settings, production_problems
from gateway.edge import raise_open_file_limit
from payments.config import key_problem
from persistence.embedded import Services
from persistence.logs import setup_logging

log = logging.getLogger("gavel")


async def serve(config: Settings, services: Services) -> int:
    service = Service(config, services)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, service.stopping.set)
    await service.start()
    print(service.banner(), flush=True)
    await service.stopping.wait()
    log.info("shutting down")
    await service.stop()
    return service.exit_code


def main(argv: list[str] | None = None) -> int:
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
    key_trouble = key_problem(payments_config(config))
    if key_trouble is not None:
        print(f"gavel: {key_trouble}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    raise_open_file_limit()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if config.mongodb_url:
        env["MONGODB_URL"] = config.mongodb_url
    if config.redis_url:
        env["REDIS_URL"] = config.redis_url
    # Embedded servers start from the main thread (their life is tied to it) before the loop runs.
    with Services.from_env(config.data_dir, env) as services:
        return uvloop.run(serve(config, services))


if __name__ == "__main__":
    sys.exit(main())
