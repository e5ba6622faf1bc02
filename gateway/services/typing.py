"""Typing indicators: throttled in Redis, and announced in the same script call as the change
(the publisher says on which channel, in which envelope) or, where scripts do not reach the bus,
through the publisher right after."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from caches import PresenceCache
from caches.memo import bounded_memo
from caches.presence import Typist
from gateway.bus.publisher import Publisher
from gateway.config import PresenceSettings
from gateway.protocol import events
from gateway.state import ClientState

__all__ = ["TypingService"]

_PREPARED = 16_384
"""(conversation, user) pairs whose scripts' keys and announcements are kept ready."""


class _Prepared(NamedTuple):
    typist: Typist
    start: bytes
    stop: bytes
    published: bool
    """The scripts publish the announcements themselves."""


class TypingService:
    def __init__(
        self, presence: PresenceCache, publisher: Publisher, settings: PresenceSettings
    ) -> None:
        self._presence = presence
        self._publisher = publisher
        self._ttl = settings.typing_ttl
        self._ttl_ms = int(settings.typing_ttl * 1000)
        self._throttle = settings.typing_throttle
        # A person types in bursts: each start and stop of a user in a conversation runs the
        # same script with the same keys and announces the same frame (a typing frame carries
        # no time), so all of it is encoded once, not once per event.
        self._prepared = bounded_memo(self._prepare, _PREPARED)

    def _prepare(self, key: tuple[uuid.UUID, uuid.UUID]) -> _Prepared:
        """The typist's frames, and the scripts' keys and arguments announcing them; the
        typist's own connections do not receive their own indicator."""
        conversation_id, user_id = key
        start, stop = (
            events.typing(conversation_id, user_id, started=state, expires_in_ms=self._ttl_ms)
            for state in (True, False)
        )
        started, stopped = (
            self._publisher.conversation_announcement(conversation_id, frame, exclude=user_id)
            for frame in (start, stop)
        )
        typist = self._presence.typist(
            conversation_id,
            user_id,
            self._ttl,
            throttle=self._throttle,
            started=started,
            stopped=stopped,
        )
        return _Prepared(typist, start, stop, started is not None)

    async def start(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        """True when announced (not a repeat inside the throttle window)."""
        if client.typing is None:
            client.typing = set()
        client.typing.add(conversation_id)
        return await self._change(client.user_id, conversation_id, True)

    async def stop(self, client: ClientState, conversation_id: uuid.UUID) -> bool:
        """True when the user was typing (and the stop was announced)."""
        if client.typing is not None:
            client.typing.discard(conversation_id)
        return await self._change(client.user_id, conversation_id, False)

    def stop_with_send(self, client: ClientState, conversation_id: uuid.UUID) -> Typist | None:
        """A send's typing cleanup, to ride in its write-through's script call: the sender's
        typist there, when the stop script announces the stop itself; else None, and the
        caller runs `stop`."""
        prepared = self._prepared((conversation_id, client.user_id))
        if not prepared.published:
            return None
        if client.typing is not None:
            client.typing.discard(conversation_id)
        return prepared.typist

    async def _change(self, user_id: uuid.UUID, conversation_id: uuid.UUID, started: bool) -> bool:
        """Run the start or stop script; where scripts do not reach the bus, publish what it
        says is to be announced here."""
        prepared = self._prepared((conversation_id, user_id))
        if started:
            changed = await self._presence.start_typing(prepared.typist)
        else:
            changed = await self._presence.stop_typing(prepared.typist)
        if changed and not prepared.published:
            frame = prepared.start if started else prepared.stop
            await self._publisher.conversation(conversation_id, frame, exclude=user_id)
        return changed

    async def clear_all(self, client: ClientState) -> None:
        """On disconnect: stop every indicator this client started."""
        typing, client.typing = client.typing or set(), None
        for conversation_id in typing:
            await self._change(client.user_id, conversation_id, False)
