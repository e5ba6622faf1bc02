"""Authentication: JWT verification (algorithms pinned), then the session and blacklist checks.

A token must carry `exp`, `sub` (user UUID), `sid` (session id) and `jti` (token id); `aud` and
`iss` are checked when configured. The session must exist in the session cache and belong to
`sub`, and `jti` must not be blacklisted. Redis errors propagate (as `caches.CacheUnavailable`)
so the caller can refuse with "try again later" instead of admitting anyone unchecked.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import HMACAlgorithm

from caches import SessionCache, SessionData
from caches.keys import valid_id
from gateway.config import AuthSettings, ConfigError
from gateway.errors import Error
from gateway.protocol.ids import parse_uuid

__all__ = [
    "AuthError",
    "Authenticator",
    "Identity",
    "TokenVerifier",
    "bearer_token",
    "mint_token",
    "signing_secrets",
]

log = logging.getLogger(__name__)

_REQUIRED_CLAIMS = ["exp", "sub", "sid", "jti"]
_MIN_SECRET_BYTES = 32
_LATEST_EPOCH = 253_402_300_799
"""9999-12-31T23:59:59Z, the last instant a timestamp on the wire can name."""
DEV_SECRET_FILE = "presence-gateway.secret"


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <jwt>` header: None when there is no header,
    "" when it is not a bearer token (which then fails verification like any bad token)."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class AuthError(Error):
    """The token or its session is not acceptable; the message is safe to show the client."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: uuid.UUID
    session_id: str
    token_id: str
    expires_at: float
    session: SessionData


