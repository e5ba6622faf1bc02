"""A batch of sends costs PostgreSQL two round trips (the sends and their rows, then the commit;
it once took five). Between hosts each round trip is a network latency, and on a busy instance
each is also a wait for its event loop: round trips, not the database, would set a send's
latency. Measured through a proxy that delays the wire."""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

from gateway.store import open_store
from tests.faultproxy import FaultProxy

_ONE_WAY = 0.05
"""The proxy's delay each way: a round trip takes 0.1 s."""


async def test_a_batch_of_sends_commits_in_two_round_trips(postgres_url: str) -> None:
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
    assert round_trips < 2.8, f"{elapsed:.3f} s for the batch: {round_trips:.1f} round trips"
