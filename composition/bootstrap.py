"""The bootstrap: from `Settings` to the typed context and services every handler receives.

run.py's `Service` calls these in order; tests and benchmarks call the same functions, so there is
one way a process is put together. Nothing here decides business rules: it only builds and wires.
"""

from __future__ import annotations

import pathlib
from typing import Any

import redis.asyncio
import tornado.httpclient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from composition.settings import Settings
from engine.settle.ports import PaymentRouter
from gateway.edge import EdgeConfig, EdgeLimits
from gateway.rest_orders import Settlement, build_settlement
from payments.config import PaymentsConfig, build_provider
from payments.provider import SignedProvider
from persistence.accounts import Accounts
from web.context import AppContext, Limits
from web.signin import SigninPolicy


def signin_policy(config: Settings) -> SigninPolicy:
    """The sign-in throttle's limits (web/signin.py)."""
    return SigninPolicy(
        failures_per_account_address=config.login_failures_per_account_address,
        failures_per_address=config.login_failures_per_address,
        failures_per_account=config.login_failures_per_account,
        backoff_max_ms=config.login_backoff_max_ms,
        registrations_per_address=config.registrations_per_address,
    )


def cookie_secret(config: Settings) -> bytes:
    """COOKIE_SECRET as the key the signed cookies use; b"" when unset (the context derives one)."""
    return (config.cookie_secret or "").encode()


def limits(config: Settings) -> Limits:
    """The per-client limits the handlers apply (the edge's own caps are gateway/edge.py's)."""
    return Limits(
        ws_connections_per_ip=config.max_connections_per_ip,
        websockets_per_user=config.websockets_per_user,
        metrics_token=config.metrics_token,
    )


def edge_config(config: Settings) -> EdgeConfig:
    """The edge server's caps, timeouts, trusted proxies and TLS files (gateway/edge.py)."""
    return EdgeConfig(
        limits=EdgeLimits(
            max_connections_per_ip=config.max_connections_per_ip,
            max_connections=config.max_connections,
            idle_timeout_s=config.idle_timeout_ms / 1000,
            header_timeout_s=config.header_timeout_ms / 1000,
            trusted_proxies=config.trusted_proxies,
        ),
        tls_cert=config.tls_cert,
        tls_key=config.tls_key,
    )


def payments_config(config: Settings) -> PaymentsConfig:
    """PAYMENT_PROVIDER and the ALIPAY_* settings as the plain values payments/config.py builds from."""
    if config.payment_provider == "alipay":
        return PaymentsConfig(
            provider="alipay",
            app_id=config.alipay_app_id,
            data_dir=str(config.data_dir),
            alipay_app_private_key_path=_path(config.alipay_private_key_file),
            alipay_public_key_path=_path(config.alipay_public_key_file),
            alipay_gateway_url=config.alipay_gateway_url,
            alipay_seller_id=config.alipay_seller_id,
            notify_url=config.alipay_notify_url,
            return_url=config.alipay_return_url,
        )
    return PaymentsConfig(provider="sandbox", data_dir=str(config.data_dir))


def _path(value: pathlib.Path | None) -> str | None:
    return None if value is None else str(value)


def build_context(
    config: Settings,
    *,
    engine: Any,  # engine.engine.Engine, or a gateway's persistence.cluster.RemoteEngine (same surface)
    client: AsyncMongoClient[dict[str, Any]],
    db: AsyncDatabase[dict[str, Any]],
    redis_client: redis.asyncio.Redis,
    accounts: Accounts,
    pseudonym_secret: bytes,
) -> AppContext:
    """The context with every setting the handlers read; services are added by the steps below."""
    return AppContext(
        engine=engine,
        client=client,
        db=db,
        redis=redis_client,
        accounts=accounts,
        pseudonym_secret=pseudonym_secret,
        base_url=config.base_url,
        role=config.role,
        limits=limits(config),
        signin_policy=signin_policy(config),
        cookie_secret=cookie_secret(config),
        media_dir=config.data_dir / "media",
        community_rate_limits=config.community_rate_limits,
        business_tz=config.business_tz,
        # Unpaid shop orders are released after SHOP_PENDING_TIMEOUT (seconds, at least one).
        shop_pending_timeout_seconds=max(1, config.shop_pending_timeout_ms // 1000),
    )


def build_payments(
    ctx: AppContext, config: Settings, http_client: tornado.httpclient.AsyncHTTPClient
) -> tuple[SignedProvider, Settlement]:
    """The payment provider (PAYMENT_PROVIDER) and auction settlement over it, kept on `ctx`; the
    router sends each provider notify to its owner (deposits, shop, orders) by trade-number prefix."""
    router = PaymentRouter()
    provider = build_provider(payments_config(config), router, http_client, db=ctx.db, base_url=ctx.base_url)
    ctx.payment_provider = provider
    ctx.payment_router = router
    settlement = build_settlement(ctx, deadline_ms=config.order_deadline_ms)
    return provider, settlement
