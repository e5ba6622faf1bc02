"""The Python client (gateway.sdk) against real gateway processes and a real Valkey: a drain,
a Redis restart, an in-band token refresh, an outbox kept in a file across a restart, a live gap
filled, a refused token."""

from __future__ import annotations

import asyncio
import gc
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Data

from caches import EmbeddedRedis, connect
from caches.redis import RedisClient
from gateway.sdk import Client, FileStorage, MemoryStorage, backoff_delay
from tests.conftest import until
from tests.gateways import gateways, token_for

Frame = dict[str, Any]


class _Fleet:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self.clients: list[Client] = []

    async def client(
        self, urls: list[str], user: uuid.UUID | None = None, **options: Any
    ) -> Client:
        user = user or uuid.uuid4()

        async def fresh_token() -> str:
            return await token_for(self.redis, user)

        options.setdefault("get_token", fresh_token)
        options.setdefault("request_timeout", 5)
        client = Client(urls=urls, min_reconnect_delay=0.05, max_reconnect_delay=0.5, **options)
        self.clients.append(client)
        await client.connect()
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def fleet(redis: RedisClient) -> AsyncIterator[_Fleet]:
    fleet = _Fleet(redis)
    yield fleet
    await fleet.close()


async def _room(a: Client, b: Client) -> str:
    assert b.user_id is not None
    ack = await a.create_conversation([b.user_id])
    return str(ack["conversation"]["id"])


def _collect(client: Client, conversation: str) -> list[Frame]:
    seen: list[Frame] = []
    client.on("message", lambda m: seen.append(m) if m["conversation_id"] == conversation else None)
    return seen


def test_full_jitter_backoff_stays_in_its_window() -> None:
    for attempt in range(12):
        delay = backoff_delay(attempt, 0.5, 20)
        assert 0.5 <= delay <= min(20, 0.5 * 2**attempt)


async def test_a_drain_moves_the_client_and_nothing_is_missed(
    redis_url: str, tmp_path: Path, fleet: _Fleet
) -> None:
    with gateways(redis_url, tmp_path, 2) as (gw1, gw2):
        alice = await fleet.client([gw1.url, gw2.url])
        bob = await fleet.client([gw2.url])
        conversation = await _room(alice, bob)
        seen = _collect(alice, conversation)
        states: list[Frame] = []
        alice.on("state", states.append)
        for n in range(1, 31):
            await bob.send(conversation, f"m{n}").sent
            if n == 10:
                gw1.proc.send_signal(15)  # drain mid-conversation
        await until(lambda: len(seen) >= 30, timeout=15)
        assert [m["seq"] for m in seen] == list(range(1, 31))
        assert any(s["state"] == "disconnected" and s.get("code") == 1012 for s in states)
        assert alice.hello is not None and alice.hello["instance_id"].startswith("gw2")


async def test_a_redis_restart_resyncs_and_what_was_sent_meanwhile_arrives(
    tmp_path: Path, fleet: _Fleet
) -> None:
    # A lease longer than the budget: heartbeats answered late while Redis is away.
    with EmbeddedRedis() as private, gateways(private.url, tmp_path, lease_ttl="3") as (gw,):
        fleet.redis = connect(private.url)
        try:
            alice = await fleet.client([gw.url])
            bob = await fleet.client([gw.url])
            conversation = await _room(alice, bob)
            seen = _collect(alice, conversation)
            resynced = asyncio.Event()
            alice.on("resync", lambda _: resynced.set())
            await bob.send(conversation, "before").sent
            await until(lambda: len(seen) == 1)
            await fleet.redis.aclose()
            private.kill()
            for n in range(1, 4):  # acknowledged from the store; their live events are lost
                await bob.send(conversation, f"during {n}").sent
            private.restart()
            fleet.redis = connect(private.url)
            await asyncio.wait_for(resynced.wait(), 15)
            await bob.send(conversation, "after").sent
            await until(lambda: len(seen) >= 5, timeout=15)
            assert [m["content"] for m in seen] == [
                "before",
                "during 1",
                "during 2",
                "during 3",
                "after",
            ]
        finally:
            await fleet.close()
            await fleet.redis.aclose()


async def test_a_token_refreshed_in_band_keeps_the_connection(
    redis: RedisClient, redis_url: str, tmp_path: Path, fleet: _Fleet
) -> None:
    with gateways(redis_url, tmp_path, token_leeway="0.5") as (gw,):
        user = uuid.uuid4()
        refreshed = asyncio.Event()

        async def short_token() -> str:
            return await token_for(redis, user, ttl=4)

        alice = await fleet.client([gw.url], user, get_token=short_token)
        alice.on("token.refreshed", lambda _: refreshed.set())
        first = alice.hello
        states: list[Frame] = []
        alice.on("state", states.append)
        await asyncio.wait_for(refreshed.wait(), 10)
        await asyncio.sleep(3)  # past the first token's end (4 s + 0.5 s leeway)
        assert alice.state == "connected" and alice.hello is first
        assert states == []
        assert (await alice.request("heartbeat"))["type"] == "heartbeat_ack"


