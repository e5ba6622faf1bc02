"""The Redis pub/sub bridge between instances.

One subscriber connection per process carries every channel any local connection needs (the hub
decides first and last interest); one reader hands each message to the hub. If the connection
drops, the bus reconnects with backoff, subscribes to everything again and tells the gateway to
re-assert its state. A subscriber can die silently while publishes still succeed, so the bus
publishes a probe on its own channel and reconnects when the echo is two intervals late.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from redis.exceptions import RedisError

from caches import keys
from caches.redis import RedisClient
from gateway.subscriber import Subscriber, SubscriberClosed

__all__ = ["Bus"]

log = logging.getLogger(__name__)

_BACKOFF_START = 0.05
_BACKOFF_CAP = 2.0


class Bus:
    def __init__(
        self,
        url: str,
        publisher: RedisClient,
        instance_id: str,
        probe_interval: float,
        on_messages: Callable[[list[tuple[bytes, bytes]]], None],
        on_reconnect: Callable[[], Awaitable[None]],
    ) -> None:
        self._url = url
        self._publisher = publisher
        self._probe_interval = probe_interval
        self._on_messages = on_messages
        self._on_reconnect = on_reconnect
        self._channels: set[str] = set()
        self._subscriber: Subscriber | None = None
        self._probe_channel = keys.instance_channel(instance_id)
        self._probe_key = self._probe_channel.encode()
        self._last_echo = 0.0
        self.connected = False
        self.reconnects = 0
        self.echoes = 0

    def subscribe(self, channel: str) -> None:
        """Carry `channel` from now on (idempotent)."""
        if channel not in self._channels:
            self._channels.add(channel)
            if self._subscriber is not None:
                self._subscriber.subscribe([channel])

    def unsubscribe(self, channel: str) -> None:
        if channel in self._channels:
            self._channels.discard(channel)
            if self._subscriber is not None:
                self._subscriber.unsubscribe([channel])

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._publisher.publish(channel, payload)

    def _deliver(self, batch: list[tuple[bytes, bytes]]) -> None:
        probe = self._probe_key
        if any(channel == probe for channel, _ in batch):
            self._last_echo = time.monotonic()
            self.echoes += 1
            batch = [(channel, payload) for channel, payload in batch if channel != probe]
        try:
            self._on_messages(batch)
        except Exception:
            log.exception("bus: handling %d messages failed", len(batch))

    async def run(self) -> None:
        """Keep the subscription up until cancelled."""
        backoff = _BACKOFF_START
        first = True
        while True:
            subscriber = Subscriber(self._url, self._deliver)
            try:
                await subscriber.connect()
                subscriber.subscribe([self._probe_channel, *self._channels])
                self._subscriber = subscriber
                self._last_echo = time.monotonic()
                self.connected = True
                if not first:
                    self.reconnects += 1
                    log.warning("bus: reconnected to Redis; re-asserting presence")
                    await self._on_reconnect()
                first = False
                backoff = _BACKOFF_START
                await _first_to_fail(subscriber.run(), self._probe())
            except (OSError, TimeoutError, SubscriberClosed, RedisError) as exc:
                log.warning("bus: pub/sub connection lost: %s", exc)
            except Exception:  # the task's edge: a protocol surprise; reconnect
                log.exception("bus: unexpected failure; reconnecting")
            finally:
                self.connected = False
                self._subscriber = None
                subscriber.close()
            await asyncio.sleep(backoff + secrets.randbelow(100) / 1000 * backoff)
            backoff = min(_BACKOFF_CAP, backoff * 2)

    async def _probe(self) -> None:
        """Publish on our own channel; raise when the echo is two intervals late."""
        while True:
            try:
                await self._publisher.publish(self._probe_channel, b"probe")
            except RedisError as exc:
                raise SubscriberClosed(f"probe publish failed: {exc}") from exc
            await asyncio.sleep(self._probe_interval)
            if time.monotonic() - self._last_echo > 2 * self._probe_interval:
                raise SubscriberClosed("probe echo did not come back")


async def _first_to_fail(*coros: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines until one ends; cancel and await the rest; re-raise its error.

    Unlike a 3.11 TaskGroup, a cancellation of the caller always propagates as such, even when
    a child fails at the same moment.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
