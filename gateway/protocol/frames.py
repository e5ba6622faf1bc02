"""Client frames: one frozen class per frame type, and `decode` from raw text to one of them.

Every client frame is a JSON object with `"type"` and an optional `"id"` (echoed in its `ack` or
`error`). `decode` validates every field against the class's schema and raises `ProtocolError`
with a stable code; nothing here awaits, reads a clock or touches Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from gateway.protocol.codes import ErrorCode, ProtocolError
from gateway.protocol.ids import parse_uuid, uuid_texts

__all__ = [
    "MAX_HISTORY",
    "MAX_ID_LENGTH",
    "MAX_MEMBERS",
    "MAX_NAME_LENGTH",
    "MAX_USER_IDS",
    "CONTENT_TYPES",
    "Auth",
    "ClientFrame",
    "ConversationCreate",
    "ConversationMute",
    "ConversationPin",
    "ConversationUnread",
    "ConversationsList",
    "FRAME_TYPES",
    "Heartbeat",
    "MessageDelete",
    "MessageDelivered",
    "MessageRead",
    "MessageSend",
    "MessagesList",
    "PresenceQuery",
    "PresenceSet",
    "PresenceSubscribe",
    "PresenceUnsubscribe",
    "TypingStart",
    "TypingStop",
    "decode",
]

# Field validators: take the raw JSON value, return the typed value or raise ValueError.
Validator = Callable[[Any], Any]
Schema = dict[str, Validator]

MAX_ID_LENGTH: Final = 64
MAX_USER_IDS: Final = 1000
MAX_MEMBERS: Final = 1000
"""The most member ids a frame may name; a group's size is `--max-group-members`."""
MAX_NAME_LENGTH: Final = 200


def _uuid_list(limit: int) -> Validator:
    def check(value: Any) -> tuple[uuid.UUID, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of UUID strings")
        if len(value) > limit:
            raise ValueError(f"at most {limit} ids")
        return tuple(dict.fromkeys(parse_uuid(item) for item in value))

    return check


def _uuid_text_list(limit: int) -> Validator:
    """Canonical UUID texts (`ids.uuid_texts`); the handler builds the UUIDs of the frames it
    serves."""

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of UUID strings")
        if len(value) > limit:
            raise ValueError(f"at most {limit} ids")
        try:
            return uuid_texts(value)
        except ValueError:
            raise ValueError("must be a non-empty list of UUID strings") from None

    return check


def _string(max_length: int, *, allow_empty: bool = False) -> Validator:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not value and not allow_empty:
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"at most {max_length} characters")
        return value

    return check


def _choice(*options: str) -> Validator:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return str(value)

    return check


def _int_range(low: int, high: int) -> Validator:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return check


MAX_HISTORY: Final = 100
_SEQ = _int_range(0, 2**53)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


_CONVERSATION: Schema = {"conversation_id": parse_uuid}
_USER_IDS: Schema = {"user_ids": _uuid_list(MAX_USER_IDS)}


@dataclass(frozen=True, slots=True)
class Auth:
    TYPE: ClassVar[str] = "auth"
    SCHEMA: ClassVar[Schema] = {"token": _string(8192)}
    id: str | None
    token: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    TYPE: ClassVar[str] = "heartbeat"
    SCHEMA: ClassVar[Schema] = {}
    id: str | None


@dataclass(frozen=True, slots=True)
class _UserIds:
    id: str | None
    user_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class PresenceSubscribe(_UserIds):
    TYPE: ClassVar[str] = "presence.subscribe"
    SCHEMA: ClassVar[Schema] = _USER_IDS


@dataclass(frozen=True, slots=True)
class PresenceUnsubscribe(_UserIds):
    TYPE: ClassVar[str] = "presence.unsubscribe"
    SCHEMA: ClassVar[Schema] = _USER_IDS


@dataclass(frozen=True, slots=True)
class PresenceQuery(_UserIds):
    TYPE: ClassVar[str] = "presence.query"
    SCHEMA: ClassVar[Schema] = _USER_IDS


@dataclass(frozen=True, slots=True)
class PresenceSet:
    TYPE: ClassVar[str] = "presence.set"
    SCHEMA: ClassVar[Schema] = {"status": _choice("online", "away")}
    id: str | None
    status: str

    @property
    def away(self) -> bool:
        return self.status == "away"


@dataclass(frozen=True, slots=True)
class _Conversation:
    id: str | None
    conversation_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TypingStart(_Conversation):
    TYPE: ClassVar[str] = "typing.start"
    SCHEMA: ClassVar[Schema] = _CONVERSATION


@dataclass(frozen=True, slots=True)
class TypingStop(_Conversation):
    TYPE: ClassVar[str] = "typing.stop"
    SCHEMA: ClassVar[Schema] = _CONVERSATION


@dataclass(frozen=True, slots=True)
class ConversationCreate:
    TYPE: ClassVar[str] = "conversation.create"
    # "kind", not "type": "type" is the frame's own type.
    SCHEMA: ClassVar[Schema] = {
        "kind": _choice("direct", "group"),
        "member_ids": _uuid_text_list(MAX_MEMBERS),
        "name": _string(MAX_NAME_LENGTH, allow_empty=True),
    }
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"name"})
    id: str | None
    kind: str
    member_ids: tuple[str, ...]
    """Canonical UUID texts (see `_uuid_text_list`)."""
    name: str = ""


