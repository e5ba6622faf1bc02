"""Bad input of every kind against a real gateway: answered clearly, never a crash."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import jwt
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from caches import SessionCache, SessionData
from caches.redis import RedisClient
from gateway.client import GatewayClient, GatewayError
from gateway.protocol.events import REVOKED
from tests.gateways import SECRET, GatewayProcess, client_for, gateways, token_for

MALFORMED = [
    ("not json", "invalid_json"),
    ("[1, 2]", "invalid_frame"),
    ('{"no": "type"}', "invalid_frame"),
    ('{"type": 42}', "invalid_frame"),
    ('{"type": "nope"}', "unknown_type"),
    ('{"type": "auth", "token": "x"}', "unauthenticated"),
    ('{"type": "heartbeat", "id": 7}', "invalid_field"),
    ('{"type": "presence.subscribe"}', "invalid_field"),
    ('{"type": "presence.subscribe", "user_ids": []}', "invalid_field"),
    ('{"type": "presence.subscribe", "user_ids": ["nope"]}', "invalid_field"),
    ('{"type": "presence.unsubscribe", "user_ids": "x"}', "invalid_field"),
    ('{"type": "presence.query", "user_ids": [1]}', "invalid_field"),
    ('{"type": "presence.set", "status": "busy"}', "invalid_field"),
    ('{"type": "typing.start"}', "invalid_field"),
    ('{"type": "typing.stop", "conversation_id": 5}', "invalid_field"),
    ('{"type": "conversation.create", "kind": "direct"}', "invalid_field"),
    ('{"type": "conversation.create", "kind": "club", "member_ids": []}', "invalid_field"),
    ('{"type": "conversation.create", "kind": "group", "member_ids": ["x"]}', "invalid_field"),
]


@pytest.fixture
def one_gateway(redis_url: str, tmp_path: Path) -> object:
    with gateways(redis_url, tmp_path, 1, allowed_origins="https://app.example") as (gw,):
        yield gw


async def test_every_malformed_frame_gets_its_error_code(
    redis: RedisClient, one_gateway: GatewayProcess
) -> None:
    client = await client_for(redis, one_gateway)
    for raw, code in MALFORMED:
        await client.send_raw(raw)
        answer = await client.next_event("error")
        assert answer["code"] == code, raw
    await client.send_raw(b"\x00binary")
    assert (await client.next_event("error"))["code"] == "invalid_frame"
    assert (await client.request("heartbeat"))["type"] == "heartbeat_ack"  # still open
    await client.close()


async def test_request_id_is_echoed_in_errors(
    redis: RedisClient, one_gateway: GatewayProcess
) -> None:
    client = await client_for(redis, one_gateway)
    await client.send_raw('{"type": "presence.set", "status": "x", "id": "q1"}')
    answer = await client.next_event("error")
    assert answer["id"] == "q1" and answer["code"] == "invalid_field"
    await client.close()


async def test_too_many_watched(redis: RedisClient, redis_url: str, tmp_path: Path) -> None:
    with gateways(redis_url, tmp_path, 1, max_watched="3") as (gw,):
        client = await client_for(redis, gw)
        await client.request("presence.subscribe", user_ids=[str(uuid.uuid4()) for _ in range(3)])
        with pytest.raises(GatewayError, match="too_many_watched"):
            await client.request("presence.subscribe", user_ids=[str(uuid.uuid4())])
        await client.close()


async def test_oversized_frame_closes_1009(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, max_frame_bytes="1024") as (gw,):
        client = await client_for(redis, gw)
        await client.send("presence.query", user_ids=["x" * 2000])
        assert await client.wait_closed() == 1009
        await client.close()


async def test_flood_gets_rate_limited_then_closed_4008(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    settings = {"rate_limit": "5", "rate_burst": "5", "rate_limit_close_after": "20"}
    with gateways(redis_url, tmp_path, 1, **settings) as (gw,):
        client = await client_for(redis, gw)
        for _ in range(60):
            try:
                await client.send("heartbeat")
            except ConnectionClosed:
                break
        assert (await client.next_event("error"))["code"] == "rate_limited"
        assert await client.wait_closed() == 4008
        await client.close()


async def test_origin_checked(redis: RedisClient, one_gateway: GatewayProcess) -> None:
    token = await token_for(redis)
    with pytest.raises(InvalidStatus) as refused:
        await GatewayClient.connect(one_gateway.url, token, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    allowed = await GatewayClient.connect(one_gateway.url, token, origin="https://app.example")
    await allowed.close()


async def _refused(gw: GatewayProcess, token: str) -> tuple[str, int | None]:
    async with ws_connect(gw.url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        first = orjson.loads(await ws.recv())
        await ws.wait_closed()
        return first["message"], ws.close_code


async def test_bad_tokens_refused_4001(redis: RedisClient, one_gateway: GatewayProcess) -> None:
    user = uuid.uuid4()
    now = int(time.time())
    claims = {"sub": str(user), "sid": "s1", "jti": "j1", "exp": now + 60}
    await SessionCache(redis).set("s1", SessionData(user_id=user))
    forged = jwt.encode(claims, "another-secret-that-is-long-enough-000", algorithm="HS256")
    expired = jwt.encode({**claims, "exp": now - 10}, SECRET, algorithm="HS256")
    no_sid = jwt.encode({k: v for k, v in claims.items() if k != "sid"}, SECRET, algorithm="HS256")
    unsigned = jwt.encode(claims, "", algorithm="none")
    foreign = jwt.encode({**claims, "sub": str(uuid.uuid4())}, SECRET, algorithm="HS256")
    no_session = jwt.encode({**claims, "sid": "missing"}, SECRET, algorithm="HS256")
    cases = {
        forged: "invalid token",
        expired: "token expired",
        no_sid: "invalid token",
        unsigned: "invalid token",
        foreign: "another user",
        no_session: "session not found",
        "garbage": "invalid token",
    }
    for token, reason in cases.items():
        message, code = await _refused(one_gateway, token)
        assert reason in message and code == 4001
    good = jwt.encode(claims, SECRET, algorithm="HS256")
    await SessionCache(redis).invalidate_token("j1")
    message, code = await _refused(one_gateway, good)
    assert message == "token revoked" and code == 4001


async def test_auth_frame_and_its_deadline(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, auth_timeout="0.5") as (gw,):
        client = await GatewayClient.connect(gw.url, await token_for(redis), use_header=False)
        assert client.hello["type"] == "hello"
        await client.close()
        async with ws_connect(gw.url) as silent:
            await silent.wait_closed()
            assert silent.close_code == 4001
        async with ws_connect(gw.url) as wrong:
            await wrong.send('{"type": "heartbeat"}')
            assert orjson.loads(await wrong.recv())["code"] == "unauthenticated"
            await wrong.wait_closed()
            assert wrong.close_code == 4001


async def test_revocation_closes_every_connection_within_a_second(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    # Heartbeats far apart: only the live revocation can close them inside a second.
    slow_beats = {"heartbeat_interval": "5", "lease_ttl": "15"}
    with gateways(redis_url, tmp_path, 2, **slow_beats) as (gw1, gw2):
        user = uuid.uuid4()
        token = await token_for(redis, user)
        tabs = [await GatewayClient.connect(gw.url, token) for gw in (gw1, gw2)]
        other = await client_for(redis, gw1, user)  # another session of the same user
        await SessionCache(redis).delete(tabs[0].hello["session_id"])
        async with asyncio.timeout(1.0):  # one deadline for both tabs on both instances
            for tab in tabs:
                assert (await tab.next_event("session.revoked"))["reason"] == REVOKED
                assert await tab.wait_closed() == 4002
        await other.request("heartbeat")  # untouched
        fresh_token = await token_for(redis, user)
        fresh = await GatewayClient.connect(gw2.url, fresh_token)
        jti = jwt.decode(fresh_token, SECRET, algorithms=["HS256"])["jti"]
        await SessionCache(redis).invalidate_token(jti)
        assert await fresh.wait_closed(timeout=1) == 4002
        await other.close()


async def test_redis_down_refuses_new_connections_1013(tmp_path: Path) -> None:
    from caches.redis import EmbeddedRedis

    with EmbeddedRedis() as private:
        with gateways(private.url, tmp_path, 1) as (gw,):
            from caches import connect

            client = connect(private.url)
            token = await token_for(client)
            await client.aclose()
            private.kill()
            async with ws_connect(
                gw.url, additional_headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)  # no hello: closed, not served
                assert ws.close_code == 1013
                assert ws.close_reason == "session store unavailable"
