"""`bench.py heartbeats`, `idle` and `storm`: gateways holding and taking many connections.

heartbeats: N authenticated idle connections (RSS per connection measured), then every one sends
a heartbeat within `spread` seconds: failures (anything but `heartbeat_ack`), ack latency and
server CPU per heartbeat. heartbeats and idle hold their connections in load-generator worker
processes (`loadtest.fleet`), as many as one process's open-files limit needs. storm: N clients
on one instance reconnect to the survivors when it drains (SIGTERM; its closes spread over
`--drain-timeout`), each at once on its `reconnect` frame: connect p50/p99 (TCP connect to the
101 with the bearer token checked), authenticated connections/s taken by the survivors, presence
of everyone afterwards, and every `offline` event watchers on the survivors saw (a flap).
`storm --fresh`: N clients connect at once to one fresh instance. Loopback only; bounded in
time and count.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import psutil

from gateway.limits import connection_room
from loadtest.bench_fanout import cluster, connect_all, cpu_seconds, mint_tokens, rss, until
from loadtest.fleet import Fleet, processes_for
from loadtest.launcher import Launched
from loadtest.stats import percentile
from loadtest.wsclient import RawClient, ignore, open_client, open_clients

__all__ = [
    "BurstFigures",
    "DrainStormResult",
    "HeartbeatResult",
    "IdleResult",
    "StormResult",
    "held_by_one_gateway",
    "run_drain_storm",
    "run_heartbeats",
    "run_idle",
    "run_storm",
]


@dataclass(frozen=True, slots=True)
class BurstFigures:
    ack_p50_ms: float
    ack_p99_ms: float
    cpu_us_per_heartbeat: float
    user_cpu_us_per_heartbeat: float


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    connections: int
    failed: int
    """Over both bursts, with the connections refused."""
    first: BurstFigures
    """The first burst after connecting: the process still grows its heap for the heartbeats
    in flight (page faults), as after a fresh start."""
    later: BurstFigures
    """A burst a second later: the steady state of an instance that has been running."""
    rss_kib_per_conn: float


@dataclass(frozen=True, slots=True)
class IdleResult:
    connections: int
    rss_kib_per_conn: float


@dataclass(frozen=True, slots=True)
class StormResult:
    clients: int
    connected: int
    timed_out: int
    greeted: int
    """Connections that got their `hello` (the rest were closed, e.g. 1013)."""
    connect_p50_ms: float
    connect_p99_ms: float
    connections_per_s: float
    cpu_ms_per_connection: float


@dataclass(frozen=True, slots=True)
class DrainStormResult:
    clients: int
    reconnected: int
    failed: int
    connect_p50_ms: float
    connect_p99_ms: float
    connections_per_s: float
    wave_s: float
    online_after: int
    offline_events: int
    survivors_cpu_pct: float
    draining_cpu_pct: float
    loadgen_cpu_pct: float
    durations_ms: list[float] = field(repr=False)


def held_by_one_gateway(asked: int) -> int:
    """`asked`, or what one gateway started from here can hold when that is fewer: it inherits
    this process's hard open-files limit and keeps some descriptors for itself (said on the
    console, so a capped run is never read as failed connections)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = asked if hard == resource.RLIM_INFINITY else connection_room(hard)
    if room >= asked:
        return asked
    print(f"  one gateway here has room for {room:,} connections (open-files limit {hard:,})")
    return room


async def run_heartbeats(
    connections: int, spread: float = 1.0, processes: int | None = None
) -> HeartbeatResult:
    """`connections` held by `processes` load-generator processes (by default as many as
    their open-files limit needs), then one heartbeat on each within `spread` seconds, twice:
    the first burst after connecting, and another a second later."""
    with cluster(1) as (_, redis_url, gateways):
        tokens = await mint_tokens(redis_url, [uuid.uuid4() for _ in range(connections)])
        base = rss(gateways)
        workers = processes or processes_for(connections)
        async with Fleet(gateways[0].url, tokens, workers) as fleet:
            await asyncio.sleep(2.0)
            per_conn = (rss(gateways) - base) / max(fleet.connected, 1) / 1024
            print(f"  burst starts: {fleet.connected:,} connections, {workers} clients", flush=True)
            first, first_failed = await _burst(fleet, gateways, spread)
            await asyncio.sleep(1.0)
            later, later_failed = await _burst(fleet, gateways, spread)
        return HeartbeatResult(
            connections=fleet.connected,
            failed=first_failed + later_failed + fleet.refused,
            first=first,
            later=later,
            rss_kib_per_conn=per_conn,
        )


