"""Revocations that fail closed: what this instance learned was revoked stays refused when Redis
loses its data.

Redis holds the blacklist and the sessions, and announces each revocation on the revocation
channel. A Redis restarted empty (or flushed, or failed over to an empty replica) forgets both,
and a gateway re-asserting its live connections' sessions would otherwise admit a token that was
revoked minutes before. So every revocation an instance hears of is kept in its memory until it
ends and written to the store (every instance writes it: the later end wins, nothing is lost
when one instance dies); an instance loads the store's at start, authentication consults memory
after Redis, and after data loss the blacklist is written back to Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time

from caches import SessionCache
from caches.models import Revocation
from gateway.store import Revoked, Store

__all__ = ["Revocations"]

log = logging.getLogger(__name__)

_RETRY = 1.0
"""Seconds between attempts to keep revocations the store refused."""


class Revocations:
    def __init__(self, store: Store, sessions: SessionCache, remember_for: float) -> None:
        """`remember_for`: how long a revocation that does not say when it ends is kept (a
        deleted session: at least the lifetime of the tokens issued for it)."""
        self._store = store
        self._sessions = sessions
        self._remember_for = remember_for
        self._tokens: dict[str, float] = {}
        self._sessions_revoked: dict[str, float] = {}
        self._unsaved: dict[tuple[str, str], float] = {}
        self._learned = asyncio.Event()
        self.saved = 0

    async def load(self) -> None:
        """Everything the store says is still revoked (at start, before any client is let in)."""
        for revoked in await self._store.live_revocations(time.time()):
            self._remember(revoked.kind, revoked.id, revoked.expires_at)

    def learn(self, revocation: Revocation) -> None:
        """A revocation heard on the bus (or a blacklisted token met at authentication):
        refused from now on, kept in the store soon."""
        until = revocation.until or time.time() + self._remember_for
        for kind, id_ in (("session", revocation.session_id), ("token", revocation.token_id)):
            if id_ is None:
                continue
            known = self._tokens if kind == "token" else self._sessions_revoked
            if known.get(id_, 0.0) >= until:
                continue  # known already, and for as long
            self._remember(kind, id_, until)
            key = (kind, id_)
            self._unsaved[key] = max(until, self._unsaved.get(key, 0.0))
            self._learned.set()

    def blacklisted(self, token_id: str) -> None:
        """Redis refused a token as blacklisted: remembered too, in case nobody announced it
        (a blacklist written straight into Redis) and Redis later loses it."""
        if self._tokens.get(token_id, 0.0) <= time.time():
            self.learn(Revocation(token_id=token_id))

    def _remember(self, kind: str, id_: str, until: float) -> None:
        known = self._tokens if kind == "token" else self._sessions_revoked
        known[id_] = max(until, known.get(id_, 0.0))

    def refused(self, session_id: str, token_id: str) -> str | None:
        """Why a credential is refused (`token revoked`, `session revoked`), else None."""
        now = time.time()
        if self._tokens.get(token_id, 0.0) > now:
            return "token revoked"
        if self._sessions_revoked.get(session_id, 0.0) > now:
            return "session revoked"
        return None

    async def restore(self) -> None:
        """Redis lost its data: the blacklist goes back (each entry until its end)."""
        self._forget_ended()
        await self._sessions.restore_blacklist(dict(self._tokens))
        log.info("restored %d revoked tokens to the blacklist", len(self._tokens))

    def _forget_ended(self) -> None:
        now = time.time()
        for known in (self._tokens, self._sessions_revoked):
            for id_ in [i for i, until in known.items() if until <= now]:
                del known[id_]

    async def run(self) -> None:
        """Until cancelled: keep what was learned in the store; a refused write is retried
        (memory refuses the credential meanwhile)."""
        while True:
            await self._learned.wait()
            self._learned.clear()
            self._forget_ended()
            batch, self._unsaved = self._unsaved, {}
            try:
                await self._store.add_revocations(
                    [Revoked(kind, id_, until) for (kind, id_), until in batch.items()]
                )
                self.saved += len(batch)
            except Exception as exc:  # the store is down: keep them for the next attempt
                log.warning("keeping %d revocations in the store failed: %s", len(batch), exc)
                for key, until in batch.items():
                    self._unsaved[key] = max(until, self._unsaved.get(key, 0.0))
                self._learned.set()
                await asyncio.sleep(_RETRY)
