"""The auto-pipeline on a real 3-primary, 3-replica cluster: one lane per primary carries the
single-slot commands; a moved slot and a killed primary are followed (redis-py's path takes the
command the lane could not place), and the dead primary's lane is retired."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

from caches.redis import connect
from gateway.autopipe import cluster_auto_pipelined
from gateway.metrics import Latency
from loadtest.valkey_cluster import ValkeyCluster
from tests.conftest import wait_for

KEYS = [f"k:{{{n}}}" for n in range(30)]


def _carried(latency: Latency) -> int:
    """Commands whose reply a lane read."""
    return sum(latency.counts)


async def _all_answer(client: aioredis.RedisCluster, timeout: float) -> list[object]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return list(await asyncio.gather(*(client.get(key) for key in KEYS)))
        except RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _port_of(client: aioredis.RedisCluster, key: str) -> int:
    node = client.get_node_from_key(key)
    assert node is not None
    return int(node.port)


async def test_lanes_carry_single_slot_commands_and_follow_moves_and_failover() -> None:
    latency = Latency("test", "lane round trips")
    with ValkeyCluster() as nodes:
        client, lanes = cluster_auto_pipelined(
            lambda cls: connect(nodes.url, cluster_class=cls),  # type: ignore[arg-type,return-value]
            lambda host, port: aioredis.Redis(host=host, port=port, decode_responses=True),
            1.0,
            latency,
        )
        job = asyncio.create_task(lanes.run())
        try:
            await client.initialize()
            await asyncio.gather(*(client.set(key, key) for key in KEYS))
            assert await _all_answer(client, 5) == KEYS
            assert _carried(latency) == 2 * len(KEYS)  # every one through a lane
            assert lanes.nodes() == {f"127.0.0.1:{port}" for port in nodes.primary_ports()}
            assert await client.ping()  # a command for any node: redis-py's path

            # A slot moved: the command the old owner refuses (MOVED) is answered, and the next
            # one rides the new owner's lane.
            key = KEYS[0]
            owner = _port_of(client, key)
            target = next(p for p in nodes.primary_ports() if p != owner)
            nodes.move_slot(key_slot(key.encode()), owner, target)
            assert await client.get(key) == key
            carried = _carried(latency)
            assert await client.get(key) == key
            assert _carried(latency) == carried + 1
            assert _port_of(client, key) == target

            # A primary killed: once its replica took over every key answers again, and its lane
            # is retired.
            victim = next(p for p in nodes.primary_ports() if p != target)
            nodes.kill(victim)
            nodes.wait_failover(victim)
            assert await _all_answer(client, 20) == KEYS

            async def retired() -> bool:
                return f"127.0.0.1:{victim}" not in lanes.nodes()

            await wait_for(retired, 5)
            carried = _carried(latency)
            assert await _all_answer(client, 5) == KEYS
            assert _carried(latency) == carried + len(KEYS)  # all through lanes again
        finally:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            await client.aclose()
