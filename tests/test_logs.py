"""Logs an operator ships: JSON lines when not on a terminal, one event per connect, disconnect
and refused authentication, each naming the instance, the connection and the user."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from caches.redis import RedisClient
from gateway.client import GatewayClient, GatewayError
from tests.conftest import wait_for
from tests.gateways import GatewayProcess, gateways, token_for


def _events(gw: GatewayProcess) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in gw.log().splitlines() if line.strip()]


async def test_json_lines_with_context_and_one_event_per_connection(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1) as (gw,):
        user = uuid.uuid4()
        client = await GatewayClient.connect(gw.url, await token_for(redis, user))
        connection = client.hello["connection_id"]
        await client.close()
        forged = (await token_for(redis, user))[:-4] + "AAAA"
        with pytest.raises(GatewayError):
            await GatewayClient.connect(gw.url, forged)

        def logged(event: str) -> list[dict[str, Any]]:
            return [line for line in _events(gw) if line.get("event") == event]

        async def both_logged() -> bool:
            return bool(logged("disconnect")) and bool(logged("auth_failure"))

        await wait_for(both_logged)
        lines = _events(gw)  # every line parses as JSON
        assert all({"ts", "level", "logger", "msg", "instance"} <= line.keys() for line in lines)
        assert {line["instance"] for line in lines} == {gw.settings["instance_id"]}
        (connect,) = logged("connect")
        assert (connect["connection_id"], connect["user_id"]) == (connection, str(user))
        assert connect["address"] == "127.0.0.1"
        (disconnect,) = logged("disconnect")
        assert disconnect["connection_id"] == connection and disconnect["close_code"] == 1000
        assert disconnect["duration_s"] >= 0
        (refused,) = logged("auth_failure")
        assert "invalid token" in refused["reason"] and forged not in gw.log()


async def test_text_when_asked(redis: RedisClient, redis_url: str, tmp_path: Path) -> None:
    with gateways(redis_url, tmp_path, 1, log_format="text") as (gw,):
        client = await GatewayClient.connect(gw.url, await token_for(redis))
        connection = client.hello["connection_id"]
        await client.close()

        async def disconnect_logged() -> bool:
            return "disconnected" in gw.log()

        await wait_for(disconnect_logged)
        line = next(line for line in gw.log().splitlines() if "disconnected" in line)
        assert not line.startswith("{") and f"[{connection} " in line
