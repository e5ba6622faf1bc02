"""The bus on redis-py: one subscriber connection per process, one reader, a liveness probe.

The subscriber is a redis-py `PubSub` on a client built from the same parsed URL as every other
connection (db index, TLS, ACL user, timeouts). The reader parses replies off that connection
with hiredis in bulk (`gateway.replies`) and hands the messages of one socket read to the hub as
one batch. Subscription changes are sent by a writer task, in order, without the caller waiting;
`confirmed` waits for the server's acknowledgement when a caller needs it.

If the connection drops, the bus reconnects with backoff, subscribes to everything again and
calls `reconnected` so the gateway re-asserts its state. A subscriber can die silently while
publishes still succeed, so the bus publishes a probe on its own channel and reconnects when
the echo is two intervals late.

With `sharded`, the same machinery speaks sharded pub/sub (SSUBSCRIBE, SPUBLISH) to one node of
a Redis Cluster: `gateway.bus.sharded.ShardedBus` runs one such bus per primary and routes each
channel to the one that owns its slot.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from caches import CacheUnavailable, keys
from caches.errors import REDIS_FAILURES, raise_unavailable, translated
from caches.redis import RedisClient
from gateway.bus.base import Delivery, Reconnected
from gateway.errors import Error
from gateway.replies import ReplyStream
from gateway.tasks import first_to_end

__all__ = ["BusLost", "RedisBus"]

log = logging.getLogger(__name__)

_BACKOFF_START = 0.05
_BACKOFF_CAP = 2.0


class BusLost(Error):
    """The pub/sub connection is no longer trustworthy (probe late, publish failed)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """Classic or sharded pub/sub: the commands and reply kinds of each."""

    subscribe: str
    unsubscribe: str
    publish: str
    message: bytes
    subscribed: bytes
    unsubscribed: bytes


CLASSIC = Dialect("SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", b"message", b"subscribe", b"unsubscribe")
SHARDED = Dialect(
    "SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH", b"smessage", b"ssubscribe", b"sunsubscribe"
)


