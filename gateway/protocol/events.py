"""Every server frame the gateway sends, built here and nowhere else.

Builders return the frame's JSON bytes (encoded once; fan-out shares them). `text_frame` wraps
such bytes in one unmasked RFC 6455 frame, so the same bytes serve every recipient.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.protocol.codes import ErrorCode

__all__ = [
    "EXPIRED",
    "REVOKED",
    "ack",
    "conversation_added",
    "encode",
    "error",
    "frame_type",
    "heartbeat_ack",
    "hello",
    "message_deleted",
    "message_new",
    "message_read",
    "message_status",
    "presence",
    "presence_entry",
    "reconnect",
    "resync",
    "session_expired",
    "session_expiring",
    "session_revoked",
    "text_frame",
    "typing",
    "utc",
]

REVOKED = "session revoked or token blacklisted"
"""`session.revoked` reason: deleted, logged out or token blacklisted, on any instance."""
EXPIRED = "session expired"
"""`session.revoked` reason: the session is gone from the cache (its TTL ran out)."""


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(frame: dict[str, Any]) -> bytes:
    """JSON bytes of a server frame (UUIDs and datetimes as strings, RFC 3339 UTC)."""
    return orjson.dumps(frame, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def _reply(frame_type: str, request_id: str | None, fields: dict[str, Any]) -> bytes:
    frame: dict[str, Any] = {"type": frame_type}
    if request_id is not None:
        frame["id"] = request_id
    frame.update(fields)
    return encode(frame)


def ack(request_id: str | None, **fields: Any) -> bytes:
    """The answer to a request; carries its `id` when it had one."""
    return _reply("ack", request_id, fields)


def error(
    code: ErrorCode,
    message: str,
    request_id: str | None = None,
    retry_after_ms: int | None = None,
) -> bytes:
    fields: dict[str, Any] = {"code": code.value, "message": message}
    if retry_after_ms is not None:
        fields["retry_after_ms"] = retry_after_ms
    return _reply("error", request_id, fields)


def heartbeat_ack(request_id: str | None) -> bytes:
    return _reply("heartbeat_ack", request_id, {})


def hello(
    *,
    connection_id: str,
    user_id: uuid.UUID,
    session_id: str,
    instance_id: str,
    heartbeat_interval_ms: int,
    lease_ms: int,
    limits: dict[str, int | float],
) -> bytes:
    """The first frame after authentication."""
    return encode(
        {
            "type": "hello",
            "connection_id": connection_id,
            "user_id": user_id,
            "session_id": session_id,
            "instance_id": instance_id,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "lease_ms": lease_ms,
            "limits": limits,
        }
    )


def presence_entry(
    user_id: uuid.UUID, status: enum.Enum, last_seen: datetime | None
) -> dict[str, Any]:
    """One user's presence as events and acks carry it."""
    return {"user_id": user_id, "status": status, "last_seen": last_seen}


def presence(user_id: uuid.UUID, status: enum.Enum, last_seen: datetime | None) -> bytes:
    return encode({"type": "presence", **presence_entry(user_id, status, last_seen)})


def typing(
    conversation_id: uuid.UUID, user_id: uuid.UUID, *, started: bool, expires_in_ms: int
) -> bytes:
    return encode(
        {
            "type": "typing",
            "conversation_id": conversation_id,
            "user_id": user_id,
            "state": "start" if started else "stop",
            "expires_in_ms": expires_in_ms if started else 0,
        }
    )


def conversation_added(conversation: dict[str, object]) -> bytes:
    return encode({"type": "conversation.added", "conversation": conversation})


def message_new(message: dict[str, object]) -> bytes:
    return encode({"type": "message.new", "message": message})


def message_status(
    conversation_id: uuid.UUID, message_id: uuid.UUID, seq: int, user_id: uuid.UUID, status: str
) -> bytes:
    """A member's devices received messages up to `seq` (`status`: delivered)."""
    return encode(
        {
            "type": "message.status",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": seq,
            "user_id": user_id,
            "status": status,
        }
    )


def message_read(conversation_id: uuid.UUID, user_id: uuid.UUID, seq: int) -> bytes:
    """A member read everything up to `seq` (their other devices clear their unread too)."""
    return encode(
        {"type": "message.read", "conversation_id": conversation_id, "user_id": user_id, "seq": seq}
    )


def message_deleted(conversation_id: uuid.UUID, message_id: uuid.UUID, seq: int) -> bytes:
    return encode(
        {
            "type": "message.deleted",
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": seq,
        }
    )


RESYNC_BUS_GAP = "the instance lost its pub/sub connection; events may have been missed"


def resync(reason: str = RESYNC_BUS_GAP) -> bytes:
    """Live events may have been lost: recover with `messages.list` after the last seen seq."""
    return encode({"type": "resync", "reason": reason})


def session_revoked(reason: str = REVOKED) -> bytes:
    return encode({"type": "session.revoked", "reason": reason})


def session_expiring(expires_at: float) -> bytes:
    """The token ends at `expires_at`: send `auth` with a fresh one before then."""
    return encode({"type": "session.expiring", "expires_at": utc(expires_at)})


def session_expired() -> bytes:
    """The token ended and was not refreshed; close 4003 follows."""
    return encode({"type": "session.expired", "reason": "token expired"})


def frame_type(frame: bytes) -> str:
    """The `type` of a frame this module encoded (its first field), for metrics."""
    if frame.startswith(b'{"type":"'):
        end = frame.find(b'"', 9)
        if end > 9:
            return frame[9:end].decode()
    return "other"


def utc(epoch_seconds: float) -> datetime:
    """Epoch seconds as the aware time frames carry (RFC 3339 on the wire)."""
    return datetime.fromtimestamp(epoch_seconds, UTC)


def reconnect(after_ms: int) -> bytes:
    return encode({"type": "reconnect", "after_ms": after_ms})


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
