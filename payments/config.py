"""Choosing and building the payment provider from the Settings (composition/settings.py).

`PAYMENT_PROVIDER=alipay` builds the Alipay RSA2 adapter from key files; `sandbox` the development
stand-in (its key pair is generated under DATA_DIR/payments/). `key_problem` reads and checks the
Alipay key files before anything starts, so a wrong file stops start-up with one line.
"""

import dataclasses
import pathlib
from typing import TYPE_CHECKING

import tornado.httpclient

from engine.settle.ports import PaymentRouter
from payments.alipay import DEFAULT_GATEWAY_URL, AlipayAdapter
from payments.provider import SignedProvider
from payments.sandbox import NOTIFY_PATH, SandboxProvider, load_or_create_sandbox_keys
from payments.signing import load_private_key, load_public_key
from web.context import AppContext

if TYPE_CHECKING:
    from composition.settings import Settings

RETURN_PATH = "/api/v1/payments/return"


@dataclasses.dataclass(frozen=True)
class PaymentsConfig:
    """What `build_provider` needs; `from_settings` takes it from the service's Settings."""

    provider: str = "sandbox"  # "sandbox" or "alipay"
    app_id: str = "gavel-sandbox"
    data_dir: str = "var"  # the sandbox key pair lives under DATA_DIR/payments/
    alipay_app_private_key_path: str | None = None
    alipay_public_key_path: str | None = None
    alipay_gateway_url: str = DEFAULT_GATEWAY_URL
    alipay_seller_id: str | None = None
    notify_url: str = ""  # default: the public origin + /api/v1/payments/notify
    return_url: str = ""  # default: the public origin + /api/v1/payments/return

    @classmethod
    def from_settings(cls, settings: "Settings") -> "PaymentsConfig":
        if settings.payment_provider == "alipay":
            return cls(
                provider="alipay",
                app_id=settings.alipay_app_id,
                data_dir=str(settings.data_dir),
                alipay_app_private_key_path=_path(settings.alipay_private_key_file),
                alipay_public_key_path=_path(settings.alipay_public_key_file),
                alipay_gateway_url=settings.alipay_gateway_url,
                alipay_seller_id=settings.alipay_seller_id,
                notify_url=settings.alipay_notify_url,
                return_url=settings.alipay_return_url,
            )
        return cls(provider="sandbox", data_dir=str(settings.data_dir))


def _path(value: pathlib.Path | None) -> str | None:
    return None if value is None else str(value)


def key_problem(config: PaymentsConfig) -> str | None:
    """One line naming the setting whose key file cannot be read or is not an RSA key, else None."""
    if config.provider != "alipay":
        return None
    checks = (
        ("ALIPAY_PRIVATE_KEY_FILE", config.alipay_app_private_key_path, load_private_key, "RSA private key"),
        ("ALIPAY_PUBLIC_KEY_FILE", config.alipay_public_key_path, load_public_key, "RSA public key"),
    )
    for name, path, load, what in checks:
        if not path:
            return f"{name}: required with PAYMENT_PROVIDER=alipay"
        try:
            data = pathlib.Path(path).read_bytes()
        except OSError as error:
            return f"{name}: cannot read {path}: {error.strerror or error}"
        try:
            load(data)
        except (ValueError, TypeError) as error:
            # cryptography's own message is several lines; one is enough to find the file.
            return f"{name}: {path} is not a PEM or base64 {what} ({str(error).splitlines()[0][:80]})"
    return None


def build_provider(
    ctx: AppContext,
    config: PaymentsConfig,
    router: PaymentRouter,
    http_client: tornado.httpclient.AsyncHTTPClient,
) -> SignedProvider:
    """The configured provider, kept as `ctx.payment_provider` (and the router as
    `ctx.payment_router`). `ctx.base_url` must be the public origin."""
    base_url = ctx.base_url.rstrip("/")
    provider: SignedProvider
    if config.provider == "alipay":
        problem = key_problem(config)
        if problem is not None:
            raise ValueError(problem)
        assert config.alipay_app_private_key_path and config.alipay_public_key_path  # key_problem checked
        provider = AlipayAdapter(
            config.app_id,
            pathlib.Path(config.alipay_app_private_key_path).read_text(),
            pathlib.Path(config.alipay_public_key_path).read_text(),
            config.alipay_gateway_url,
            db=ctx.db,
            router=router,
            notify_url=config.notify_url or base_url + NOTIFY_PATH,
            return_url=config.return_url or base_url + RETURN_PATH,
            http_client=http_client,
            seller_id=config.alipay_seller_id,
        )
    elif config.provider == "sandbox":
        private_pem, public_pem = load_or_create_sandbox_keys(config.data_dir)
        provider = SandboxProvider(
            base_url, config.app_id, private_pem, public_pem, router, http_client, db=ctx.db
        )
    else:
        raise ValueError(f"unknown payment provider {config.provider!r}")
    ctx.payment_provider = provider
    ctx.payment_router = router
    return provider


def provider_of(ctx: AppContext) -> SignedProvider:
    provider = ctx.payment_provider
    if provider is None:
        raise RuntimeError("ctx.payment_provider is not set: build_provider(...) first")
    return provider
