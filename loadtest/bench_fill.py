"""`bench.py caches` (second table): cache-aside hit rates while the cached list is written.

A list is written every `write_every` seconds while `readers` cache-aside readers loop: read the
cache; on a miss take the fill version, read the store (a `store_ms` sleep over an in-memory
store that the writer also updates), and fill. The hit rate is hits / reads. A fill must never
install data older than a write that came after its store read; the final cached list is checked
against the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from caches import CachedConversation, CachedMessage, ConversationCache, MessageCache
from caches.redis import RedisClient

__all__ = ["FillResult", "run_fill_cases"]


@dataclass(frozen=True, slots=True)
class FillResult:
    name: str
    reads: int
    hits: int
    consistent: bool

    @property
    def hit_rate(self) -> float:
        return self.hits / self.reads if self.reads else 0.0


@dataclass(frozen=True, slots=True)
class _Load:
    seconds: float
    readers: int
    write_every: float
    store_ms: float
    read_every: float = 0.005


async def _drive(
    load: _Load,
    write: Callable[[int], Awaitable[None]],
    hit: Callable[[], Awaitable[bool]],
    fill: Callable[[], Awaitable[None]],
) -> tuple[int, int]:
    """One writer every `write_every`, `readers` cache-aside readers; (reads, hits)."""
    reads = hits = 0
    deadline = time.monotonic() + load.seconds

    async def writer() -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            await write(n)
            await asyncio.sleep(load.write_every)

    async def reader() -> None:
        nonlocal reads, hits
        while time.monotonic() < deadline:
            reads += 1
            if await hit():
                hits += 1
            else:
                await fill()
            await asyncio.sleep(load.read_every)

    await asyncio.gather(writer(), *(reader() for _ in range(load.readers)))
    return reads, hits


async def _conversation_case(client: RedisClient, load: _Load) -> FillResult:
    cache = ConversationCache(client)
    user = uuid.uuid4()
    store = {
        c.id: c for c in (CachedConversation(id=uuid.uuid4(), name=f"c{n}") for n in range(20))
    }

    async def write(n: int) -> None:
        conv = list(store.values())[n % len(store)]
        conv.unread_count += 1  # the store first, then the cache
        await cache.increment_unread(user, conv.id)

    async def hit() -> bool:
        return await cache.get_user_conversations(user, 50) is not None

    async def fill() -> None:
        version = await cache.fill_version(user)  # before the store read
        await asyncio.sleep(load.store_ms / 1000)
        snapshot = [dataclasses.replace(c) for c in store.values()]
        await cache.set_user_conversations(user, snapshot, version=version)

    reads, hits = await _drive(load, write, hit, fill)
    cached = await cache.get_user_conversations(user, 50)
    consistent = cached is None or all(c.unread_count == store[c.id].unread_count for c in cached)
    return FillResult("conversation list", reads, hits, consistent)


async def _message_case(client: RedisClient, load: _Load) -> FillResult:
    cache = MessageCache(client)
    conversation, sender = uuid.uuid4(), uuid.uuid4()
    store: list[CachedMessage] = []

    async def write(n: int) -> None:
        msg = CachedMessage(
            id=f"m{n}", conversation_id=conversation, sender_id=sender, content="hi"
        )
        store.append(msg)  # the store first, then the cache
        await cache.add_message_to_conversation(conversation, msg)

    async def hit() -> bool:
        return await cache.get_conversation_messages(conversation, 50) is not None

    async def fill() -> None:
        await asyncio.sleep(load.store_ms / 1000)
        await cache.set_conversation_messages(conversation, store[-50:], complete=len(store) < 50)

    reads, hits = await _drive(load, write, hit, fill)
    cached = await cache.get_conversation_messages(conversation, 50)
    consistent = cached is None or [m.id for m in cached] == [m.id for m in store[-len(cached) :]]
    return FillResult("message list", reads, hits, consistent)


async def run_fill_cases(
    client: RedisClient,
    seconds: float = 5.0,
    readers: int = 8,
    write_every: float = 0.1,
    store_ms: float = 2.0,
) -> list[FillResult]:
    load = _Load(seconds, readers, write_every, store_ms)
    results = []
    for case in (_conversation_case, _message_case):
        await client.flushdb()
        results.append(await case(client, load))
    return results
