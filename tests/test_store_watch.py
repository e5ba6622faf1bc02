"""A store deleted or replaced under running instances is noticed within a second or two:
/readyz turns 503 naming the store, writes answer `unavailable` (nothing acknowledged that is
not durable), an error is logged, and no instance opens a second store at the path."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import SECRET, client_for, gateways
from tests.http_get import http_get

ROOT = Path(__file__).resolve().parent.parent
NOTICED_WITHIN = 2.0 + 1.0
"""A second or two, plus a loaded machine's slack."""


def _readiness(url: str) -> tuple[int, dict[str, Any]]:
    status, body = http_get(f"{url}/readyz")
    return status, json.loads(body)


async def _unready_within(url: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        status, body = _readiness(url)
        if status == 503:
            return body
        assert time.monotonic() < deadline, "/readyz stayed 200"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_store_deleted_under_running_instances_is_noticed(
    redis: RedisClient, redis_url: str, tmp_path: Path, how: str
) -> None:
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        a = await client_for(redis, gw1)
        b = await client_for(redis, gw2)
        room = (
            await a.request("conversation.create", kind="direct", member_ids=[b.hello["user_id"]])
        )["conversation"]["id"]
        await a.request("message.send", conversation_id=room, client_msg_id="m0", content="0")
        assert _readiness(gw1.http)[0] == 200
        store = tmp_path / "store.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            store.write_bytes(b"")
        for gw in (gw1, gw2):
            body = await _unready_within(gw.http, NOTICED_WITHIN)
            assert any("store" in str(reason) for reason in body["reasons"])
        for client in (a, b):
            await client.send(
                "message.send", id="late", conversation_id=room, client_msg_id="m1", content="1"
            )
            answer = await client.next_event("error")
            assert (answer["id"], answer["code"]) == ("late", "unavailable")
        for gw in (gw1, gw2):
            assert "store" in gw.log() and "store_lost" in gw.log()
        if how == "deleted":
            # A third instance on the path refuses to start a second, empty store beside it.
            result = subprocess.run(
                [sys.executable, "-m", "gateway", "serve", "--port", "0", "--store", str(store),
                 "--jwt-secret", SECRET, "--redis-url", redis_url],
                cwd=tmp_path, capture_output=True, timeout=60,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            assert result.returncode == 2
            assert "still in use" in result.stderr.decode()
            assert not store.exists()
        for client in (a, b):
            await client.close()


async def test_a_healthy_store_keeps_readyz_ready(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        client: GatewayClient = await client_for(redis, gw, uuid.uuid4())
        assert _readiness(gw.http) == (200, {"status": "ready"})
        await client.close()
