"""A rolling restart as an operator does it: SIGTERM one of two instances. It turns unready at
once and refuses new sockets, moves its clients off spread over the window (each told to
reconnect), and exits within it; watchers on the other instance see nobody go offline, and the
messages sent meanwhile are all recovered."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from caches.redis import RedisClient
from gateway.client import GatewayClient
from tests.gateways import gateways, token_for
from tests.http_get import http_get

MOVED = 5


def _status(url: str) -> int:
    return http_get(url, timeout=2)[0]


async def test_draining_one_instance_loses_no_presence_and_no_message(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path, 2, grace="1.5", drain_timeout="2") as (gw1, gw2):
        users = [uuid.uuid4() for _ in range(MOVED)]
        tokens = [await token_for(redis, u) for u in users]
        moving = [await GatewayClient.connect(gw1.url, t) for t in tokens]
        watcher = await GatewayClient.connect(gw2.url, await token_for(redis))
        await watcher.request("presence.subscribe", user_ids=[str(u) for u in users])
        sender = await GatewayClient.connect(gw2.url, await token_for(redis))
        room = (
            await sender.request("conversation.create", kind="direct", member_ids=[str(users[0])])
        )["conversation"]["id"]
        await moving[0].next_event("conversation.added")

        gw1.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 0.5
        while _status(f"{gw1.http}/readyz") != 503:  # unready at once, still answering
            assert time.monotonic() < deadline, "/readyz did not turn 503 at once"
            await asyncio.sleep(0.02)

        async def send_all() -> int:
            for n in range(20):
                await sender.request(
                    "message.send", conversation_id=room, client_msg_id=f"d{n}", content=f"{n}"
                )
                await asyncio.sleep(0.05)
            return 20

        async def move(index: int) -> tuple[float, GatewayClient, int]:
            client = moving[index]
            seen = 0
            while True:  # what arrives live before the move
                event = await client.next_event(timeout=5)
                if event["type"] == "message.new":
                    seen = max(seen, event["message"]["seq"])
                if event["type"] == "reconnect":
                    break
            assert await client.wait_closed() == 1012
            closed_at = time.monotonic()
            await asyncio.sleep(event["after_ms"] / 1000)
            return closed_at, await GatewayClient.connect(gw2.url, tokens[index]), seen

        moving_task = asyncio.gather(*(move(i) for i in range(MOVED)))
        sent = await send_all()
        moves = await moving_task
        closes = sorted(closed_at for closed_at, _, _ in moves)
        assert closes[-1] - closes[0] >= 0.5  # spread over the window, not all at once
        assert await asyncio.to_thread(gw1.proc.wait, 5) == 0  # exited within the window

        _, back, seen = moves[0]
        recovered = await back.request("messages.list", conversation_id=room, after_seq=seen)
        got = [m["seq"] for m in recovered["messages"]]
        live_after = []
        while not back.events.empty():
            event = back.events.get_nowait()
            if event["type"] == "message.new":
                live_after.append(event["message"]["seq"])
        assert sorted(set(range(1, seen + 1)) | set(got) | set(live_after)) == list(
            range(1, sent + 1)
        )  # every message: seen before the move, recovered, or live after it

        await asyncio.sleep(2.5)  # past the grace of the leases cut by the drain, and a sweep
        while not watcher.events.empty():
            event = watcher.events.get_nowait()
            assert not (event["type"] == "presence" and event["status"] == "offline"), event
        for client in (watcher, sender, *(c for _, c, _ in moves)):
            await client.close()


async def test_a_connection_attaching_as_the_drain_starts_is_sent_away_too(
    redis: RedisClient, redis_url: str, tmp_path: Path
) -> None:
    """SIGTERM while a connection attaches (Redis holds its lease step): whether the drain finds
    it still authenticating or already listed, it gets `hello`, then `reconnect`, then 1012 as
    soon as its attach ends, not left open (or closed with neither frame) until the exit."""
    # The pause leaves room for a busy machine to start the drain inside it (the attach budget
    # outlasts it); the drain's last phase (a fifth of 20 s) outlasts it too, and the wait
    # below ends long before the instance would exit by itself.
    with gateways(redis_url, tmp_path, 1, drain_timeout="20", redis_timeout="6") as (gw,):
        token = await token_for(redis)
        paused_until = time.monotonic() + 2.5
        await redis.execute_command("CLIENT", "PAUSE", "2500", "WRITE")
        ws = await ws_connect(gw.url, additional_headers={"Authorization": f"Bearer {token}"})
        gw.proc.send_signal(signal.SIGTERM)
        # Not /readyz: its Redis check queues behind the held lease step.
        while "stopping: draining" not in gw.log():
            assert time.monotonic() < paused_until, "the drain did not start during the pause"
            await asyncio.sleep(0.02)
        frames = []
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(3.5):  # the pause ends 2.5 s after it began
                while True:
                    frames.append(orjson.loads(await ws.recv()))
        assert [f["type"] for f in frames] == ["hello", "reconnect"]
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
