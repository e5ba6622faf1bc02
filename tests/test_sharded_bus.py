"""The sharded bus on a real 3-primary, 3-replica cluster: channels on every primary, a shard's
pub/sub connection killed, a primary killed (its replica promoted), a slot moved."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis import Redis as SyncRedis
from redis.crc import key_slot

from caches.redis import connect
from gateway.bus.sharded import ShardedBus
from loadtest.valkey_cluster import ValkeyCluster

CHANNELS = [f"ch:conv:{{room-{n}}}" for n in range(36)]
moved: set[bytes] = set()
"""The channels the bus last said may have missed events."""


@asynccontextmanager
async def running_bus(
    cluster: ValkeyCluster,
) -> AsyncIterator[tuple[ShardedBus, list[tuple[bytes, bytes]], list[float]]]:
    client = connect(cluster.url, decode_responses=False)
    assert not isinstance(client, aioredis.Redis)
    subscribers: list[aioredis.Redis] = []

    def subscriber(host: str, port: int) -> aioredis.Redis:
        subscribers.append(aioredis.Redis(host=host, port=port))
        return subscribers[-1]

    bus = ShardedBus(
        cluster=client,
        node_client=subscriber,
        instance_id="gw-test",
        probe_interval=0.2,
        timeout=1.0,
    )
    received: list[tuple[bytes, bytes]] = []
    resyncs: list[float] = []
    moved.clear()

    async def reconnected(channels: frozenset[bytes] | None) -> None:
        assert channels is not None  # only the channels of the shard that was away
        resyncs.append(time.monotonic())
        moved.update(channels)

    task = asyncio.create_task(bus.run(received.extend, reconnected))
    try:
        for channel in CHANNELS:
            bus.subscribe(channel)
        await bus.confirmed(CHANNELS, 10)
        yield bus, received, resyncs
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for node in subscribers:
            await node.aclose()
        await client.aclose()


async def _all_delivered(bus: ShardedBus, received: list[tuple[bytes, bytes]], tag: str) -> None:
    """Publish one message per channel until every one arrives (a publish into a gap may be
    lost: that is what `resync` is for)."""
    deadline = time.monotonic() + 20
    while True:
        for channel in CHANNELS:
            try:
                await bus.publish(channel, tag.encode())
            except Exception:
                pass
        await asyncio.sleep(0.2)
        got = {c.decode() for c, payload in received if payload == tag.encode()}
        if got == set(CHANNELS):
            return
        assert time.monotonic() < deadline, f"{tag}: missing {sorted(set(CHANNELS) - got)}"


async def test_channels_on_every_primary_are_delivered(cluster: ValkeyCluster) -> None:
    async with running_bus(cluster) as (bus, received, _):
        owners = {bus.owner(c) for c in CHANNELS}
        assert len(owners) == 3
        await _all_delivered(bus, received, "first")
        assert bus.connected


async def test_a_killed_pubsub_connection_is_resubscribed(cluster: ValkeyCluster) -> None:
    async with running_bus(cluster) as (bus, received, resyncs):
        await _all_delivered(bus, received, "before")
        for port in cluster.primary_ports():
            with SyncRedis(port=port) as admin:
                admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await _all_delivered(bus, received, "after")
        assert resyncs  # the gateway is told events may have been lost


async def test_a_primary_killed_its_channels_move_to_the_promoted_replica() -> None:
    with ValkeyCluster() as cluster:
        async with running_bus(cluster) as (bus, received, resyncs):
            await _all_delivered(bus, received, "before")
            victim = cluster.primary_ports()[0]
            on_victim = [c for c in CHANNELS if bus.owner(c) == f"127.0.0.1:{victim}"]
            assert len(on_victim) >= 6
            killed = time.monotonic()
            cluster.kill(victim)
            cluster.wait_failover(victim)
            await _all_delivered(bus, received, "after")
            assert {c.encode() for c in on_victim} <= moved  # their clients resync
            # ... told together: the moved channels in one call, not one each (each call
            # re-asserts the instance's presence).
            assert len(resyncs) <= 3, len(resyncs)
            print(f"live delivery back {time.monotonic() - killed:.1f} s after the kill")


async def test_a_moved_slot_moves_its_channel() -> None:
    with ValkeyCluster() as cluster:
        async with running_bus(cluster) as (bus, received, resyncs):
            await _all_delivered(bus, received, "before")
            channel = CHANNELS[0]
            source = int(str(bus.owner(channel)).rpartition(":")[2])
            target = next(p for p in cluster.primary_ports() if p != source)
            cluster.move_slot(key_slot(channel.encode()), source, target)
            await _all_delivered(bus, received, "after")
            assert bus.owner(channel) == f"127.0.0.1:{target}"
            assert bus.moves >= 1
            assert channel.encode() in moved  # its clients are told to resync
