"""One client's connection: identity, limits and the writes to its socket.

A `Connection` never touches Redis; the receive loop in `gateway.lifecycle` drives it and
the handlers only return frames for it to send.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from caches import SessionData
from gateway.protocol import Close, text_frame
from gateway.ratelimit import TokenBucket

__all__ = ["ConnState", "Connection"]


class ConnState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"


class Connection:
    """An authenticated client socket. Slots keep an idle one small (it is most of the RSS)."""

    __slots__ = (
        "away",
        "bucket",
        "close_code",
        "id",
        "last_heard",
        "rejected_at",
        "session",
        "session_id",
        "state",
        "token_id",
        "typing",
        "user_id",
        "user_key",
        "watching",
        "ws",
        "_closer",
        "_send_limit",
    )

    def __init__(
        self,
        ws: ServerConnection,
        connection_id: str,
        user_id: uuid.UUID,
        session_id: str,
        token_id: str,
        session: SessionData,
        bucket: TokenBucket,
        send_limit: int,
        closer: Callable[[Connection, Close, str], None],
    ) -> None:
        self.ws = ws
        self.id = connection_id
        self.user_id = user_id
        self.user_key = str(user_id).encode()
        self.session_id = session_id
        self.session = session  # to re-assert it if Redis loses it
        self.token_id = token_id
        self.bucket = bucket
        self.state = ConnState.OPEN
        self.away = False
        self.last_heard = time.monotonic()
        self.watching: set[uuid.UUID] | None = None
        self.typing: set[uuid.UUID] | None = None
        self.rejected_at: list[float] | None = None
        self.close_code: Close | None = None
        self._send_limit = send_limit
        self._closer = closer

    def send(self, payload: bytes) -> bool:
        """Send one encoded frame to this client; see `send_frame`."""
        return self.send_frame(text_frame(payload))

    def send_frame(self, frame: bytes) -> bool:
        """Write a complete WebSocket frame without waiting.

        A client whose unsent bytes exceed the limit is closed as a slow consumer (4009) rather
        than buffered without bound. Returns False when nothing was written.
        """
        if self.state is not ConnState.OPEN or self.ws.protocol.state is not State.OPEN:
            return False
        transport = self.ws.transport
        if transport.get_write_buffer_size() > self._send_limit:
            self.close(Close.SLOW_CONSUMER, "slow consumer")
            return False
        transport.write(frame)
        return True

    def close(self, code: Close, reason: str) -> None:
        """Start closing (once); the owner's task group runs the closing handshake."""
        if self.state is ConnState.CLOSING:
            return
        self.state = ConnState.CLOSING
        self.close_code = code
        self._closer(self, code, reason)

    def describe(self) -> dict[str, Any]:
        return {"connection_id": self.id, "user_id": str(self.user_id)}