class TokenVerifier:
    """Verifies signatures and claims with the configured key and no other algorithm."""

    def __init__(self, settings: AuthSettings) -> None:
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None
        self._leeway = settings.token_leeway
        configured = [a.strip() for a in settings.jwt_algorithms.split(",") if a.strip()]
        self._key: Any
        if settings.jwt_secret and settings.jwt_public_key:
            raise ConfigError("set either --jwt-secret or --jwt-public-key, not both")
        if settings.jwt_public_key:
            self._key = _load_public_key(settings.jwt_public_key)
            self._keys = [self._key]
            allowed = _algorithms_for(self._key)
        else:
            secret = settings.jwt_secret
            if not secret and not settings.dev:
                raise ConfigError(
                    "no JWT key: set --jwt-secret-file (or --jwt-secret) or --jwt-public-key; "
                    "--dev runs with a development secret"
                )
            if not secret:
                secret = dev_secret()
                log.warning(
                    "--dev: using the development secret in %s (never in production); "
                    "mint a token with: presence-gateway token --user <uuid>",
                    DEV_SECRET_FILE,
                )
            secrets_ = signing_secrets(secret)
            if any(len(s.encode()) < _MIN_SECRET_BYTES for s in secrets_):
                raise ConfigError(
                    f"--jwt-secret / GATEWAY_JWT_SECRET: at least {_MIN_SECRET_BYTES} bytes"
                )
            self._key = secrets_[0]
            self._keys = secrets_
            allowed = ["HS256", "HS384", "HS512"]
        if configured:
            wrong = [a for a in configured if a not in allowed]
            if wrong:
                raise ConfigError(
                    f"--jwt-algorithms: {', '.join(wrong)} does not fit the configured key "
                    f"(allowed: {', '.join(allowed)})"
                )
            self.algorithms = configured
        else:
            self.algorithms = allowed[:1] if isinstance(self._key, str) else allowed

    @property
    def signing_secret(self) -> str | None:
        """The HMAC secret that signs (development tokens); None with a public key."""
        return self._key if isinstance(self._key, str) else None

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; AuthError with a client-safe reason otherwise. Every configured
        secret is tried, so a key can be rotated without refusing tokens signed with the old."""
        try:
            claims = self._decode(token)
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {_reason(exc)}") from None
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and not (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and 0 <= value <= _LATEST_EPOCH
            ):
                raise AuthError(f"invalid token: {name} is not a time between 1970 and 9999")
        try:
            parse_uuid(claims["sub"])
            valid_id(str(claims["sid"]), "sid")
            valid_id(str(claims["jti"]), "jti")
        except ValueError:
            raise AuthError("invalid token: sub must be a UUID, sid and jti opaque ids") from None
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        for key in self._keys[:-1]:
            try:
                return self._decode_with(token, key)
            except jwt.InvalidSignatureError:
                continue
        return self._decode_with(token, self._keys[-1])

    def _decode_with(self, token: str, key: Any) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=self.algorithms,
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway,
            options={"require": _REQUIRED_CLAIMS, "verify_aud": self._audience is not None},
        )
        return claims


class _PreparedHMAC(HMACAlgorithm):
    """PyJWT re-validates an HMAC secret on every decode (a JSON parse and PEM checks, 14 % of a
    connect's CPU in a storm); the configured secrets never change, so each is prepared once.
    The memo keeps the first few secrets it sees (the gateway's own); others are prepared each
    time, as PyJWT does."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)
            if len(self._prepared) < _PREPARED_SECRETS:
                self._prepared[key] = prepared
        return prepared


_PREPARED_SECRETS = 16


def _register_prepared_hmac() -> None:
    """Through PyJWT's documented `register_algorithm` (the module-level `jwt.decode` and
    `jwt.encode` use these from then on, for this process)."""
    for name, hash_alg in (
        ("HS256", HMACAlgorithm.SHA256),
        ("HS384", HMACAlgorithm.SHA384),
        ("HS512", HMACAlgorithm.SHA512),
    ):
        jwt.unregister_algorithm(name)
        jwt.register_algorithm(name, _PreparedHMAC(hash_alg))


_register_prepared_hmac()


def signing_secrets(value: str) -> list[str]:
    """The secrets of a `--jwt-secret` value or secret file: one per line, the first signs
    (`presence-gateway token`), all verify (key rotation)."""
    return [line.strip() for line in value.splitlines() if line.strip()]


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]


def _load_public_key(value: str) -> Any:
    pem = value if "-----BEGIN" in value else Path(value).read_text()
    try:
        return load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ConfigError(f"--jwt-public-key: not a PEM public key ({exc})") from None


def _algorithms_for(key: Any) -> list[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256", "RS384", "RS512", "PS256"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ["ES256", "ES384", "ES512"]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ["EdDSA"]
    raise ConfigError("--jwt-public-key: RSA, EC or Ed25519 keys only")


def dev_secret(path: str = DEV_SECRET_FILE) -> str:
    """A development secret kept in a 0600 file, so `serve` and `token` agree with no setup."""
    file = Path(path)
    if file.exists():
        return file.read_text().strip()
    secret = secrets.token_urlsafe(48)
    file.touch(mode=0o600)
    file.write_text(secret)
    return secret


class Authenticator:
    """Token + session + blacklist: one verification and one Redis round trip, then the
    revocations this instance remembers (they outlive a Redis that lost its data)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        sessions: SessionCache,
        refused: Callable[[str, str], str | None] = lambda session_id, token_id: None,
        blacklisted: Callable[[str], None] = lambda token_id: None,
    ) -> None:
        """`refused(session_id, token_id)`: why a credential is revoked, else None;
        `blacklisted(token_id)`: told of every token Redis refused as blacklisted."""
        self._verifier = verifier
        self._sessions = sessions
        self._refused = refused
        self._blacklisted = blacklisted

    async def authenticate(self, token: str) -> Identity:
        """The caller's identity.

        Raises:
            AuthError: bad token, unknown or foreign session, blacklisted token.
            CacheUnavailable: the session cache is unreachable (refuse: try again later).
        """
        claims = self._verifier.verify(token)
        user_id = parse_uuid(claims["sub"])
        session_id, token_id = str(claims["sid"]), str(claims["jti"])
        session, blacklisted = await self._sessions.get_for_auth(session_id, token_id)
        if blacklisted:
            self._blacklisted(token_id)
            raise AuthError("token revoked")
        revoked = self._refused(session_id, token_id)
        if revoked is not None:
            raise AuthError(revoked)
        if session is None:
            raise AuthError("session not found")
        if session.user_id != user_id:
            raise AuthError("session belongs to another user")
        return Identity(user_id, session_id, token_id, float(claims["exp"]), session)


async def mint_token(
    sessions: SessionCache,
    secret: str,
    user_id: uuid.UUID,
    *,
    ttl: float = 900.0,
    session_id: str | None = None,
    username: str = "",
    audience: str = "",
    issuer: str = "",
) -> str:
    """Create a session in the cache and sign an HS256 token for it (development and tests)."""
    sid = session_id or secrets.token_urlsafe(12)
    await sessions.set(sid, SessionData(user_id=user_id, username=username), timedelta(seconds=ttl))
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "sid": sid,
        "jti": secrets.token_urlsafe(12),
        "iat": now,
        "exp": now + int(ttl),
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