async def _burst(fleet: Fleet, gateways: list[Launched], spread: float) -> tuple[BurstFigures, int]:
    cpu_start = cpu_seconds(gateways)
    user_start = cpu_seconds(gateways, user_only=True)
    burst = await fleet.heartbeat_burst(spread)
    cpu = cpu_seconds(gateways) - cpu_start
    user = cpu_seconds(gateways, user_only=True) - user_start
    ordered = sorted(burst.latencies)
    count = max(fleet.connected, 1)
    figures = BurstFigures(
        ack_p50_ms=percentile(ordered, 0.5) * 1000,
        ack_p99_ms=percentile(ordered, 0.99) * 1000,
        cpu_us_per_heartbeat=cpu / count * 1e6,
        user_cpu_us_per_heartbeat=user / count * 1e6,
    )
    return figures, burst.failed


async def run_idle(connections: int, processes: int | None = None) -> IdleResult:
    """RSS growth of one gateway per idle authenticated connection."""
    with cluster(1) as (_, redis_url, gateways):
        tokens = await mint_tokens(redis_url, [uuid.uuid4() for _ in range(connections)])
        base = rss(gateways)
        async with Fleet(gateways[0].url, tokens, processes or processes_for(connections)) as fleet:
            await asyncio.sleep(1.5)
            grown = rss(gateways) - base
        return IdleResult(fleet.connected, grown / max(fleet.connected, 1) / 1024)


async def run_storm(clients: int, concurrency: int = 10_000) -> StormResult:
    with cluster(1) as (_, redis_url, gateways):
        tokens = await mint_tokens(redis_url, [uuid.uuid4() for _ in range(clients)])
        hellos = [0]

        def greeted(raw: bytes) -> None:
            if raw.startswith(b'{"type":"hello"'):
                hellos[0] += 1

        cpu_start = cpu_seconds(gateways)
        started = time.perf_counter()
        opened, durations = await open_clients(
            gateways[0].url, tokens, concurrency, 30.0, [greeted] * clients
        )
        conns = [conn for conn in opened if conn is not None]
        failed = len(opened) - len(conns)
        await until(lambda: hellos[0] + sum(c.closed for c in conns) >= len(conns), 30)
        window = time.perf_counter() - started
        cpu = cpu_seconds(gateways) - cpu_start
        for conn in conns:
            conn.close()
        ordered = sorted(durations)
        return StormResult(
            clients=clients,
            connected=len(conns),
            timed_out=failed,
            greeted=hellos[0],
            connect_p50_ms=percentile(ordered, 0.5) * 1000,
            connect_p99_ms=percentile(ordered, 0.99) * 1000,
            connections_per_s=len(conns) / window,
            cpu_ms_per_connection=cpu / max(len(conns), 1) * 1000,
        )


