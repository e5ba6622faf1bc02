"""The gateway on PostgreSQL, through real processes: a server restarted mid-conversation costs
answers (`unavailable` within the budget, `/readyz` 503) but never a message or a duplicate.
(Two instances on one database giving one gap-free order: tests/test_gateway_messages.py, which
runs on both stores.)"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from caches.redis import RedisClient
from gateway.client import GatewayError
from tests.gateways import client_for, gateways
from tests.http_get import http_get
from tests.postgres import fresh_database, private_postgres

BUDGET = 1.0
SLACK = 2.0
"""What a loaded machine may add to the budget before an answer counts as late."""


def _readiness(url: str) -> tuple[int, list[str]]:
    status, body = http_get(f"{url}/readyz")
    return status, list(json.loads(body).get("reasons", []))


async def test_a_server_restarted_mid_conversation_loses_nothing(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with private_postgres() as server:
        url = fresh_database(server.url)
        with gateways(redis_url, tmp_path, 1, store=url, redis_timeout=str(BUDGET)) as (gw,):
            ann, bob = uuid.uuid4(), uuid.uuid4()
            a = await client_for(redis, gw, ann)
            b = await client_for(redis, gw, bob)
            created = await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
            room = created["conversation"]["id"]
            await a.request("message.send", conversation_id=room, client_msg_id="m0", content="0")

            server.stop()
            started = time.monotonic()
            try:
                await a.request(
                    "message.send", conversation_id=room, client_msg_id="m1", content="1"
                )
                raise AssertionError("a send was acknowledged with the store down")
            except GatewayError as exc:
                assert exc.code == "unavailable"
            assert time.monotonic() - started < BUDGET + SLACK
            deadline = time.monotonic() + 5
            while _readiness(gw.http)[0] != 503:
                assert time.monotonic() < deadline, "/readyz stayed 200 with the store down"
                await asyncio.sleep(0.1)
            assert any("store" in reason for reason in _readiness(gw.http)[1])

            server.start()
            retried: dict[str, object] = {}
            deadline = time.monotonic() + 15
            while not retried:  # the client retries with the same key until it is taken
                try:
                    retried = await a.request(
                        "message.send", conversation_id=room, client_msg_id="m1", content="1"
                    )
                except GatewayError as exc:
                    assert exc.code == "unavailable"
                    assert time.monotonic() < deadline, "the pool did not recover"
                    await asyncio.sleep(0.2)
            again = await a.request(
                "message.send", conversation_id=room, client_msg_id="m1", content="1"
            )
            assert again["created"] is False and again["message"] == retried["message"]
            history = await b.request("messages.list", conversation_id=room, after_seq=0)
            assert [m["client_msg_id"] for m in history["messages"]] == ["m0", "m1"]
            assert [m["seq"] for m in history["messages"]] == [1, 2]  # no gap, no duplicate
            deadline = time.monotonic() + 5
            while _readiness(gw.http)[0] != 200:
                assert time.monotonic() < deadline, "/readyz stayed 503 after the store returned"
                await asyncio.sleep(0.1)
            for client in (a, b):
                await client.close()
