"""The Redis side of an instance, for a standalone (or replicated) Redis or a Redis Cluster: the
client the caches use, the job that pipelines its commands, and the bus.

Standalone: commands through the auto-pipeline (`gateway.autopipe`), classic pub/sub on one
subscriber connection (`RedisBus`). Cluster (`redis+cluster://host:port[,host:port...]`):
redis-py's `RedisCluster` with an auto-pipeline per primary (single-slot commands; redis-py's
own path for the rest and for MOVED/ASK), sharded pub/sub with one subscriber connection per
primary (`ShardedBus`), and the cache scripts announcing typing with SPUBLISH (a classic
PUBLISH is never heard by sharded subscribers).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from caches.redis import ClientOptions, RedisClient, connect, is_cluster_url, node_url
from gateway.autopipe import auto_pipelined, cluster_auto_pipelined
from gateway.bus.base import Bus
from gateway.bus.publisher import ScriptsPublish
from gateway.bus.redis import RedisBus
from gateway.bus.sharded import ShardedBus
from gateway.config import Settings
from gateway.metrics import Latency

__all__ = ["RedisSide", "redis_side"]


@dataclasses.dataclass(frozen=True, slots=True)
class RedisSide:
    redis: RedisClient
    """The plain client (readiness pings, the development routes)."""
    client: RedisClient
    """The client of the caches: pipelined automatically (per primary on a cluster)."""
    bus: Bus
    latency: Latency
    pipeline: Callable[[], Coroutine[Any, Any, None]]
    """The job that sends pipelined commands."""
    scripts_publish: ScriptsPublish
    """How a cache script publishes so that the bus's subscribers hear it."""


@contextlib.asynccontextmanager
async def redis_side(settings: Settings, url: str) -> AsyncIterator[RedisSide]:
    budget = settings.redis.timeout
    options = ClientOptions(socket_timeout=budget, connect_timeout=budget)
    # A subscriber reads without deadline (the bus's probe watches it) and is never pinged by
    # redis-py's health check, whose reply would interleave with messages.
    # (A node's shards, classic and sharded, and their successors share one client.)
    subscribing = dataclasses.replace(options, health_check_interval=0, max_connections=8)
    latency = Latency("redis", "One Redis command's round trip (auto-pipeline)")
    # One client per node and use, kept for the instance's life: a node's lane or shard
    # started again after a failover takes the one it had (a new one each time grew without
    # bound when primaries kept failing).
    nodes: dict[tuple[str, bool], aioredis.Redis] = {}

    def node(target: str, node_options: ClientOptions, decode_responses: bool) -> aioredis.Redis:
        known = nodes.get((target, decode_responses))
        if known is not None:
            return known
        client = connect(target, node_options, decode_responses=decode_responses)
        assert isinstance(client, aioredis.Redis)
        nodes[target, decode_responses] = client
        return client

    def subscriber(target: str) -> aioredis.Redis:
        return node(target, subscribing, decode_responses=False)

    redis: RedisClient | None = None
    try:
        if is_cluster_url(url):
            redis, lanes = cluster_auto_pipelined(
                lambda cls: cast(RedisCluster, connect(url, options, cluster_class=cls)),
                lambda host, port: node(node_url(url, host, port), options, True),
                budget,
                latency,
            )
            yield RedisSide(
                redis=redis,
                client=redis,
                bus=ShardedBus(
                    cluster=redis,
                    node_client=lambda host, port: subscriber(node_url(url, host, port)),
                    instance_id=settings.presence.instance_id,
                    probe_interval=settings.redis.probe_interval,
                    timeout=budget,
                ),
                latency=latency,
                pipeline=lanes.run,
                scripts_publish="sharded",
            )
        else:
            standalone = connect(url, options)
            assert isinstance(standalone, aioredis.Redis)
            redis = standalone
            client, pipeline = auto_pipelined(standalone, budget, latency)
            yield RedisSide(
                redis=redis,
                client=client,
                bus=RedisBus(
                    subscriber=subscriber(url),
                    publisher=client,
                    instance_id=settings.presence.instance_id,
                    probe_interval=settings.redis.probe_interval,
                    timeout=budget,
                ),
                latency=latency,
                pipeline=pipeline.run,
                scripts_publish="classic",
            )
    finally:
        for opened in nodes.values():
            await opened.aclose()
        if redis is not None:
            await redis.aclose()