CONTENT_TYPES: Final = ("text", "markdown", "image", "file")
"""`image` and `file` carry a URL (or the client's JSON describing the upload) as content."""


@dataclass(frozen=True, slots=True)
class MessageSend:
    TYPE: ClassVar[str] = "message.send"
    SCHEMA: ClassVar[Schema] = {
        "conversation_id": parse_uuid,
        "client_msg_id": _string(MAX_ID_LENGTH),
        # The byte limit is the server's setting, checked by the handler.
        "content": _string(1 << 20),
        "content_type": _choice(*CONTENT_TYPES),
    }
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"content_type"})
    id: str | None
    conversation_id: uuid.UUID
    client_msg_id: str
    content: str
    content_type: str = "text"


@dataclass(frozen=True, slots=True)
class _Receipt:
    id: str | None
    conversation_id: uuid.UUID
    message_id: uuid.UUID


_RECEIPT: Schema = {"conversation_id": parse_uuid, "message_id": parse_uuid}


@dataclass(frozen=True, slots=True)
class MessageDelivered(_Receipt):
    TYPE: ClassVar[str] = "message.delivered"
    SCHEMA: ClassVar[Schema] = _RECEIPT


@dataclass(frozen=True, slots=True)
class MessageRead(_Receipt):
    TYPE: ClassVar[str] = "message.read"
    SCHEMA: ClassVar[Schema] = _RECEIPT


@dataclass(frozen=True, slots=True)
class MessageDelete(_Receipt):
    TYPE: ClassVar[str] = "message.delete"
    SCHEMA: ClassVar[Schema] = _RECEIPT


@dataclass(frozen=True, slots=True)
class MessagesList:
    TYPE: ClassVar[str] = "messages.list"
    SCHEMA: ClassVar[Schema] = {
        "conversation_id": parse_uuid,
        "limit": _int_range(1, MAX_HISTORY),
        "before_seq": _SEQ,
        "after_seq": _SEQ,
    }
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"limit", "before_seq", "after_seq"})
    id: str | None
    conversation_id: uuid.UUID
    limit: int = 50
    before_seq: int | None = None
    after_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ConversationsList:
    TYPE: ClassVar[str] = "conversations.list"
    SCHEMA: ClassVar[Schema] = {"limit": _int_range(1, 200)}
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"limit"})
    id: str | None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class ConversationUnread:
    TYPE: ClassVar[str] = "conversation.unread"
    SCHEMA: ClassVar[Schema] = {"conversation_id": parse_uuid}
    id: str | None
    conversation_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class _Flag:
    id: str | None
    conversation_id: uuid.UUID
    value: bool


_FLAG: Schema = {"conversation_id": parse_uuid, "value": _boolean}


@dataclass(frozen=True, slots=True)
class ConversationPin(_Flag):
    TYPE: ClassVar[str] = "conversation.pin"
    SCHEMA: ClassVar[Schema] = _FLAG


@dataclass(frozen=True, slots=True)
class ConversationMute(_Flag):
    TYPE: ClassVar[str] = "conversation.mute"
    SCHEMA: ClassVar[Schema] = _FLAG


ClientFrame = (
    Auth
    | Heartbeat
    | PresenceSubscribe
    | PresenceUnsubscribe
    | PresenceQuery
    | PresenceSet
    | TypingStart
    | TypingStop
    | ConversationCreate
    | MessageSend
    | MessageDelivered
    | MessageRead
    | MessageDelete
    | MessagesList
    | ConversationsList
    | ConversationUnread
    | ConversationPin
    | ConversationMute
)

FRAME_TYPES: Final[dict[str, type[ClientFrame]]] = {
    cls.TYPE: cls
    for cls in (
        Auth,
        Heartbeat,
        PresenceSubscribe,
        PresenceUnsubscribe,
        PresenceQuery,
        PresenceSet,
        TypingStart,
        TypingStop,
        ConversationCreate,
        MessageSend,
        MessageDelivered,
        MessageRead,
        MessageDelete,
        MessagesList,
        ConversationsList,
        ConversationUnread,
        ConversationPin,
        ConversationMute,
    )
}


def decode(raw: str | bytes) -> ClientFrame:
    """Parse and validate one client frame.

    Raises:
        ProtocolError: with `invalid_json`, `invalid_frame`, `unknown_type` or `invalid_field`;
            its `request_id` is set whenever the frame carried a usable `id`.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.INVALID_JSON, "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_FRAME, "frame must be a JSON object")
    request_id = data.get("id")
    if request_id is not None and not (
        isinstance(request_id, str) and 0 < len(request_id) <= MAX_ID_LENGTH
    ):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"id: must be a string of 1-{MAX_ID_LENGTH} characters"
        )
    frame_type = data.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError(ErrorCode.INVALID_FRAME, "frame needs a string 'type'", request_id)
    cls = FRAME_TYPES.get(frame_type)
    if cls is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown frame type {frame_type[:64]!r}", request_id
        )
    optional: frozenset[str] = getattr(cls, "OPTIONAL", frozenset())
    fields: dict[str, Any] = {}
    for name, validate in cls.SCHEMA.items():
        if name not in data:
            if name in optional:
                continue
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: required", request_id)
        try:
            fields[name] = validate(data[name])
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: {exc}", request_id) from None
    return cls(request_id, **fields)
