"""The `Store` protocol the gateway depends on, and its records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["Conversation", "Store", "StoreError", "StoreOpenError"]


class StoreError(Exception):
    """The system of record failed or refused a write."""


class StoreOpenError(StoreError):
    """The store could not be opened at start-up; the message names the file and the cause."""


@dataclass(frozen=True, slots=True)
class Conversation:
    id: uuid.UUID
    type: str
    name: str
    member_ids: tuple[uuid.UUID, ...]
    created_by: uuid.UUID
    created_at: datetime

    def as_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "member_ids": list(self.member_ids),
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


class Store(Protocol):
    async def create_conversation(
        self, kind: str, creator: uuid.UUID, member_ids: list[uuid.UUID], name: str
    ) -> tuple[Conversation, bool]:
        """Create a conversation; a direct one between the same two users is created once.

        Returns the conversation and whether it was created by this call.
        """
        ...

    async def get_conversation(self, conversation_id: uuid.UUID) -> Conversation | None: ...

    async def user_conversation_ids(self, user_id: uuid.UUID) -> set[uuid.UUID]: ...

    async def close(self) -> None: ...
