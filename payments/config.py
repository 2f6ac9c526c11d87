"""Choosing and building the payment provider from plain values (`PaymentsConfig`).

`PAYMENT_PROVIDER=alipay` builds the Alipay RSA2 adapter from key files; `sandbox` the development
stand-in (its key pair is generated under DATA_DIR/payments/). `key_problem` reads and checks the
Alipay key files before anything starts, so a wrong file stops start-up with one line.
"""

import dataclasses
import pathlib

import tornado.httpclient

from engine.settle.ports import PaymentRouter
from payments.alipay import DEFAULT_GATEWAY_URL, AlipayAdapter
from payments.provider import SignedProvider
from payments.sandbox import NOTIFY_PATH, SandboxProvider, load_or_create_sandbox_keys
from payments.signing import load_private_key, load_public_key
from persistence.mongo import Database

RETURN_PATH = "/api/v1/payments/return"


@dataclasses.dataclass(frozen=True)
class PaymentsConfig:
    """What `build_provider` needs; composition/bootstrap.py `payments_config` fills it from the
    Settings, so this package never reads them."""

    provider: str = "sandbox"  # "sandbox" or "alipay"
    app_id: str = "gavel-sandbox"
    data_dir: str = "var"  # the sandbox key pair lives under DATA_DIR/payments/
    alipay_app_private_key_path: str | None = None
    alipay_public_key_path: str | None = None
    alipay_gateway_url: str = DEFAULT_GATEWAY_URL
    alipay_seller_id: str | None = None
    notify_url: str = ""  # default: the public origin + /api/v1/payments/notify
    return_url: str = ""  # default: the public origin + /api/v1/payments/return


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
    config: PaymentsConfig,
    router: PaymentRouter,
    http_client: tornado.httpclient.AsyncHTTPClient,
    *,
    db: Database,
    base_url: str,
) -> SignedProvider:
    """The configured provider over our payment records in `db`; `base_url` is the public origin
    (the notify and return URLs default to it)."""
    base_url = base_url.rstrip("/")
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
            db=db,
            router=router,
            notify_url=config.notify_url or base_url + NOTIFY_PATH,
            return_url=config.return_url or base_url + RETURN_PATH,
            http_client=http_client,
            seller_id=config.alipay_seller_id,
        )
    elif config.provider == "sandbox":
        private_pem, public_pem = load_or_create_sandbox_keys(config.data_dir)
        provider = SandboxProvider(
            base_url, config.app_id, private_pem, public_pem, router, http_client, db=db
        )
    else:
        raise ValueError(f"unknown payment provider {config.provider!r}")
    return provider
