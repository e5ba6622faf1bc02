"""Cached values and their JSON codec (orjson; RFC 3339 UTC timestamps, UUIDs as strings)."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from caches.keys import valid_id, valid_uuid
from caches.memo import bounded_memo

__all__ = [
    "MESSAGE_STATUS_RANK",
    "STATUS_BY_VALUE",
    "CachedConversation",
    "CachedMessage",
    "PresenceStatus",
    "PresenceTransition",
    "Revocation",
    "SessionData",
    "decode",
    "encode",
    "from_ms",
    "parse_time",
    "to_iso",
    "to_ms",
    "utcnow",
]

_JSON_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


class PresenceStatus(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


STATUS_BY_VALUE: dict[str | bytes | None, PresenceStatus] = {
    **{s.value: s for s in PresenceStatus},
    **{s.value.encode(): s for s in PresenceStatus},  # from a client that does not decode
}


class PresenceTransition(enum.StrEnum):
    """What a presence call changed; the gateway announces every value but NONE exactly once."""

    NONE = "none"
    WENT_ONLINE = "online"
    WENT_AWAY = "away"
    WENT_OFFLINE = "offline"

    @property
    def status(self) -> PresenceStatus | None:
        """The status the user moved to, or None for NONE."""
        return None if self is PresenceTransition.NONE else PresenceStatus(self.value)


# Receipts only move forward: a late "delivered" never overwrites "read".
MESSAGE_STATUS_RANK: dict[str, int] = {"sending": 0, "sent": 1, "delivered": 2, "read": 3}


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds (sorted-set scores); naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def to_iso(moment: datetime) -> str:
    """RFC 3339 UTC text, as the JSON values carry it."""
    return orjson.dumps(moment, option=_JSON_OPTS).decode()[1:-1]


def from_ms(ms: int | float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def parse_time(value: Any) -> datetime:
    """An RFC 3339 string (or datetime) as an aware UTC datetime; ValueError otherwise."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        raise ValueError(f"expected an RFC 3339 timestamp, got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Parsing a UUID costs ~1 us in pure Python; cached values name the same users over and over.
_parse_uuid = bounded_memo(uuid.UUID, 1 << 17)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else _parse_uuid(str(value))


def _opt_time(value: Any) -> datetime | None:
    return None if value is None or value == "" else parse_time(value)


@dataclass(slots=True)
class SessionData:
    user_id: uuid.UUID
    wallet_address: str = ""
    username: str = ""
    display_name: str = ""
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    last_activity: datetime = dataclasses.field(default_factory=utcnow)

    def __post_init__(self) -> None:
        self.user_id = valid_uuid(self.user_id, "user_id")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SessionData:
        model = cls.__new__(cls)  # the cache's own JSON: already valid, no re-checks
        model.user_id = _uuid(raw["user_id"])
        model.wallet_address = str(raw.get("wallet_address", ""))
        model.username = str(raw.get("username", ""))
        model.display_name = str(raw.get("display_name", ""))
        model.created_at = parse_time(raw["created_at"])
        model.last_activity = parse_time(raw["last_activity"])
        return model


@dataclass(slots=True)
class CachedMessage:
    id: str
    conversation_id: uuid.UUID
    sender_id: uuid.UUID
    content: str
    content_type: str = "text"
    status: str = "sent"
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    seq: int | None = None
    client_msg_id: str | None = None

    def __post_init__(self) -> None:
        # The spec's ids are UUIDs; a UUID or its text is accepted, and the id is kept as text
        # (message ids may also be any opaque id of `keys.valid_id`'s form).
        self.id = valid_id(self.id, "id")
        self.conversation_id = valid_uuid(self.conversation_id, "conversation_id")
        self.sender_id = valid_uuid(self.sender_id, "sender_id")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CachedMessage:
        seq = raw.get("seq")
        model = cls.__new__(cls)  # the cache's own JSON: already valid, no re-checks
        model.id = str(raw["id"])
        model.conversation_id = _uuid(raw["conversation_id"])
        model.sender_id = _uuid(raw["sender_id"])
        model.content = str(raw["content"])
        model.content_type = str(raw.get("content_type", "text"))
        model.status = str(raw.get("status", "sent"))
        model.created_at = parse_time(raw["created_at"])
        model.seq = int(seq) if seq is not None else None
        model.client_msg_id = raw.get("client_msg_id")
        return model


