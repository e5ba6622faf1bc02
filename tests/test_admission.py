"""Connection caps under real floods on loopback: sockets that never authenticate, per address
(the peer, or a trusted proxy's X-Forwarded-For) and in all; connections per user, per session
and per instance. Refusals are clean (HTTP 503 or close 1013), counted, logged once; legitimate
clients still get in."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import GatewayProcess, connect_or_refusal, gateways, token_for


async def _flood(
    gw: GatewayProcess, count: int, source: str = "127.0.0.1", **headers: str
) -> tuple[list[ClientConnection], list[int]]:
    """Open `count` sockets from `source` that never authenticate: those held, and the HTTP
    statuses of those refused."""
    held: list[ClientConnection] = []
    refused: list[int] = []
    for _ in range(count):
        try:
            held.append(
                await ws_connect(
                    gw.url,
                    additional_headers=headers,
                    local_addr=(source, 0),
                    open_timeout=5,
                    ping_interval=None,
                )
            )
        except InvalidStatus as exc:
            refused.append(exc.response.status_code)
    return held, refused


async def _close_all(sockets: list[ClientConnection]) -> None:
    for ws in sockets:
        with contextlib.suppress(Exception):
            await ws.close()


async def test_a_flood_from_one_address_locks_nobody_else_out(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, max_pending_auth_per_ip="5", auth_timeout="5") as (gw,):
        held, refused = await _flood(gw, 40, source="127.0.0.2")
        try:
            assert len(held) == 5 and refused == [503] * 35
            legit = await GatewayClient.connect(gw.url, await token_for(redis))  # header token
            browser = await GatewayClient.connect(
                gw.url, await token_for(redis), use_header=False
            )  # auth frame: pending for a moment, from another address
            assert legit.hello["type"] == browser.hello["type"] == "hello"
            assert gw.metric("gateway_refused_total", cap="max_pending_auth_per_ip") == 35
            assert gw.log().count("connections refused since the last report") <= 2
            await legit.close()
            await browser.close()
        finally:
            await _close_all(held)


async def test_pending_cap_for_the_instance_and_trusted_proxy_addresses(
    redis_url: str, tmp_path: Path
) -> None:
    with gateways(
        redis_url,
        tmp_path,
        1,
        max_pending_auth="4",
        max_pending_auth_per_ip="2",
        trusted_proxies="127.0.0.0/8",
        auth_timeout="5",
    ) as (gw,):
        first, refused = await _flood(gw, 3, **{"X-Forwarded-For": "203.0.113.7, 127.0.0.9"})
        assert len(first) == 2 and refused == [503]  # the client behind the proxy, not the proxy
        second, refused = await _flood(gw, 3, **{"X-Forwarded-For": "203.0.113.8"})
        assert len(second) == 2 and refused == [503]  # the instance cap, reached first
        third, refused = await _flood(gw, 1, **{"X-Forwarded-For": "203.0.113.9"})
        assert third == [] and refused == [503]  # the instance's 4 are taken
        assert gw.metric("gateway_refused_total", cap="max_pending_auth") == 2  # the 5th and 6th
        await _close_all(first + second)


async def _refused_after_auth(url: str, token: str) -> Any:
    with pytest.raises(ConnectionClosed) as closed:
        await GatewayClient.connect(url, token)
    assert closed.value.rcvd is not None
    return closed.value.rcvd


async def test_caps_per_session_per_user_and_per_instance(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(
        redis_url,
        tmp_path,
        1,
        max_connections_per_session="2",
        max_connections_per_user="3",
        max_connections="6",
    ) as (gw,):
        user = uuid.uuid4()
        token = await token_for(redis, user)
        clients = [await GatewayClient.connect(gw.url, token) for _ in range(2)]
        close = await _refused_after_auth(gw.url, token)
        assert (close.code, close.reason) == (1013, "too many connections for this session")
        clients.append(await GatewayClient.connect(gw.url, await token_for(redis, user)))
        close = await _refused_after_auth(gw.url, await token_for(redis, user))
        assert (close.code, close.reason) == (1013, "too many connections for this user")
        clients += [await GatewayClient.connect(gw.url, await token_for(redis)) for _ in range(3)]
        with pytest.raises(InvalidStatus) as full:
            await GatewayClient.connect(gw.url, await token_for(redis))
        assert full.value.response.status_code == 503
        assert b"over_capacity" in full.value.response.body
        await clients.pop().close()  # room again
        await wait_until_accepting(gw, redis)
        for client in clients:
            await client.close()


async def wait_until_accepting(gw: GatewayProcess, redis: RedisClient) -> None:
    """A connection that closed frees its place as soon as the server saw it close."""
    for _ in range(50):
        try:
            client = await GatewayClient.connect(gw.url, await token_for(redis))
        except InvalidStatus:
            continue
        await client.close()
        return
    raise AssertionError("the freed place was never given again")


async def test_a_storm_never_holds_more_than_max_connections(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """Clients arriving together (bearer tokens: no pending-auth cap applies) pass the
    handshake's check before any of them is admitted: the instance still holds at most
    `--max-connections`, and every other one is refused cleanly (503, or close 1013)."""
    with gateways(redis_url, tmp_path, 1, max_connections="20") as (gw,):
        tokens = [await token_for(redis) for _ in range(80)]
        outcomes = await asyncio.gather(*(connect_or_refusal(gw.url, t) for t in tokens))
        held = [o for o in outcomes if isinstance(o, GatewayClient)]
        refused = [o for o in outcomes if not isinstance(o, GatewayClient)]
        assert len(held) == 20
        assert set(refused) <= {503, 1013} and len(refused) == 60
        for client in held:
            await client.close()


async def test_unauthenticated_sockets_never_fill_the_whole_room(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """The pending-auth cap (1000 by default) is lowered to half of what the instance may hold
    (its --max-connections, or the open-files room): sockets that never authenticate, from many
    addresses, leave the other half to clients that do."""
    with gateways(redis_url, tmp_path, 1, max_connections="60", auth_timeout="5") as (gw,):
        floods = [await _flood(gw, 20, source=f"127.0.0.{n}") for n in range(2, 6)]
        held = [ws for sockets, _ in floods for ws in sockets]
        try:
            assert len(held) == 30
            legit = [await GatewayClient.connect(gw.url, await token_for(redis)) for _ in range(20)]
            for client in legit:
                await client.close()
        finally:
            await _close_all(held)
