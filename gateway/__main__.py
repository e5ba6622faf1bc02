"""Command line: `presence-gateway serve`, `presence-gateway token` and
`presence-gateway store copy SRC DST`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from caches import SessionCache, connect
from gateway.auth import TokenVerifier, dev_secret, mint_token, signing_secrets
from gateway.config import ConfigError, Settings, add_arguments, load
from gateway.logs import configure
from gateway.runtime import embedded_url
from gateway.store import StoreError, StoreOpenError

__all__ = ["main"]


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def _serve(settings: Settings) -> int:
    from gateway.app import run  # the composition root: only the command that serves loads it

    configure(
        settings.observability.log_level,
        settings.observability.log_format,
        settings.presence.instance_id,
    )
    TokenVerifier(settings.auth)  # no usable JWT key: stop here, before anything starts
    _install_uvloop()
    try:
        asyncio.run(run(settings))
    except StoreOpenError as exc:
        print(f"presence-gateway: {exc}", file=sys.stderr)
        return 2
    return 0


def _redis_url_for_token(settings: Settings) -> str:
    if settings.redis.url:
        return settings.redis.url
    url = embedded_url()
    if url is not None:
        return url
    raise ConfigError(
        "no Redis to write the session to: start `presence-gateway serve` in this directory "
        "(embedded Redis), or pass --redis-url / GATEWAY_REDIS_URL"
    )


async def _token(settings: Settings, args: argparse.Namespace) -> str:
    if settings.auth.jwt_public_key:
        raise ConfigError("tokens for a public-key setup are signed by your identity provider")
    client = connect(_redis_url_for_token(settings))
    try:
        return await mint_token(
            SessionCache(client),
            signing_secrets(settings.auth.jwt_secret)[0]
            if settings.auth.jwt_secret
            else dev_secret(),
            args.user,
            ttl=args.ttl,
            session_id=args.session,
            username=args.username,
            audience=settings.auth.jwt_audience,
            issuer=settings.auth.jwt_issuer,
        )
    finally:
        await client.aclose()


def _store_copy(source: str, destination: str) -> int:
    from gateway.store.copy import copy_store

    try:
        result = asyncio.run(copy_store(source, destination))
    except StoreError as exc:
        print(f"presence-gateway: {exc}", file=sys.stderr)
        return 2
    for table, (src, dst) in result.counts.items():
        print(f"{table}: {src:,} in the source, {dst:,} in the destination")
    if not result.complete:
        print("presence-gateway: the destination has fewer rows; run it again", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="presence-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    add_arguments(serve)
    token = commands.add_parser("token", help="create a session and print a signed dev token")
    token.add_argument("--user", type=uuid.UUID, required=True, help="user id (UUID)")
    token.add_argument("--ttl", type=float, default=900.0, help="seconds (session and token)")
    token.add_argument("--session", default=None, help="session id (default: random)")
    token.add_argument("--username", default="", help="username stored in the session")
    store = commands.add_parser("store", help="work on the system of record")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    copy = store_commands.add_parser(
        "copy",
        help="copy every record from one store to another (idempotent, resumable)",
        description="SRC and DST are store URLs: a SQLite path, sqlite:///path or "
        "postgresql://user@host:port/db. Running it again copies nothing twice.",
    )
    copy.add_argument("source", metavar="SRC")
    copy.add_argument("destination", metavar="DST")
    for name in (
        "redis_url",
        "jwt_secret",
        "jwt_secret_file",
        "jwt_public_key",
        "jwt_audience",
        "jwt_issuer",
    ):
        token.add_argument("--" + name.replace("_", "-"), dest=name, default=None)
    args = parser.parse_args(argv)
    if args.command == "store":
        return _store_copy(args.source, args.destination)
    try:
        settings = load(args)
        if args.command == "serve":
            return _serve(settings)
        print(asyncio.run(_token(settings, args)))
        return 0
    except ConfigError as exc:
        print(f"presence-gateway: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
