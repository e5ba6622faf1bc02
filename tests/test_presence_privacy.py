"""`--presence-visibility shared-conversation`: a user sees the presence of those who share a
conversation with them, or whom the application granted in the store, and of nobody else; a
refused id is answered `forbidden` whether or not the user exists, on the WebSocket and the
HTTP API alike."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import orjson

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import gateways, token_for
from tests.http_get import http_get


def _get(url: str, token: str) -> tuple[int, dict[str, object]]:
    status, body = http_get(url, token)
    return status, orjson.loads(body)


async def test_only_shared_conversations_and_grants_are_visible(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 1, presence_visibility="shared-conversation") as (gw,):
        ann, bob, eve, dan, ghost = (uuid.uuid4() for _ in range(5))
        token = await token_for(redis, ann)
        a = await GatewayClient.connect(gw.url, token)
        others = [
            await GatewayClient.connect(gw.url, await token_for(redis, u)) for u in (bob, eve)
        ]
        await a.request("conversation.create", kind="direct", member_ids=[str(bob)])
        db = sqlite3.connect(tmp_path / "store.sqlite3")
        db.execute("INSERT INTO presence_grants VALUES (?, ?)", (str(ann), str(dan)))
        db.commit()
        db.close()

        asked = [bob, eve, dan, ghost, ann]
        for frame in ("presence.subscribe", "presence.query"):
            ack = await a.request(frame, user_ids=[str(u) for u in asked])
            assert set(ack["presence"]) == {str(bob), str(dan), str(ann)}
            assert ack["presence"][str(bob)]["status"] == "online"
            # eve is online and ghost never existed: both answered alike
            assert ack["forbidden"] == [str(eve), str(ghost)]

        assert _get(f"{gw.http}/api/v1/users/{bob}/presence", token)[0] == 200
        for hidden in (eve, ghost):
            status, body = _get(f"{gw.http}/api/v1/users/{hidden}/presence", token)
            assert status == 403 and body["error"]["code"] == "forbidden"  # type: ignore[index]
        ids = ",".join(str(u) for u in asked)
        status, body = _get(f"{gw.http}/api/v1/users/presence/bulk?ids={ids}", token)
        assert status == 200
        assert body == {
            str(bob): "online", str(eve): "forbidden", str(dan): "offline",
            str(ghost): "forbidden", str(ann): "online",
        }  # fmt: skip
        for client in (a, *others):
            await client.close()
