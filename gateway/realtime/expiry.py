"""Token expiry on live connections, and token refresh without reconnecting.

A connection lives no longer than its token (plus the leeway): some time before the end it is
told `session.expiring`, and a client that sends an `auth` frame with a fresh token for the same
user carries on under it; one that does not gets `session.expired` and close 4003. Deadlines sit
in a heap by connection id (a closed connection is not kept alive by it); a refresh pushes a new
one and the stale entry is skipped when it comes due.
"""

from __future__ import annotations

import heapq
import itertools
import time

from gateway.auth import Authenticator, AuthError
from gateway.realtime.connection import Connection, ConnState
from gateway.realtime.hub import Hub
from gateway.state import ClientState

__all__ = ["TokenExpiry"]

_NOTICE_AHEAD = 60.0
"""At most this long before expiry the client is told to refresh (less for short tokens)."""

NOTICE = "notice"
EXPIRE = "expire"


class TokenExpiry:
    def __init__(self, authenticator: Authenticator, hub: Hub, leeway: float) -> None:
        self._authenticator = authenticator
        self._hub = hub
        self._leeway = leeway
        self._heap: list[tuple[float, int, str, float, str]] = []
        self._order = itertools.count()

    def track(self, conn: Connection) -> None:
        """Schedule the notice for the connection's current token (its end is scheduled when
        the notice is sent: one entry per connection at a time)."""
        expires_at = conn.client.expires_at
        lifetime = max(0.0, expires_at - time.time())
        notice_at = expires_at - min(_NOTICE_AHEAD, lifetime / 4)
        self._push(notice_at, NOTICE, expires_at, conn.id)
        if len(self._heap) > 2 * len(self._hub.connections) + 1024:
            self._prune()

    def _push(self, when: float, kind: str, expires_at: float, conn_id: str) -> None:
        heapq.heappush(self._heap, (when, next(self._order), kind, expires_at, conn_id))

    def _prune(self) -> None:
        """Drop the entries of closed connections and refreshed tokens: with long-lived tokens
        and reconnecting clients they would pile up until their (distant) time came."""
        live = self._hub.connections
        self._heap = [
            entry
            for entry in self._heap
            if (conn := live.get(entry[4])) is not None and conn.client.expires_at == entry[3]
        ]
        heapq.heapify(self._heap)

    def due(self, now: float) -> list[tuple[Connection, str]]:
        """(connection, NOTICE or EXPIRE) whose time came at wall-clock `now`; entries of a
        token since refreshed, or of a closed connection, are dropped."""
        found = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, expires_at, conn_id = heapq.heappop(heap)
            conn = self._hub.connections.get(conn_id)
            if (
                conn is not None
                and conn.state is ConnState.OPEN
                and conn.client.expires_at == expires_at
            ):
                found.append((conn, kind))
                if kind == NOTICE:
                    self._push(expires_at + self._leeway, EXPIRE, expires_at, conn_id)
        return found

    async def refresh(self, client: ClientState, token: str) -> float:
        """Carry on under a new token of the same user; its expiry.

        Raises:
            AuthError: the token is bad, revoked, its session gone, or another user's.
            CacheUnavailable: the session cache is unreachable.
        """
        identity = await self._authenticator.authenticate(token)
        if identity.user_id != client.user_id:
            raise AuthError("token is for another user")
        conn = self._hub.connections.get(client.connection_id)
        if conn is None:  # closing meanwhile
            raise AuthError("connection is closing")
        self._hub.reindex(conn, identity.session_id, identity.token_id)
        client.session = identity.session
        client.expires_at = identity.expires_at
        self.track(conn)
        return identity.expires_at
