"""Steps that follow a committed store write: bounded, logged, never the request's failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

__all__ = ["quietly"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


async def quietly(what: str, work: Awaitable[_T], budget: float) -> _T | None:
    """`work`'s result, or None when Redis failed or did not answer within `budget` (logged):
    the store has the truth, so a cache or bus step never fails the request."""
    try:
        async with asyncio.timeout(budget):
            return await work
    except (RedisError, TimeoutError) as exc:
        log.warning("%s skipped: Redis unavailable: %s", what, exc or "timeout")
        return None