async def run_drain_storm(
    clients: int, survivors: int = 2, window: float = 2.0, grace: float = 5.0
) -> DrainStormResult:
    """`clients` on one instance, watched from the survivors; the instance drains over `window`
    seconds and every client reconnects to a survivor on its `reconnect` frame. The survivors
    have a CPU each (the draining instance shares the last one's)."""
    settings = {"drain_timeout": str(window), "grace": str(grace), "sweep_interval": "1"}
    with cluster(survivors + 1, spread=True, **settings) as (_, redis_url, gateways):
        rest, draining = gateways[:-1], gateways[-1]
        users = [uuid.uuid4() for _ in range(clients)]
        watcher_count = max(10, math.ceil(clients / 1000))
        tokens = await mint_tokens(redis_url, users + [uuid.uuid4() for _ in range(watcher_count)])
        offline = [0]
        subscribed = [0]

        def watcher_sink(raw: bytes) -> None:
            if raw.startswith(b'{"type":"presence"') and b'"offline"' in raw:
                offline[0] += 1
            elif raw.startswith(b'{"type":"ack"'):
                subscribed[0] += 1

        watchers = await connect_all(
            [g.url for g in rest], tokens[clients:], [watcher_sink] * watcher_count
        )
        share = math.ceil(clients / watcher_count)
        for index, watcher in enumerate(watchers):
            watched = [str(u) for u in users[index * share : (index + 1) * share]]
            watcher.send(
                orjson.dumps({"type": "presence.subscribe", "id": "s", "user_ids": watched})
            )
        await until(lambda: subscribed[0] >= watcher_count, 30)

        loop = asyncio.get_running_loop()
        durations: list[float] = []
        accepted_at: list[float] = []
        reconnects: list[asyncio.Task[None]] = []
        failed = [0]
        fresh: list[RawClient] = []

        async def reconnect(index: int) -> None:
            started = time.perf_counter()
            try:
                conn = await open_client(rest[index % len(rest)].url, tokens[index], ignore, 30)
            except (OSError, TimeoutError, ConnectionError):
                failed[0] += 1
                return
            accepted_at.append(time.perf_counter())
            durations.append(accepted_at[-1] - started)
            fresh.append(conn)

        def client_sink(index: int) -> Callable[[bytes], None]:
            def on_message(raw: bytes) -> None:
                if raw.startswith(b'{"type":"reconnect"'):
                    reconnects.append(loop.create_task(reconnect(index)))

            return on_message

        opened, _ = await open_clients(
            draining.url, tokens[:clients], 200, 60.0, [client_sink(i) for i in range(clients)]
        )
        conns = [conn for conn in opened if conn is not None]
        refused = len(opened) - len(conns)
        cpu_before = [cpu_seconds([g]) for g in gateways], _own_cpu()
        wave_start = time.perf_counter()
        draining.proc.terminate()
        await until(lambda: len(reconnects) >= len(conns), window + 30)
        await asyncio.gather(*reconnects)
        wave = (max(accepted_at) - wave_start) if accepted_at else 0.0
        used = [cpu_seconds([g]) - before for g, before in zip(rest, cpu_before[0], strict=False)]
        draining_cpu = _exit_cpu(draining) - cpu_before[0][-1]
        loadgen_cpu = _own_cpu() - cpu_before[1]
        print(f"    no reconnect frame: {len(conns) - len(reconnects)}, failed: {failed[0]}")
        # Past the grace (and a sweep) any flap would have been announced by now.
        await asyncio.sleep(grace + 2.0)
        online = await asyncio.to_thread(
            _count_online, rest[0].http, tokens[clients], [str(u) for u in users]
        )
        for conn in [*conns, *fresh, *watchers]:
            conn.close()
        ordered = sorted(durations)
        return DrainStormResult(
            clients=clients,
            reconnected=len(fresh),
            failed=failed[0] + refused + len(conns) - len(reconnects),
            connect_p50_ms=percentile(ordered, 0.5) * 1000,
            connect_p99_ms=percentile(ordered, 0.99) * 1000,
            connections_per_s=len(fresh) / wave if wave else 0.0,
            wave_s=wave,
            online_after=online,
            offline_events=offline[0],
            survivors_cpu_pct=100 * sum(used) / wave / len(rest) if wave else 0.0,
            draining_cpu_pct=100 * draining_cpu / wave if wave else 0.0,
            loadgen_cpu_pct=100 * loadgen_cpu / wave if wave else 0.0,
            durations_ms=[d * 1000 for d in durations],
        )


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _exit_cpu(process: Launched) -> float:
    """CPU seconds of a gateway that may have exited (then: what it used in all)."""
    try:
        return cpu_seconds([process])
    except psutil.NoSuchProcess:
        return 0.0


def _count_online(http: str, token: str, users: list[str]) -> int:
    online = 0
    for start in range(0, len(users), 1000):
        body = orjson.dumps({"user_ids": users[start : start + 1000]})
        request = urllib.request.Request(
            f"{http}/api/v1/users/presence/bulk",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = orjson.loads(response.read())
        online += sum(1 for status in answer.values() if status == "online")
    return online
