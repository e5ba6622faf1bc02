"""The redis-py bus: delivery in batches, confirmed subscriptions, and the probe that notices a
subscriber which died silently (publishes still succeed) and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from caches import ClientOptions, connect
from caches.redis import RedisClient
from gateway.bus import RedisBus
from tests.conftest import wait_for


class MuteProxy:
    """A TCP proxy to the real server that can stop passing the server's bytes back on the
    connections open so far: a subscriber whose socket stays up but receives nothing.

    A real server cannot be made to drop one subscriber's messages while keeping its socket
    open, so this stands in between; the server behind it is the real one.
    """

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self.accepted = 0
        self._muted: list[asyncio.StreamWriter] = []
        self._open: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        parts = urlsplit(self._upstream)
        if parts.scheme == "unix":
            return await asyncio.open_unix_connection(parts.path)
        return await asyncio.open_connection(parts.hostname, parts.port or 6379)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        up_reader, up_writer = await self._connect_upstream()
        self._open += [writer, up_writer]

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, back: bool
        ) -> None:
            while data := await source.read(65536):
                if back and writer in self._muted:
                    continue
                sink.write(data)

        try:
            with contextlib.suppress(OSError):
                await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))
        finally:
            up_writer.close()
            writer.close()

    def mute(self) -> None:
        self._muted.extend(self._open)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for writer in self._open:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def subscriber_client(url: str) -> aioredis.Redis:
    options = dataclasses.replace(ClientOptions(), health_check_interval=0)
    client = connect(url, options, decode_responses=False)
    assert isinstance(client, aioredis.Redis)
    return client


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[MuteProxy]:
    server = MuteProxy(redis_url)
    yield server
    await server.stop()


async def _never(channels: frozenset[bytes] | None) -> None:
    raise AssertionError("a healthy bus must not reconnect")


async def test_missing_probe_echo_forces_a_reconnect(redis: RedisClient, proxy: MuteProxy) -> None:
    reasserted = asyncio.Event()

    async def on_reconnect(channels: frozenset[bytes] | None) -> None:
        assert channels is None  # one connection: every channel was away
        reasserted.set()

    subscriber = subscriber_client(await proxy.start())
    bus = RedisBus(
        subscriber=subscriber,
        publisher=redis,
        instance_id="probe-test",
        probe_interval=0.1,
        timeout=2.0,
    )
    runner = asyncio.create_task(bus.run(lambda batch: None, on_reconnect))
    try:

        async def connected() -> bool:
            return bus.connected and bus.echoes >= 1

        await wait_for(connected)
        proxy.mute()
        await asyncio.wait_for(reasserted.wait(), 5)
        assert proxy.accepted >= 2 and bus.reconnects >= 1
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await subscriber.aclose()


async def test_echo_keeps_a_healthy_subscriber(redis: RedisClient, redis_url: str) -> None:
    received: list[list[tuple[bytes, bytes]]] = []
    subscriber = subscriber_client(redis_url)
    bus = RedisBus(
        subscriber=subscriber,
        publisher=redis,
        instance_id="healthy",
        probe_interval=0.1,
        timeout=2.0,
    )
    bus.subscribe("ch:test")
    runner = asyncio.create_task(bus.run(received.append, _never))
    try:

        async def up() -> bool:
            return bus.connected

        await wait_for(up)
        await bus.confirmed(["ch:test"], 2.0)
        # Published in one pipeline: they arrive in one read and reach the hub as one batch.
        pipe = redis.pipeline(transaction=False)
        for index in range(5):
            pipe.publish("ch:test", f"m{index}")
        await pipe.execute()

        async def arrived() -> bool:
            return sum(len(batch) for batch in received) == 5

        await wait_for(arrived)
        assert received == [[(b"ch:test", f"m{index}".encode()) for index in range(5)]]

        async def probed_five_times() -> bool:
            return bus.echoes >= 5

        await wait_for(probed_five_times)
        assert bus.connected and bus.reconnects == 0
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await subscriber.aclose()


async def test_confirmed_returns_once_the_server_has_the_subscription(
    redis: RedisClient, redis_url: str
) -> None:
    subscriber = subscriber_client(redis_url)
    bus = RedisBus(
        subscriber=subscriber,
        publisher=redis,
        instance_id="confirm",
        probe_interval=5.0,
        timeout=2.0,
    )
    runner = asyncio.create_task(bus.run(lambda batch: None, _never))
    try:

        async def up() -> bool:
            return bus.connected

        await wait_for(up)
        for index in range(20):
            channel = f"ch:confirm:{index}"
            bus.subscribe(channel)
            await bus.confirmed([channel], 2.0)
            # No polling: the server counts the subscriber the moment `confirmed` returns.
            assert await redis.pubsub_numsub(channel) == [(channel, 1)]
        bus.unsubscribe("ch:confirm:0")
        with pytest.raises(TimeoutError):
            await bus.confirmed(["ch:never-subscribed"], 0.2)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await subscriber.aclose()
