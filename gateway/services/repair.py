"""Cache repair: what a failed write-through left stale is dropped once Redis answers again.

A write-through that Redis did not take (down, partitioned, over its deadline) leaves cached
copies that no longer match the store: a history page without the new message, a deleted
message still listed, an unread counter short of a send. If Redis comes back with its data (a
restart from a snapshot, a partition healing) those copies would be served as truth. So each
failed step notes what it covered; the notes are drained as soon as Redis answers again (at a
bus reconnect, before clients are told to resync, and on a short tick), by dropping those
entries so the next read refills them from the store. A note that cannot be drained stays.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from caches import CacheUnavailable, ConversationCache, MessageCache

__all__ = ["CacheRepair"]

log = logging.getLogger(__name__)

_TICK = 1.0
_MAX_NOTES = 100_000
"""Conversations and members held for repair; beyond it, notes are refused and counted."""


class CacheRepair:
    def __init__(
        self, messages: MessageCache, conversations: ConversationCache, budget: float
    ) -> None:
        self._messages = messages
        self._conversations = conversations
        self._budget = budget
        self._histories: set[uuid.UUID] = set()
        self._messages_held: set[uuid.UUID] = set()
        self._members: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.refused = 0
        """Notes refused because the backlog was full (their entries expire by TTL)."""

    @property
    def pending(self) -> int:
        return len(self._histories) + len(self._messages_held) + len(self._members)

    def history(self, conversation_id: uuid.UUID, message: uuid.UUID | None = None) -> None:
        """The conversation's cached message list (and one message's own copy)."""
        if self._room():
            self._histories.add(conversation_id)
            if message is not None:
                self._messages_held.add(message)

    def members(self, conversation_id: uuid.UUID, user_ids: Iterable[uuid.UUID]) -> None:
        """These members' cached conversation lists and unread counters."""
        for user_id in user_ids:
            if self._room():
                self._members.add((conversation_id, user_id))

    def _room(self) -> bool:
        if self.pending < _MAX_NOTES:
            return True
        self.refused += 1
        if self.refused == 1:
            log.error("cache repair backlog full (%d): stale entries now wait for TTL", _MAX_NOTES)
        return False

    async def drain(self) -> None:
        """Drop every noted entry Redis takes now; keep the rest, each on its own, for the next
        try (one that fails never holds back the others)."""
        if not self.pending:
            return
        histories, held, members = self._histories, self._messages_held, self._members
        self._histories, self._messages_held, self._members = set(), set(), set()
        notes: list[tuple[set[Any], Any]] = [
            *((self._histories, c) for c in histories),
            *((self._messages_held, m) for m in held),
            *((self._members, cu) for cu in members),
        ]
        work = [
            *(self._messages.delete_conversation_messages(c) for c in histories),
            *(self._messages.delete_message(m) for m in held),
            *(self._drop_member(c, u) for c, u in members),
        ]
        try:
            async with asyncio.timeout(self._budget):
                results = await asyncio.gather(*work, return_exceptions=True)
        except TimeoutError:
            results = [TimeoutError()] * len(work)
        dropped = 0
        for (kept, note), result in zip(notes, results, strict=True):
            if not isinstance(result, BaseException):
                dropped += 1
            elif isinstance(result, (CacheUnavailable, TimeoutError)):
                kept.add(note)
            else:
                raise result
        if dropped:
            log.info("cache repair: dropped %d stale entries left by failed writes", dropped)

    async def _drop_member(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> None:
        try:
            await asyncio.gather(
                self._conversations.delete_user_conversations(user_id),
                self._messages.reset_unread_count(conversation_id, user_id),
            )
        except CacheUnavailable as exc:
            if not exc.out_of_memory:
                raise
            # At its memory limit Redis refuses scripts and MULTI, not DEL: stale entries go
            # now rather than be served until the memory is freed.
            await asyncio.gather(
                self._conversations.evict_user_conversations(user_id),
                self._messages.evict_unread_count(conversation_id, user_id),
            )

    async def run(self) -> None:
        """Drain on a short tick until cancelled (the owner's task group)."""
        while True:
            await asyncio.sleep(_TICK)
            await self.drain()
