"""One client's connection: identity, limits and the writes to its socket.

A `Connection` never touches Redis; the receive loop in `gateway.realtime.lifecycle` drives it,
the handlers only see its `ClientState` and return frames for it to send.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from gateway.protocol import Close
from gateway.protocol.events import text_frame
from gateway.ratelimit import TokenBucket
from gateway.state import ClientState

__all__ = ["ConnState", "Connection"]


class ConnState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"


class Connection:
    """An authenticated client socket. Slots keep an idle one small (it is most of the RSS)."""

    __slots__ = (
        "bucket",
        "client",
        "deflate",
        "id",
        "last_heard",
        "rejected_at",
        "state",
        "user_id",
        "user_key",
        "ws",
        "_closer",
        "_early",
        "_protocol",
        "_send_limit",
        "_transport",
    )

    def __init__(
        self,
        *,
        ws: ServerConnection,
        client: ClientState,
        bucket: TokenBucket,
        send_limit: int,
        closer: Callable[[Connection, Close, str], None],
    ) -> None:
        self.ws = ws
        self.client = client
        self.id = client.connection_id
        self.user_id = client.user_id
        self.user_key = str(client.user_id).encode()
        self.bucket = bucket
        self.state = ConnState.OPEN
        self.last_heard = time.monotonic()
        self.rejected_at: list[float] | None = None
        self._send_limit = send_limit
        self._closer = closer
        # Held here, not looked up through `ws` on each of the connection's deliveries.
        self._protocol = ws.protocol
        self._transport = ws.transport
        # permessage-deflate negotiated: frames must go through the connection's compressor,
        # so fan-out cannot share pre-framed bytes with this one.
        self.deflate = bool(ws.protocol.extensions)
        self._early: list[tuple[bool, bytes]] | None = []

    @property
    def greeted(self) -> bool:
        """`hello` was sent: frames now go out as they come."""
        return self._early is None

    def greet(self, hello: bytes) -> None:
        """Send `hello`, then what arrived for this client while it was being attached (the
        hub delivers from the moment it subscribed): `hello` is always the first frame."""
        early, self._early = self._early, None
        self.send(hello)
        for compressed, data in early or ():
            if compressed:
                self.send_compressed(data)
            else:
                self.send_frame(data)

    def send(self, payload: bytes) -> bool:
        """Send one encoded server frame (JSON) to this client; see `send_frame`."""
        if self.deflate:
            return self.send_compressed(payload)
        return self.send_frame(text_frame(payload))

    def _writable(self) -> bool:
        if self.state is not ConnState.OPEN or self._protocol.state is not State.OPEN:
            return False
        if self._transport.get_write_buffer_size() > self._send_limit:
            # Closed, never buffered without bound and never waited for.
            self.close(Close.SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def send_frame(self, frame: bytes) -> bool:
        """Write complete, already framed WebSocket frames without waiting.

        Only for connections without permessage-deflate (see `deflate`). A client whose unsent
        bytes exceed the limit is closed as a slow consumer (4009). False when nothing was written.
        """
        if self._early is not None:  # not greeted yet: held until `hello` is out
            self._early.append((False, frame))
            return True
        if not self._writable():
            return False
        self._write_frame(frame)
        return True

    def _write_frame(self, frame: bytes) -> None:
        self._transport.write(frame)

    def send_compressed(self, payload: bytes) -> bool:
        """Send through websockets' framing, which compresses for this connection."""
        if self._early is not None:
            self._early.append((True, payload))
            return True
        if not self._writable():
            return False
        self._write_compressed(payload)
        return True

    def _write_compressed(self, payload: bytes) -> None:
        self._protocol.send_text(payload)
        self.ws.send_data()

    def close(self, code: Close, reason: str) -> None:
        """Start closing (once); the owner's task group runs the closing handshake."""
        if self.state is ConnState.CLOSING:
            return
        self.state = ConnState.CLOSING
        self._closer(self, code, reason)
