"""Conversations: created in the store, then announced to every member on every instance."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from caches import CachedConversation, ConversationCache
from caches.models import to_ms
from gateway.bus.publisher import Publisher
from gateway.metrics import key
from gateway.protocol import events
from gateway.services.repair import CacheRepair
from gateway.services.side import attempt, quietly
from gateway.store import ConversationSummary, Store

__all__ = ["ConversationService"]

_MEMBERS_REMEMBERED = 10_000
_LIST_HIT = key("cache_requests", "conversations", "list", "hit")
_LIST_MISS = key("cache_requests", "conversations", "list", "miss")


class ConversationService:
    def __init__(
        self,
        *,
        store: Store,
        publisher: Publisher,
        join_local: Callable[[Iterable[uuid.UUID], uuid.UUID], Awaitable[None]],
        cache: ConversationCache,
        side_budget: float,
        repair: CacheRepair,
        metrics: Counter[str] | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._join_local = join_local
        self._cache = cache
        self._side_budget = side_budget
        self._repair = repair
        self._metrics: Counter[str] = Counter() if metrics is None else metrics
        # Members never change once a conversation exists (no add/remove yet), so a send needs
        # no store read for them after the first; bounded, oldest first out.
        self._members: dict[uuid.UUID, tuple[uuid.UUID, ...]] = {}

    async def create(
        self, creator: uuid.UUID, kind: str, others: list[uuid.UUID], name: str
    ) -> tuple[dict[str, object], bool]:
        """Create (or, for an existing direct pair, find) a conversation: its wire form and
        whether it was created now.

        Members' connections on every instance receive `conversation.added` and from then on
        the conversation's events; local ones are joined before this returns, so the creator
        may use it at once.
        """
        conversation, created = await self._store.create_conversation(kind, creator, others, name)
        wire = conversation.as_wire()
        self._remember(conversation.id, conversation.member_ids)
        if created:
            frame = events.conversation_added(wire)
            members = conversation.member_ids
            await self._join_local(members, conversation.id)
            # Members' cached lists lack the new conversation: dropped, refilled on next read.
            # Issued together, so the auto-pipeline sends them in one round trip.
            drop = asyncio.gather(*(self._cache.delete_user_conversations(m) for m in members))
            if not await attempt("conversation list invalidation", drop, self._side_budget):
                self._repair.members(conversation.id, members)
            await asyncio.gather(
                *(self._publisher.user(m, frame, join=conversation.id) for m in members)
            )
        return wire, created

    async def list_for(
        self, user_id: uuid.UUID, limit: int
    ) -> tuple[list[dict[str, object]], int | None]:
        """The user's conversations, pinned first then newest message first, and the total
        unread count: cache-aside (a version-guarded fill after a miss)."""
        cached = await quietly(
            "conversation list from the cache",
            self._cache.get_user_conversations(user_id, limit),
            self._side_budget,
        )
        self._metrics[_LIST_HIT if cached is not None else _LIST_MISS] += 1
        if cached is not None:
            total = await quietly(
                "unread total", self._cache.get_total_unread_count(user_id), self._side_budget
            )
            return [_wire(c) for c in cached], total
        version = await quietly(
            "fill version", self._cache.fill_version(user_id), self._side_budget
        )
        summaries = [_cached(s) for s in await self._store.conversation_summaries(user_id)]
        if version is not None:  # no version (Redis down): serve from the store, fill nothing
            fill = self._cache.set_user_conversations(user_id, summaries, version=version)
            await quietly("conversation list fill", fill, self._side_budget)
        ordered = sorted(summaries, key=_sort_key, reverse=True)
        return [_wire(c) for c in ordered[:limit]], sum(c.unread_count for c in summaries)

    async def set_flag(
        self, user_id: uuid.UUID, conversation_id: uuid.UUID, flag: str, value: bool
    ) -> None:
        """Pin or mute for this member: the store, then the cached list.

        Raises:
            NotAMember: not a member.
        """
        await self._store.set_flag(conversation_id, user_id, flag, value)
        write = (
            self._cache.set_pinned(user_id, conversation_id, value)
            if flag == "pinned"
            else self._cache.set_muted(user_id, conversation_id, value)
        )
        if not await attempt(f"conversation {flag}", write, self._side_budget):
            self._repair.members(conversation_id, [user_id])

    async def members(self, conversation_id: uuid.UUID) -> tuple[uuid.UUID, ...]:
        """The conversation's members (none for an unknown conversation)."""
        found = self._members.get(conversation_id)
        if found is None:
            conversation = await self._store.get_conversation(conversation_id)
            found = conversation.member_ids if conversation is not None else ()
            if found:
                self._remember(conversation_id, found)
        return found

    def _remember(self, conversation_id: uuid.UUID, members: tuple[uuid.UUID, ...]) -> None:
        if len(self._members) >= _MEMBERS_REMEMBERED:
            del self._members[next(iter(self._members))]
        self._members[conversation_id] = members

    async def memberships(self, user_id: uuid.UUID) -> dict[uuid.UUID, int]:
        """The user's conversations and the last seq committed in each."""
        return await self._store.user_conversations(user_id)


def _cached(summary: ConversationSummary) -> CachedConversation:
    last = summary.last_message
    return CachedConversation(
        id=summary.id,
        type=summary.type,
        name=summary.name,
        last_message_id=str(last.id) if last else None,
        last_message_text=last.content if last else "",
        last_message_at=last.created_at if last else None,
        unread_count=summary.unread_count,
        is_pinned=summary.is_pinned,
        is_muted=summary.is_muted,
        last_seq=summary.last_seq,
        read_seq=summary.read_seq,
    )


def _sort_key(conv: CachedConversation) -> tuple[bool, int, str]:
    """The cache's order: pinned first, then newest message first (ties by id, as a zset)."""
    at = to_ms(conv.last_message_at) if conv.last_message_at else 0
    return conv.is_pinned, at, str(conv.id)


def _wire(conv: CachedConversation) -> dict[str, object]:
    return {
        "id": conv.id,
        "type": conv.type,
        "name": conv.name,
        "last_message_id": conv.last_message_id,
        "last_message_text": conv.last_message_text,
        "last_message_at": conv.last_message_at,
        "unread_count": conv.unread_count,
        "is_pinned": conv.is_pinned,
        "is_muted": conv.is_muted,
    }
