"""`bench.py fanout` and `bench.py idle`: real gateway processes under a paced load.

fanout: N clients over two instances in rooms of 10 (each room split 5 + 5), each client
alternating `typing.start` / `typing.stop` so the throttle drops none; a global pacer offers a
fixed rate of events/s, the senders taken in a shuffled order (not room by room). Reports
delivered events/s, end-to-end latency, server CPU per delivery and RSS per connection.
idle: RSS per idle authenticated connection (presence lease included).

Gateways run on CPU 0, the load generator and Valkey on CPU 1 (when the machine has two).
Everything targets loopback and stops by itself: steps are bounded in time and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil

from caches import SessionCache, connect
from caches.redis import EmbeddedRedis
from gateway.auth import mint_token
from gateway.store import SqliteStore
from loadtest.launcher import Launched, launch
from loadtest.stats import percentile
from loadtest.valkey_cluster import ValkeyCluster
from loadtest.wsclient import RawClient, open_client

__all__ = [
    "FanoutResult",
    "cluster",
    "connect_all",
    "cpu_seconds",
    "Engine",
    "gateways_on",
    "pids_cpu_seconds",
    "redis_engine",
    "mint_tokens",
    "rss",
    "until",
    "run_fanout",
]

SECRET = "benchmark-secret-0123456789abcdef0123456789"
ROOM = 10
GATEWAY = ("-m", "gateway", "serve")
FLOOR = (
    "-c",
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
    "from loadtest.floor_relay import main; main()",
)
"""The floor: the least a Python process can do per fan-out event (`loadtest/floor_relay.py`)."""


def _cpus(role: str) -> list[int] | None:
    if (os.cpu_count() or 1) < 2:
        return None
    return [0] if role == "server" else [1]


@dataclass(frozen=True, slots=True)
class FanoutResult:
    rate: float
    sent_per_s: float
    delivered_per_s: float
    ratio: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_pct: float
    cpu_us_per_delivery: float
    redis_cpu_us_per_delivery: float
    rss_kib_per_conn: float


@dataclass(frozen=True, slots=True)
class Engine:
    """The Redis a benchmark's gateways share: its URL and the PIDs of its servers."""

    url: str
    pids: list[int]


@contextlib.contextmanager
def redis_engine(kind: str = "single") -> Iterator[Engine]:
    """An embedded Valkey (`single`) or a 3 primary + 3 replica Valkey Cluster (`cluster`), its
    servers on the load generator's CPU."""
    with contextlib.ExitStack() as stack:
        if kind == "cluster":
            nodes = stack.enter_context(ValkeyCluster())
            engine = Engine(nodes.url, [p.pid for p in nodes.procs.values()])
        else:
            server = stack.enter_context(EmbeddedRedis())
            engine = Engine(server.url, [server.pid])
        cpus = _cpus("load")
        for pid in engine.pids if cpus else ():
            psutil.Process(pid).cpu_affinity(cpus)
        yield engine


@contextlib.contextmanager
def cluster(
    count: int, spread: bool = False, **settings: str
) -> Iterator[tuple[Path, str, list[Launched]]]:
    """`gateways_on` an embedded Valkey of its own."""
    with redis_engine() as engine, gateways_on(engine, count, spread, **settings) as started:
        yield started


@contextlib.contextmanager
def gateways_on(
    engine: Engine,
    count: int,
    spread: bool = False,
    program: Sequence[str] = GATEWAY,
    **settings: str,
) -> Iterator[tuple[Path, str, list[Launched]]]:
    """A temp dir and `count` gateways sharing it and `engine`: on CPU 0, or with `spread` one
    CPU each in turn (the load generator and Valkey then share theirs). The per-user quotas are
    lifted (a benchmark's users send for many); `settings` override. `program`: what to run in
    the gateways' place (`FLOOR`)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        started: list[Launched] = []
        try:
            for index in range(count):
                config = {
                    "redis_url": engine.url,
                    "store": str(workdir / "store.sqlite3"),
                    "jwt_secret": SECRET,
                    "rate_limit": "1000",
                    "rate_burst": "1000",
                    "user_send_rate": "100000",
                    "user_send_burst": "100000",
                    "log_level": "warning",
                    **settings,
                }
                log_path = workdir / f"gw{index}.log"
                cpus = [index % (os.cpu_count() or 1)] if spread else _cpus("server")
                started.append(launch(config, workdir, log_path, cpus=cpus, program=program))
            yield workdir, engine.url, started
        finally:
            for process in started:
                process.stop()


def rss(processes: list[Launched]) -> int:
    return sum(psutil.Process(p.pid).memory_info().rss for p in processes)


def cpu_seconds(processes: list[Launched], *, user_only: bool = False) -> float:
    """User + system CPU seconds of the processes (user alone with `user_only`)."""
    return pids_cpu_seconds([p.pid for p in processes], user_only=user_only)


def pids_cpu_seconds(pids: list[int], *, user_only: bool = False) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user if user_only else times.user + times.system
    return total


async def until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    """Wait for `condition`, checked every `interval`, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(interval)


async def mint_tokens(
    redis_url: str, users: list[uuid.UUID], secret: str = SECRET, ttl: float = 3600.0
) -> list[str]:
    """One session and token per user, in one process, with bounded concurrency (the pool's
    connections are not exhausted whatever the count)."""
    client = connect(redis_url)
    sessions = SessionCache(client)
    gate = asyncio.Semaphore(32)

    async def one(user: uuid.UUID) -> str:
        async with gate:
            return await mint_token(sessions, secret, user, ttl=ttl)

    try:
        return list(await asyncio.gather(*(one(u) for u in users)))
    finally:
        await client.aclose()


