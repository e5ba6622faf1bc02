"""Conversation cache: each user's conversation list, sorted pinned first, then newest first."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from caches import keys
from caches._base import TTL, Script, ttl_ms
from caches.models import CachedConversation, decode, encode, to_iso, to_ms
from caches.redis import RedisClient

__all__ = ["DEFAULT_CONVERSATION_TTL", "DEFAULT_LOAD_FENCE", "ConversationCache"]

DEFAULT_CONVERSATION_TTL = timedelta(minutes=10)
DEFAULT_LOAD_FENCE = timedelta(seconds=5)
# Sort score = pinned weight + last message epoch ms: pinned conversations sort above every
# unpinned one, and the sum stays exact in a double (< 2**53).
_PINNED_WEIGHT = 10**13

_LOAD = Script("conversations_load")
_WRITE = Script("conversations_write")
_READ = Script("list_read")
_UNREAD = Script("conversations_unread")


def _score(conv: CachedConversation) -> int:
    at = to_ms(conv.last_message_at) if conv.last_message_at else 0
    return (_PINNED_WEIGHT if conv.is_pinned else 0) + at


class ConversationCache:
    """The spec's ConversationCache, cache-aside safe.

    A read returns None (a miss) unless the list was loaded with `set_user_conversations` and can
    answer the whole request. Writes change a loaded list in place and never create a partial
    one. Every write also sets a short fence: a load inside it is refused, because it may have
    been read from the store before that write and would bring stale data back.
    """

    def __init__(self, client: RedisClient, *, load_fence: TTL = DEFAULT_LOAD_FENCE) -> None:
        self._redis = client
        self._fence_ms = ttl_ms(load_fence)

    def _keys(self, user_id: uuid.UUID) -> list[str]:
        return [
            keys.user_conversations(user_id),
            keys.user_conversation_data(user_id),
            keys.user_conversations_fence(user_id),
        ]

    async def set_user_conversations(
        self,
        user_id: uuid.UUID,
        conversations: list[CachedConversation],
        ttl: TTL = DEFAULT_CONVERSATION_TTL,
        *,
        complete: bool = False,
    ) -> bool:
        """Install the list read from the store; False when refused by a racing write's fence.

        Args:
            complete: True when `conversations` is every conversation of the user.
        """
        args: list[str | int] = [ttl_ms(ttl), "1" if complete else "0"]
        for conv in conversations:
            args += [str(conv.id), _score(conv), encode(conv)]
        return bool(await _LOAD(self._redis, self._keys(user_id), args))

    async def get_user_conversations(
        self, user_id: uuid.UUID, limit: int = 50
    ) -> list[CachedConversation] | None:
        """Pinned first, then by last message, newest first; None on a miss."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        raws = await _READ(self._redis, self._keys(user_id)[:2], [limit, "desc"])
        if raws is None or any(raw is None for raw in raws):
            return None
        return [decode(CachedConversation, raw) for raw in raws]

    async def _write(
        self, user_id: uuid.UUID, op: str, conversation_id: uuid.UUID, *extra: str | int
    ) -> int | None:
        conv = str(keys.valid_uuid(conversation_id, "conversation_id"))
        result = await _WRITE(
            self._redis,
            self._keys(user_id),
            [op, conv, self._fence_ms, _PINNED_WEIGHT, *extra],
        )
        return None if int(result) < 0 else int(result)

    async def update_last_message(
        self,
        user_id: uuid.UUID,
        conversation_id: uuid.UUID,
        message_id: str,
        text: str,
        at: datetime,
    ) -> None:
        """A new message: set the preview and move the conversation up (an older one is ignored)."""
        mid = keys.valid_id(message_id, "message_id")
        await self._write(user_id, "last", conversation_id, mid, text, to_iso(at), to_ms(at))

    async def increment_unread(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> int | None:
        """Returns the new count, or None when the list is not cached."""
        return await self._write(user_id, "incr", conversation_id)

    async def reset_unread(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
        await self._write(user_id, "reset", conversation_id)

    async def get_total_unread_count(self, user_id: uuid.UUID) -> int | None:
        """Sum over every conversation; None unless the complete list is cached."""
        total = await _UNREAD(self._redis, [keys.user_conversation_data(user_id)], [])
        return None if total is None else int(total)

    async def set_pinned(
        self, user_id: uuid.UUID, conversation_id: uuid.UUID, pinned: bool
    ) -> None:
        await self._write(user_id, "pin", conversation_id, "1" if pinned else "0")

    async def set_muted(self, user_id: uuid.UUID, conversation_id: uuid.UUID, muted: bool) -> None:
        await self._write(user_id, "mute", conversation_id, "1" if muted else "0")

    async def remove_conversation(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
        await self._write(user_id, "remove", conversation_id)

    async def delete_user_conversations(self, user_id: uuid.UUID) -> None:
        """Drop the whole list (e.g. on logout); the next read misses."""
        await self._redis.delete(*self._keys(user_id)[:2])
