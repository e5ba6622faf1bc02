"""A mark an instance keeps in Redis to notice that Redis lost what it wrote."""

from __future__ import annotations

from caches import keys
from caches.errors import translating
from caches.redis import RedisClient

__all__ = ["EpochMark"]

_TTL = 86_400
"""Seconds the mark lives without being kept: long past any outage an instance survives."""


@translating
class EpochMark:
    """One instance's mark: set at start, kept alive by the instance, absent after Redis
    restarted without persistence, was flushed, or failed over to an empty replica."""

    def __init__(self, client: RedisClient, instance_id: str) -> None:
        self._redis = client
        self._key = keys.gateway_epoch(instance_id)

    async def present(self) -> bool:
        return bool(await self._redis.exists(self._key))

    async def claim(self) -> bool:
        """Set the mark; True when it was missing (a fresh start, or lost data)."""
        return bool(await self._redis.set(self._key, "1", ex=_TTL, nx=True))

    async def keep(self) -> None:
        """Push its expiry back; never re-creates a lost mark."""
        await self._redis.expire(self._key, _TTL)
