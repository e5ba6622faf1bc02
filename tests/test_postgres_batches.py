"""A batch of sends on PostgreSQL: one round trip (it once took five), and batches of two
instances sharing conversations never deadlock. Between hosts each round trip is a network
latency, and on a busy instance each is also a wait for its event loop: round trips, not the
database, would set a send's latency (measured through a proxy that delays the wire). A
deadlock would cost its batches the server's detection delay and a rerun one send at a time."""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from gateway.store import open_store
from tests.faultproxy import FaultProxy

_ONE_WAY = 0.05
"""The proxy's delay each way: a round trip takes 0.1 s."""


async def test_a_batch_of_sends_commits_in_one_round_trip(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    assert parts.hostname is not None and parts.port is not None
    with FaultProxy(parts.hostname, parts.port) as proxy:
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
        store = await open_store(urlunsplit(parts._replace(netloc=netloc)))
        try:
            alice, bob = uuid.uuid4(), uuid.uuid4()
            conv, _ = await store.create_conversation("group", alice, [bob], "room")
            await store.send_message(conv.id, alice, "first", "hello", "text")
            proxy.latency(_ONE_WAY)
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(
                    store.send_message(conv.id, bob if n % 2 else alice, f"m{n}", "hi", "text")
                    for n in range(6)
                )
            )
            elapsed = time.monotonic() - started
            proxy.clear()
        finally:
            await store.close()
    assert all(created for _, created in outcomes)
    assert sorted(m.seq for m, _ in outcomes) == [2, 3, 4, 5, 6, 7]
    round_trips = elapsed / (2 * _ONE_WAY)
    assert round_trips < 1.8, f"{elapsed:.3f} s for the batch: {round_trips:.1f} round trips"


async def test_two_instances_batches_into_the_same_conversations_never_deadlock(
    postgres_url: str,
) -> None:
    # A deadlock is detected after `deadlock_timeout`: made long, one would show in the time.
    slow_detection = f"{postgres_url}?options=-c%20deadlock_timeout%3D10s"
    first, second = [await open_store(slow_detection) for _ in range(2)]
    try:
        users = [uuid.uuid4() for _ in range(4)]
        conversations = [
            (await first.create_conversation("group", users[0], users[1:], f"room {n}"))[0].id
            for n in range(6)
        ]
        shuffle = random.Random(3).shuffle
        started = time.monotonic()
        sends = []
        for round_ in range(15):
            for store in (first, second):
                order = list(conversations)
                shuffle(order)
                sends += [
                    store.send_message(
                        conv, users[n % 4], f"{id(store)}.{round_}.{n}", "hi", "text"
                    )
                    for n, conv in enumerate(order * 2)
                ]
        outcomes = await asyncio.gather(*sends)
        elapsed = time.monotonic() - started
    finally:
        await first.close()
        await second.close()
    assert all(created for _, created in outcomes)
    for conv in conversations:
        seqs = sorted(m.seq for m, _ in outcomes if m.conversation_id == conv)
        assert seqs == list(range(1, len(seqs) + 1))
    assert elapsed < 5, f"{elapsed:.1f} s: a deadlock was waited out"


def _function_query(source: str, names: list[str]) -> str:
    """The query `send_batch` returns, with its arguments as $1.. in `names`' order."""
    query = source.split("RETURN QUERY", 1)[1].rsplit(";", 1)[0]
    return re.sub(r"\bp_(\w+)\b", lambda m: f"${names.index(m.group(1)) + 1}", query)


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (node type, relation) in a JSON plan, depth first."""
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", ()):
        found += _scans(child)
    return found


async def test_the_batch_function_keeps_a_plan_reaching_rows_by_index_whatever_the_statistics(
    postgres_url: str,
) -> None:
    # The plan a pooled connection keeps is made once, often while the tables are young and
    # never analyzed; a plan that scans `messages` whole would then cost each batch a read of
    # the whole table for as long as the connection lives.
    store = await open_store(postgres_url)
    try:
        alice, bob = uuid.uuid4(), uuid.uuid4()
        conv, _ = await store.create_conversation("group", alice, [bob], "room")
        for n in range(300):
            await store.send_message(conv.id, alice, f"m{n}", "hello", "text")
    finally:
        await store.close()
    names = ["nth", "id", "c", "u", "k", "content", "type", "at"]
    types = ["int[]", "uuid[]", "uuid[]", "uuid[]", "text[]", "text[]", "text[]", "timestamptz[]"]
    async with await psycopg.AsyncConnection.connect(
        postgres_url, autocommit=True, cursor_factory=psycopg.AsyncClientCursor
    ) as conn:
        cursor = await conn.execute(
            "SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'send_batch'"
        )
        source, config = await cursor.fetchone() or ("", [])
        assert config == ["plan_cache_mode=force_generic_plan"]  # the plan each connection keeps
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(
            f"PREPARE batch ({', '.join(types)}) AS {_function_query(source, names)}"
        )
        cursor = await conn.execute(
            "EXPLAIN (FORMAT JSON) EXECUTE batch ('{0}', %s, %s, %s, '{k}', '{hi}', '{text}', %s)",
            ([uuid.uuid4()], [conv.id], [bob], [datetime.now(UTC)]),
        )
        row = await cursor.fetchone()
    assert row is not None
    scans = _scans(row[0][0]["Plan"])
    whole = [relation for node, relation in scans if node == "Seq Scan"]
    assert whole == [], f"tables read whole: {whole}"
    assert ("Index Scan", "messages") in scans or ("Index Only Scan", "messages") in scans
