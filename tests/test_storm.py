"""A connect storm against a healthy backend is answered, not refused: thousands of clients
opened at once from one process all get `hello`. `1013 backend unavailable` is for a Redis or
store that really did not answer in time (tests/test_stalled_redis.py), not for the instance's
own queue of work."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from caches.redis import RedisClient
from loadtest.bench_fanout import mint_tokens
from loadtest.wsclient import open_clients
from tests.conftest import wait_for
from tests.gateways import SECRET, gateways

CLIENTS = 3000


async def test_thousands_connecting_at_once_all_get_hello(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    tokens = await mint_tokens(redis_url, [uuid.uuid4() for _ in range(CLIENTS)], SECRET)
    hellos = [0]

    def sink(raw: bytes) -> None:
        if raw.startswith(b'{"type":"hello"'):
            hellos[0] += 1

    # The default lease: these clients send no heartbeats, and a storm takes seconds.
    with gateways(redis_url, tmp_path, 1, heartbeat_interval="20", lease_ttl="60") as (gw,):
        started = time.monotonic()
        opened, _ = await open_clients(gw.url, tokens, CLIENTS, 60.0, [sink] * CLIENTS)
        try:
            assert opened.count(None) == 0  # every upgrade answered

            async def all_greeted() -> bool:
                return hellos[0] == CLIENTS or any(c is not None and c.closed for c in opened)

            await wait_for(all_greeted, timeout=60)
            refused = sum(1 for c in opened if c is not None and c.closed)
            assert (hellos[0], refused) == (CLIENTS, 0), f"after {time.monotonic() - started:.1f}s"
            assert "backend unavailable" not in gw.log()
        finally:
            for client in opened:
                if client is not None:
                    client.close()
