"""Per-user quotas on costly operations: across all of a user's connections on this instance
and, through Redis, across the fleet.

The per-connection rate limit bounds frames, not cost: one account with 50 connections, each
within its limit, could create thousands of 256-member groups or send ~1,000 messages a second
and slow every other user's writes. So each costly kind has a token bucket per user: one in this
process (free, checked first, so a flood never reaches Redis) and one in Redis (one script call,
the server's clock), shared by every instance. When Redis cannot answer in time the local bucket
alone decides: a quota never makes a send fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from caches import QuotaCache
from gateway.ratelimit import TokenBucket

__all__ = ["Quota", "Quotas"]

log = logging.getLogger(__name__)

_PRUNE_EVERY = 4096
"""Buckets created between looks for full ones to forget (memory stays bounded)."""


@dataclass(frozen=True, slots=True)
class Quota:
    rate: float
    """Tokens per second."""
    burst: int


class Quotas:
    def __init__(
        self, quotas: Mapping[str, Quota], fleet: QuotaCache | None, budget: float
    ) -> None:
        """`quotas` by kind (`send`, `create`); `fleet`: the buckets in Redis (None: this
        instance only); `budget`: how long the Redis step may take before it is skipped."""
        self._quotas = dict(quotas)
        self._fleet = fleet
        self._budget = budget
        self._local: dict[tuple[str, uuid.UUID], TokenBucket] = {}
        self._created = 0

    async def take(self, user_id: uuid.UUID, kind: str) -> float:
        """Take one `kind` for the user: 0.0 when allowed, else seconds to wait."""
        quota = self._quotas.get(kind)
        if quota is None:
            return 0.0
        now = time.monotonic()
        bucket = self._local.get((kind, user_id))
        if bucket is None:
            bucket = self._local[kind, user_id] = TokenBucket(quota.rate, quota.burst, now)
            self._created += 1
            if self._created % _PRUNE_EVERY == 0:
                self._prune(now)
        if not bucket.take(now):
            return bucket.wait()
        if self._fleet is None:
            return 0.0
        try:
            async with asyncio.timeout(self._budget):
                return await self._fleet.take(user_id, kind, quota.rate, quota.burst)
        except (RedisError, TimeoutError) as exc:
            log.debug("quota: Redis unavailable, this instance's bucket decides: %s", exc)
            return 0.0

    def _prune(self, now: float) -> None:
        for key in [k for k, bucket in self._local.items() if bucket.full_at() <= now]:
            del self._local[key]
