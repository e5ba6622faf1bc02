"""Settings: frozen sections read once from flags, `GATEWAY_<NAME>` environment variables and
an optional TOML file.

Every setting has one flat name: a CLI flag of `presence-gateway serve` (`--heartbeat-interval`),
an environment variable (`GATEWAY_HEARTBEAT_INTERVAL`) and a TOML key (at the top level, or in
its section's table: `[presence] heartbeat_interval = 20`). A flag wins over the environment,
which wins over the file, which wins over the default. Durations are seconds. In the code the
settings are sections (`settings.presence.lease_ttl`), and each component receives its own.
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

__all__ = [
    "AuthSettings",
    "ConfigError",
    "HttpSettings",
    "LimitSettings",
    "ListenSettings",
    "ObservabilitySettings",
    "PresenceSettings",
    "RedisSettings",
    "Settings",
    "StoreSettings",
    "add_arguments",
    "load",
]


class ConfigError(Error):
    """A setting has a bad value; the message names the flag and the variable."""


def _setting(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


def _random_instance_id() -> str:
    return "gw-" + secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Where the instance listens, and how it leaves (the drain)."""

    host: str = _setting("127.0.0.1", "address to listen on")
    port: int = _setting(8080, "port for WebSocket (/ws) and HTTP; 0 picks a free one")
    listen_backlog: int = _setting(
        4096, "pending TCP connections the kernel queues (capped by net.core.somaxconn)"
    )
    drain_timeout: float = _setting(
        10.0, "on SIGTERM: the window clients are moved off over; the process exits within it"
    )


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The WebSocket and HTTP side: who may connect from a browser, proxies, frames."""

    allowed_origins: str = _setting(
        "", "browser origins allowed, comma-separated; '*' any; empty: none (non-browser only)"
    )
    trusted_proxies: str = _setting(
        "", "addresses/CIDRs of balancers whose X-Forwarded-For names the client (comma-separated)"
    )
    compression: bool = _setting(False, "permessage-deflate (costs ~50 KiB per connection)")
    max_frame_bytes: int = _setting(65536, "largest client frame; bigger closes 1009")

    @property
    def origins(self) -> list[str] | None:
        """Origins for the handshake check: None accepts any; None in the list = no header."""
        values = [o.strip() for o in self.allowed_origins.split(",") if o.strip()]
        if "*" in values:
            return None
        return [*values]


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """The Redis that holds the caches and carries the bus."""

    url: str = _setting("", "Redis URL; empty starts an embedded Valkey", flag="redis_url")
    timeout: float = _setting(
        2.0,
        "budget in seconds for one Redis- or store-backed operation (a client request, an "
        "HTTP probe, a cleanup step); past it the answer is `unavailable` / 503",
        flag="redis_timeout",
    )
    probe_interval: float = _setting(5.0, "pub/sub liveness probe period")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The system of record."""

    url: str = _setting(
        "presence-gateway.sqlite3",
        "the system of record: a SQLite file (one host), sqlite:///path, or "
        "postgresql://user@host:port/db (many hosts; libpq options such as ?sslmode=require)",
        flag="store",
    )
    password_file: str = _setting(
        "",
        "file holding the PostgreSQL password (keeps it out of the URL and `ps`)",
        flag="store_password_file",
    )
    pool_size: int = _setting(
        10,
        "PostgreSQL connections per instance (instances x this <= the server's max)",
        flag="store_pool_size",
    )


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Tokens, sessions and revocations."""

    dev: bool = _setting(
        False,
        "development: a generated JWT secret when none is set, the demo page at /demo/ and a "
        "token route (never in production)",
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
    token_leeway: float = _setting(
        5.0, "seconds a token is still accepted past its `exp` (clock skew), also on live sockets"
    )
    auth_timeout: float = _setting(5.0, "seconds to send the auth frame when no header is used")
    session_ttl: float = _setting(900.0, "session TTL renewed by heartbeats (spec: 15 min)")
    revocation_ttl: float = _setting(
        86_400.0,
        "seconds a revoked session (or a revoked token whose end was not announced) stays "
        "refused by the gateway's own memory and store; at least your tokens' lifetime",
    )


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """Presence, typing and who may see whom."""

    instance_id: str = field(
        default_factory=_random_instance_id,
        metadata={"help": "this instance's id (default: random)"},
    )
    heartbeat_interval: float = _setting(20.0, "seconds between client heartbeats (in hello)")
    lease_ttl: float = _setting(60.0, "presence lease; a connection silent this long is closed")
    grace: float = _setting(5.0, "seconds a user stays online after the last connection closes")
    sweep_interval: float = _setting(5.0, "seconds between sweeps of expired presence leases")
    instance_ttl: float = _setting(
        4.0,
        "seconds an instance's liveness record lives unrenewed (renewed every second); once "
        "it lapses another instance ends its leases: a crashed instance's users are offline "
        "within this + 1 s + --grace",
    )
    typing_ttl: float = _setting(10.0, "typing indicator TTL (spec: 10 s)")
    typing_throttle: float = _setting(3.0, "a repeat typing.start inside this is not re-sent")
    max_watched: int = _setting(1000, "users one connection may watch")
    presence_visibility: str = _setting(
        "any",
        "whose presence a user may see: any, or shared-conversation (users sharing a "
        "conversation, or granted in the store's presence_grants)",
    )


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """What one instance, address, user, session or connection may take."""

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
    rate_limit: float = _setting(20.0, "client frames per second per connection (refill)")
    rate_burst: int = _setting(60, "token bucket size per connection")
    rate_limit_close_after: int = _setting(
        50, "rejected frames within 10 s before the connection is closed 4008"
    )
    send_buffer_limit: int = _setting(
        1 << 20, "bytes queued to one client before it is closed as a slow consumer (4009)"
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


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    """Logs and metrics."""

    log_level: str = _setting("info", "debug, info, warning or error")
    log_format: str = _setting(
        "auto", "json (one object a line), text, or auto: text on a terminal, JSON otherwise"
    )
    metrics_host: str = _setting("", "serve /metrics on this address instead of the main port")
    metrics_port: int = _setting(0, "with --metrics-host: its port (0 picks a free one)")
    metrics_token: str = _setting(
        "", "require `Authorization: Bearer <this>` on /metrics (empty: open)"
    )


_SECTIONS: dict[str, type] = {
    "listen": ListenSettings,
    "http": HttpSettings,
    "redis": RedisSettings,
    "store": StoreSettings,
    "auth": AuthSettings,
    "presence": PresenceSettings,
    "limits": LimitSettings,
    "observability": ObservabilitySettings,
}


def _flat_name(f: dataclasses.Field[Any]) -> str:
    """A setting's one name outside the code: flag, environment variable and TOML key."""
    return str(f.metadata.get("flag", f.name))


