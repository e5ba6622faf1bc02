"""Shared fixtures: one real Redis-protocol server per test session, flushed per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis
from redis import Redis as SyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from caches.redis import RedisClient, configured_or_embedded, connect, find_server_binary
from loadtest.valkey_cluster import ValkeyCluster, free_ports

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


CLIENT_KINDS = ["caches.connect", "from_url", "from_url-resp3", "cluster"]
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
    elif request.param == "cluster":
        client = connect(request.getfixturevalue("cluster_url"))
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


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """`wait_for` on a plain condition (what clients heard, a hub's state)."""

    async def holds() -> bool:
        return check()

    await wait_for(holds, timeout)


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A one-node Redis Cluster (every slot on one real valkey-server in cluster mode)."""
    workdir = tempfile.mkdtemp(prefix="presence-gateway-cluster-")
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [
            find_server_binary(),
            "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
            "--cluster-config-file", f"{workdir}/nodes.conf", "--dir", workdir,
            "--save", "", "--appendonly", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        admin = SyncRedis(host="127.0.0.1", port=port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]
                break
            except RedisConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        while "cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
            if time.monotonic() > deadline:
                raise AssertionError("the cluster did not come up")
            time.sleep(0.05)
        admin.close()
        yield f"redis+cluster://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server for the session (see tests/postgres.py)."""
    from tests.postgres import running_postgres

    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on it, for one test."""
    from tests.postgres import fresh_database

    return fresh_database(postgres_server)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ValkeyCluster]:
    """A real 3-primary, 3-replica Redis Cluster for the whole run (tests that kill or move
    nodes start their own)."""
    with ValkeyCluster() as started:
        yield started