async def connect_all(
    urls: list[str], tokens: list[str], on_message: Sequence[Callable[[bytes], None]]
) -> list[RawClient]:
    gate = asyncio.Semaphore(100)

    async def one(index: int) -> RawClient:
        async with gate:
            return await open_client(urls[index % len(urls)], tokens[index], on_message[index])

    return list(await asyncio.gather(*(one(i) for i in range(len(tokens)))))


async def run_fanout(
    clients: int,
    rate: float,
    seconds: float,
    warmup: float = 1.5,
    redis: str = "single",
    program: Sequence[str] = GATEWAY,
) -> FanoutResult:
    """One fresh pair of gateways (or `program`s in their place) on a fresh Redis (`single` or
    `cluster`), one paced step at `rate` events/s."""
    with (
        redis_engine(redis) as engine,
        gateways_on(engine, 2, program=program) as (workdir, redis_url, gateways),
    ):
        users = [uuid.uuid4() for _ in range(clients)]
        store = await SqliteStore(str(workdir / "store.sqlite3")).open()
        rooms = []
        for start in range(0, clients, ROOM):
            members = users[start : start + ROOM]
            conversation, _ = await store.create_conversation(
                "group", members[0], members[1:], f"room {start // ROOM}"
            )
            rooms.append(str(conversation.id))
        await store.close()
        if program == FLOOR:  # it takes `user:room` for a token, as it is
            tokens = [f"{u}:{rooms[i // ROOM]}" for i, u in enumerate(users)]
        else:
            tokens = await mint_tokens(redis_url, users)
        sent_at: dict[tuple[str, int], float] = {}
        latencies: list[float] = []
        state = {"measuring": False, "delivered": 0}
        user_text = [str(u) for u in users]

        def receiver() -> Callable[[bytes], None]:
            seen: dict[str, int] = {}

            def on_message(raw: bytes) -> None:
                if b'"typing"' not in raw[:20]:
                    return
                event = orjson.loads(raw)
                sender = event["user_id"]
                n = seen.get(sender, 0) + 1
                seen[sender] = n
                if state["measuring"]:
                    state["delivered"] += 1
                    sent = sent_at.get((sender, n))
                    if sent is not None:
                        latencies.append(time.perf_counter() - sent)

            return on_message

        base_rss = rss(gateways)
        conns = await connect_all(
            [g.url for g in gateways], tokens, [receiver() for _ in range(clients)]
        )
        await asyncio.sleep(1.0)
        rss_per_conn = (rss(gateways) - base_rss) / clients / 1024
        frames = [
            [
                orjson.dumps({"type": kind, "conversation_id": rooms[i // ROOM]})
                for kind in ("typing.start", "typing.stop")
            ]
            for i in range(clients)
        ]
        counts = [0] * clients
        # Senders in shuffled order, as real traffic comes: in room order the server could batch
        # one room's events together, flattering its cost per delivery.
        order = list(range(clients))
        random.Random(7).shuffle(order)
        sent = sent_window = 0
        started = time.perf_counter()
        cpu_start = wall_start = redis_cpu_start = 0.0
        next_client = 0
        while (elapsed := time.perf_counter() - started) < warmup + seconds:
            if not state["measuring"] and elapsed >= warmup:
                state["measuring"] = True
                cpu_start, wall_start = cpu_seconds(gateways), time.perf_counter()
                redis_cpu_start = pids_cpu_seconds(engine.pids)
            due = min(int(rate * elapsed) - sent, int(rate * 0.05) + 1)
            now = time.perf_counter()
            for _ in range(max(due, 0)):
                index = order[next_client]
                next_client = (next_client + 1) % clients
                counts[index] += 1
                sent_at[(user_text[index], counts[index])] = now
                conns[index].send(frames[index][(counts[index] - 1) % 2])
            if due > 0:
                sent += due
                if state["measuring"]:
                    sent_window += due
            await asyncio.sleep(0.002)
        window = time.perf_counter() - wall_start
        cpu = cpu_seconds(gateways) - cpu_start
        redis_cpu = pids_cpu_seconds(engine.pids) - redis_cpu_start
        state["measuring"] = False
        delivered = state["delivered"]
        # Late deliveries of the window still count: wait until they stop arriving.
        settled = -1
        deadline = time.monotonic() + 10
        while len(latencies) != settled and time.monotonic() < deadline:
            settled = len(latencies)
            await asyncio.sleep(0.3)
        for conn in conns:
            conn.close()
        ordered = sorted(latencies)
        expected = sent_window * (ROOM - 1)
        return FanoutResult(
            rate=rate,
            sent_per_s=sent_window / window,
            delivered_per_s=delivered / window,
            ratio=len(ordered) / expected if expected else 0.0,
            p50_ms=percentile(ordered, 0.50) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            max_ms=(ordered[-1] * 1000) if ordered else 0.0,
            server_cpu_pct=100 * cpu / window,
            cpu_us_per_delivery=(cpu / delivered * 1e6) if delivered else 0.0,
            redis_cpu_us_per_delivery=(redis_cpu / delivered * 1e6) if delivered else 0.0,
            rss_kib_per_conn=rss_per_conn,
        )
