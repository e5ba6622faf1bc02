"""The pub/sub seam between instances: what the hub and the services need of a bus.

Two backends implement it: `RedisBus` (redis-py; one subscriber connection per process) and
`MemoryBus` (in-process, for unit tests of the hub and the handlers). Both hand the hub the
messages that arrived together (one socket read; one loop iteration) as one batch, so the hub
writes each connection once per batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

__all__ = ["Bus", "Delivery", "Reconnected"]

Delivery = Callable[[list[tuple[bytes, bytes]]], None]
"""Receives `(channel, payload)` pairs, in the order the bus received them."""

Reconnected = Callable[[frozenset[bytes] | None], Awaitable[None]]
"""Called after the bus lost its connection and subscribed again (state may be stale), with the
channels whose events may have been lost, or None for every one of them."""


class Bus(Protocol):
    @property
    def connected(self) -> bool:
        """Subscribed and trusted (every shard, on a cluster)."""
        ...

    @property
    def reconnects(self) -> int: ...

    @property
    def channel_count(self) -> int: ...

    def subscribe(self, channel: str) -> None:
        """Carry `channel` from now on (idempotent; the server is told without waiting)."""
        ...

    def unsubscribe(self, channel: str) -> None: ...

    async def confirmed(self, channels: Iterable[str], timeout: float) -> None:
        """Return once the server confirmed every one of `channels` (subscribed earlier).

        Raises:
            TimeoutError: not confirmed within `timeout` (e.g. the bus is disconnected).
        """
        ...

    async def publish(self, channel: str, payload: bytes) -> None:
        """Raises `caches.CacheUnavailable` when the message could not be handed to Redis."""
        ...

    async def run(self, deliver: Delivery, reconnected: Reconnected) -> None:
        """Deliver messages until cancelled; the owner runs it in its task group."""
        ...
