"""`bench.py soak`: two gateways under a steady mixed load for a set time.

N clients over both instances, in conversations of 5 members split across them. Every tick the
pacer sends typing then `message.send` from random members, reads from others, presence queries,
and a heartbeat from every client once per heartbeat interval. Every `sample` seconds it records
each gateway's RSS, open file descriptors and asyncio tasks (`gateway_asyncio_tasks`) and Valkey's
`used_memory`. At the end the load stops and every acknowledged message is checked: delivered to
every member exactly once (no member disconnects during the soak). Drift compares the means of
the first and last fifth of the samples taken after the warm-up.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import psutil

from caches import connect
from gateway.store import SqliteStore
from loadtest.bench_fanout import cluster, connect_all, mint_tokens, until
from loadtest.wsclient import RawClient

__all__ = ["SoakResult", "run_soak"]

ROOM = 5
TICK = 0.1


@dataclass(frozen=True, slots=True)
class SoakResult:
    clients: int
    seconds: float
    messages: int
    deliveries_expected: int
    lost: int
    duplicated: int
    rss_drift_pct: float
    fd_drift_pct: float
    tasks_drift_pct: float
    redis_drift_pct: float
    errors: int
    samples: dict[str, list[float]] = field(repr=False)


def _drift(values: list[float]) -> float:
    fifth = max(1, len(values) // 5)
    first = sum(values[:fifth]) / fifth
    last = sum(values[-fifth:]) / fifth
    return 100 * (last - first) / first if first else 0.0


async def run_soak(
    clients: int = 1000,
    seconds: float = 600.0,
    rate: float = 50.0,
    sample: float = 5.0,
    warmup: float = 30.0,
    heartbeat: float = 10.0,
) -> SoakResult:
    with cluster(2, heartbeat_interval=str(heartbeat), lease_ttl=str(heartbeat * 3)) as (
        workdir,
        redis_url,
        gateways,
    ):
        users = [uuid.uuid4() for _ in range(clients)]
        store = await SqliteStore(str(workdir / "store.sqlite3")).open()
        rooms: list[tuple[str, list[int]]] = []
        for start in range(0, clients - ROOM + 1, ROOM):
            members = users[start : start + ROOM]
            conversation, _ = await store.create_conversation(
                "group", members[0], members[1:], f"soak {start // ROOM}"
            )
            rooms.append((str(conversation.id), list(range(start, start + ROOM))))
        await store.close()
        tokens = await mint_tokens(redis_url, users)
        received: list[Counter[str]] = [Counter() for _ in range(clients)]
        newest: list[tuple[str, str] | None] = [None] * clients
        acked: dict[str, int] = {}  # message id -> room index
        errors = [0]

        def sink(index: int) -> Callable[[bytes], None]:
            def on_message(raw: bytes) -> None:
                if raw.startswith(b'{"type":"message.new"'):
                    message = orjson.loads(raw)["message"]
                    received[index][message["id"]] += 1
                    newest[index] = (message["conversation_id"], message["id"])
                elif raw.startswith(b'{"type":"ack","id":"m'):
                    answer = orjson.loads(raw)
                    if answer.get("created"):
                        acked[answer["message"]["id"]] = int(answer["id"][1:].split(".")[0])
                elif raw.startswith(b'{"type":"error"'):
                    errors[0] += 1

            return on_message

        # Even members on the first instance, odd ones on the second: every room spans both.
        urls = [gateways[0].url, gateways[1].url]
        conns: list[RawClient] = await connect_all(urls, tokens, [sink(i) for i in range(clients)])
        redis = connect(redis_url)
        procs = [psutil.Process(g.pid) for g in gateways]
        series: dict[str, list[float]] = {
            "t": [],
            "rss_mib": [],
            "fds": [],
            "tasks": [],
            "redis_mib": [],
        }

        async def take_sample(now: float) -> None:
            memory = await redis.info("memory")
            series["t"].append(now)
            series["rss_mib"].append(sum(p.memory_info().rss for p in procs) / 2**20)
            series["fds"].append(float(sum(p.num_fds() for p in procs)))
            series["tasks"].append(sum(g.metric("gateway_asyncio_tasks") for g in gateways))
            series["redis_mib"].append(int(memory["used_memory"]) / 2**20)

        started = time.perf_counter()
        next_sample = started + warmup
        beats_per_tick = max(1, round(clients * TICK / heartbeat))
        beat_cursor = 0
        sent = 0
        tick = 0
        while (now := time.perf_counter()) - started < seconds:
            tick += 1
            due = int((now - started) * rate) - sent
            for _ in range(max(0, due)):
                room_index = random.randrange(len(rooms))
                room_id, indexes = rooms[room_index]
                sender = conns[random.choice(indexes)]
                sender.send(orjson.dumps({"type": "typing.start", "conversation_id": room_id}))
                sender.send(
                    orjson.dumps(
                        {
                            "type": "message.send",
                            "id": f"m{room_index}.{sent}",
                            "conversation_id": room_id,
                            "client_msg_id": f"s{sent}",
                            "content": f"soak {sent}",
                        }
                    )
                )
                sent += 1
                reader = random.randrange(clients)
                seen = newest[reader]
                if seen is not None:
                    frame = {"type": "message.read", "conversation_id": seen[0]}
                    conns[reader].send(orjson.dumps({**frame, "message_id": seen[1]}))
                    newest[reader] = None
                if sent % 10 == 0:
                    asker = conns[random.randrange(clients)]
                    some = [str(u) for u in random.sample(users, 20)]
                    asker.send(orjson.dumps({"type": "presence.query", "user_ids": some}))
            for _ in range(beats_per_tick):
                conns[beat_cursor % clients].send(b'{"type":"heartbeat"}')
                beat_cursor += 1
            if now >= next_sample:
                await take_sample(now - started)
                next_sample += sample
            await asyncio.sleep(max(0.0, started + tick * TICK - time.perf_counter()))

        expected = ROOM * len(acked)

        def delivered() -> int:
            return sum(min(received[i][m], 1) for m, r in acked.items() for i in rooms[r][1])

        await until(lambda: delivered() >= expected, 15, 0.2)
        got = delivered()
        duplicated = sum(max(0, received[i][m] - 1) for m, r in acked.items() for i in rooms[r][1])
        for conn in conns:
            conn.close()
        await redis.aclose()
        return SoakResult(
            clients=clients,
            seconds=seconds,
            messages=len(acked),
            deliveries_expected=expected,
            lost=expected - got,
            duplicated=duplicated,
            rss_drift_pct=_drift(series["rss_mib"]),
            fd_drift_pct=_drift(series["fds"]),
            tasks_drift_pct=_drift(series["tasks"]),
            redis_drift_pct=_drift(series["redis_mib"]),
            errors=errors[0],
            samples=series,
        )
