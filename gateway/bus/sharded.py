"""The bus on a Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis and Valkey 7+).

A sharded message travels only within the shard that owns its channel's slot, so the cost of a
publish does not grow with the cluster. The bus keeps one `RedisBus` in sharded mode per primary
that owns a subscribed channel (one subscriber connection, one reader, one liveness probe on a
channel that node owns), routes each channel to the shard that owns its slot, and groups a
shard's (un)subscriptions by slot (a cluster refuses CROSSSLOT).

The topology comes from redis-py's `RedisCluster` (its slot table, refreshed on MOVED and here
whenever a shard is in trouble). When a shard loses its node (a primary died and its replica
was promoted), or the server drops a channel whose slot moved (`sunsubscribe` during a
resharding), the bus reads the topology again and moves each channel to its new owner; a
shard that received channels from elsewhere counts its first subscription as a reconnect, so
the gateway tells its clients to `resync` (live events may have been lost in between).

redis-py's own `ClusterPubSub` was not used for reading: it polls the nodes in turn
(`get_sharded_message`), where this bus reads every node at once and hands the hub the
messages of one socket read as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import anyio
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from caches import CacheUnavailable, keys
from caches.errors import REDIS_FAILURES, raise_unavailable, translated
from gateway.bus.base import Delivery, Reconnected
from gateway.bus.redis import RedisBus

__all__ = ["ShardedBus"]

log = logging.getLogger(__name__)

CLASSIC_CHANNELS = frozenset({keys.REVOCATIONS_CHANNEL})
"""Channels the caches library publishes on with a classic PUBLISH (revocations: rare, and sent
by the application's backend, which may not speak sharded pub/sub). A classic message reaches
every node of a cluster, so one classic subscription on any primary hears it."""

NodeClient = Callable[[str, int], aioredis.Redis]
"""A subscriber client (not decoding) for the node at host, port."""


class ShardedBus:
    """`cluster` sends the publishes (SPUBLISH, routed by slot) and knows the topology."""

    def __init__(
        self,
        *,
        cluster: RedisCluster,
        node_client: NodeClient,
        instance_id: str,
        probe_interval: float,
        timeout: float,
    ) -> None:
        self._cluster = cluster
        self._node_client = node_client
        self._instance_id = instance_id
        self._probe_interval = probe_interval
        self._timeout = timeout
        self._channels: set[str] = set()
        self._owner: dict[str, str] = {}  # channel -> node name
        self._shards: dict[str, RedisBus] = {}
        self._running: dict[str, anyio.CancelScope] = {}
        self._trouble = asyncio.Event()
        self._started = asyncio.Event()
        self._group: anyio.abc.TaskGroup | None = None
        self._deliver: Delivery | None = None
        self._reconnected: Reconnected | None = None
        self.reconnects = 0
        self.moves = 0

    @property
    def connected(self) -> bool:
        return self._started.is_set() and all(s.connected for s in self._shards.values())

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def _classic_shard(self) -> tuple[str, RedisBus]:
        """The classic subscription, on the first primary (moved when that one goes)."""
        node = self._cluster.get_primaries()[0]
        name = _classic_name(node)
        shard = self._shards.get(name)
        if shard is None:
            shard = self._bus_on(node)
            self._start(name, shard)
        return name, shard

    def owner(self, channel: str) -> str | None:
        """The node (`host:port`) whose shard carries `channel` now."""
        return self._owner.get(channel)

    def subscribe(self, channel: str) -> None:
        if channel in self._channels:
            return
        self._channels.add(channel)
        if self._started.is_set():
            self._route(channel, gap=False)

    def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        owner = self._owner.pop(channel, None)
        shard = self._shards.get(owner) if owner is not None else None
        if shard is not None:
            shard.unsubscribe(channel)

    async def confirmed(self, channels: Iterable[str], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._started.wait()
            by_shard: dict[str, list[str]] = {}
            for channel in channels:
                owner = self._owner.get(channel)
                if owner is None:
                    raise TimeoutError(f"{channel} is not subscribed")
                by_shard.setdefault(owner, []).append(channel)
            await asyncio.gather(
                *(self._shards[o].confirmed(c, timeout) for o, c in by_shard.items())
            )

    async def publish(self, channel: str, payload: bytes) -> None:
        try:
            await self._cluster.execute_command("SPUBLISH", channel, payload)
        except REDIS_FAILURES as exc:
            raise_unavailable(exc)

    async def run(self, deliver: Delivery, reconnected: Reconnected) -> None:
        """Keep every shard up and every channel on its owner until cancelled."""
        self._deliver, self._reconnected = deliver, reconnected
        async with anyio.create_task_group() as group:
            self._group = group
            await self._refresh()
            # A shard per primary from the start: a channel joined later waits for one
            # SSUBSCRIBE, never for a new connection.
            for node in self._cluster.get_primaries():
                self._shard(node, gap=False)
            for channel in sorted(self._channels):
                self._route(channel, gap=False)
            self._started.set()
            await self._watch()

    async def _watch(self) -> None:
        """Read the topology again when a shard is in trouble (or every few probes): a shard
        for every primary, the channels whose owner changed moved, the shards of nodes that
        are no longer primaries stopped."""
        quiet = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._probe_interval):
                    await self._trouble.wait()
            quiet += 1
            troubled = self._trouble.is_set() or not all(s.connected for s in self._shards.values())
            if not troubled and quiet < 10:
                continue
            quiet = 0
            self._trouble.clear()
            try:
                await self._refresh()
            except (CacheUnavailable, OSError, TimeoutError) as exc:
                log.warning("bus: cluster topology unreadable: %s", exc)
                continue
            nodes = self._cluster.get_primaries()
            primaries = {node.name: node for node in nodes}
            for node in nodes:
                self._shard(node, gap=True)
            classic = _classic_name(nodes[0])
            for name in [n for n in self._shards if n not in primaries and n != classic]:
                self._stop(name)
            moved: dict[str, list[str]] = {}
            for channel in sorted(self._channels):
                if self._owner.get(channel) not in self._shards or (
                    channel not in CLASSIC_CHANNELS
                    and self._owner.get(channel) != self._owner_of(channel).name
                ):
                    if self._route(channel, gap=True):
                        moved.setdefault(self._owner[channel], []).append(channel)
            for owner, channels in moved.items():
                # Between the old owner dropping them and the new one taking them, their
                # events were lost: once subscribed again, their clients resync (one call
                # per shard, not per channel).
                assert self._group is not None
                self._group.start_soon(self._resync_moved, self._shards[owner], channels)

    async def _refresh(self) -> None:
        """The slot table, read again from a live node (redis-py's `nodes_manager`, which
        `RedisCluster` itself refreshes on MOVED)."""
        async with asyncio.timeout(self._timeout):
            await translated(self._cluster.initialize())
            await translated(self._cluster.nodes_manager.initialize())

    def _owner_of(self, channel: str) -> ClusterNode:
        node = self._cluster.get_node_from_key(channel)
        if node is None:
            raise CacheUnavailable(f"no node serves the slot of {channel}")
        return node

    def _route(self, channel: str, *, gap: bool) -> bool:
        """Subscribe `channel` on the shard of the node that owns its slot (moving it off its
        previous one); whether it moved."""
        if channel in CLASSIC_CHANNELS:
            self._owner[channel], shard = self._classic_shard()
            shard.subscribe(channel)
            return False
        node = self._owner_of(channel)
        previous = self._owner.get(channel)
        moved = previous is not None and previous != node.name
        if moved:
            old = self._shards.get(str(previous))
            if old is not None:
                old.unsubscribe(channel)
            self.moves += 1
        self._owner[channel] = node.name
        shard = self._shard(node, gap=gap)
        shard.subscribe(channel)
        return moved

    async def _resync_moved(self, shard: RedisBus, channels: list[str]) -> None:
        # Each confirmed on its own: one left meanwhile (never confirmed) holds no other back.
        confirmed = await asyncio.gather(
            *(shard.confirmed([c], self._timeout * 5) for c in channels), return_exceptions=True
        )
        if any(result is not None for result in confirmed):
            self._trouble.set()  # some not taken yet: the watcher looks again
        still = frozenset(
            c.encode()
            for c, result in zip(channels, confirmed, strict=True)
            if result is None and self._owner.get(c) is not None
        )
        if self._reconnected is not None and still:
            try:
                await self._reconnected(still)
            except Exception:  # the gateway's edge: logged, never the bus's end
                log.exception("bus: telling the clients of moved channels failed")

    def _shard(self, node: ClusterNode, *, gap: bool) -> RedisBus:
        shard = self._shards.get(node.name)
        if shard is not None:
            return shard
        shard = self._bus_on(
            node,
            slot_of=self._cluster.keyslot,
            probe_channel=self._probe_channel(node),
            moved=lambda channel: self._trouble.set(),
            gap_at_start=gap,
        )
        self._start(node.name, shard)
        return shard

    def _bus_on(
        self,
        node: ClusterNode,
        *,
        slot_of: Callable[[str], int] | None = None,
        probe_channel: str | None = None,
        moved: Callable[[bytes], None] | None = None,
        gap_at_start: bool = False,
    ) -> RedisBus:
        """A bus on one node's own connection: sharded with `slot_of`, classic without."""
        return RedisBus(
            subscriber=self._node_client(node.host, int(node.port)),
            publisher=self._cluster,
            instance_id=self._instance_id,
            probe_interval=self._probe_interval,
            timeout=self._timeout,
            slot_of=slot_of,
            probe_channel=probe_channel,
            moved=moved,
            gap_at_start=gap_at_start,
        )

    def _start(self, name: str, shard: RedisBus) -> None:
        self._shards[name] = shard
        assert self._group is not None
        scope = anyio.CancelScope()
        self._running[name] = scope
        self._group.start_soon(self._run_shard, name, shard, scope)

    async def _run_shard(self, name: str, shard: RedisBus, scope: anyio.CancelScope) -> None:
        assert self._deliver is not None
        with scope:
            await shard.run(self._deliver, lambda _: self._shard_reconnected(shard))
        if self._shards.get(name) is shard:
            del self._shards[name]

    async def _shard_reconnected(self, shard: RedisBus) -> None:
        """Only the shard's channels may have missed events: their clients resync."""
        self.reconnects += 1
        self._trouble.set()  # a node came back, or took over channels: look at the topology
        if self._reconnected is not None:
            await self._reconnected(frozenset(c.encode() for c in shard.channels))

    def _stop(self, name: str) -> None:
        scope = self._running.pop(name, None)
        self._shards.pop(name, None)
        if scope is not None:
            scope.cancel()

    def _probe_channel(self, node: ClusterNode) -> str:
        """A probe channel of this instance whose slot `node` owns."""
        for index in range(100_000):
            channel = f"ch:probe:{{{self._instance_id}.{index}}}"
            if self._owner_of(channel).name == node.name:
                return channel
        raise CacheUnavailable(f"no slot of {node.name} found for a probe")


def _classic_name(node: ClusterNode) -> str:
    """The name of the classic subscription when it lives on `node`."""
    return f"classic:{node.name}"
