"""Close codes, error codes and the error a bad request raises."""

from __future__ import annotations

import enum

from gateway.errors import Error

__all__ = ["Close", "ErrorCode", "ProtocolError"]


class Close(enum.IntEnum):
    """WebSocket close codes the gateway uses."""

    NORMAL = 1000
    FRAME_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    HEARTBEAT_TIMEOUT = 4000
    UNAUTHENTICATED = 4001
    SESSION_REVOKED = 4002
    TOKEN_EXPIRED = 4003
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
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_WATCHED = "too_many_watched"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ProtocolError(Error):
    """A request the gateway answers with an `error` frame (the connection stays open)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        request_id: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        """`retry_after_ms`: for `rate_limited`, when the request would be allowed."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after_ms = retry_after_ms
