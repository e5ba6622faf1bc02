"""Settings: a frozen dataclass read once from flags and `GATEWAY_<NAME>` environment variables.

Every field is a CLI flag of `presence-gateway serve` (`--heartbeat-interval`) and an environment
variable (`GATEWAY_HEARTBEAT_INTERVAL`); a flag wins over the environment, which wins over the
default. Durations are seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import Error

__all__ = ["ConfigError", "Settings", "add_arguments", "load"]


class ConfigError(Error):
    """A setting has a bad value; the message names the flag and the variable."""


def _setting(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


def _random_instance_id() -> str:
    return "gw-" + secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class Settings:
    config: str = _setting("", "TOML file of settings (these names, as keys); flags and env win")
    dev: bool = _setting(
        False, "development: a generated JWT secret when none is set (never in production)"
    )
    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8080, "port for WebSocket (/ws) and HTTP; 0 picks a free one")
    redis_url: str = _setting("", "Redis URL; empty starts an embedded Valkey")
    store: str = _setting(
        "presence-gateway.sqlite3",
        "the system of record: a SQLite file (one host), sqlite:///path, or "
        "postgresql://user@host:port/db (many hosts; libpq options such as ?sslmode=require)",
    )
    store_password_file: str = _setting(
        "", "file holding the PostgreSQL password (keeps it out of the URL and `ps`)"
    )
    store_pool_size: int = _setting(
        10, "PostgreSQL connections per instance (instances x this <= the server's max)"
    )
    instance_id: str = field(
        default_factory=_random_instance_id,
        metadata={"help": "this instance's id (default: random)"},
    )
    jwt_secret: str = _setting("", "HS256 secret (at least 32 bytes); prefer --jwt-secret-file")
    jwt_secret_file: str = _setting(
        "",
        "file holding the HS256 secret, one a line: the first signs, all verify (rotation); "
        "keeps it off the command line and out of `ps`",
    )
    jwt_public_key: str = _setting("", "PEM public key, or a path to one (RS256/ES256/EdDSA)")
    jwt_algorithms: str = _setting("", "accepted algorithms, comma-separated (default by key)")
    jwt_audience: str = _setting("", "required `aud` claim, when set")
    jwt_issuer: str = _setting("", "required `iss` claim, when set")
    allowed_origins: str = _setting(
        "", "browser origins allowed, comma-separated; '*' any; empty: none (non-browser only)"
    )
    heartbeat_interval: float = _setting(20.0, "seconds between client heartbeats (in hello)")
    lease_ttl: float = _setting(60.0, "presence lease; a connection silent this long is closed")
    grace: float = _setting(5.0, "seconds a user stays online after the last connection closes")
    sweep_interval: float = _setting(5.0, "seconds between sweeps of expired presence leases")
    session_ttl: float = _setting(900.0, "session TTL renewed by heartbeats (spec: 15 min)")
    typing_ttl: float = _setting(10.0, "typing indicator TTL (spec: 10 s)")
    typing_throttle: float = _setting(3.0, "a repeat typing.start inside this is not re-sent")
    auth_timeout: float = _setting(5.0, "seconds to send the auth frame when no header is used")
    token_leeway: float = _setting(
        5.0, "seconds a token is still accepted past its `exp` (clock skew), also on live sockets"
    )
    max_frame_bytes: int = _setting(65536, "largest client frame; bigger closes 1009")
    rate_limit: float = _setting(20.0, "client frames per second per connection (refill)")
    rate_burst: int = _setting(60, "token bucket size per connection")
    rate_limit_close_after: int = _setting(
        50, "rejected frames within 10 s before the connection is closed 4008"
    )
    listen_backlog: int = _setting(
        4096, "pending TCP connections the kernel queues (capped by net.core.somaxconn)"
    )
    max_connections: int = _setting(
        50_000, "connections this instance holds (authenticated or not); beyond: 503"
    )
    max_pending_auth: int = _setting(
        1000, "sockets waiting for their auth frame on this instance; beyond: 503"
    )
    max_pending_auth_per_ip: int = _setting(
        20, "sockets waiting for their auth frame from one client address; beyond: 503"
    )
    max_connections_per_user: int = _setting(
        50, "connections of one user on this instance; beyond: close 1013"
    )
    max_connections_per_session: int = _setting(
        10, "connections of one session on this instance; beyond: close 1013"
    )
    trusted_proxies: str = _setting(
        "", "addresses/CIDRs of balancers whose X-Forwarded-For names the client (comma-separated)"
    )
    revocation_ttl: float = _setting(
        86_400.0,
        "seconds a revoked session (or a revoked token whose end was not announced) stays "
        "refused by the gateway's own memory and store; at least your tokens' lifetime",
    )
    max_watched: int = _setting(1000, "users one connection may watch")
    presence_visibility: str = _setting(
        "any",
        "whose presence a user may see: any, or shared-conversation (users sharing a "
        "conversation, or granted in the store's presence_grants)",
    )
    max_message_bytes: int = _setting(4096, "largest message content in UTF-8 bytes")
    max_group_members: int = _setting(
        256,
        "members one conversation.create may name besides its creator (at most 1000); "
        "beyond: invalid_field",
    )
    user_send_rate: float = _setting(
        20.0, "messages one user may send per second, all connections, every instance (refill)"
    )
    user_send_burst: int = _setting(
        60, "messages one user may send at once before the rate applies"
    )
    conversation_create_rate: float = _setting(
        6.0, "conversations one user may create per minute, every instance (refill)"
    )
    conversation_create_burst: int = _setting(
        5, "conversations one user may create at once before the rate applies"
    )
    send_buffer_limit: int = _setting(
        1 << 20, "bytes queued to one client before it is closed as a slow consumer (4009)"
    )
    compression: bool = _setting(False, "permessage-deflate (costs ~50 KiB per connection)")
    probe_interval: float = _setting(5.0, "pub/sub liveness probe period")
    redis_timeout: float = _setting(
        2.0,
        "budget in seconds for one Redis- or store-backed operation (a client request, an "
        "HTTP probe, a cleanup step); past it the answer is `unavailable` / 503",
    )
    drain_timeout: float = _setting(
        10.0, "on SIGTERM: the window clients are moved off over; the process exits within it"
    )
    log_level: str = _setting("info", "debug, info, warning or error")
    log_format: str = _setting(
        "auto", "json (one object a line), text, or auto: text on a terminal, JSON otherwise"
    )
    metrics_host: str = _setting("", "serve /metrics on this address instead of the main port")
    metrics_port: int = _setting(0, "with --metrics-host: its port (0 picks a free one)")
    metrics_token: str = _setting(
        "", "require `Authorization: Bearer <this>` on /metrics (empty: open)"
    )

    @property
    def origins(self) -> list[str] | None:
        """Origins for the handshake check: None accepts any; None in the list = no header."""
        values = [o.strip() for o in self.allowed_origins.split(",") if o.strip()]
        if "*" in values:
            return None
        return [*values]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return "GATEWAY_" + name.upper()


def _parse(kind: Any, raw: str, name: str) -> Any:
    try:
        if kind in (bool, "bool"):
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        return raw
    except ValueError:
        kind_name = getattr(kind, "__name__", kind)
        raise ConfigError(
            f"{_flag(name)} / {_env(name)}: {raw!r} is not a valid {kind_name}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; values stay strings until `load` parses them."""
    for f in dataclasses.fields(Settings):
        # A switch may stand alone (`--dev`) or take a value (`--dev=false`).
        switch = {"nargs": "?", "const": "true"} if f.type in (bool, "bool") else {}
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata['help']} [env {_env(f.name)}]",
            **switch,  # type: ignore[arg-type]
        )


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags, then the environment, then the `--config` file, then defaults;
    validated.

    Raises:
        ConfigError: a value does not parse or is out of range, naming flag and variable.
    """
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is None:
            raw = environ.get(_env(f.name))
        if raw is not None:
            values[f.name] = _parse(f.type, str(raw), f.name)
    if values.get("config"):
        values = {**_from_file(values["config"]), **values}
    settings = _with_secret_file(Settings(**values))
    _validate(settings)
    return settings


def _from_file(path: str) -> dict[str, Any]:
    """The settings of a TOML file, parsed like flags; an unknown key or a bad value stops
    start-up naming the file and the setting."""
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"--config / GATEWAY_CONFIG: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config / GATEWAY_CONFIG: {path} is not TOML: {exc}") from None
    kinds = {f.name: f.type for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in kinds or name == "config":
            raise ConfigError(f"{path}: unknown setting {key!r}")
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: {key} must be a single value")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        try:
            values[name] = _parse(kinds[name], text, name)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return values


def _with_secret_file(settings: Settings) -> Settings:
    """The secret read from `--jwt-secret-file`, so everything else sees `jwt_secret`."""
    if not settings.jwt_secret_file:
        return settings
    name = "jwt_secret_file"
    if settings.jwt_secret:
        raise ConfigError("set either --jwt-secret or --jwt-secret-file, not both")
    try:
        with open(settings.jwt_secret_file, encoding="utf-8") as file:
            secret = "\n".join(line.strip() for line in file if line.strip())
    except OSError as exc:
        raise ConfigError(f"{_flag(name)} / {_env(name)}: cannot read it: {exc}") from None
    if not secret:
        raise ConfigError(f"{_flag(name)} / {_env(name)}: the file is empty")
    return dataclasses.replace(settings, jwt_secret=secret)


def _positive(settings: Settings, names: Sequence[str]) -> None:
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{_flag(name)} / {_env(name)}: must be positive")


def _validate(settings: Settings) -> None:
    _positive(
        settings,
        [
            "heartbeat_interval",
            "lease_ttl",
            "sweep_interval",
            "session_ttl",
            "revocation_ttl",
            "redis_timeout",
            "typing_ttl",
            "auth_timeout",
            "max_frame_bytes",
            "rate_limit",
            "rate_burst",
            "rate_limit_close_after",
            "max_watched",
            "max_message_bytes",
            "max_group_members",
            "user_send_rate",
            "user_send_burst",
            "conversation_create_rate",
            "conversation_create_burst",
            "max_connections",
            "store_pool_size",
            "listen_backlog",
            "max_pending_auth",
            "max_pending_auth_per_ip",
            "max_connections_per_user",
            "max_connections_per_session",
            "send_buffer_limit",
            "probe_interval",
        ],
    )
    for part in settings.trusted_proxies.split(","):
        try:
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f"--trusted-proxies / GATEWAY_TRUSTED_PROXIES: {part.strip()!r} is not an "
                "address or a CIDR"
            ) from None
    if settings.token_leeway < 0:
        raise ConfigError("--token-leeway / GATEWAY_TOKEN_LEEWAY: must not be negative")
    if settings.lease_ttl <= settings.heartbeat_interval:
        raise ConfigError("--lease-ttl must be longer than --heartbeat-interval")
    for name in ("port", "metrics_port"):
        if not 0 <= getattr(settings, name) < 65536:
            raise ConfigError(f"{_flag(name)} / {_env(name)}: must be 0-65535")
    if settings.redis_url.startswith("redis+cluster://") or "cluster=true" in settings.redis_url:
        # The bus has no sharded pub/sub backend yet (SSUBSCRIBE/SPUBLISH on ClusterPubSub).
        # Refuse rather than fail on every connect.
        raise ConfigError(
            "--redis-url / GATEWAY_REDIS_URL: Redis Cluster is not supported by the gateway yet "
            "(the caches library supports it); use a standalone or replicated Redis"
        )
    if settings.max_group_members > 1000:
        raise ConfigError("--max-group-members / GATEWAY_MAX_GROUP_MEMBERS: at most 1000")
    if settings.presence_visibility not in ("any", "shared-conversation"):
        raise ConfigError(
            "--presence-visibility / GATEWAY_PRESENCE_VISIBILITY: any or shared-conversation"
        )
    if settings.log_format not in ("auto", "json", "text"):
        raise ConfigError("--log-format / GATEWAY_LOG_FORMAT: auto, json or text")
    if settings.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("--log-level / GATEWAY_LOG_LEVEL: debug, info, warning or error")
