"""Raw RESP connections for the hot paths (pub/sub reader, fast lane): open and authenticate."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["open_connection", "pack"]


def pack(*parts: Any) -> bytes:
    """One command in RESP, packed by hiredis (its type stubs take a one-element tuple)."""
    packed: bytes = hiredis.pack_command(cast(Any, parts))
    return packed


async def open_connection(
    url: str, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a `redis://`, `rediss://` or `unix://` URL and AUTH when it has a password.

    Raises:
        OSError / TimeoutError: unreachable; redis.ConnectionError: AUTH refused.
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        opening = asyncio.open_unix_connection(parts.path)
    else:
        context = ssl.create_default_context() if parts.scheme == "rediss" else None
        opening = asyncio.open_connection(parts.hostname, parts.port or 6379, ssl=context)
    reader, writer = await asyncio.wait_for(opening, timeout)
    if parts.password:
        password = unquote(parts.password)
        auth = ("AUTH", unquote(parts.username), password) if parts.username else ("AUTH", password)
        writer.write(pack(*auth))
        if not (await asyncio.wait_for(reader.readline(), timeout)).startswith(b"+OK"):
            writer.close()
            raise RedisConnectionError("Redis refused AUTH")
    return reader, writer
