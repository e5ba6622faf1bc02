"""Cache repair: notes of what failed writes left stale survive a Redis that still does not
answer, and are dropped (so reads refill from the store) once it does."""

from __future__ import annotations

import uuid

import pytest

from caches import CachedConversation, CacheUnavailable, ConversationCache, MessageCache, connect
from caches.redis import EmbeddedRedis, RedisClient
from gateway.services import CacheRepair


async def test_notes_wait_for_redis_then_drop_the_stale_entries(redis: RedisClient) -> None:
    conversations, messages = ConversationCache(redis), MessageCache(redis)
    user, conv = uuid.uuid4(), uuid.uuid4()
    await conversations.set_user_conversations(user, [CachedConversation(id=conv, name="x")])
    version = await messages.unread_fill_version(conv)
    await messages.fill_unread_count(conv, user, 4, as_of_seq=4, version=version)

    dead = connect("redis://127.0.0.1:1")  # nothing listens there
    stuck = CacheRepair(MessageCache(dead), ConversationCache(dead), budget=0.5)
    stuck.members(conv, [user])
    stuck.history(conv, message=uuid.uuid4())
    await stuck.drain()
    assert stuck.pending == 3  # nothing lost while Redis does not answer
    await dead.aclose()

    repair = CacheRepair(messages, conversations, budget=2.0)
    repair.members(conv, [user])
    repair.history(conv)
    await repair.drain()
    assert repair.pending == 0
    assert await conversations.get_user_conversations(user) is None  # refilled on next read
    assert await messages.cached_unread_count(conv, user) is None


async def test_notes_are_drained_one_by_one_and_by_del_under_maxmemory() -> None:
    """At its memory limit Redis refuses scripts and MULTI but takes DEL: the stale counters and
    lists go at once, not when memory is freed; and a note that fails stays on its own."""
    with EmbeddedRedis() as private:
        client = connect(private.url)
        conversations, messages = ConversationCache(client), MessageCache(client)
        users, conv = [uuid.uuid4() for _ in range(3)], uuid.uuid4()
        for user in users:
            await conversations.set_user_conversations(user, [CachedConversation(id=conv)])
            version = await messages.unread_fill_version(conv)
            await messages.fill_unread_count(conv, user, 4, as_of_seq=4, version=version)
        repair = CacheRepair(messages, conversations, budget=2.0)
        repair.members(conv, users)
        repair.history(conv)
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", "1")
        try:
            with pytest.raises(CacheUnavailable, match="maxmemory") as refused:
                await messages.reset_unread_count(conv, users[0])
            assert refused.value.out_of_memory
            await repair.drain()
            assert repair.pending == 0
            for user in users:
                assert await conversations.get_user_conversations(user) is None
                assert await messages.cached_unread_count(conv, user) is None
        finally:
            await client.config_set("maxmemory", "0")
        await client.aclose()
