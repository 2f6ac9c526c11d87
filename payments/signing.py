"""RSA2 (RSA PKCS#1 v1.5 with SHA-256) as Alipay uses it: the signing string, keys, sign, verify.

RSA2 = RSA PKCS#1 v1.5 with SHA-256 over the `k=v` pairs sorted by key, joined with `&`, leaving
out `sign`, `sign_type` and empty values (Alipay's rule for notifications), base64.
"""

import base64
from collections.abc import Mapping, Sequence
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGN_TYPE: Final = "RSA2"
KEY_BITS: Final = 2048


def signing_string(params: Mapping[str, str], exclude: Sequence[str] = ("sign", "sign_type")) -> str:
    """`k=v` pairs sorted by key and joined with `&`, without `exclude` and empty values.

    Notifications exclude `sign` and `sign_type`; Alipay's *requests* exclude only `sign`.
    """
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def load_private_key(text: str | bytes) -> rsa.RSAPrivateKey:
    """A PEM private key, or the bare base64 (PKCS#8 or PKCS#1 DER) the Alipay console hands out."""
    data = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password=None)
    else:
        key = serialization.load_der_private_key(base64.b64decode(b"".join(data.split())), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("an RSA private key is required")
    return key


def load_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    data = text.encode() if isinstance(text, str) else text
    if b"-----BEGIN" in data:
        key = serialization.load_pem_public_key(data)
    else:
        key = serialization.load_der_public_key(base64.b64decode(b"".join(data.split())))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("an RSA public key is required")
    return key


def rsa2_sign(message: str, key: rsa.RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(message: str, signature: str, key: rsa.RSAPublicKey) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_params(
    params: Mapping[str, str], key: rsa.RSAPrivateKey, exclude: Sequence[str] = ("sign", "sign_type")
) -> str:
    return rsa2_sign(signing_string(params, exclude), key)
