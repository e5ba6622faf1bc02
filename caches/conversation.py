"""Conversation cache: each user's conversation list, sorted pinned first, then newest first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from caches import keys
from caches._base import TTL, Call, Script, is_cluster, ttl_ms
from caches.errors import translating
from caches.memo import bounded_memo
from caches.models import CachedConversation, decode, encode, to_iso, to_ms
from caches.redis import RedisClient

__all__ = ["DEFAULT_CONVERSATION_TTL", "ConversationCache"]

DEFAULT_CONVERSATION_TTL = timedelta(minutes=10)
# A list's write version outlives any fill that could have read it (a fill holding a version
# that has since expired and restarted from 0 would be taken for current).
_VERSION_TTL_MS = 24 * 3_600_000
# Sort score = pinned weight + last message epoch ms: pinned conversations sort above every
# unpinned one, and the sum stays exact in a double (< 2**53).
_PINNED_WEIGHT = 10**13

_LOAD = Script("conversations_load")
LIST_WRITE = Script("conversations_write")
_READ = Script("list_read")
_UNREAD = Script("conversations_unread")


def _preview(message_id: str | uuid.UUID, text: str, at: datetime) -> list[str | int]:
    """The script arguments of a message preview: id, text, time as RFC 3339 and as ms."""
    return [keys.valid_id(message_id, "message_id"), text, to_iso(at), to_ms(at)]


def _keys_of_list(user: str) -> tuple[str, str, str]:
    return (
        keys.user_conversations(user),
        keys.user_conversation_data(user),
        keys.user_conversations_version(user),
    )


# A message names every member's three keys; the same members recur message after message.
_keys_by_user = bounded_memo(_keys_of_list, 1 << 14)


def _list_keys(user_id: uuid.UUID | str) -> tuple[str, str, str]:
    """A user's list: its zset, its data hash, its write version (one slot)."""
    return _keys_by_user(keys.uuid_text(user_id, "user_id"))


def members_message_call(
    member_ids: Sequence[uuid.UUID | str],
    conversation_id: uuid.UUID | str,
    message_id: str | uuid.UUID,
    text: str,
    at: datetime,
    *,
    sender_id: uuid.UUID | str,
    seq: int | None,
    one_server: bool,
) -> list[Call]:
    """`LIST_WRITE`'s calls recording a message in its members' lists: one for them all (on
    `one_server`), or one per member (on a cluster, where each list has its own slot)."""
    conv = keys.uuid_text(conversation_id, "conversation_id")
    sender = keys.uuid_text(sender_id, "sender_id")
    unread = ["0" if keys.uuid_text(m, "member_id") == sender else "1" for m in member_ids]
    args = ["message", conv, _VERSION_TTL_MS, _PINNED_WEIGHT, *_preview(message_id, text, at)]
    seq_arg = "" if seq is None else seq
    if one_server:
        all_keys = [key for m in member_ids for key in _list_keys(m)]
        return [(all_keys, [*args, "".join(unread), seq_arg])]
    return [
        (_list_keys(m), [*args, flag, seq_arg]) for m, flag in zip(member_ids, unread, strict=True)
    ]


def _score(conv: CachedConversation) -> int:
    at = to_ms(conv.last_message_at) if conv.last_message_at else 0
    return (_PINNED_WEIGHT if conv.is_pinned else 0) + at