class RedisBus:
    """`subscriber` must not decode responses; `publisher` may be any client (pipelined).

    Sharded (`slot_of` given): the channels of one command must share a slot (a cluster
    refuses CROSSSLOT), so changes are grouped by slot; `probe_channel` must be one this node
    owns; `moved(channel)` hears of a channel the server dropped (its slot moved), and the
    first connection counts as a reconnect when `gap_at_start` (channels moved here from
    another node: events may have been lost in between)."""

    def __init__(
        self,
        *,
        subscriber: aioredis.Redis,
        publisher: RedisClient,
        instance_id: str,
        probe_interval: float,
        timeout: float,
        slot_of: Callable[[str], int] | None = None,
        probe_channel: str | None = None,
        moved: Callable[[bytes], None] | None = None,
        gap_at_start: bool = False,
    ) -> None:
        self._subscriber = subscriber
        self._publisher = publisher
        self._dialect = SHARDED if slot_of is not None else CLASSIC
        self._slot_of = slot_of
        self._moved = moved
        self._gap_at_start = gap_at_start
        self._probe_interval = probe_interval
        self._timeout = timeout
        self._channels: set[str] = set()
        self._changes: list[tuple[str, str]] = []
        self._changed = asyncio.Event()
        # Channels asked for but not yet acknowledged (not every confirmed one: that would be a
        # second copy of every channel name, one per connection of the instance).
        self._unconfirmed: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._probe_channel = probe_channel or keys.instance_channel(instance_id)
        self._probe_key = self._probe_channel.encode()
        self._last_echo = 0.0
        self._echoed = asyncio.Event()
        self.connected = False
        self.reconnects = 0
        self.echoes = 0

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @property
    def channels(self) -> set[str]:
        return self._channels

    def subscribe(self, channel: str) -> None:
        if channel not in self._channels:
            self._channels.add(channel)
            self._change(self._dialect.subscribe, channel)

    def unsubscribe(self, channel: str) -> None:
        if channel in self._channels:
            self._channels.discard(channel)
            self._change(self._dialect.unsubscribe, channel)

    def _change(self, command: str, channel: str) -> None:
        # Queued even while disconnected: a change made during a (re)connect, after the
        # snapshot the connect subscribes to, must still reach the server.
        self._changes.append((command, channel))
        self._changed.set()
        if command == self._dialect.subscribe:
            self._unconfirmed.add(channel.encode())

    async def confirmed(self, channels: Iterable[str], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waits: list[tuple[bytes, asyncio.Future[None]]] = []
        for channel in channels:
            key = channel.encode()
            if key in self._unconfirmed or channel not in self._channels or not self.connected:
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.setdefault(key, []).append(future)
                waits.append((key, future))
        if not waits:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(future for _, future in waits))
        finally:
            for key, future in waits:
                if not future.done():
                    future.cancel()
                    pending = self._waiters.get(key)
                    if pending is not None and future in pending:
                        pending.remove(future)
                        if not pending:
                            del self._waiters[key]

    async def publish(self, channel: str, payload: bytes) -> None:
        try:
            await self._publisher.execute_command(self._dialect.publish, channel, payload)
        except REDIS_FAILURES as exc:
            raise_unavailable(exc)

    async def run(self, deliver: Delivery, reconnected: Reconnected) -> None:
        """Keep the subscription up until cancelled."""
        backoff = _BACKOFF_START
        first = not self._gap_at_start
        while True:
            pubsub = self._subscriber.pubsub()
            try:
                self._changes.clear()
                self._unconfirmed = {c.encode() for c in self._channels}
                async with asyncio.timeout(self._timeout):
                    for channels in self._commands([self._probe_channel, *sorted(self._channels)]):
                        await pubsub.execute_command(self._dialect.subscribe, *channels)
                connection = pubsub.connection
                assert connection is not None
                self._last_echo = time.monotonic()
                self.connected = True
                tasks = [self._read(connection, deliver), self._probe(), self._write(pubsub)]
                if not first:
                    self.reconnects += 1
                    log.warning(
                        "bus: reconnected to Redis; re-asserting presence",
                        extra={"event": "redis_reconnected"},
                    )
                    tasks.append(_then_idle(reconnected(None)))
                first = False
                backoff = _BACKOFF_START
                await first_to_end(*tasks)
            except (OSError, TimeoutError, RedisError, BusLost) as exc:
                log.warning(
                    "bus: pub/sub connection lost: %s",
                    exc or type(exc).__name__,
                    extra={"event": "redis_disconnected"},
                )
            except Exception:  # the task's edge: a protocol surprise; reconnect
                log.exception("bus: unexpected failure; reconnecting")
            finally:
                self.connected = False
                await _close(pubsub)
            await asyncio.sleep(backoff + secrets.randbelow(100) / 1000 * backoff)
            backoff = min(_BACKOFF_CAP, backoff * 2)

    async def _read(self, connection: Connection, deliver: Delivery) -> None:
        stream = ReplyStream(connection)
        probe = self._probe_key
        dialect = self._dialect
        while True:
            # The messages of one socket read go to the hub as one batch, at once.
            batch = []
            for reply in await stream.read():
                if isinstance(reply, Exception):
                    raise BusLost(f"Redis error on pub/sub: {reply}")
                kind = reply[0]
                if kind == dialect.message:
                    channel = reply[1]
                    if channel == probe:
                        self._last_echo = time.monotonic()
                        self._echoed.set()
                        self.echoes += 1
                    else:
                        batch.append((channel, reply[2]))
                elif kind == dialect.subscribed:
                    self._confirm(reply[1])
                elif kind == dialect.unsubscribed and self._moved is not None:
                    # A sharded channel the server dropped while still wanted: its slot moved.
                    if reply[1].decode() in self._channels:
                        self._moved(reply[1])
            if batch:
                try:
                    deliver(batch)
                except Exception:  # the hub's edge: one bad batch never ends the subscription
                    log.exception("bus: delivering %d messages failed", len(batch))

    def _confirm(self, channel: bytes) -> None:
        self._unconfirmed.discard(channel)
        for future in self._waiters.pop(channel, ()):
            if not future.done():
                future.set_result(None)

    async def _write(self, pubsub: PubSub) -> None:
        """Send subscription changes in order, consecutive ones of a kind in one command."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            changes, self._changes = self._changes, []
            start = 0
            while start < len(changes):
                command = changes[start][0]
                end = start
                while end < len(changes) and changes[end][0] == command:
                    end += 1
                async with asyncio.timeout(self._timeout):
                    for channels in self._commands([c for _, c in changes[start:end]]):
                        await pubsub.execute_command(command, *channels)
                start = end

    def _commands(self, channels: list[str]) -> list[list[str]]:
        """The channels of one (un)subscribe command each: all of them, or one slot's."""
        if self._slot_of is None:
            return [channels]
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(self._slot_of(channel), []).append(channel)
        return list(by_slot.values())

    async def _probe(self) -> None:
        """Publish on our own channel; raise when an echo is two intervals late and a probe
        sent then is not echoed within the budget either.

        The second look is what tells a dead subscription from a busy process: in a connect
        storm this process's own event loop can run seconds behind, so a late echo alone
        would drop a healthy subscription (and every attach waiting on it) for nothing."""
        while True:
            await self._publish_probe()
            await asyncio.sleep(self._probe_interval)
            if time.monotonic() - self._last_echo > 2 * self._probe_interval:
                self._echoed.clear()
                await self._publish_probe()
                try:
                    async with asyncio.timeout(self._timeout):
                        await self._echoed.wait()
                except TimeoutError:
                    raise BusLost("probe echo did not come back") from None

    async def _publish_probe(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await translated(
                    self._publisher.execute_command(
                        self._dialect.publish, self._probe_channel, b"probe"
                    )
                )
        except (CacheUnavailable, TimeoutError) as exc:
            raise BusLost(f"probe publish failed: {exc or type(exc).__name__}") from exc


async def _close(pubsub: PubSub) -> None:
    try:
        async with asyncio.timeout(1.0):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
    except Exception as exc:  # closing a dead connection: nothing left to save
        log.debug("bus: closing the pub/sub connection: %s", exc)


async def _then_idle(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` beside the reader; its failure is logged, never a reason to reconnect."""
    try:
        await work
    except Exception:
        log.exception("bus: re-asserting state after a reconnect failed")
    await asyncio.Event().wait()
