"""The Alipay provider verifies notifications with Alipay's public key: a correctly signed one is
applied, a tampered amount is refused. Keys are generated here; MongoDB is the real one."""

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.settle.ports import PaymentRequest, PaymentRouter
from payments.alipay import AlipayAdapter
from payments.signing import sign_params
from payments.trade_numbers import new_trade_no
from tests.gateway.conftest import AppServer

APP_ID = "2021000000000001"


def pem_pair() -> tuple[rsa.RSAPrivateKey, bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, private, public


def notify(adapter: AlipayAdapter, out_trade_no: str, amount: str) -> dict[str, str]:
    return {
        "app_id": APP_ID,
        "charset": "utf-8",
        "notify_id": "n-1",
        "notify_time": "2026-01-01 12:00:00",
        "notify_type": "trade_status_sync",
        "out_trade_no": adapter.to_provider_trade_no(out_trade_no),
        "total_amount": amount,
        "trade_no": "2026010122001400000000000001",
        "trade_status": "TRADE_SUCCESS",
        "version": "1.0",
    }


def signed(params: dict[str, str], key: rsa.RSAPrivateKey) -> dict[str, str]:
    return {**params, "sign": sign_params(params, key), "sign_type": "RSA2"}


async def test_alipay_accepts_a_signed_notify_and_refuses_a_tampered_amount(app_server: AppServer) -> None:
    alipay_key, _, alipay_public = pem_pair()
    _, app_private, _ = pem_pair()
    router = PaymentRouter()
    paid: list[tuple[str, int]] = []

    async def on_paid(out_trade_no: str, amount: int) -> None:
        paid.append((out_trade_no, amount))

    router.register("shop", on_paid)
    adapter = AlipayAdapter(
        APP_ID,
        app_private,
        alipay_public,
        db=app_server.ctx.db,
        router=router,
        notify_url="https://gavel.example/api/v1/payments/notify",
        return_url="https://gavel.example/api/v1/payments/return",
    )
    trade_no = new_trade_no("shop")
    await adapter.create_payment(PaymentRequest(trade_no, 12_345, "Courses", 7))

    # The amount changed after signing: the signature no longer verifies.
    tampered = {**signed(notify(adapter, trade_no, "123.45"), alipay_key), "total_amount": "0.01"}
    refused = await adapter.handle_notification(tampered)
    assert (refused.ok, refused.status) == (False, 400)
    # Signed, but by someone else's key (a forger's): refused too.
    forger_key, _, _ = pem_pair()
    forged = await adapter.handle_notification(signed(notify(adapter, trade_no, "123.45"), forger_key))
    assert (forged.ok, forged.status) == (False, 400)
    # Correctly signed with the wrong amount: verified, still refused (it is not what we asked).
    wrong = await adapter.handle_notification(signed(notify(adapter, trade_no, "0.01"), alipay_key))
    assert (wrong.ok, wrong.status) == (False, 400)
    assert paid == []
    record = await app_server.ctx.db.payments.find_one({"_id": trade_no})
    assert record is not None and record["status"] == "pending" and record["user_id"] == 7

    accepted = await adapter.handle_notification(signed(notify(adapter, trade_no, "123.45"), alipay_key))
    assert (accepted.ok, accepted.status) == (True, 200)
    assert paid == [(trade_no, 12_345)]
    record = await app_server.ctx.db.payments.find_one({"_id": trade_no})
    assert record is not None and record["status"] == "paid" and record["handled"] is True
