"""Token verification: pinned algorithms, required claims, key confusion refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import AuthError, TokenVerifier
from gateway.config import AuthSettings, ConfigError

SECRET = "s" * 32


def claims(**extra: Any) -> dict[str, Any]:
    base = {"sub": str(uuid.uuid4()), "sid": "s1", "jti": "j1", "exp": int(time.time()) + 60}
    return {**base, **extra}


def test_hs256_accepted_and_claims_required() -> None:
    verifier = TokenVerifier(AuthSettings(jwt_secret=SECRET))
    good = claims()
    assert verifier.verify(jwt.encode(good, SECRET, algorithm="HS256"))["sid"] == "s1"
    for missing in ("exp", "sub", "sid", "jti"):
        partial = {k: v for k, v in good.items() if k != missing}
        with pytest.raises(AuthError, match="invalid token"):
            verifier.verify(jwt.encode(partial, SECRET, algorithm="HS256"))
    with pytest.raises(AuthError, match="sub must be a UUID"):
        verifier.verify(jwt.encode(claims(sub="bob"), SECRET, algorithm="HS256"))


def test_other_algorithms_refused() -> None:
    verifier = TokenVerifier(AuthSettings(jwt_secret=SECRET))
    with pytest.raises(AuthError):
        verifier.verify(jwt.encode(claims(), SECRET * 2, algorithm="HS512"))
    with pytest.raises(AuthError):
        verifier.verify(jwt.encode(claims(), "", algorithm="none"))


def test_short_secret_and_mixed_keys_rejected_at_start() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        TokenVerifier(AuthSettings(jwt_secret="short"))
    with pytest.raises(ConfigError, match="does not fit"):
        TokenVerifier(AuthSettings(jwt_secret=SECRET, jwt_algorithms="RS256"))


def test_audience_and_issuer_checked_when_configured() -> None:
    verifier = TokenVerifier(AuthSettings(jwt_secret=SECRET, jwt_audience="chat", jwt_issuer="idp"))
    ok = jwt.encode(claims(aud="chat", iss="idp"), SECRET, algorithm="HS256")
    assert verifier.verify(ok)
    for bad in (claims(aud="other", iss="idp"), claims(aud="chat", iss="evil"), claims()):
        with pytest.raises(AuthError):
            verifier.verify(jwt.encode(bad, SECRET, algorithm="HS256"))


def hs256_signed_with(key: bytes) -> str:
    """An HS256 token whose HMAC key is `key` (PyJWT itself refuses to make one with a PEM)."""
    header = base64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = base64url(json.dumps(claims()).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64url(signature)}"


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_public_keys_and_no_algorithm_confusion(tmp_path: Path) -> None:
    """RS256/ES256 verify with the public key; an HS256 token signed with that public key (the
    classic confusion attack) is refused."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "rsa.pem"
    key_file.write_bytes(pem)
    verifier = TokenVerifier(AuthSettings(jwt_public_key=str(key_file)))
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))
    with pytest.raises(AuthError):
        verifier.verify(hs256_signed_with(pem))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = (
        ec_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    ec_verifier = TokenVerifier(AuthSettings(jwt_public_key=ec_pem))
    assert ec_verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256"))
    with pytest.raises(AuthError):
        ec_verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))


def test_every_configured_secret_verifies_so_keys_rotate() -> None:
    """A secret file with the new secret first and the old one after: tokens signed with
    either are accepted; a third secret's are not."""
    old, new = "old-secret-0123456789abcdef0123456789", "new-secret-0123456789abcdef0123456789"
    verifier = TokenVerifier(AuthSettings(jwt_secret=f"{new}\n{old}\n"))
    for secret in (new, old):
        token = jwt.encode(claims(), secret, algorithm="HS256")
        assert verifier.verify(token)["sid"] == "s1"
    stranger = jwt.encode(claims(), "third-secret-0123456789abcdef012345", algorithm="HS256")
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(stranger)
    expired = jwt.encode(claims(exp=int(time.time()) - 60), old, algorithm="HS256")
    with pytest.raises(AuthError, match="token expired"):
        verifier.verify(expired)


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": 2**70},
        {"exp": 253402300800},  # one second past 9999-12-31
        {"iat": 2**70},
        {"nbf": -(2**70)},
        {"exp": 1e308},
    ],
)
def test_time_claims_out_of_range_are_refused(bad: dict[str, Any]) -> None:
    """A time no clock can show is an invalid token, never an overflow later on."""
    verifier = TokenVerifier(AuthSettings(jwt_secret=SECRET))
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(jwt.encode(claims(**bad), SECRET, algorithm="HS256"))


def test_hmac_secrets_are_prepared_once_through_pyjwts_public_registry() -> None:
    """The storm-time saving rides PyJWT's documented `register_algorithm`: the algorithm
    `jwt.decode` uses is ours, and a configured secret is prepared once, not per token."""
    from gateway import auth

    algorithm = jwt.get_algorithm_by_name("HS256")
    assert isinstance(algorithm, auth._PreparedHMAC)
    verifier = TokenVerifier(AuthSettings(jwt_secret=SECRET))
    for _ in range(3):
        verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert SECRET in algorithm._prepared
