"""The `Store` protocol the gateway depends on, and its records."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from gateway.errors import Error

__all__ = [
    "Conversation",
    "ConversationSummary",
    "KeyConflict",
    "NotAMember",
    "NotAllowed",
    "NotFound",
    "Receipt",
    "Revoked",
    "Store",
    "StoreError",
    "StoreOpenError",
    "StoredMessage",
    "check_flag",
    "new_conversation",
    "new_message",
    "own_message",
    "retried",
]


class StoreError(Error):
    """The system of record failed or refused a write."""


class StoreOpenError(StoreError):
    """The store could not be opened at start-up; the message names the file and the cause."""


class NotAMember(StoreError):
    """The user is not a member of the conversation (or it does not exist)."""


class KeyConflict(StoreError):
    """An idempotency key already names another message (another conversation or other
    content): a key means one message, for ever."""

    def __init__(self, client_msg_id: str) -> None:
        super().__init__(
            f"client_msg_id {client_msg_id!r} was already used for another message; "
            "use a new key for a new message"
        )
        self.client_msg_id = client_msg_id


class NotFound(StoreError):
    """No such record where the member looked (e.g. a message deleted, or of another
    conversation)."""


class NotAllowed(StoreError):
    """The user may not do this to that record (e.g. delete another member's message)."""


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


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    sender_id: uuid.UUID
    client_msg_id: str
    content: str
    content_type: str
    created_at: datetime
    deleted: bool = False
    """Deleted by its sender: the row stays (its seq and key are never reused), content gone."""

    def as_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "client_msg_id": self.client_msg_id,
            "content": self.content,
            "content_type": self.content_type,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One row of a user's conversation list, as the store knows it."""

    id: uuid.UUID
    type: str
    name: str
    last_message: StoredMessage | None
    last_seq: int
    read_seq: int
    is_pinned: bool
    is_muted: bool

    @property
    def unread_count(self) -> int:
        """The conversation's last seq minus the member's read seq: exact, never drifting."""
        return max(self.last_seq - self.read_seq, 0)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A member's watermarks in a conversation after a receipt: everything up to `delivered_seq`
    reached one of their devices, everything up to `read_seq` was read."""

    conversation_id: uuid.UUID
    user_id: uuid.UUID
    delivered_seq: int
    read_seq: int
    moved: bool
    """False when the receipt was at or behind the watermark (nothing changed)."""


@dataclass(frozen=True, slots=True)
class Revoked:
    """A session or token the gateway must refuse until `expires_at` (epoch seconds)."""

    kind: str
    """`session` or `token`."""
    id: str
    expires_at: float


def retried(
    stored: StoredMessage, conversation_id: uuid.UUID, content: str, content_type: str
) -> StoredMessage:
    """The stored message a retry of its key names; KeyConflict when the key names another (a
    deleted message answers its deletion, whatever the content)."""
    if stored.conversation_id != conversation_id or (
        not stored.deleted and (stored.content, stored.content_type) != (content, content_type)
    ):
        raise KeyConflict(stored.client_msg_id)
    return stored


# The rules both backends apply the same way, whatever their SQL.


def new_conversation(
    kind: str, creator: uuid.UUID, member_ids: list[uuid.UUID], name: str
) -> tuple[Conversation, str | None]:
    """A conversation about to be created (its members in a stable order, the creator among
    them) and its direct key (None for a group): a direct conversation between the same two
    users exists once."""
    members = sorted({creator, *member_ids}, key=str)
    if kind == "direct" and len(members) != 2:
        raise StoreError("a direct conversation has exactly two members")
    direct_key = ":".join(str(m) for m in members) if kind == "direct" else None
    conversation = Conversation(
        id=uuid.uuid4(),
        type=kind,
        name=name,
        member_ids=tuple(members),
        created_by=creator,
        created_at=datetime.now(UTC),
    )
    return conversation, direct_key


def new_message(
    conversation_id: uuid.UUID,
    sender_id: uuid.UUID,
    client_msg_id: str,
    content: str,
    content_type: str,
    seq: int = 0,
) -> StoredMessage:
    """A message about to be stored (`seq` 0 where the backend assigns it in the insert)."""
    return StoredMessage(
        id=uuid.uuid4(),
        conversation_id=conversation_id,
        seq=seq,
        sender_id=sender_id,
        client_msg_id=client_msg_id,
        content=content,
        content_type=content_type,
        created_at=datetime.now(UTC),
    )


def check_flag(flag: str) -> None:
    """A member's flag the store keeps (it names a column: never anything else)."""
    if flag not in ("pinned", "muted"):
        raise ValueError(f"unknown flag {flag!r}")


def own_message(msg: StoredMessage, user_id: uuid.UUID) -> StoredMessage:
    """`msg`, when `user_id` sent it: only its sender may delete a message."""
    if msg.sender_id != user_id:
        raise NotAllowed("only its sender may delete a message")
    return msg


class Store(Protocol):
    async def create_conversation(
        self, kind: str, creator: uuid.UUID, member_ids: list[uuid.UUID], name: str
    ) -> tuple[Conversation, bool]:
        """Create a conversation; a direct one between the same two users is created once.

        Returns the conversation and whether it was created by this call.
        """
        ...

    async def get_conversation(self, conversation_id: uuid.UUID) -> Conversation | None: ...

    async def user_conversations(self, user_id: uuid.UUID) -> dict[uuid.UUID, int]:
        """The user's conversations and the last seq committed in each."""
        ...

    async def send_message(
        self,
        conversation_id: uuid.UUID,
        sender_id: uuid.UUID,
        client_msg_id: str,
        content: str,
        content_type: str,
    ) -> tuple[StoredMessage, bool]:
        """Persist a message with the conversation's next seq (gap-free, unique, whatever the
        number of writers); a retry of (sender, client_msg_id) returns the stored message (its
        `deleted` set once its sender deleted it), for ever.

        Sends are taken in call order: a call is queued before its first await, so sends one
        task starts in turn, or tasks start one after another, commit in that order (a
        connection's sends in flight together rely on it: `gateway.state.Turn`).

        Returns the message and whether this call created it.

        Raises:
            NotAMember: the sender is not a member of the conversation (checked first).
            KeyConflict: the key names a message in another conversation or with other content.
        """
        ...

    async def conversation_summaries(self, user_id: uuid.UUID) -> list[ConversationSummary]:
        """Every conversation of the user, with its last message, unread count and flags."""
        ...

    async def set_flag(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, flag: str, value: bool
    ) -> None:
        """Set the member's `pinned` or `muted` flag.

        Raises:
            NotAMember: not a member.
        """
        ...

    async def delete_message(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID
    ) -> StoredMessage:
        """Delete the user's own message; its seq is not reused.

        Raises:
            NotFound: no such message in a conversation of the user.
            NotAllowed: the message is another member's.
        """
        ...

    async def list_messages(
        self,
        conversation_id: uuid.UUID,
        limit: int,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[StoredMessage], bool]:
        """Up to `limit` messages in seq order: the first ones after `after_seq`, else the last
        ones before `before_seq`, else the newest; and whether more lie beyond the page (after
        it for `after_seq`, before it otherwise)."""
        ...

    async def receipt(
        self, conversation_id: uuid.UUID, user_id: uuid.UUID, message_id: uuid.UUID, read: bool
    ) -> tuple[Receipt, StoredMessage]:
        """Move the member's delivered (and, for `read`, read) watermark up to the message's
        seq; never backwards.

        Raises:
            NotAMember: not a member.
            NotFound: the message is not (or no longer) in the conversation.
        """
        ...

    async def unread(self, conversation_id: uuid.UUID, user_id: uuid.UUID) -> tuple[int, int]:
        """The member's unread count (the conversation's last seq minus their read seq) and the
        last seq it was read as of.

        Raises:
            NotAMember: not a member.
        """
        ...

    async def visible_users(
        self, watcher: uuid.UUID, targets: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of `targets` who share a conversation with `watcher`, or whom the application
        let `watcher` see (a `presence_grants` row)."""
        ...

    async def add_revocations(self, revoked: Collection[Revoked]) -> None:
        """Keep these revocations durably (the later end wins); forget those already over."""
        ...

    async def live_revocations(self, now: float) -> list[Revoked]:
        """Every revocation that has not ended by `now`."""
        ...

    def trouble(self) -> str | None:
        """Why the store cannot be trusted now (its file deleted or replaced, writes failing),
        for `/readyz`; None when healthy."""
        ...

    async def watch(self) -> None:
        """Run until cancelled, noticing within a second or two when the store goes bad."""
        ...

    async def close(self) -> None: ...
