"""Cluster URLs with several seeds (`redis+cluster://h1:p1,h2:p2`), on a real 3+3 cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from caches import PresenceCache, SessionCache, keys
from caches.models import SessionData
from caches.redis import RedisClient, cluster_seeds, connect
from loadtest.valkey_cluster import ValkeyCluster


def test_every_seed_is_a_startup_node_and_credentials_stay() -> None:
    first, seeds = cluster_seeds("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001?ssl=x")
    assert first == "redis://app:s3cret@10.0.0.1:7000?ssl=x"
    assert [(s.host, s.port) for s in seeds] == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    first, seeds = cluster_seeds("redis://10.0.0.1:7000?cluster=true")
    assert first == "redis://10.0.0.1:7000" and len(seeds) == 1


@pytest.mark.parametrize("url", ["redis+cluster://host", "redis+cluster://a:1,b"])
def test_a_seed_without_a_port_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        cluster_seeds(url)


@pytest.fixture
async def client(cluster: ValkeyCluster) -> AsyncIterator[RedisClient]:
    """A client of the shared 3+3 cluster, emptied first (other tests' users are in it)."""
    connected = connect(cluster.url)
    await connected.flushall()
    yield connected
    await connected.aclose()


async def test_the_caches_reach_every_primary(client: RedisClient) -> None:
    sessions = SessionCache(client)
    ids = [f"s-{uuid.uuid4().hex}" for _ in range(30)]
    for sid in ids:
        await sessions.set(sid, SessionData(user_id=uuid.uuid4(), username="u"), 60)
    assert all([await sessions.get(sid) is not None for sid in ids])
    owners = {client.get_node_from_key(keys.session(sid)).name for sid in ids}  # type: ignore[union-attr]
    assert len(owners) == 3  # thirty sessions land on all three primaries


async def test_presence_indexes_spread_over_slots_and_the_sweep_reads_them_all(
    client: RedisClient,
) -> None:
    presence = PresenceCache(client)
    users = [uuid.uuid4() for _ in range(48)]
    for user in users:
        await presence.connect(user, "c1", 0.3)
    assert await presence.get_online_count() == 48
    assert set(await presence.get_online_users()) == set(users)
    buckets = {keys.presence_bucket(u) for u in users}
    owners = {client.get_node_from_key(keys.presence_deadlines_bucket(b)).name for b in buckets}  # type: ignore[union-attr]
    assert len(buckets) >= 8 and len(owners) == 3  # no single slot holds the index
    await asyncio.sleep(0.4)  # every lease lapsed
    settled: list[uuid.UUID] = []
    while batch := await presence.sweep(limit=10):
        settled += [update.user_id for update in batch]
    assert sorted(settled) == sorted(users)  # each exactly once, from every bucket
    assert await presence.get_online_count() == 0
