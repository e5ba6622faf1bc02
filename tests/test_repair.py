"""Cache repair: notes of what failed writes left stale survive a Redis that still does not
answer, and are dropped (so reads refill from the store) once it does."""

from __future__ import annotations

import uuid

from caches import CachedConversation, ConversationCache, MessageCache, connect
from caches.redis import RedisClient
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
