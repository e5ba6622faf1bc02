"""`bench.py heartbeats` and `bench.py storm`: one gateway holding many connections.

heartbeats: N authenticated idle connections (RSS per connection measured), then every one sends
a heartbeat within `spread` seconds: failures (anything but `heartbeat_ack`), ack latency and
server CPU per heartbeat. storm: N clients connect at once (the drained-instance wave): connect
p50/p99 (TCP connect to the 101 with the bearer token checked), authenticated connections/s and
how many timed out. One load-generator process; loopback only; bounded in time and count.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from loadtest.bench_fanout import cluster, cpu_seconds, mint_tokens, rss
from loadtest.stats import percentile
from loadtest.wsclient import RawClient, open_client

__all__ = ["HeartbeatResult", "StormResult", "run_heartbeats", "run_storm"]


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    connections: int
    failed: int
    ack_p50_ms: float
    ack_p99_ms: float
    cpu_us_per_heartbeat: float
    rss_kib_per_conn: float


@dataclass(frozen=True, slots=True)
class StormResult:
    clients: int
    connected: int
    timed_out: int
    connect_p50_ms: float
    connect_p99_ms: float
    connections_per_s: float
    cpu_ms_per_connection: float


async def _connect_many(
    url: str, tokens: list[str], concurrency: int, timeout: float, on_message: object = None
) -> tuple[list[RawClient], list[float], int]:
    """Open a connection per token, at most `concurrency` opening at once: the clients, each
    connect's duration, and how many failed or timed out."""
    gate = asyncio.Semaphore(concurrency)
    durations: list[float] = []
    opened: list[RawClient] = []
    failed = 0

    async def one(token: str, sink: object) -> None:
        nonlocal failed
        async with gate:
            started = time.perf_counter()
            try:
                client = await open_client(url, token, sink, timeout)  # type: ignore[arg-type]
            except (OSError, TimeoutError, ConnectionError):
                failed += 1
                return
            durations.append(time.perf_counter() - started)
            opened.append(client)

    sinks = on_message if isinstance(on_message, list) else [lambda raw: None] * len(tokens)
    await asyncio.gather(*(one(t, s) for t, s in zip(tokens, sinks, strict=True)))
    return opened, durations, failed


async def run_heartbeats(connections: int, spread: float = 1.0) -> HeartbeatResult:
    with cluster(1) as (_, redis_url, gateways):
        tokens = await mint_tokens(redis_url, [uuid.uuid4() for _ in range(connections)])
        sent_at: list[float] = [0.0] * connections
        latencies: list[float] = []
        failures = [0]

        def receiver(index: int) -> object:
            def on_message(raw: bytes) -> None:
                if raw.startswith(b'{"type":"heartbeat_ack"'):
                    latencies.append(time.perf_counter() - sent_at[index])
                elif raw.startswith(b'{"type":"error"'):
                    failures[0] += 1

            return on_message

        base = rss(gateways)
        conns, _, refused = await _connect_many(
            gateways[0].url, tokens, 200, 60.0, [receiver(i) for i in range(connections)]
        )
        await asyncio.sleep(2.0)
        per_conn = (rss(gateways) - base) / max(len(conns), 1) / 1024
        cpu_start = cpu_seconds(gateways)
        print("  burst starts", flush=True)
        started = time.perf_counter()
        for index, conn in enumerate(conns):  # spread evenly over `spread` seconds
            due = started + spread * index / len(conns)
            if due - time.perf_counter() > 0.002:
                await asyncio.sleep(due - time.perf_counter())
            sent_at[index] = time.perf_counter()
            conn.send(b'{"type":"heartbeat","id":"h"}')
        deadline = time.monotonic() + 30
        while len(latencies) + failures[0] < len(conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cpu = cpu_seconds(gateways) - cpu_start
        missing = len(conns) - len(latencies) - failures[0]
        for conn in conns:
            conn.close()
        ordered = sorted(latencies)
        return HeartbeatResult(
            connections=len(conns),
            failed=failures[0] + missing + refused,
            ack_p50_ms=percentile(ordered, 0.5) * 1000,
            ack_p99_ms=percentile(ordered, 0.99) * 1000,
            cpu_us_per_heartbeat=cpu / max(len(conns), 1) * 1e6,
            rss_kib_per_conn=per_conn,
        )


async def run_storm(clients: int, concurrency: int = 10_000) -> StormResult:
    with cluster(1) as (_, redis_url, gateways):
        tokens = await mint_tokens(redis_url, [uuid.uuid4() for _ in range(clients)])
        cpu_start = cpu_seconds(gateways)
        started = time.perf_counter()
        conns, durations, failed = await _connect_many(gateways[0].url, tokens, concurrency, 30.0)
        window = time.perf_counter() - started
        cpu = cpu_seconds(gateways) - cpu_start
        for conn in conns:
            conn.close()
        ordered = sorted(durations)
        return StormResult(
            clients=clients,
            connected=len(conns),
            timed_out=failed,
            connect_p50_ms=percentile(ordered, 0.5) * 1000,
            connect_p99_ms=percentile(ordered, 0.99) * 1000,
            connections_per_s=len(conns) / window,
            cpu_ms_per_connection=cpu / max(len(conns), 1) * 1000,
        )
