"""Gateways on a real 3-primary, 3-replica Redis Cluster (sharded pub/sub): presence, typing
and messages across two instances, one gap-free order for concurrent senders."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from caches import SessionCache
from caches.redis import RedisClient, connect
from gateway.bus.sharded import ShardedBus
from gateway.client import GatewayClient
from gateway.config import Settings
from gateway.redis_side import redis_side
from loadtest.valkey_cluster import ValkeyCluster
from tests.gateways import GatewayProcess, client_for, gateways, token_for


@pytest.fixture
async def cluster_redis(cluster: ValkeyCluster) -> AsyncIterator[RedisClient]:
    client = connect(cluster.url)
    yield client
    await client.aclose()


@pytest.fixture
def pair(cluster: ValkeyCluster, tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    with gateways(cluster.url, tmp_path, 2) as started:
        yield started


async def test_presence_typing_and_messages_across_instances(
    cluster_redis: RedisClient, pair: list[GatewayProcess]
) -> None:
    gw1, gw2 = pair
    ann, bob = uuid.uuid4(), uuid.uuid4()
    a = await client_for(cluster_redis, gw1, ann)
    await a.request("presence.subscribe", user_ids=[str(bob)])
    b = await client_for(cluster_redis, gw2, bob)
    assert (await a.next_event("presence", timeout=10))["status"] == "online"
    conv = (await a.request("conversation.create", kind="direct", member_ids=[str(bob)]))[
        "conversation"
    ]["id"]
    await b.next_event("conversation.added", timeout=10)
    typing = await _typing_seen(a, b, conv)
    assert typing["user_id"] == str(ann) and typing["state"] == "start"
    await b.request("message.send", conversation_id=conv, client_msg_id="k1", content="hi")
    assert (await a.next_event("message.new", timeout=10))["message"]["content"] == "hi"
    await b.close()
    offline = await a.next_event("presence", timeout=10)
    assert offline["status"] == "offline"
    await a.close()


async def _typing_seen(a: GatewayClient, b: GatewayClient, conv: str) -> dict[str, Any]:
    """ann types until bob sees it: bob's instance may still be subscribing to the new
    conversation on its primary (live events are at most once until it has)."""
    for _ in range(5):
        await a.send("typing.start", conversation_id=conv)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while (event := await b.next_event("typing"))["state"] != "start":
                    pass
                return event
        await a.send("typing.stop", conversation_id=conv)
    raise AssertionError("typing never reached the other instance")


async def test_concurrent_senders_on_both_instances_see_one_order(
    cluster_redis: RedisClient, pair: list[GatewayProcess]
) -> None:
    gw1, gw2 = pair
    users = [uuid.uuid4() for _ in range(4)]
    clients: list[GatewayClient] = [
        await client_for(cluster_redis, (gw1, gw2)[n % 2], user) for n, user in enumerate(users)
    ]
    conv = (
        await clients[0].request(
            "conversation.create", kind="group", member_ids=[str(u) for u in users[1:]]
        )
    )["conversation"]["id"]
    for client in clients[1:]:
        await client.next_event("conversation.added", timeout=10)

    async def burst(client: GatewayClient, n: int) -> None:
        for i in range(10):
            await client.request(
                "message.send", conversation_id=conv, client_msg_id=f"{n}-{i}", content=f"{n}.{i}"
            )

    await asyncio.gather(*(burst(c, n) for n, c in enumerate(clients)))
    for client in clients:
        seqs = [
            (await client.next_event("message.new", timeout=10))["message"]["seq"]
            for _ in range(40)
        ]
        assert seqs == list(range(1, 41))
    for client in clients:
        await client.close()


async def test_a_revoked_session_closes_its_connections_on_every_instance(
    cluster_redis: RedisClient, pair: list[GatewayProcess]
) -> None:
    """Revocations are published by the application's backend with a classic PUBLISH."""
    user = uuid.uuid4()
    sessions = SessionCache(cluster_redis)
    clients = []
    for gateway in pair:
        token = await token_for(cluster_redis, user)
        clients.append(await GatewayClient.connect(gateway.url, token))
    for client in clients:
        await sessions.delete(client.hello["session_id"])
    for client in clients:
        assert (await client.next_event("session.revoked", timeout=10))["reason"]
        assert await client.wait_closed(10) == 4002


async def test_a_node_s_lane_or_shard_started_again_takes_the_client_it_had(
    cluster: ValkeyCluster,
) -> None:
    """After each failover a node's lane and shard start again: they take the node's client
    (one per node and use), where a new one each time grew without bound."""
    settings = Settings.flat(jwt_secret="cluster-test-secret-0123456789abcdef")
    async with redis_side(settings, cluster.url) as side:
        assert isinstance(side.bus, ShardedBus)
        subscriber = side.bus._node_client  # the shards' factory
        first, second = (int(p) for p in cluster.ports[:2])
        assert subscriber("127.0.0.1", first) is subscriber("127.0.0.1", first)
        assert subscriber("127.0.0.1", first) is not subscriber("127.0.0.1", second)
