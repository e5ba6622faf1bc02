"""`bench.py messages`: message sends through two real gateway instances on one SQLite file.

Clients in rooms of `room` members (split over both instances) send at a paced total rate; the
step reports send->ack and send->delivered latencies, and server CPU, after a second of the
same load as a warm-up (each store pool grows, each connection prepares its statements). A
history phase then has every client re-read its room's newest page and reports reads/s and the
share served from the cache (from the gateways' /metrics). A probe times single sends into a
1,000-member group. A last capacity step offers more sends than the gateways can take and
reports how many they persist per second (acks counted; deliveries not parsed, so the load
generator keeps up). Last, the store is read back: every conversation's seqs must run 1..n with
no gap, and every acknowledged message must be in it.
Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import psutil

from gateway.store import open_store
from loadtest.bench_fanout import cluster, connect_all, cpu_seconds, mint_tokens, until
from loadtest.stats import median, percentile

__all__ = ["MessagesResult", "run_messages"]


@dataclass(frozen=True, slots=True)
class MessagesResult:
    rate: float
    room: int
    capacity_offered: float
    persisted_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    delivered_p50_ms: float
    delivered_p99_ms: float
    delivered_ratio: float
    server_cpu_pct: float
    loadgen_cpu_pct: float
    history_reads_per_s: float
    history_cache_share: float
    big_group_ack_ms: float
    seq_gaps: int
    acked_not_stored: int


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run_messages(
    clients: int,
    room: int,
    rate: float,
    seconds: float,
    capacity_rate: float,
    history_seconds: float = 3.0,
    store_url: str = "",
) -> MessagesResult:
    """`store_url`: the gateways' store (default: a SQLite file in the run's directory)."""
    settings: dict[str, str] = {"store": store_url} if store_url else {}
    with cluster(2, False, **settings) as (workdir, redis_url, gateways):
        users = [uuid.uuid4() for _ in range(clients)]
        big = [uuid.uuid4() for _ in range(1000)]
        store = await open_store(store_url or str(workdir / "store.sqlite3"))
        rooms = []
        for start in range(0, clients, room):
            members = users[start : start + room]
            conversation, _ = await store.create_conversation(
                "group", members[0], members[1:], "room"
            )
            rooms.append(str(conversation.id))
        group, _ = await store.create_conversation("group", users[0], big, "big")
        await store.close()
        tokens = await mint_tokens(redis_url, users)
        sent_at: dict[str, float] = {}
        acks: list[float] = []
        deliveries: list[float] = []
        reads = [0]
        acked: dict[str, set[int]] = {room_id: set() for room_id in rooms}
        timing_deliveries = [True]

        def receiver() -> Callable[[bytes], None]:
            def on_message(raw: bytes) -> None:
                now = time.perf_counter()
                if raw.startswith(b'{"type":"ack"'):
                    frame = orjson.loads(raw)
                    if "message" in frame:
                        message = frame["message"]
                        acked.setdefault(message["conversation_id"], set()).add(message["seq"])
                        sent = sent_at.get(frame["id"])
                        if sent is not None:
                            acks.append(now - sent)
                    elif "messages" in frame:
                        reads[0] += 1
                elif timing_deliveries[0] and raw.startswith(b'{"type":"message.new"'):
                    sent = sent_at.get(orjson.loads(raw)["message"]["client_msg_id"])
                    if sent is not None:
                        deliveries.append(now - sent)

            return on_message

        conns = await connect_all(
            [g.url for g in gateways], tokens, [receiver() for _ in range(clients)]
        )
        await asyncio.sleep(1.0)
        me = psutil.Process()

        async def offer(offered: float, prefix: str, window: float = seconds) -> tuple[int, float]:
            """Sends at `offered`/s for `window` seconds; how many, and when they started."""
            count = 0
            started = time.perf_counter()
            while (elapsed := time.perf_counter() - started) < window:
                due = min(int(offered * elapsed) - count, int(offered * 0.05) + 1)
                now = time.perf_counter()
                for _ in range(max(due, 0)):
                    index = count % clients
                    key = f"{prefix}{count}"
                    sent_at[key] = now
                    conns[index].send(
                        orjson.dumps(
                            {
                                "type": "message.send",
                                "id": key,
                                "conversation_id": rooms[index // room],
                                "client_msg_id": key,
                                "content": "hello, this is a chat message",
                            }
                        )
                    )
                    count += 1
                await asyncio.sleep(0.002)
            return count, started

        # A warm-up at the same rate, not measured: each instance's store pool grows to its
        # size and each connection prepares its statements, a cost of the first seconds only.
        warm, _ = await offer(rate, "w", 1.0)
        await until(lambda: len(acks) >= warm and len(deliveries) >= warm * room, 5, 0.05)
        acks.clear()
        deliveries.clear()
        cpu_start, loadgen_start = cpu_seconds(gateways), _cpu(me)
        count, started = await offer(rate, "b")
        window = time.perf_counter() - started
        cpu = cpu_seconds(gateways) - cpu_start
        loadgen_cpu = _cpu(me) - loadgen_start
        await until(lambda: len(acks) >= count, 5, 0.05)
        await asyncio.sleep(0.5)
        paced_acks = sorted(acks[:count])
        paced_deliveries = sorted(deliveries)
        hits_before = sum(
            g.metric("gateway_cache_requests_total", cache="messages", op="history", result="hit")
            for g in gateways
        )
        stores_before = sum(
            g.metric("gateway_cache_requests_total", cache="messages", op="history", result="miss")
            for g in gateways
        )
        reads[0] = 0
        history_started = time.perf_counter()
        while time.perf_counter() - history_started < history_seconds:
            for index, conn in enumerate(conns):
                conn.send(
                    orjson.dumps(
                        {
                            "type": "messages.list",
                            "id": "h",
                            "conversation_id": rooms[index // room],
                            "limit": 20,
                        }
                    )
                )
            await asyncio.sleep(0.02)  # offers up to 10,000 reads/s with 200 clients
        await asyncio.sleep(0.5)
        history_window = time.perf_counter() - history_started
        hits = (
            sum(
                g.metric(
                    "gateway_cache_requests_total", cache="messages", op="history", result="hit"
                )
                for g in gateways
            )
            - hits_before
        )
        stores = (
            sum(
                g.metric(
                    'gateway_cache_requests_total{cache="messages",op="history",result="miss"}'
                )
                for g in gateways
            )
            - stores_before
        )
        big_acks: list[float] = []
        for n in range(20):
            key = f"big{n}"
            acks_before = len(acks)
            sent_at[key] = time.perf_counter()
            conns[0].send(
                orjson.dumps(
                    {
                        "type": "message.send",
                        "id": key,
                        "conversation_id": str(group.id),
                        "client_msg_id": key,
                        "content": "to everyone",
                    }
                )
            )
            wait_until = time.monotonic() + 5
            while len(acks) == acks_before and time.monotonic() < wait_until:
                await asyncio.sleep(0.001)
            if len(acks) > acks_before:
                big_acks.append(acks[-1])
        timing_deliveries[0] = False
        acks.clear()
        burst, burst_started = await offer(capacity_rate, "c")
        await until(lambda: len(acks) >= burst, 15, 0.01)
        persisted = len(acks)
        persisted_window = time.perf_counter() - burst_started
        for conn in conns:
            conn.close()
        gaps, lost = await _audit(store_url or str(workdir / "store.sqlite3"), acked)
        expected = count * room  # every member, the sending connection included
        return MessagesResult(
            rate=rate,
            room=room,
            capacity_offered=capacity_rate,
            persisted_per_s=persisted / persisted_window,
            ack_p50_ms=percentile(paced_acks, 0.5) * 1000,
            ack_p99_ms=percentile(paced_acks, 0.99) * 1000,
            delivered_p50_ms=percentile(paced_deliveries, 0.5) * 1000,
            delivered_p99_ms=percentile(paced_deliveries, 0.99) * 1000,
            delivered_ratio=len(paced_deliveries) / expected if expected else 0.0,
            server_cpu_pct=100 * cpu / window,
            loadgen_cpu_pct=100 * loadgen_cpu / window,
            history_reads_per_s=reads[0] / history_window,
            history_cache_share=hits / (hits + stores) if hits + stores else 0.0,
            big_group_ack_ms=median(big_acks) * 1000 if big_acks else 0.0,
            seq_gaps=gaps,
            acked_not_stored=lost,
        )


async def _audit(store_url: str, acked: dict[str, set[int]]) -> tuple[int, int]:
    """Read every conversation back from the store: the seqs missing below each one's highest
    (gaps), and the acknowledged messages it does not hold (losses)."""
    store = await open_store(store_url)
    gaps = lost = 0
    try:
        for conversation, acknowledged in acked.items():
            stored: set[int] = set()
            more, after = True, 0
            while more:
                page, more = await store.list_messages(
                    uuid.UUID(conversation), 1000, after_seq=after
                )
                stored.update(m.seq for m in page)
                after = page[-1].seq if page else after
                more = more and bool(page)
            gaps += max(stored, default=0) - len(stored)
            lost += len(acknowledged - stored)
    finally:
        await store.close()
    return gaps, lost