_FLAT: dict[str, tuple[str, dataclasses.Field[Any]]] = {
    _flat_name(f): (section, f)
    for section, kind in _SECTIONS.items()
    for f in dataclasses.fields(kind)
}
"""Flat name -> (section, field): the command line and the environment are flat."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting, in sections; each component receives the section it needs."""

    config: str = _setting("", "TOML file of settings (these names, as keys); flags and env win")
    listen: ListenSettings = field(default_factory=ListenSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    @classmethod
    def flat(cls, config: str = "", **values: Any) -> Settings:
        """Settings from flat names (`lease_ttl=30`), the defaults elsewhere."""
        return cls(config=config).replaced(**values)

    def replaced(self, **values: Any) -> Settings:
        """A copy with these settings, by flat name, changed."""
        changes: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if name not in _FLAT:
                raise TypeError(f"unknown setting {name!r}")
            section, f = _FLAT[name]
            changes.setdefault(section, {})[f.name] = value
        return dataclasses.replace(
            self,
            **{s: dataclasses.replace(getattr(self, s), **c) for s, c in changes.items()},
        )

    def value(self, name: str) -> Any:
        """A setting by flat name."""
        section, f = _FLAT[name]
        return getattr(getattr(self, section), f.name)


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


def _every_setting() -> list[tuple[str | None, str, dataclasses.Field[Any]]]:
    """(section or None, flat name, field) of every setting, `config` first."""
    config = next(f for f in dataclasses.fields(Settings) if f.name == "config")
    return [(None, "config", config), *((s, n, f) for n, (s, f) in _FLAT.items())]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, grouped by section in `--help`; values stay strings until `load`
    parses them."""
    groups: dict[str | None, Any] = {None: parser}
    for section, name, f in _every_setting():
        group = groups.get(section)
        if group is None:
            group = groups[section] = parser.add_argument_group(f"{section} settings")
        # A switch may stand alone (`--dev`) or take a value (`--dev=false`).
        switch = {"nargs": "?", "const": "true"} if f.type in (bool, "bool") else {}
        group.add_argument(
            _flag(name),
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{f.metadata['help']} [env {_env(name)}]",
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
    for _, name, f in _every_setting():
        raw = getattr(args, name, None) if args is not None else None
        if raw is None:
            raw = environ.get(_env(name))
        if raw is not None:
            values[name] = _parse(f.type, str(raw), name)
    config = values.pop("config", "")
    if config:
        values = {**_from_file(config), **values}
    settings = _with_secret_file(Settings.flat(config, **values))
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
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _SECTIONS and isinstance(value, dict):
            for inner, item in value.items():
                name = _section_key(path, key, inner)
                values[name] = _file_value(path, f"{key}.{inner}", name, item)
            continue
        name = key.replace("-", "_")
        if name not in _FLAT:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        values[name] = _file_value(path, key, name, value)
    return values


def _section_key(path: str, section: str, key: str) -> str:
    """The flat name of `key` in a `[section]` table: its flat name or its name in the
    section (`[redis] url` or `[redis] redis_url`)."""
    name = key.replace("-", "_")
    for flat, (owner, f) in _FLAT.items():
        if owner == section and name in (flat, f.name):
            return flat
    raise ConfigError(f"{path}: unknown setting {key!r} in [{section}]")


def _file_value(path: str, key: str, name: str, value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{path}: {key} must be a single value")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        return _parse(_FLAT[name][1].type, text, name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _with_secret_file(settings: Settings) -> Settings:
    """The secret read from `--jwt-secret-file`, so everything else sees `jwt_secret`."""
    auth = settings.auth
    if not auth.jwt_secret_file:
        return settings
    name = "jwt_secret_file"
    if auth.jwt_secret:
        raise ConfigError("set either --jwt-secret or --jwt-secret-file, not both")
    try:
        with open(auth.jwt_secret_file, encoding="utf-8") as file:
            secret = "\n".join(line.strip() for line in file if line.strip())
    except OSError as exc:
        raise ConfigError(f"{_flag(name)} / {_env(name)}: cannot read it: {exc}") from None
    if not secret:
        raise ConfigError(f"{_flag(name)} / {_env(name)}: the file is empty")
    return settings.replaced(jwt_secret=secret)


def _positive(settings: Settings, names: Sequence[str]) -> None:
    for name in names:
        if settings.value(name) <= 0:
            raise ConfigError(f"{_flag(name)} / {_env(name)}: must be positive")


def _validate(settings: Settings) -> None:
    _positive(
        settings,
        [
            "heartbeat_interval",
            "lease_ttl",
            "sweep_interval",
            "instance_ttl",
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
    for part in settings.http.trusted_proxies.split(","):
        try:
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            raise ConfigError(
                f"--trusted-proxies / GATEWAY_TRUSTED_PROXIES: {part.strip()!r} is not an "
                "address or a CIDR"
            ) from None
    if settings.auth.token_leeway < 0:
        raise ConfigError("--token-leeway / GATEWAY_TOKEN_LEEWAY: must not be negative")
    if settings.presence.lease_ttl <= settings.presence.heartbeat_interval:
        raise ConfigError("--lease-ttl must be longer than --heartbeat-interval")
    for name in ("port", "metrics_port"):
        if not 0 <= settings.value(name) < 65536:
            raise ConfigError(f"{_flag(name)} / {_env(name)}: must be 0-65535")
    if settings.limits.max_group_members > 1000:
        raise ConfigError("--max-group-members / GATEWAY_MAX_GROUP_MEMBERS: at most 1000")
    if settings.presence.presence_visibility not in ("any", "shared-conversation"):
        raise ConfigError(
            "--presence-visibility / GATEWAY_PRESENCE_VISIBILITY: any or shared-conversation"
        )
    if settings.observability.log_format not in ("auto", "json", "text"):
        raise ConfigError("--log-format / GATEWAY_LOG_FORMAT: auto, json or text")
    if settings.observability.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("--log-level / GATEWAY_LOG_LEVEL: debug, info, warning or error")
