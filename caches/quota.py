"""Per-user quotas shared by a fleet: a token bucket per user and kind of operation in Redis."""

from __future__ import annotations

import uuid

from caches import keys
from caches._base import Script
from caches.errors import translating
from caches.redis import RedisClient

__all__ = ["QuotaCache"]

_TAKE = Script("quota_take")


@translating
class QuotaCache:
    def __init__(self, client: RedisClient) -> None:
        self._redis = client

    async def take(
        self, user_id: uuid.UUID, kind: str, rate: float, burst: int, wanted: int = 1
    ) -> tuple[int, float]:
        """Take up to `wanted` tokens of `kind` for the user (one script call, the server's
        clock; `rate` per second, up to `burst`): how many were taken, and when none was, the
        seconds until one is there."""
        granted, wait_ms = await _TAKE(
            self._redis, [keys.quota(user_id, kind)], [rate, burst, wanted]
        )
        return int(granted), int(wait_ms) / 1000
