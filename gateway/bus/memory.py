"""An in-process bus: several `MemoryBus`es on one `MemoryBroker` behave like instances on one
Redis, with no sockets. For unit tests of the hub, the handlers and the services."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from gateway.bus.base import Delivery, Reconnected

__all__ = ["MemoryBroker", "MemoryBus"]


class Batcher:
    """Collects the messages received in one loop iteration and hands them over together."""

    def __init__(self, deliver: Delivery) -> None:
        self._deliver = deliver
        self._pending: list[tuple[bytes, bytes]] = []
        self._scheduled = False

    def add(self, channel: bytes, payload: bytes) -> None:
        self._pending.append((channel, payload))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        self._deliver(batch)


class MemoryBroker:
    def __init__(self) -> None:
        self.buses: list[MemoryBus] = []
        self.published: list[tuple[str, bytes]] = []

    def publish(self, channel: str, payload: bytes) -> None:
        self.published.append((channel, payload))
        for bus in self.buses:
            bus.receive(channel, payload)


class MemoryBus:
    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._channels: set[str] = set()
        self._batcher: Batcher | None = None
        self.connected = False
        self.reconnects = 0
        broker.buses.append(self)

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    def subscribed(self, channel: str) -> bool:
        return channel in self._channels

    async def confirmed(self, channels: Iterable[str], timeout: float) -> None:
        missing = [c for c in channels if c not in self._channels]
        if missing or not self.connected:
            raise TimeoutError(f"not subscribed: {missing}")

    async def publish(self, channel: str, payload: bytes) -> None:
        self._broker.publish(channel, payload)

    def receive(self, channel: str, payload: bytes) -> None:
        if self._batcher is not None and channel in self._channels:
            self._batcher.add(channel.encode(), payload)

    async def run(self, deliver: Delivery, reconnected: Reconnected) -> None:
        self._batcher = Batcher(deliver)
        self.connected = True
        try:
            await asyncio.Event().wait()
        finally:
            self.connected = False
            self._batcher = None
