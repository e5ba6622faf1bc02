"""`bench.py caches`: each cache call beside a raw redis-py pipeline of the same commands."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from caches import (
    CachedConversation,
    CachedMessage,
    ConversationCache,
    MessageCache,
    PresenceCache,
    keys,
)
from caches.models import encode, to_ms, utcnow
from caches.redis import RedisClient
from loadtest.stats import Summary, summarize

__all__ = ["CASES", "CaseResult", "run_cases"]

Op = Callable[[int], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    cache: Summary
    raw: Summary

    @property
    def ratio(self) -> float:
        return self.cache.ops_per_s / self.raw.ops_per_s if self.raw.ops_per_s else 0.0


async def _drive(op: Op, seconds: float, concurrency: int) -> Summary:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**12))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            started = time.perf_counter()
            await op(n)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summarize(latencies, time.perf_counter() - started)


async def _presence_case(client: RedisClient) -> tuple[Op, Op]:
    cache = PresenceCache(client)
    users = [uuid.uuid4() for _ in range(1000)]

    async def cached(n: int) -> None:
        user = users[n % len(users)]
        conn = f"c{n}"
        await cache.connect(user, conn)
        await cache.heartbeat(user, conn)
        await cache.disconnect(user, conn, None)

    async def raw_step(user: uuid.UUID, conn: str, now: int) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.zremrangebyscore(keys.presence_leases(user), "-inf", now)
        pipe.zadd(keys.presence_leases(user), {conn: now + 60_000})
        pipe.hset(keys.presence_conns(user), conn, "a")
        pipe.hgetall(keys.presence_conns(user))
        pipe.set(keys.presence(user), "online", px=60_000)
        pipe.hset(keys.presence_conns(user), "@status", "online")
        pipe.pexpire(keys.presence_leases(user), 60_000)
        pipe.pexpire(keys.presence_conns(user), 60_000)
        pipe.zadd(keys.PRESENCE_ONLINE, {str(user): now + 60_000})
        pipe.zadd(keys.PRESENCE_DEADLINES, {str(user): now + 60_000})
        await pipe.execute()

    async def raw(n: int) -> None:
        user = users[n % len(users)]
        now = int(time.time() * 1000)
        for _ in range(3):
            await raw_step(user, f"c{n}", now)

    return cached, raw


async def _bulk_case(client: RedisClient, size: int) -> tuple[Op, Op]:
    cache = PresenceCache(client)
    users = [uuid.uuid4() for _ in range(size)]
    for user in users[::3]:
        await cache.set_online(user)

    async def cached(n: int) -> None:
        await cache.get_bulk_status(users)

    async def raw(n: int) -> None:
        # Key names are built per call on both sides, as every other raw case does.
        await client.mget(keys.presence_many(users))

    return cached, raw


def _message(conv: uuid.UUID, n: int) -> CachedMessage:
    return CachedMessage(
        id=str(uuid.uuid4()), conversation_id=conv, sender_id=conv, content=f"message {n}" * 4
    )


async def _add_case(client: RedisClient) -> tuple[Op, Op]:
    cache = MessageCache(client)
    convs = [uuid.uuid4() for _ in range(100)]
    for conv in convs:
        await cache.set_conversation_messages(conv, [], complete=True)

    async def cached(n: int) -> None:
        conv = convs[n % len(convs)]
        await cache.add_message_to_conversation(conv, _message(conv, n))

    async def raw(n: int) -> None:
        conv = convs[n % len(convs)]
        msg = _message(conv, n)
        pipe = client.pipeline(transaction=True)
        pipe.hget(keys.conversation_message_bodies(conv), msg.id)
        pipe.hset(keys.conversation_message_bodies(conv), msg.id, encode(msg))
        pipe.zadd(keys.conversation_messages(conv), {msg.id: to_ms(msg.created_at)})
        pipe.zcard(keys.conversation_messages(conv))
        pipe.zremrangebyrank(keys.conversation_messages(conv), 0, -101)
        pipe.pexpire(keys.conversation_messages(conv), 900_000)
        pipe.pexpire(keys.conversation_message_bodies(conv), 900_000)
        await pipe.execute()

    return cached, raw


async def _read_case(client: RedisClient) -> tuple[Op, Op]:
    cache = MessageCache(client)
    conv = uuid.uuid4()
    msgs = [_message(conv, n) for n in range(100)]
    await cache.set_conversation_messages(conv, msgs, 3600, complete=True)
    newest = [m.id for m in msgs[-50:]]

    async def cached(n: int) -> None:
        await cache.get_conversation_messages(conv, 50)

    async def raw(n: int) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.hmget(keys.conversation_message_bodies(conv), ["@loaded", "@complete"])
        pipe.zcard(keys.conversation_messages(conv))
        pipe.zrange(keys.conversation_messages(conv), -50, -1)
        pipe.hmget(keys.conversation_message_bodies(conv), newest)
        await pipe.execute()

    return cached, raw


async def _last_message_case(client: RedisClient) -> tuple[Op, Op]:
    cache = ConversationCache(client)
    users = [uuid.uuid4() for _ in range(100)]
    convs = [CachedConversation(id=uuid.uuid4(), name=f"c{n}") for n in range(20)]
    for user in users:
        await cache.set_user_conversations(user, convs, 3600, complete=True)

    async def cached(n: int) -> None:
        await cache.update_last_message(
            users[n % len(users)], convs[n % len(convs)].id, f"m{n}", "hello there", utcnow()
        )

    async def raw(n: int) -> None:
        user, conv = users[n % len(users)], convs[n % len(convs)]
        data = keys.user_conversation_data(user)
        pipe = client.pipeline(transaction=True)
        pipe.incr(keys.user_conversations_version(user))
        pipe.pexpire(keys.user_conversations_version(user), 86_400_000)
        pipe.hget(data, "@loaded")
        pipe.hget(data, str(conv.id))
        pipe.zscore(keys.user_conversations(user), str(conv.id))
        pipe.zadd(keys.user_conversations(user), {str(conv.id): to_ms(utcnow())})
        pipe.hset(data, str(conv.id), encode(conv))
        await pipe.execute()

    return cached, raw


async def _sent_case(client: RedisClient) -> tuple[Op, Op]:
    """A sent message's write-through into a room of 10 whose lists are cached: `record_sent`
    (one script call) beside the four calls it stands for, issued together."""
    messages, conversations = MessageCache(client), ConversationCache(client)
    rooms = [(uuid.uuid4(), [uuid.uuid4() for _ in range(10)]) for _ in range(20)]
    for conv, members in rooms:
        await messages.set_conversation_messages(conv, [], complete=True)
        for member in members:
            listed = CachedConversation(id=conv, name="room", last_seq=0, read_seq=0)
            await conversations.set_user_conversations(member, [listed], 3600)

    def sent(n: int) -> tuple[CachedMessage, list[uuid.UUID]]:
        conv, members = rooms[n % len(rooms)]
        msg = CachedMessage(
            id=str(uuid.uuid4()),
            conversation_id=conv,
            sender_id=members[n % 10],
            content=f"message {n}",
            seq=n + 1,
        )
        return msg, members

    async def cached(n: int) -> None:
        msg, members = sent(n)
        await messages.record_sent(msg, members)

    async def raw(n: int) -> None:
        msg, members = sent(n)
        assert msg.seq is not None
        await asyncio.gather(
            messages.set_message(msg),
            messages.add_message_to_conversation(msg.conversation_id, msg),
            messages.record_unread(
                msg.conversation_id, [m for m in members if m != msg.sender_id], msg.seq
            ),
            conversations.record_message_for_members(
                members,
                msg.conversation_id,
                msg.id,
                msg.content,
                msg.created_at,
                sender_id=msg.sender_id,
                seq=msg.seq,
            ),
        )

    return cached, raw


CASES: dict[str, Callable[[RedisClient], Awaitable[tuple[Op, Op]]]] = {
    "presence connect+heartbeat+disconnect": _presence_case,
    "get_bulk_status(100)": lambda c: _bulk_case(c, 100),
    "get_bulk_status(1000)": lambda c: _bulk_case(c, 1000),
    "add_message_to_conversation": _add_case,
    "get_conversation_messages(50)": _read_case,
    "update_last_message": _last_message_case,
    "record_sent(10 members) vs its four calls": _sent_case,
}


async def run_cases(client: RedisClient, seconds: float, concurrency: int) -> list[CaseResult]:
    """Run every case: the cache call, then its raw pipeline, each for `seconds`."""
    results = []
    for name, build in CASES.items():
        await client.flushdb()
        cached, raw = await build(client)
        await _drive(cached, 0.2, concurrency)  # warm-up: scripts loaded, pool filled
        cache_summary = await _drive(cached, seconds, concurrency)
        raw_summary = await _drive(raw, seconds, concurrency)
        results.append(CaseResult(name, cache_summary, raw_summary))
    return results
