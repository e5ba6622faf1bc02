"""Conversations: created in the store, then announced to every member on every instance."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from caches import keys
from gateway.protocol import envelope, events
from gateway.services.presence import Publish
from gateway.store import Store

__all__ = ["ConversationService"]


class ConversationService:
    def __init__(
        self,
        store: Store,
        publish: Publish,
        join_local: Callable[[uuid.UUID, uuid.UUID], None],
    ) -> None:
        self._store = store
        self._publish = publish
        self._join_local = join_local

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
        if created:
            frame = events.conversation_added(wire)
            for member in conversation.member_ids:
                self._join_local(member, conversation.id)
            # Issued together, so the auto-pipeline sends them in one round trip.
            await asyncio.gather(
                *(
                    self._publish(
                        keys.user_channel(member), envelope.pack(frame, join=conversation.id)
                    )
                    for member in conversation.member_ids
                )
            )
        return wire, created

    async def memberships(self, user_id: uuid.UUID) -> dict[uuid.UUID, int]:
        """The user's conversations and the last seq committed in each."""
        return await self._store.user_conversations(user_id)