@dataclass(slots=True)
class CachedConversation:
    id: uuid.UUID
    type: str = "direct"
    name: str = ""
    last_message_id: str | None = None
    last_message_text: str = ""
    last_message_at: datetime | None = None
    unread_count: int = 0
    is_pinned: bool = False
    is_muted: bool = False
    last_seq: int | None = None
    """Beyond the spec: the conversation's last message seq and the user's read seq, when the
    caller knows them; the cache then derives unread_count from them (see ConversationCache)."""
    read_seq: int | None = None

    def __post_init__(self) -> None:
        self.id = valid_uuid(self.id, "id")
        if self.last_message_id is not None:
            self.last_message_id = valid_id(self.last_message_id, "last_message_id")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CachedConversation:
        model = cls.__new__(cls)  # the cache's own JSON: already valid, no re-checks
        model.id = _uuid(raw["id"])
        model.type = str(raw.get("type", "direct"))
        model.name = str(raw.get("name", ""))
        model.last_message_id = raw.get("last_message_id")
        model.last_message_text = str(raw.get("last_message_text", ""))
        model.last_message_at = _opt_time(raw.get("last_message_at"))
        model.unread_count = int(raw.get("unread_count", 0))
        model.is_pinned = bool(raw.get("is_pinned", False))
        model.is_muted = bool(raw.get("is_muted", False))
        last_seq, read_seq = raw.get("last_seq"), raw.get("read_seq")
        model.last_seq = int(last_seq) if last_seq is not None else None
        model.read_seq = int(read_seq) if read_seq is not None else None
        return model


@dataclass(frozen=True, slots=True)
class Revocation:
    """Published on `keys.REVOCATIONS_CHANNEL` when a session is deleted or a token
    blacklisted, so every gateway instance closes the connections that use it.

    This class is the message's only schema: the cache encodes it, gateways decode it.
    """

    session_id: str | None = None
    token_id: str | None = None
    until: float | None = None
    """Epoch seconds after which the revocation no longer matters (the blacklist entry's end);
    None when the revoker did not say (a deleted session)."""

    def to_json(self) -> bytes:
        body: dict[str, object] = (
            {"session_id": self.session_id}
            if self.session_id is not None
            else {"token_id": self.token_id}
        )
        if self.until is not None:
            body["until"] = self.until
        return orjson.dumps(body)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Revocation:
        """ValueError when `raw` is not a revocation."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"malformed revocation: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("malformed revocation: not an object")
        session_id, token_id = data.get("session_id"), data.get("token_id")
        if not isinstance(session_id, str | None) or not isinstance(token_id, str | None):
            raise ValueError("malformed revocation: ids must be strings")
        if session_id is None and token_id is None:
            raise ValueError("malformed revocation: names no session and no token")
        until = data.get("until")
        if until is not None and (isinstance(until, bool) or not isinstance(until, int | float)):
            raise ValueError("malformed revocation: until must be epoch seconds")
        return cls(session_id, token_id, None if until is None else float(until))


_Model = TypeVar("_Model", SessionData, CachedMessage, CachedConversation)


def encode(value: Any) -> str:
    """JSON text of a model (or any orjson-serialisable value)."""
    return orjson.dumps(value, option=_JSON_OPTS).decode()


def decode(model: type[_Model], raw: str | bytes) -> _Model:
    """Parse a cached JSON value into `model`; ValueError on a corrupt value."""
    try:
        return model.from_dict(orjson.loads(raw))
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"corrupt cached {model.__name__}: {exc}") from exc
