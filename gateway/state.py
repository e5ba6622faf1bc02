"""The per-client session state handlers and services read and change: who the client is and
what it asked for. It holds no socket; the realtime layer owns the socket beside it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from caches import SessionData

__all__ = ["ClientState", "Turn"]


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
    last_send: asyncio.Future[None] | None = None
    """The turn of this client's newest send still on its way to the store (see `Turn`)."""


class Turn:
    """A connection's sends reach the store in the order their frames came, while several run
    at once (`gateway.realtime.pipeline`): each takes a turn before its first await, `wait`s
    for the earlier ones just before the store and passes on as it calls the store. A store
    queues a send before its own first await, so the next send, woken by the event loop only
    after this task suspends, is queued after it."""

    __slots__ = ("_before", "_client", "_mine")

    def __init__(self, client: ClientState) -> None:
        self._client = client
        self._before = client.last_send
        self._mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.last_send = self._mine

    async def wait(self) -> None:
        """Until every earlier send of the connection was handed to the store or gave up."""
        if self._before is not None and not self._before.done():
            # Shielded: this send given up (its budget) must not cancel the earlier one's turn.
            await asyncio.shield(self._before)

    def pass_on(self) -> None:
        """Handed to the store, or given up: the next send may go (idempotent)."""
        if not self._mine.done():
            self._mine.set_result(None)
        if self._client.last_send is self._mine:  # the newest: an idle client holds nothing
            self._client.last_send = None
