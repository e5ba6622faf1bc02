"""The wire protocol, sans I/O: frame schemas, decode + validate, encode, error and close codes.

Every client frame is a JSON object with `"type"` and an optional `"id"` (echoed in its `ack` or
`error`). `decode` turns raw text into a validated `Frame` or raises `ProtocolError` carrying a
stable error code; nothing here awaits, reads a clock or touches Redis. `docs/protocol.md` is the
contract this module implements.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

__all__ = [
    "Close",
    "ErrorCode",
    "Frame",
    "ProtocolError",
    "ack",
    "decode",
    "encode",
    "error",
    "event",
    "text_frame",
]


class Close(enum.IntEnum):
    """WebSocket close codes the gateway uses."""

    NORMAL = 1000
    FRAME_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    HEARTBEAT_TIMEOUT = 4000
    UNAUTHENTICATED = 4001
    SESSION_REVOKED = 4002
    RATE_LIMITED = 4008
    SLOW_CONSUMER = 4009


class ErrorCode(enum.StrEnum):
    """Stable `error.code` values; clients branch on these, never on messages."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    UNAUTHENTICATED = "unauthenticated"
    ALREADY_AUTHENTICATED = "already_authenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_WATCHED = "too_many_watched"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A request the gateway answers with an `error` frame (the connection stays open)."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded, validated client frame: its type, request id and typed fields."""

    type: str
    id: str | None
    fields: dict[str, Any]


# Field validators: take the raw JSON value, return the typed value or raise ValueError.
Validator = Callable[[Any], Any]

MAX_ID_LENGTH: Final = 64
MAX_USER_IDS: Final = 1000
MAX_MEMBERS: Final = 256
MAX_NAME_LENGTH: Final = 200


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError("must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID string") from None


def _uuid_list(limit: int) -> Validator:
    def check(value: Any) -> list[uuid.UUID]:
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of UUID strings")
        if len(value) > limit:
            raise ValueError(f"at most {limit} ids")
        return list(dict.fromkeys(_uuid(item) for item in value))

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


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


# One declarative schema per client frame type: field -> (validator, required).
Schema = dict[str, tuple[Validator, bool]]
_CONVERSATION: Schema = {"conversation_id": (_uuid, True)}
_USER_IDS: Schema = {"user_ids": (_uuid_list(MAX_USER_IDS), True)}

SCHEMAS: Final[dict[str, Schema]] = {
    "auth": {"token": (_string(8192), True)},
    "heartbeat": {},
    "presence.subscribe": _USER_IDS,
    "presence.unsubscribe": _USER_IDS,
    "presence.query": _USER_IDS,
    "presence.set": {"status": (_choice("online", "away"), True)},
    "typing.start": _CONVERSATION,
    "typing.stop": _CONVERSATION,
    "conversation.create": {
        # "kind", not "type": "type" is the frame's own type.
        "kind": (_choice("direct", "group"), True),
        "member_ids": (_uuid_list(MAX_MEMBERS), True),
        "name": (_string(MAX_NAME_LENGTH, allow_empty=True), False),
    },
}


def decode(raw: str | bytes) -> Frame:
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
    schema = SCHEMAS.get(frame_type)
    if schema is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown frame type {frame_type[:64]!r}", request_id
        )
    fields: dict[str, Any] = {}
    for name, (validate, required) in schema.items():
        if name not in data:
            if required:
                raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: required", request_id)
            continue
        try:
            fields[name] = validate(data[name])
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name}: {exc}", request_id) from None
    return Frame(frame_type, request_id, fields)


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(frame: dict[str, Any]) -> bytes:
    """JSON bytes of a server frame (UUIDs and datetimes as strings, RFC 3339 UTC)."""
    return orjson.dumps(frame, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def event(frame_type: str, **fields: Any) -> bytes:
    """A server event frame: `{"type": ..., **fields}`."""
    return encode({"type": frame_type, **fields})


def ack(request_id: str | None, **fields: Any) -> bytes:
    frame: dict[str, Any] = {"type": "ack"}
    if request_id is not None:
        frame["id"] = request_id
    frame.update(fields)
    return encode(frame)


def error(code: ErrorCode, message: str, request_id: str | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "error"}
    if request_id is not None:
        frame["id"] = request_id
    frame["code"] = code.value
    frame["message"] = message
    return encode(frame)


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked WebSocket text frame (RFC 6455 section 5.2) around `payload`.

    Server frames are never masked, so the same bytes serve every recipient: fan-out writes
    them to each transport without re-framing.
    """
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload
