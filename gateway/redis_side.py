"""The Redis side of an instance, for a standalone (or replicated) Redis or a Redis Cluster: the
client the caches use, the job that pipelines its commands, and the bus.

Standalone: commands through the auto-pipeline (`gateway.autopipe`), classic pub/sub on one
subscriber connection (`RedisBus`). Cluster (`redis+cluster://host:port[,host:port...]`):
commands through redis-py's `RedisCluster` (it routes by slot and follows MOVED/ASK), sharded
pub/sub with one subscriber connection per primary (`ShardedBus`), and typing announced by a
publish of its own (the cache scripts' PUBLISH would be a classic one, which sharded subscribers
never hear).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from caches.redis import ClientOptions, RedisClient, connect, node_url
from gateway.autopipe import auto_pipelined
from gateway.bus.base import Bus
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
    """The client of the caches: pipelined automatically on a standalone Redis."""
    bus: Bus
    latency: Latency
    pipeline: Callable[[], Coroutine[Any, Any, None]] | None
    """The job that sends pipelined commands (standalone only)."""
    scripts_reach_bus: bool
    """A message a cache script publishes reaches the bus's subscribers."""


@contextlib.asynccontextmanager
async def redis_side(settings: Settings, url: str) -> AsyncIterator[RedisSide]:
    budget = settings.redis.timeout
    options = ClientOptions(socket_timeout=budget, connect_timeout=budget)
    # A subscriber reads without deadline (the bus's probe watches it) and is never pinged by
    # redis-py's health check, whose reply would interleave with messages.
    subscribing = dataclasses.replace(options, health_check_interval=0, max_connections=4)
    latency = Latency("redis", "One Redis command's round trip (auto-pipeline)")
    redis = connect(url, options)
    subscribers: list[aioredis.Redis] = []

    def subscriber(target: str) -> aioredis.Redis:
        client = connect(target, subscribing, decode_responses=False)
        assert isinstance(client, aioredis.Redis)
        subscribers.append(client)
        return client

    try:
        if isinstance(redis, RedisCluster):
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
                pipeline=None,
                scripts_reach_bus=False,
            )
        else:
            client, pipeline = auto_pipelined(redis, budget, latency)
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
                scripts_reach_bus=True,
            )
    finally:
        for client in subscribers:
            await client.aclose()
        await redis.aclose()
