"""The bus notices a subscriber that died silently (publishes still succeed) and reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from caches.redis import RedisClient
from gateway.bus import Bus
from tests.conftest import wait_for


class SilentRedis:
    """Accepts connections and swallows everything: a subscriber that receives nothing.

    A real server cannot be made to drop one subscriber's messages while keeping its socket
    open, so this stands in for the subscriber side only; publishes go to the real Redis.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        while await reader.read(4096):
            pass
        writer.close()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def silent() -> AsyncIterator[SilentRedis]:
    server = SilentRedis()
    yield server
    await server.stop()


async def test_missing_probe_echo_forces_a_reconnect(
    redis: RedisClient, silent: SilentRedis
) -> None:
    reasserted = asyncio.Event()

    async def on_reconnect() -> None:
        reasserted.set()

    bus = Bus(await silent.start(), redis, "probe-test", 0.1, lambda batch: None, on_reconnect)
    runner = asyncio.create_task(bus.run())
    try:
        await asyncio.wait_for(reasserted.wait(), 5)
        assert silent.accepted >= 2 and bus.reconnects >= 1
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def test_echo_keeps_a_healthy_subscriber(redis: RedisClient, redis_url: str) -> None:
    received: list[tuple[bytes, bytes]] = []
    bus = Bus(redis_url, redis, "healthy", 0.1, received.extend, _never)
    bus.subscribe("ch:test")
    runner = asyncio.create_task(bus.run())
    try:

        async def subscribed() -> bool:
            counts = await redis.pubsub_numsub("ch:test")
            return bool(counts and counts[0][1])

        await wait_for(subscribed)
        await bus.publish("ch:test", b"hello")

        async def arrived() -> bool:
            return bool(received)

        await wait_for(arrived)
        assert received == [(b"ch:test", b"hello")]

        async def probed_five_times() -> bool:
            return bus.echoes >= 5

        await wait_for(probed_five_times)
        assert bus.connected and bus.reconnects == 0
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


async def _never() -> None:
    raise AssertionError("a healthy bus must not reconnect")
