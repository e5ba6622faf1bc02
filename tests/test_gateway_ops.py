"""Operations on real gateway processes: HTTP routes, drain, logs, Redis restart, slow clients."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect

from caches import PresenceCache, connect
from caches.redis import EmbeddedRedis, RedisClient
from tests.conftest import wait_for
from tests.gateways import SECRET, client_for, gateways, token_for


def http_get(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            status = response.status
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as failure:
        body, status, kind = failure.read(), failure.code, failure.headers.get("Content-Type", "")
        failure.close()
    return status, json.loads(body) if "json" in kind else body.decode()


async def get(url: str, token: str | None = None) -> tuple[int, Any]:
    return await asyncio.to_thread(http_get, url, token)


async def test_http_routes(redis: RedisClient, redis_url: str, tmp_path: Path) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        ann = uuid.uuid4()
        tab = await client_for(redis, gw, ann)
        token = await token_for(redis)
        assert await get(f"{gw.http}/healthz") == (200, {"status": "ok"})
        assert await get(f"{gw.http}/readyz") == (200, {"status": "ready"})
        status, metrics = await get(f"{gw.http}/metrics")
        assert status == 200 and "gateway_connections 1" in metrics
        one = f"{gw.http}/api/v1/users/{ann}/presence"
        assert await get(one, token) == (
            200,
            {"status": "online", "last_seen": None, "is_online": True},
        )
        status, body = await get(one)
        assert status == 401 and body["error"]["code"] == "unauthenticated"
        status, body = await get(one, "forged.token.value")
        assert status == 401
        status, body = await get(f"{gw.http}/api/v1/users/not-a-uuid/presence", token)
        assert status == 400 and body["error"]["code"] == "invalid_id"
        other = uuid.uuid4()
        bulk = f"{gw.http}/api/v1/users/presence/bulk?ids={ann},{other}"
        assert await get(bulk, token) == (200, {str(ann): "online", str(other): "offline"})
        status, body = await get(f"{gw.http}/api/v1/users/presence/bulk?ids=x", token)
        assert status == 400
        status, body = await get(f"{gw.http}/nope")
        assert status == 404 and body["error"]["code"] == "not_found"
        await tab.close()


async def test_sigterm_drains_clients_then_exits_cleanly(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        client = await client_for(redis, gw)
        gw.proc.send_signal(signal.SIGTERM)
        assert (await client.next_event("reconnect"))["after_ms"] >= 0
        assert await client.wait_closed() == 1012
        assert await asyncio.to_thread(gw.proc.wait, 10) == 0


async def test_credentials_never_logged(redis: RedisClient, redis_url: str, tmp_path: Path) -> None:
    """Even at DEBUG, where websockets logs request lines and headers: no token in a query
    string, no Authorization, Cookie or X-Api-Key value."""
    with gateways(redis_url, tmp_path, 1, log_level="debug") as (gw,):
        token = await token_for(redis)
        async with ws_connect(
            f"{gw.url}?token={token}&access_key=k3y-in-query&room=lobby",
            additional_headers={
                "Authorization": f"Bearer {token}",
                "Cookie": "sid=c00kie-value",
                "X-Api-Key": "ap1-key-value",
            },
        ) as ws:
            assert "hello" in str(await ws.recv())
        gw.stop()
        log = gw.log()
        assert "Authorization: [redacted]" in log and "X-Api-Key: [redacted]" in log
        assert "room=lobby" in log  # other parameters stay readable
        for secret in (token, token.split(".")[2], "k3y-in-query", "c00kie-value", "ap1-key"):
            assert secret not in log


async def test_redis_restart_under_live_connections(tmp_path: Path) -> None:
    """Kill and restart Redis: sockets stay open, presence and subscriptions come back."""
    with EmbeddedRedis() as private, gateways(private.url, tmp_path, 2) as (gw1, gw2):
        redis = connect(private.url)
        ann, bob = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw1, ann)
        b = await client_for(redis, gw2, bob)
        conv = (await a.request("conversation.create", kind="direct", member_ids=[str(bob)]))[
            "conversation"
        ]["id"]
        await redis.aclose()
        private.restart()  # a fresh, empty server on the same socket
        redis = connect(private.url)
        presence = PresenceCache(redis)

        async def back() -> bool:
            ready = [(await get(f"{g.http}/readyz"))[0] for g in (gw1, gw2)] == [200, 200]
            statuses = await presence.get_bulk_status([ann, bob])
            return ready and all(s.value == "online" for s in statuses.values())

        await wait_for(back, timeout=15)
        for client in (a, b):  # told that live events may have been lost meanwhile
            assert (await client.next_event("resync"))["reason"]
        assert (await a.request("heartbeat"))["type"] == "heartbeat_ack"
        await a.send("typing.start", conversation_id=conv)
        assert (await b.next_event("typing"))["user_id"] == str(ann)
        assert a.ws.close_code is None and b.ws.close_code is None
        for client in (a, b):
            await client.close()
        await redis.aclose()


async def test_slow_consumer_closed_4009(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """A client that stops reading is closed; the sender and the gateway carry on."""
    settings = {
        "send_buffer_limit": "4096",
        # Only a full buffer may close it: a long lease, whether or not its heartbeats (queued
        # behind the sender's flood in this one test process) reach the gateway in time.
        "heartbeat_interval": "10",
        "lease_ttl": "30",
        "rate_limit": "100000",
        "rate_burst": "100000",
        "rate_limit_close_after": "100000",
        "user_send_rate": "100000",
        "user_send_burst": "100000",
        "max_message_bytes": "60000",
    }
    with gateways(redis_url, tmp_path, 1, **settings) as (gw,):
        ann, stuck_user = uuid.uuid4(), uuid.uuid4()
        a = await client_for(redis, gw, ann)
        stuck = await client_for(redis, gw, stuck_user)
        conv = (
            await a.request("conversation.create", kind="direct", member_ids=[str(stuck_user)])
        )["conversation"]["id"]
        await stuck.next_event("conversation.added")
        stuck.ws.transport.pause_reading()  # the kernel buffers fill, then the gateway's
        sock = stuck.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

        body = "x" * 50_000  # large frames fill the buffers in a few rounds

        async def closed_slow() -> bool:
            for _ in range(30):
                await a.send(
                    "message.send",
                    conversation_id=conv,
                    client_msg_id=uuid.uuid4().hex,
                    content=body,
                )
            # Paced by the gateway: never more than one batch of frames behind.
            assert (await a.request("heartbeat", timeout=10))["type"] == "heartbeat_ack"
            status, metrics = await get(f"{gw.http}/metrics")
            return 'gateway_closes_total{code="4009",reason="slow_consumer"} 1.0' in metrics

        await wait_for(closed_slow, timeout=40)
        assert (await a.request("heartbeat"))["type"] == "heartbeat_ack"
        await a.close()
        stuck.ws.transport.abort()
        await stuck.close()


def test_token_command_mints_a_working_token(redis_url: str, tmp_path: Path) -> None:
    user = uuid.uuid4()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "token",
            "--user",
            str(user),
            "--ttl",
            "60",
            "--redis-url",
            redis_url,
            "--jwt-secret",
            SECRET,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=True,
    )
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user) and claims["exp"] - claims["iat"] == 60
    failed = subprocess.run(
        [sys.executable, "-m", "gateway", "token", "--user", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert failed.returncode == 2 and "invalid UUID" in failed.stderr


@pytest.mark.parametrize("flag", ["--lease-ttl=0", "--port=70000", "--heartbeat-interval=x"])
def test_bad_settings_exit_2_naming_the_flag(flag: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", flag],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and flag.split("=")[0] in result.stderr


async def test_compression_off_by_default_and_on_by_setting(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """permessage-deflate costs memory per connection: negotiated only when enabled."""
    for setting, expected in (("false", False), ("true", True)):
        with gateways(redis_url, tmp_path, 1, compression=setting) as (gw,):
            ann, bob = uuid.uuid4(), uuid.uuid4()
            token = await token_for(redis, bob)
            async with ws_connect(
                gw.url, additional_headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                assert bool(ws.protocol.extensions) is expected
                assert orjson.loads(await ws.recv())["type"] == "hello"
                a = await client_for(redis, gw, ann)
                await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
                added = orjson.loads(await ws.recv())
                assert added["type"] == "conversation.added"
                await a.close()
