"""Shared fixtures: one real Redis-protocol server per test session, flushed per test."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

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


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 5.0, interval: float = 10 * MS
) -> None:
    """Poll an async condition until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
