"""`bench.py publish`: how much pub/sub one Redis deployment carries, and whether it grows with
the number of primaries.

The gateway's bus shape, without the gateways (whose CPU would be the limit long before Redis's
on a small machine): conversation channels (`ch:conversation:{id}`), two subscriber connections
per node standing for two gateway instances (each subscribed to every channel that node
serves, as the sharded bus does), and publishers keeping every node busy with pipelined
batches of 150-byte events (closed loop: a batch's replies before the next). Commands are
packed once and written as bytes, so the load generator costs little next to the servers.

Measured per deployment: events published per second, deliveries per second (what the
subscribers read) and the servers' CPU per published event. Runs against loopback only, each
step bounded in time, everything started here stopped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hiredis
from redis import Redis as SyncRedis
from redis.crc import key_slot

from caches.redis import EmbeddedRedis
from loadtest.bench_fanout import pids_cpu_seconds
from loadtest.valkey_cluster import ValkeyCluster, free_ports

__all__ = ["DEPLOYMENTS", "PublishResult", "run_publish"]

CHANNELS = 3000
SUBSCRIBERS_PER_NODE = 2
PUBLISHERS_PER_NODE = 4
BATCH = 200
PAYLOAD = b"x" * 150

DEPLOYMENTS = {
    "single": "one Valkey, PUBLISH",
    "cluster-1": "cluster of 1 primary, SPUBLISH",
    "cluster-3": "cluster of 3 primaries, SPUBLISH",
}


@dataclass(frozen=True, slots=True)
class PublishResult:
    published_per_s: float
    delivered_per_s: float
    server_cpu_pct: float
    server_cpu_us_per_event: float
    busiest_server_cpu_pct: float
    capacity_per_s: float
    """Events/s when the busiest node has a core to itself: the deployment's knee given cores."""


@dataclass(frozen=True, slots=True)
class _Node:
    port: int
    pid: int
    channels: list[bytes]


@contextlib.contextmanager
def _deployment(kind: str) -> Iterator[list[_Node]]:
    """The nodes of `kind`, each with the channels whose slot it serves."""
    channels = [f"ch:conversation:{{{uuid.uuid4()}}}".encode() for _ in range(CHANNELS)]
    if kind == "single":
        (port,) = free_ports(1)
        with EmbeddedRedis(tcp_port=port) as server:
            yield [_Node(port, server.pid, channels)]
        return
    primaries = 1 if kind == "cluster-1" else 3
    with ValkeyCluster(primaries=primaries, replicas=0) as cluster:
        owners: dict[int, list[bytes]] = {port: [] for port in cluster.primary_ports()}
        slot_owner = _slot_owners(cluster)
        for channel in channels:
            owners[slot_owner[key_slot(channel)]].append(channel)
        yield [_Node(port, cluster.procs[port].pid, owned) for port, owned in owners.items()]


def _slot_owners(cluster: ValkeyCluster) -> dict[int, int]:
    with SyncRedis(port=cluster.ports[0]) as admin:
        ranges = admin.execute_command("CLUSTER", "SLOTS")
    owners = {}
    for start, end, primary, *_ in ranges:
        for slot in range(int(start), int(end) + 1):
            owners[slot] = int(primary[1])
    return owners


def _pack(*args: Any) -> bytes:
    packed: bytes = hiredis.pack_command(args)
    return packed


async def _subscriber(port: int, channels: list[bytes], sharded: bool, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    command = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
    writer.write(b"".join(_pack(command, channel) for channel in channels))
    marker = b"smessage" if sharded else b"message"
    try:
        while data := await reader.read(1 << 18):
            # A marker split across reads is missed: a count low by a few in a million.
            counts[0] += data.count(marker)
    finally:
        writer.close()


async def _publisher(port: int, channels: list[bytes], sharded: bool, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    command = b"SPUBLISH" if sharded else b"PUBLISH"
    batches = [
        b"".join(
            _pack(command, channels[(start + i) % len(channels)], PAYLOAD) for i in range(BATCH)
        )
        for start in range(0, len(channels), BATCH)
    ]
    try:
        turn = 0
        while True:
            writer.write(batches[turn % len(batches)])
            turn += 1
            replies = 0
            while replies < BATCH:
                data = await reader.read(1 << 16)
                if not data:
                    return
                replies += data.count(b"\r\n")  # each reply is one integer line
            counts[0] += BATCH
    finally:
        writer.close()


async def run_publish(kind: str, seconds: float, warmup: float = 1.0) -> PublishResult:
    """One fresh deployment of `kind` (a key of DEPLOYMENTS), publishers on every node."""
    sharded = kind.startswith("cluster")
    with _deployment(kind) as nodes:
        published, delivered = [0], [0]
        tasks = []
        for node in nodes:
            for _ in range(SUBSCRIBERS_PER_NODE):
                tasks.append(
                    asyncio.create_task(_subscriber(node.port, node.channels, sharded, delivered))
                )
        await asyncio.sleep(0.5)  # the subscriptions are written; their replies are not awaited
        for node in nodes:
            for _ in range(PUBLISHERS_PER_NODE):
                tasks.append(
                    asyncio.create_task(_publisher(node.port, node.channels, sharded, published))
                )
        pids = [node.pid for node in nodes]
        try:
            await asyncio.sleep(warmup)
            start_published, start_delivered = published[0], delivered[0]
            per_node = [pids_cpu_seconds([pid]) for pid in pids]
            started = time.perf_counter()
            await asyncio.sleep(seconds)
            window = time.perf_counter() - started
            node_cpu = [
                pids_cpu_seconds([pid]) - before for pid, before in zip(pids, per_node, strict=True)
            ]
            events = published[0] - start_published
            return PublishResult(
                published_per_s=events / window,
                delivered_per_s=(delivered[0] - start_delivered) / window,
                server_cpu_pct=100 * sum(node_cpu) / window,
                server_cpu_us_per_event=sum(node_cpu) / events * 1e6 if events else 0.0,
                busiest_server_cpu_pct=100 * max(node_cpu) / window,
                capacity_per_s=events / max(node_cpu) if events else 0.0,
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
