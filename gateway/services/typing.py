"""Typing indicators: throttled in Redis, and announced in the same script call as the change
(the publisher says on which channel, in which envelope) or, where scripts do not reach the bus,
through the publisher right after."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from caches import PresenceCache
from caches.presence import Announcement
from gateway.bus.publisher import Publisher
from gateway.config import PresenceSettings
from gateway.protocol import events
from gateway.state import ClientState

__all__ = ["TypingService"]


class TypingService:
    def __init__(
        self, presence: PresenceCache, publisher: Publisher, settings: PresenceSettings
    ) -> None:
        self._presence = presence
        self._publisher = publisher
        self._ttl = settings.typing_ttl
        self._ttl_ms = int(settings.typing_ttl * 1000)
        self._throttle = settings.typing_throttle

    async def _announced(
        self,
        change: Callable[[Announcement | None], Awaitable[bool]],
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        started: bool,
    ) -> bool:
        """Run `change` (a typing script) with the announcement it publishes when it reports a
        change; where scripts do not reach the bus, publish it here instead. The typist's own
        connections do not receive their own indicator."""
        frame = events.typing(conversation_id, user_id, started=started, expires_in_ms=self._ttl_ms)
        announcement = self._publisher.conversation_announcement(
            conversation_id, frame, exclude=user_id
        )
        changed = await change(announcement)
        if changed and announcement is None:
            await self._publisher.conversation(conversation_id, frame, exclude=user_id)
        return changed

    async def start(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        """True when announced (not a repeat inside the throttle window)."""
        if client.typing is None:
            client.typing = set()
        client.typing.add(conversation_id)
        user_id = client.user_id
        return await self._announced(
            lambda announce: self._presence.set_typing(
                conversation_id, user_id, self._ttl, throttle=self._throttle, announce=announce
            ),
            conversation_id,
            user_id,
            True,
        )

    async def stop(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        """True when the user was typing (and the stop was announced)."""
        if client.typing is not None:
            client.typing.discard(conversation_id)
        return await self._clear(client.user_id, conversation_id)

    async def _clear(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
        return await self._announced(
            lambda announce: self._presence.clear_typing(
                conversation_id, user_id, announce=announce
            ),
            conversation_id,
            user_id,
            False,
        )

    async def clear_all(self, client: ClientState) -> None:
        """On disconnect: stop every indicator this client started."""
        typing, client.typing = client.typing or set(), None
        for conversation_id in typing:
            await self._clear(client.user_id, conversation_id)
