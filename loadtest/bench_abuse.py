"""`bench.py abuse`: what one hostile account does to everyone else.

Two instances on one SQLite file, default settings (per-connection rate 20/s, the per-user
quotas). Other users in direct pairs split over the instances send at a steady pace; their
send->delivered latency is measured first alone, then while one account with 5 sessions x 10
connections, each within its connection's rate limit, sends `conversation.create` with 255
random members plus one real user (the most a group may have besides its creator) as fast as
that limit allows. Reported: the others' delivery
p50/p99 in both phases, the groups the attacker got created, and how much the store grew.
Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.store import SqliteStore
from loadtest.bench_fanout import cluster, connect_all, mint_tokens, until
from loadtest.stats import percentile
from loadtest.wsclient import RawClient, ignore

__all__ = ["AbuseResult", "run_abuse"]

_ATTACK_RATE = 19.5
"""Frames per second per attacking connection: just inside the per-connection limit."""


@dataclass(frozen=True, slots=True)
class AbuseResult:
    quiet_p50_ms: float
    quiet_p99_ms: float
    attacked_p50_ms: float
    attacked_p99_ms: float
    delivered_ratio: float
    groups_created: int
    groups_refused: int
    store_growth_mb: float


def _store_bytes(workdir: Path) -> int:
    return sum(f.stat().st_size for f in workdir.glob("store.sqlite3*"))


async def run_abuse(pairs: int, rate: float, seconds: float) -> AbuseResult:
    """`pairs` direct conversations whose first member sends `rate` messages/s in all."""
    # The defaults, not a benchmark's lifted limits: the quotas are what is measured.
    settings = {"rate_limit": "20", "rate_burst": "60", "user_send_rate": "20",
                "user_send_burst": "60"}  # fmt: skip
    with cluster(2, spread=True, **settings) as (workdir, redis_url, gateways):
        users = [uuid.uuid4() for _ in range(2 * pairs)]
        store = await SqliteStore(str(workdir / "store.sqlite3")).open()
        rooms = [
            str(
                (await store.create_conversation("direct", users[2 * n], [users[2 * n + 1]], ""))[
                    0
                ].id
            )
            for n in range(pairs)
        ]
        await store.close()
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        created, refused = [0], [0]

        def on_delivery(raw: bytes) -> None:
            if raw.startswith(b'{"type":"message.new"'):
                sent = sent_at.get(orjson.loads(raw)["message"]["client_msg_id"])
                if sent is not None:
                    latencies.append(time.perf_counter() - sent)

        def on_attack_answer(raw: bytes) -> None:
            if raw.startswith(b'{"type":"ack"'):
                created[0] += 1
            elif b'"rate_limited"' in raw:
                refused[0] += 1

        tokens = await mint_tokens(redis_url, users)
        urls = [g.url for g in gateways]
        # Senders on one instance, their peers on the other: every delivery crosses the bus.
        # Only the peers' copies are timed; the senders' own are ignored.
        senders = await connect_all(urls[:1], tokens[0::2], [ignore] * pairs)
        await connect_all(urls[1:], tokens[1::2], [on_delivery] * pairs)
        attacker = uuid.uuid4()
        attack_tokens = await mint_tokens(redis_url, [attacker] * 5)
        attackers = await connect_all(
            urls, [t for t in attack_tokens for _ in range(10)], [on_attack_answer] * 50
        )
        await asyncio.sleep(1.0)

        async def paced(prefix: str, attack: bool) -> tuple[list[float], int]:
            """The others' delivery latencies, sorted, and how many they sent."""
            latencies.clear()
            count, started = 0, time.perf_counter()
            create = orjson.dumps(
                {
                    "type": "conversation.create",
                    "kind": "group",
                    "name": "spam",
                    "member_ids": [*(str(uuid.uuid4()) for _ in range(255)), str(users[1])],
                }
            )
            attack_sent = 0
            while (elapsed := time.perf_counter() - started) < seconds:
                due = int(rate * elapsed) - count
                for _ in range(max(due, 0)):
                    key = f"{prefix}{count}"
                    sent_at[key] = time.perf_counter()
                    _send(senders[count % pairs], rooms[count % pairs], key)
                    count += 1
                if attack:
                    attack_due = int(_ATTACK_RATE * elapsed) - attack_sent
                    for _ in range(max(attack_due, 0)):
                        for conn in attackers:
                            conn.send(create)
                        attack_sent += 1
                await asyncio.sleep(0.005)
            await until(lambda: len(latencies) >= count, 30, 0.05)
            return sorted(latencies), count

        quiet, _ = await paced("q", attack=False)
        before = _store_bytes(workdir)
        attacked, expected = await paced("a", attack=True)
        for conn in (*senders, *attackers):
            conn.close()
        return AbuseResult(
            quiet_p50_ms=percentile(quiet, 0.5) * 1000,
            quiet_p99_ms=percentile(quiet, 0.99) * 1000,
            attacked_p50_ms=percentile(attacked, 0.5) * 1000,
            attacked_p99_ms=percentile(attacked, 0.99) * 1000,
            delivered_ratio=len(attacked) / expected if expected else 0.0,
            groups_created=created[0],
            groups_refused=refused[0],
            store_growth_mb=(_store_bytes(workdir) - before) / 1e6,
        )


def _send(conn: RawClient, room: str, key: str) -> None:
    conn.send(
        orjson.dumps(
            {
                "type": "message.send",
                "id": key,
                "conversation_id": room,
                "client_msg_id": key,
                "content": "hello, this is a chat message",
            }
        )
    )
