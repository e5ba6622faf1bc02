"""What a handler may use (narrow ports, not the whole gateway) and what it returns."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from caches import PresenceStatus
from gateway.handlers.budget import RequestBudget
from gateway.protocol import Close
from gateway.state import ClientState
from gateway.store import Receipt, StoredMessage

__all__ = [
    "ConversationsPort",
    "HandlerContext",
    "Limits",
    "MessagesPort",
    "Outcome",
    "PresencePort",
    "QuotasPort",
    "SessionsPort",
    "TopicsPort",
    "TypingPort",
    "VisibilityPort",
]


class PresencePort(Protocol):
    async def renew(self, client: ClientState) -> bool: ...

    async def set_away(self, client: ClientState, away: bool) -> PresenceStatus: ...

    async def statuses(self, user_ids: Iterable[uuid.UUID]) -> dict[str, Any]: ...


class TypingPort(Protocol):
    async def start(self, client: ClientState, conversation_id: uuid.UUID) -> bool: ...

    async def stop(self, client: ClientState, conversation_id: uuid.UUID) -> bool: ...


class ConversationsPort(Protocol):
    async def create(
        self, creator: uuid.UUID, kind: str, others: list[uuid.UUID], name: str
    ) -> tuple[dict[str, object], bool]: ...

    async def list_for(
        self, user_id: uuid.UUID, limit: int
    ) -> tuple[list[dict[str, object]], int | None]: ...

    async def set_flag(
        self, user_id: uuid.UUID, conversation_id: uuid.UUID, flag: str, value: bool
    ) -> None: ...

    async def members(self, conversation_id: uuid.UUID) -> tuple[uuid.UUID, ...]:
        """The conversation's members, from the store (none for an unknown conversation)."""
        ...


class MessagesPort(Protocol):
    async def send(
        self,
        client: ClientState,
        conversation_id: uuid.UUID,
        client_msg_id: str,
        content: str,
        content_type: str,
    ) -> tuple[StoredMessage, bool]: ...

    async def receipt(
        self, client: ClientState, conversation_id: uuid.UUID, message_id: uuid.UUID, read: bool
    ) -> Receipt: ...

    async def delete(
        self, client: ClientState, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage: ...

    async def unread(self, client: ClientState, conversation_id: uuid.UUID) -> int: ...

    async def history(
        self,
        conversation_id: uuid.UUID,
        limit: int,
        before_seq: int | None,
        after_seq: int | None,
    ) -> tuple[list[dict[str, object]], bool]: ...


class TopicsPort(Protocol):
    """The local registry, as handlers see it: memberships and presence watches."""

    def is_member(self, user_id: uuid.UUID, conversation_id: uuid.UUID) -> bool: ...

    async def watch(self, client: ClientState, user_ids: Iterable[uuid.UUID]) -> None:
        """Deliver these users' presence events to the client; returns once subscribed."""
        ...

    def unwatch(self, client: ClientState, user_ids: Iterable[uuid.UUID]) -> None: ...


class VisibilityPort(Protocol):
    async def visible(self, watcher: uuid.UUID, targets: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Those of `targets` whose presence `watcher` may see."""
        ...


class _Everyone:
    async def visible(self, watcher: uuid.UUID, targets: Collection[uuid.UUID]) -> set[uuid.UUID]:
        return set(targets)


class QuotasPort(Protocol):
    async def take(self, user_id: uuid.UUID, kind: str) -> float:
        """Take one costly operation of `kind` (`send`, `create`) from the user's quota: 0.0
        when allowed, else the seconds until it would be."""
        ...


class _Unlimited:
    async def take(self, user_id: uuid.UUID, kind: str) -> float:
        return 0.0


class SessionsPort(Protocol):
    async def refresh(self, client: ClientState, token: str) -> float:
        """Carry on under a fresh token of the same user; its expiry (epoch seconds).

        Raises:
            AuthError: bad, revoked or another user's token.
        """
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_watched: int
    max_message_bytes: int = 4096
    max_group_members: int = 256


@dataclass(frozen=True, slots=True)
class HandlerContext:
    presence: PresencePort
    typing: TypingPort
    conversations: ConversationsPort
    messages: MessagesPort
    topics: TopicsPort
    limits: Limits
    metrics: Counter[str]
    budget: RequestBudget
    """How long one request may take before it is answered `unavailable`."""
    sessions: SessionsPort | None = None
    """Token refresh on a live connection (None: `auth` after the hello is refused)."""
    visibility: VisibilityPort = _Everyone()
    """Whose presence a client may see (default: anyone's)."""
    quotas: QuotasPort = _Unlimited()
    """Per-user quotas on costly operations (default: none)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What should happen after a frame: a frame to send back, then maybe a close."""

    reply: bytes | None = None
    close: Close | None = None
    reason: str = ""
