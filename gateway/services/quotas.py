"""Per-user quotas on costly operations: across all of a user's connections on this instance
and, through Redis, across the fleet.

The per-connection rate limit bounds frames, not cost: one account with 50 connections, each
within its limit, could create thousands of 256-member groups or send ~1,000 messages a second
and slow every other user's writes. So each costly kind has a token bucket per user: one in this
process (free, checked first, so a flood never reaches Redis) and one in Redis (one script call,
the server's clock), shared by every instance. Tokens are taken from Redis a few at a time (a
tenth of the burst, at most 10, or as many as sends wait for them) and spent here, so a send
costs a Redis round trip only once in that many, and the fleet's total can overshoot a quota by
at most that many per instance. When Redis cannot answer in time the local bucket alone
decides: a quota never makes a send fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from caches import QuotaCache
from gateway.ratelimit import TokenBucket
from gateway.services.side import quietly

__all__ = ["Quota", "Quotas"]

log = logging.getLogger(__name__)

_PRUNE_EVERY = 4096
"""Buckets created between looks for full ones to forget (memory stays bounded)."""


@dataclass(frozen=True, slots=True)
class Quota:
    rate: float
    """Tokens per second."""
    burst: int


class _Allowance:
    """A user's allowance for one kind on this instance: its bucket, the fleet tokens taken
    from Redis and not spent yet, and the take from Redis in flight with how many wait on it."""

    __slots__ = ("bucket", "leased", "taking", "waiting")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.leased = 0
        self.taking: asyncio.Future[None] | None = None
        self.waiting = 0


class Quotas:
    def __init__(
        self, quotas: Mapping[str, Quota], fleet: QuotaCache | None, budget: float
    ) -> None:
        """`quotas` by kind (`send`, `create`); `fleet`: the buckets in Redis (None: this
        instance only); `budget`: how long the Redis step may take before it is skipped."""
        self._quotas = dict(quotas)
        self._fleet = fleet
        self._budget = budget
        self._local: dict[tuple[str, uuid.UUID], _Allowance] = {}
        self._created = 0

    async def take(self, user_id: uuid.UUID, kind: str) -> float:
        """Take one `kind` for the user: 0.0 when allowed, else seconds to wait."""
        quota = self._quotas.get(kind)
        if quota is None:
            return 0.0
        now = time.monotonic()
        allowance = self._local.get((kind, user_id))
        if allowance is None:
            bucket = TokenBucket(quota.rate, quota.burst, now)
            allowance = self._local[kind, user_id] = _Allowance(bucket)
            self._created += 1
            if self._created % _PRUNE_EVERY == 0:
                self._prune(now)
        if not allowance.bucket.take(now):
            return allowance.bucket.wait()
        if self._fleet is None:
            return 0.0
        # One take from Redis at a time per user and kind: sends arriving together (several
        # in flight on a connection, or the user's other connections) wait for it and share
        # what it brings, instead of each leasing its own tokens and emptying the fleet's
        # bucket many times faster than the user sends.
        while allowance.leased == 0 and allowance.taking is not None:
            allowance.waiting += 1
            try:
                await asyncio.shield(allowance.taking)
            finally:
                allowance.waiting -= 1
        if allowance.leased > 0:
            allowance.leased -= 1
            return 0.0
        wanted = min(quota.burst, max(_lease(quota.burst), allowance.waiting + 1))
        taking = allowance.taking = asyncio.get_running_loop().create_future()
        try:
            take = self._fleet.take(user_id, kind, quota.rate, quota.burst, wanted)
            # Unanswered, this instance's bucket decides (logged quietly: one line per send).
            taken = await quietly("fleet quota", take, self._budget, level=logging.DEBUG)
        finally:
            allowance.taking = None
            taking.set_result(None)
        if taken is None:
            return 0.0
        granted, wait = taken
        if granted == 0:
            return wait
        allowance.leased += granted - 1
        return 0.0

    def _prune(self, now: float) -> None:
        for key in [k for k, a in self._local.items() if a.bucket.full_at() <= now]:
            del self._local[key]


def _lease(burst: int) -> int:
    """Fleet tokens taken at once: a tenth of the burst, at most 10 (creates: one at a time)."""
    return max(1, min(10, burst // 10))
