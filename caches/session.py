"""Session cache: sessions with TTL, a per-user multi-device index, and a token blacklist."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from caches import keys
from caches._base import TTL, Script, is_cluster, pipeline, text, ttl_ms
from caches.errors import translating
from caches.models import Revocation, SessionData, decode, encode, to_iso, utcnow
from caches.redis import RedisClient

__all__ = ["DEFAULT_SESSION_TTL", "SessionCache"]

DEFAULT_SESSION_TTL = timedelta(minutes=15)
_TOUCH = Script("session_touch")


@translating
class SessionCache:
    """The spec's SessionCache.

    Deleting a session or blacklisting a token also publishes on `keys.REVOCATIONS_CHANNEL`, so
    every gateway instance closes the connections that use it, whoever revoked it.
    """

    def __init__(self, client: RedisClient) -> None:
        self._redis = client

    async def set(
        self,
        session_id: str,
        data: SessionData,
        ttl: TTL = DEFAULT_SESSION_TTL,
        *,
        if_missing: bool = False,
    ) -> None:
        """Store a session (after login) and index it under its user.

        `if_missing` leaves an existing session as it is (re-asserting after data loss).
        """
        ms = ttl_ms(ttl)
        user = data.user_id
        pipe = pipeline(self._redis, transaction=False)
        pipe.set(keys.session(session_id), encode(data), px=ms, nx=if_missing)
        pipe.set(keys.user_session(user, session_id), "1", px=ms)
        index = keys.user_sessions(user)
        pipe.sadd(index, keys.valid_id(session_id))
        # The index lives as long as its longest session: NX sets it on a fresh key, GT only
        # ever lengthens it.
        pipe.pexpire(index, ms, nx=True)
        pipe.pexpire(index, ms, gt=True)
        await pipe.execute()

    async def get(self, session_id: str) -> SessionData | None:
        """The session, or None when it does not exist (expired, deleted)."""
        raw = await self._redis.get(keys.session(session_id))
        return None if raw is None else decode(SessionData, raw)

    async def get_for_auth(self, session_id: str, token_id: str) -> tuple[SessionData | None, bool]:
        """The session and whether the token is blacklisted, in one round trip."""
        pipe = pipeline(self._redis, transaction=False)
        pipe.get(keys.session(session_id))
        pipe.exists(keys.blacklist_token(token_id))
        raw, blacklisted = await pipe.execute()
        return (None if raw is None else decode(SessionData, raw)), bool(blacklisted)

    async def extend(
        self,
        session_id: str,
        ttl: TTL = DEFAULT_SESSION_TTL,
        *,
        user_id: uuid.UUID | None = None,
    ) -> bool:
        """Push the session's expiry to now + ttl; False when it no longer exists.

        Passing the session's `user_id` saves a read (one round trip instead of two).
        """
        ms = ttl_ms(ttl)
        if user_id is None:
            session = await self.get(session_id)
            if session is None:
                return False
            user_id = session.user_id
        pipe = pipeline(self._redis, transaction=False)
        pipe.pexpire(keys.session(session_id), ms)
        pipe.pexpire(keys.user_session(user_id, session_id), ms)
        pipe.pexpire(keys.user_sessions(user_id), ms, gt=True)
        extended, _, _ = await pipe.execute()
        return bool(extended)

    async def touch(self, session_id: str) -> bool:
        """Record activity now in `last_activity`, keeping the TTL; False when missing."""
        done = await _TOUCH(self._redis, [keys.session(session_id)], [to_iso(utcnow())])
        return bool(done)

    async def delete(self, session_id: str) -> bool:
        """Log out one session; connections using it are closed. False when it did not exist."""
        session = await self.get(session_id)
        pipe = pipeline(self._redis, transaction=False)
        pipe.delete(keys.session(session_id))
        if session is not None:
            pipe.delete(keys.user_session(session.user_id, session_id))
            pipe.srem(keys.user_sessions(session.user_id), session_id)
        results = await self._execute_and_announce(pipe, [Revocation(session_id=session_id)])
        return bool(results[0])

    async def invalidate_token(self, token_id: str, ttl: TTL = timedelta(hours=24)) -> None:
        """Blacklist a token id (`jti`) for `ttl` (at least the token's remaining lifetime)."""
        ms = ttl_ms(ttl)
        pipe = pipeline(self._redis, transaction=False)
        pipe.set(keys.blacklist_token(token_id), "1", px=ms)
        until = time.time() + ms / 1000
        await self._execute_and_announce(pipe, [Revocation(token_id=token_id, until=until)])

    async def restore_blacklist(self, token_ids: dict[str, float]) -> None:
        """Put blacklist entries back (after Redis lost its data), each until its epoch-seconds
        end, without announcing them again: the connections they closed are long gone."""
        if not token_ids:
            return
        now = time.time()
        pipe = pipeline(self._redis, transaction=False)
        for token_id, until in token_ids.items():
            if until > now:
                pipe.set(keys.blacklist_token(token_id), "1", px=max(1, int((until - now) * 1000)))
        await pipe.execute()

    async def is_token_blacklisted(self, token_id: str) -> bool:
        return bool(await self._redis.exists(keys.blacklist_token(token_id)))

    async def get_user_sessions(self, user_id: uuid.UUID | str) -> dict[str, SessionData]:
        """Every live session of a user (all devices), by session id; prunes expired ones."""
        index = keys.user_sessions(user_id)
        session_ids = sorted(text(s) for s in await self._redis.smembers(index))
        if not session_ids:
            return {}
        pipe = pipeline(self._redis, transaction=False)
        for session_id in session_ids:
            pipe.get(keys.session(session_id))
        raws = await pipe.execute()
        found = {
            sid: decode(SessionData, raw) for sid, raw in zip(session_ids, raws, strict=True) if raw
        }
        gone = [sid for sid in session_ids if sid not in found]
        if gone:
            await self._redis.srem(index, *gone)
        return found

    async def delete_user_sessions(self, user_id: uuid.UUID | str) -> int:
        """Log a user out everywhere; returns how many sessions were deleted."""
        index = keys.user_sessions(user_id)
        session_ids = sorted(text(s) for s in await self._redis.smembers(index))
        pipe = pipeline(self._redis, transaction=False)
        for session_id in session_ids:
            pipe.delete(keys.session(session_id))
            pipe.delete(keys.user_session(user_id, session_id))
        pipe.delete(index)
        revocations = [Revocation(session_id=session_id) for session_id in session_ids]
        results = await self._execute_and_announce(pipe, revocations)
        return sum(int(r) for r in results[0 : 2 * len(session_ids) : 2])

    async def _execute_and_announce(self, pipe: Any, revocations: list[Revocation]) -> list[Any]:
        """Run `pipe`, then publish the revocations: in the same round trip where the client
        allows it; a cluster client (whose pipelines refuse PUBLISH) publishes right after.
        Returns the pipeline's own results."""
        if is_cluster(self._redis):
            results: list[Any] = await pipe.execute()
            for revocation in revocations:
                await self._redis.publish(keys.REVOCATIONS_CHANNEL, revocation.to_json())
            return results
        for revocation in revocations:
            pipe.publish(keys.REVOCATIONS_CHANNEL, revocation.to_json())
        results = await pipe.execute()
        return results[: len(results) - len(revocations)]
