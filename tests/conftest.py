"""Shared fixtures: one real Redis-protocol server per test session, flushed per test."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from caches.redis import RedisClient, configured_or_embedded, connect

MS = 0.001
"""One millisecond, in seconds: the suite's time unit."""


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """GATEWAY_REDIS_URL when set, else a private embedded Valkey for the whole run."""
    with configured_or_embedded(os.environ.get("GATEWAY_REDIS_URL")) as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    client = connect(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


CLIENT_KINDS = ["caches.connect", "from_url", "from_url-resp3"]
"""How users build the client they hand the caches: ours (decoding), redis-py's defaults (bytes
replies), and redis-py's defaults speaking RESP3."""


@pytest.fixture(params=CLIENT_KINDS)
async def any_redis(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[RedisClient]:
    """A flushed client of each kind users build; cache tests run once per kind."""
    client: RedisClient
    if request.param == "caches.connect":
        client = connect(redis_url)
    elif request.param == "from_url":
        client = aioredis.Redis.from_url(redis_url)
    else:
        client = aioredis.Redis.from_url(redis_url, protocol=3)
    await client.flushdb()
    yield client
    await client.aclose()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 5.0, interval: float = 10 * MS
) -> None:
    """Poll an async condition until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