async def test_the_outbox_survives_a_restart_and_the_server_stores_each_once(
    redis: RedisClient, redis_url: str, tmp_path: Path, fleet: _Fleet
) -> None:
    with gateways(redis_url, tmp_path) as (gw,):
        user = uuid.uuid4()
        path = tmp_path / "outbox.json"
        bob = await fleet.client([gw.url])
        first = await fleet.client([gw.url], user, storage=FileStorage(path))
        conversation = await _room(first, bob)
        seen = _collect(bob, conversation)
        stored = await first.send(conversation, "already stored", client_msg_id="k-0").sent
        await first.close()
        # Its ack was lost: the key is still in the file. Then three queued while offline.
        state = FileStorage(path).load()
        state["outbox"] = [
            {
                "client_msg_id": "k-0",
                "conversation_id": conversation,
                "content": "already stored",
                "content_type": "text",
            }
        ]
        FileStorage(path).save(state)
        offline = Client(urls=[gw.url], token="unused", storage=FileStorage(path))
        for text in ("one", "two", "three"):
            offline.send(conversation, text)
        assert len(FileStorage(path).load()["outbox"]) == 4
        await offline.close()
        sent: list[Frame] = []
        restarted = Client(
            urls=[gw.url],
            get_token=lambda: token_for(redis, user),
            storage=FileStorage(path),
        )
        fleet.clients.append(restarted)
        restarted.on("sent", sent.append)
        await restarted.connect()
        await until(lambda: not restarted.pending_messages())
        assert FileStorage(path).load()["outbox"] == []
        assert [s["created"] for s in sent] == [False, True, True, True]
        assert sent[0]["message"]["id"] == stored["id"]
        await until(lambda: len(seen) >= 4)
        messages, _ = await bob.history(conversation)
        assert [m["content"] for m in messages] == ["already stored", "one", "two", "three"]
        assert [m["content"] for m in seen] == ["already stored", "one", "two", "three"]


class _LossyConnection(ClientConnection):
    """Loses the second `message.new` it receives, as a broken network would."""

    lost = 0

    async def recv(self, decode: bool | None = None) -> Data:  # type: ignore[override]
        while True:
            data = await super().recv(decode)
            if '"message.new"' in str(data):
                _LossyConnection.lost += 1
                if _LossyConnection.lost == 2:
                    continue
            return data


async def _lossy(url: str) -> ClientConnection:
    return await ws_connect(url, create_connection=_LossyConnection, ping_interval=None)


async def test_a_live_gap_is_filled_from_history(
    redis_url: str, tmp_path: Path, fleet: _Fleet
) -> None:
    with gateways(redis_url, tmp_path) as (gw,):
        bob = await fleet.client([gw.url])
        alice = await fleet.client([gw.url], connect=_lossy, gap_wait=0.1)
        conversation = await _room(alice, bob)
        seen = _collect(alice, conversation)
        for n in range(1, 5):
            await bob.send(conversation, f"g{n}").sent
        await until(lambda: len(seen) >= 4)
        assert _LossyConnection.lost >= 2
        assert [m["seq"] for m in seen] == [1, 2, 3, 4]


async def test_a_refused_token_without_get_token_closes_for_good(
    redis_url: str, tmp_path: Path
) -> None:
    with gateways(redis_url, tmp_path) as (gw,):
        client = Client(urls=[gw.url], token="not-a-jwt", storage=MemoryStorage())
        states: list[Frame] = []
        client.on("state", states.append)
        with pytest.raises(Exception) as refused:
            await client.connect()
        assert getattr(refused.value, "code", None) == "closed"
        assert [s["state"] for s in states] == ["connecting", "closed"]
        assert states[-1]["code"] == 4001
        await client.close()


async def test_presence_typing_receipts_and_unread(
    redis_url: str, tmp_path: Path, fleet: _Fleet
) -> None:
    with gateways(redis_url, tmp_path) as (gw,):
        alice = await fleet.client([gw.url])
        bob = await fleet.client([gw.url])
        assert bob.user_id is not None
        conversation = await _room(alice, bob)
        presence: list[Frame] = []
        alice.on("presence", presence.append)
        await alice.watch([bob.user_id])
        assert presence[-1]["status"] == "online"
        typing: list[bool] = []
        alice.on("typing", lambda t: typing.append(t["typing"]))
        await bob.typing(conversation)
        await bob.typing(conversation)  # throttled: one frame
        await until(lambda: typing == [True])
        await bob.stop_typing(conversation)
        await until(lambda: typing == [True, False])
        statuses: list[Frame] = []
        reads: list[Frame] = []
        bob.on("message.status", statuses.append)
        bob.on("message.read", reads.append)
        await bob.send(conversation, "hi").sent
        await until(lambda: alice.unread.get(conversation) == 1)
        await until(lambda: bool(statuses))  # the automatic delivered receipt
        await alice.mark_read(conversation)
        await until(lambda: bool(reads))
        assert reads[0]["user_id"] == alice.user_id
        assert alice.unread[conversation] == 0
        await bob.close()
        await until(lambda: presence[-1]["status"] == "offline", timeout=10)


async def test_requests_in_flight_when_the_instance_dies_fail_and_none_goes_unretrieved(
    redis_url: str, tmp_path: Path, fleet: _Fleet
) -> None:
    """Requests still being written (the instance stopped reading, buffers full) and requests
    awaiting their answer both end with `disconnected` when the instance dies: each raises in
    its caller, and no failed future is left for the loop to report as never retrieved."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        with gateways(redis_url, tmp_path) as (gw,):
            client = await fleet.client([gw.url], request_timeout=30)
            gw.proc.send_signal(signal.SIGSTOP)
            pad = "x" * 60_000  # under the frame limit; enough of them fill the socket buffers
            count = 200
            calls = [asyncio.ensure_future(client.request("ping", pad=pad)) for _ in range(count)]
            await until(lambda: len(client._pending) == count)
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.send_signal(signal.SIGCONT)
            codes = [
                getattr(outcome, "code", None)
                for outcome in await asyncio.gather(*calls, return_exceptions=True)
            ]
        assert codes == ["disconnected"] * count
        del calls  # their errors' tracebacks hold the waiters
        gc.collect()
        assert [c["message"] for c in reported] == []
    finally:
        loop.set_exception_handler(previous)
