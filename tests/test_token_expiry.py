"""A connection lives no longer than its token: warned, then ended with 4003, unless the client
sends a fresh token of the same user; heartbeats never stretch a session past its token."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from caches import keys
from caches.redis import RedisClient
from gateway.bus.memory import MemoryBroker, MemoryBus
from gateway.client import GatewayClient, GatewayError
from gateway.realtime import Hub, TokenExpiry
from tests.fakes import RecordingConnection, client_state
from tests.gateways import gateways, token_for

SHORT = 3.0
"""Seconds a short token lives."""
SLACK = 1.5
"""What a loaded machine may add to a deadline."""


async def test_a_connection_ends_when_its_token_does(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, token_leeway="0") as (gw,):
        started = time.time()
        client = await GatewayClient.connect(gw.url, await token_for(redis, ttl=SHORT))
        warned = await client.next_event("session.expiring", timeout=SHORT)
        assert warned["expires_at"].endswith("Z")
        expired = await client.next_event("session.expired", timeout=SHORT + SLACK)
        assert expired["reason"] == "token expired"
        assert await client.wait_closed() == 4003
        assert time.time() - started < SHORT + SLACK  # not 12 s late, as before


async def test_a_fresh_token_of_the_same_user_keeps_the_connection(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, token_leeway="0") as (gw,):
        user = uuid.uuid4()
        client = await GatewayClient.connect(gw.url, await token_for(redis, user, ttl=SHORT))
        stranger = await token_for(redis, uuid.uuid4(), ttl=60)
        with pytest.raises(GatewayError, match="another user") as refused:
            await client.request("auth", token=stranger)
        assert refused.value.code == "unauthenticated"
        refreshed = await client.request("auth", token=await token_for(redis, user, ttl=60))
        assert refreshed["expires_at"].endswith("Z")
        deadline = time.time() + SHORT + SLACK
        while time.time() < deadline:  # past the first token's end: still served
            await client.request("presence.query", user_ids=[str(user)])
            await asyncio.sleep(0.25)
        assert client.ws.close_code is None
        await client.close()


async def test_a_heartbeat_never_stretches_a_session_past_its_token(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, token_leeway="0") as (gw,):
        token = await token_for(redis, ttl=SHORT)
        client = await GatewayClient.connect(gw.url, token, auto_heartbeat=False)
        await client.request("heartbeat")
        ttl_ms = await redis.pttl(keys.session(client.hello["session_id"]))
        assert 0 < ttl_ms <= SHORT * 1000  # not the 900 s session TTL
        await client.close()


def test_deadlines_of_closed_connections_do_not_pile_up() -> None:
    """Reconnecting clients with long-lived tokens: the heap stays proportional to the live
    connections, not to every connection ever opened."""
    hub = Hub(MemoryBus(MemoryBroker()), 1.0)
    expiry = TokenExpiry(None, hub, 0.0)  # type: ignore[arg-type]  # refresh unused
    for _ in range(20_000):
        client = client_state()
        client.expires_at = time.time() + 1e6
        conn = RecordingConnection(client)
        hub.connections[conn.id] = conn
        expiry.track(conn)
        del hub.connections[conn.id]  # closed
    assert len(expiry._heap) <= 1024 + 2
