"""Typing indicators: throttled in Redis and announced in the same atomic step as the change."""

from __future__ import annotations

import uuid

from caches import PresenceCache, keys
from gateway.config import Settings
from gateway.protocol import envelope, events
from gateway.state import ClientState

__all__ = ["TypingService"]


class TypingService:
    def __init__(self, presence: PresenceCache, settings: Settings) -> None:
        self._presence = presence
        self._ttl = settings.typing_ttl
        self._ttl_ms = int(settings.typing_ttl * 1000)
        self._throttle = settings.typing_throttle

    def _announcement(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, started: bool
    ) -> tuple[str, bytes]:
        frame = events.typing(conversation_id, user_id, started=started, expires_in_ms=self._ttl_ms)
        # The typist's own connections do not receive their own indicator.
        return keys.conversation_channel(conversation_id), envelope.pack(frame, exclude=user_id)

    async def start(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        """True when announced (not a repeat inside the throttle window)."""
        if client.typing is None:
            client.typing = set()
        client.typing.add(conversation_id)
        return await self._presence.set_typing(
            conversation_id,
            client.user_id,
            self._ttl,
            throttle=self._throttle,
            announce=self._announcement(conversation_id, client.user_id, True),
        )

    async def stop(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        """True when the user was typing (and the stop was announced)."""
        if client.typing is not None:
            client.typing.discard(conversation_id)
        return await self._clear(client.user_id, conversation_id)

    async def _clear(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
        return await self._presence.clear_typing(
            conversation_id,
            user_id,
            announce=self._announcement(conversation_id, user_id, False),
        )

    async def clear_all(self, client: ClientState) -> None:
        """On disconnect: stop every indicator this client started."""
        typing, client.typing = client.typing or set(), None
        for conversation_id in typing:
            await self._clear(client.user_id, conversation_id)
