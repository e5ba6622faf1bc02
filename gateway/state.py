"""The per-client session state handlers and services read and change: who the client is and
what it asked for. It holds no socket; the realtime layer owns the socket beside it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from caches import SessionData

__all__ = ["ClientState"]


@dataclass(slots=True, eq=False)
class ClientState:
    connection_id: str
    user_id: uuid.UUID
    session_id: str
    token_id: str
    session: SessionData
    """Kept to restore the session if Redis loses it."""
    expires_at: float = float("inf")
    """The token's `exp` (epoch seconds): the connection ends then unless refreshed."""
    session_extended_at: float = float("-inf")
    """When this client last pushed its session's expiry (monotonic seconds)."""
    away: bool = False
    watching: set[uuid.UUID] | None = None
    """Users whose presence this client watches (None until the first subscribe)."""
    typing: set[uuid.UUID] | None = None
    """Conversations this client announced typing in (cleared on disconnect)."""