@translating
class ConversationCache:
    """The spec's ConversationCache, cache-aside safe.

    A read returns None (a miss) unless the list was loaded with `set_user_conversations` and can
    answer the whole request. Writes change a loaded list in place and never create a partial
    one, and each bumps the list's version. A fill that read the store after taking
    `fill_version` is refused when a write came in between (it could bring stale data back);
    any other fill succeeds, however often the list is written.
    """

    def __init__(self, client: RedisClient) -> None:
        self._redis = client

    async def fill_version(self, user_id: uuid.UUID | str) -> int:
        """The list's write version: take it *before* reading the store after a miss, and pass
        it to `set_user_conversations` so the fill is refused if a write came in between."""
        raw = await self._redis.get(keys.user_conversations_version(user_id))
        return int(raw) if raw is not None else 0

    async def set_user_conversations(
        self,
        user_id: uuid.UUID | str,
        conversations: list[CachedConversation],
        ttl: TTL = DEFAULT_CONVERSATION_TTL,
        *,
        complete: bool = True,
        version: int | None = None,
    ) -> bool:
        """Cache the user's conversation list (the spec's call); False when refused.

        Args:
            complete: the list is every conversation of the user (the spec's meaning, and the
                default); False for one page of a longer list, which then answers only reads it
                covers, and leaves the total unread count unknown.
            version: from `fill_version`, taken before the store read: the fill is refused when
                the list was written since. Without it the list is installed unconditionally.
        """
        args: list[str | int] = [
            ttl_ms(ttl),
            "1" if complete else "0",
            "" if version is None else str(version),
        ]
        for conv in conversations:
            args += [str(conv.id), _score(conv), encode(conv)]
        return bool(await _LOAD(self._redis, _list_keys(user_id), args))

    async def get_user_conversations(
        self, user_id: uuid.UUID | str, limit: int = 50
    ) -> list[CachedConversation] | None:
        """Pinned first, then by last message, newest first; None on a miss."""
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        raws = await _READ(self._redis, _list_keys(user_id)[:2], [limit, "desc"])
        if raws is None or any(raw is None for raw in raws):
            return None
        return [decode(CachedConversation, raw) for raw in raws]

    async def _write(
        self, user_id: uuid.UUID | str, op: str, conversation_id: uuid.UUID | str, *extra: str | int
    ) -> int | None:
        conv = keys.uuid_text(conversation_id, "conversation_id")
        result = await LIST_WRITE(
            self._redis,
            _list_keys(user_id),
            [op, conv, _VERSION_TTL_MS, _PINNED_WEIGHT, *extra],
        )
        return None if int(result) < 0 else int(result)

    async def update_last_message(
        self,
        user_id: uuid.UUID | str,
        conversation_id: uuid.UUID | str,
        message_id: str | uuid.UUID,
        text: str,
        at: datetime,
    ) -> None:
        """A new message: set the preview and move the conversation up (an older one is ignored)."""
        await self._write(user_id, "last", conversation_id, *_preview(message_id, text, at))

    async def record_message(
        self,
        user_id: uuid.UUID | str,
        conversation_id: uuid.UUID | str,
        message_id: str | uuid.UUID,
        text: str,
        at: datetime,
        *,
        unread: bool,
        seq: int | None = None,
    ) -> None:
        """A new message, in one step: `update_last_message`, and the unread count: with
        `seq` (and a list cached with seqs) from watermarks, else `increment_unread` when it
        counts as unread for this user (not their own)."""
        await self._write(
            user_id,
            "message",
            conversation_id,
            *_preview(message_id, text, at),
            int(unread),
            "" if seq is None else seq,
        )

    async def record_message_for_members(
        self,
        member_ids: Sequence[uuid.UUID | str],
        conversation_id: uuid.UUID | str,
        message_id: str | uuid.UUID,
        text: str,
        at: datetime,
        *,
        sender_id: uuid.UUID | str,
        seq: int | None = None,
    ) -> None:
        """`record_message` for every member (unread for all but the sender) in one script call,
        whatever the member count; on a cluster, where each user's list has its own slot, one
        call per member, issued together. Members whose list is not cached cost nothing more."""
        calls = members_message_call(
            member_ids,
            conversation_id,
            message_id,
            text,
            at,
            sender_id=sender_id,
            seq=seq,
            one_server=not is_cluster(self._redis),
        )
        await asyncio.gather(*(LIST_WRITE(self._redis, *call) for call in calls if call[0]))

    async def record_read(
        self, user_id: uuid.UUID | str, conversation_id: uuid.UUID | str, seq: int
    ) -> None:
        """The user read up to `seq`: unread is what lies after it (0 for a list cached
        without seqs, like `reset_unread`)."""
        await self._write(user_id, "read", conversation_id, seq)

    async def increment_unread(
        self, user_id: uuid.UUID | str, conversation_id: uuid.UUID | str
    ) -> int | None:
        """Returns the new count, or None when the list is not cached."""
        return await self._write(user_id, "incr", conversation_id)

    async def reset_unread(
        self, user_id: uuid.UUID | str, conversation_id: uuid.UUID | str
    ) -> None:
        await self._write(user_id, "reset", conversation_id)

    async def get_total_unread_count(self, user_id: uuid.UUID | str) -> int | None:
        """Sum over every conversation; None unless the complete list is cached."""
        total = await _UNREAD(self._redis, [keys.user_conversation_data(user_id)], [])
        return None if total is None else int(total)

    async def set_pinned(
        self, user_id: uuid.UUID | str, conversation_id: uuid.UUID | str, pinned: bool
    ) -> None:
        await self._write(user_id, "pin", conversation_id, "1" if pinned else "0")

    async def set_muted(
        self, user_id: uuid.UUID | str, conversation_id: uuid.UUID | str, muted: bool
    ) -> None:
        await self._write(user_id, "mute", conversation_id, "1" if muted else "0")

    async def remove_conversation(
        self, user_id: uuid.UUID | str, conversation_id: uuid.UUID | str
    ) -> None:
        await self._write(user_id, "remove", conversation_id)

    async def evict_user_conversations(self, user_id: uuid.UUID | str) -> None:
        """Drop the list with a plain DEL, which Redis takes even at its memory limit (where it
        refuses scripts); unlike `delete_user_conversations`, a fill already under way is not
        refused, so use this only when that one cannot run."""
        await self._redis.delete(*_list_keys(user_id)[:2])

    async def delete_user_conversations(self, user_id: uuid.UUID | str) -> None:
        """Drop the whole list (e.g. on logout, or when a conversation is added); the next read
        misses, and a fill that read the store before this is refused."""
        await LIST_WRITE(
            self._redis, _list_keys(user_id), ["drop", "", _VERSION_TTL_MS, _PINNED_WEIGHT]
        )
