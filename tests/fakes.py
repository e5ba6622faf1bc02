"""Our own seams, recorded instead of mocked: a connection with no socket behind it."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from caches import SessionData
from gateway.protocol import Close
from gateway.realtime.connection import Connection, ConnState
from gateway.state import ClientState
from loadtest.wsclient import payload_length


def client_state(
    user_id: uuid.UUID | None = None, session_id: str = "s1", token_id: str = "t1"
) -> ClientState:
    user = user_id or uuid.uuid4()
    return ClientState(
        f"test.{uuid.uuid4().hex[:8]}", user, session_id, token_id, SessionData(user_id=user)
    )


class RecordingConnection(Connection):
    """A `Connection` whose writes and closes are recorded rather than sent."""

    def __init__(
        self, client: ClientState, last_heard: float = 0.0, *, greeted: bool = True
    ) -> None:
        self.client = client
        self.id = client.connection_id
        self.user_id = client.user_id
        self.user_key = str(client.user_id).encode()
        self.state = ConnState.OPEN
        self.last_heard = last_heard
        self.rejected_at = None
        self.deflate = False
        self.writes: list[bytes] = []
        self.closes: list[tuple[Close, str]] = []
        self._early = None if greeted else []

    def _writable(self) -> bool:
        return self.state is ConnState.OPEN

    def _write_frame(self, frame: bytes) -> None:
        self.writes.append(frame)

    def _write_compressed(self, payload: bytes) -> None:
        raise AssertionError("no compression in these tests")

    def close(self, code: Close, reason: str) -> None:
        if self.state is ConnState.OPEN:
            self.state = ConnState.CLOSING
            self.closes.append((code, reason))

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every frame written, decoded (one write may carry several frames)."""
        return [orjson.loads(payload) for write in self.writes for payload in split_frames(write)]


def split_frames(data: bytes) -> list[bytes]:
    """The payloads of unmasked RFC 6455 text frames written back to back."""
    payloads = []
    at = 0
    while at < len(data):
        assert data[at] == 0x81, "a final, unmasked text frame"
        assert data[at + 1] < 0x80, "unmasked"
        header = payload_length(data, at + 1)
        assert header is not None, "a whole frame"
        length, at = header
        payloads.append(data[at : at + length])
        at += length
    return payloads
